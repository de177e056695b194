"""Telling "the database or Redis cannot be reached right now" apart from a fault of the code.

The drivers raise their own classes for a lost or refused connection (asyncpg and redis-py their
own, SQLAlchemy wraps some, a refused connect is a plain OSError). An answer built on a store
that is down should say so (503, retry) rather than "internal error": ``UNAVAILABLE`` lists the
classes to catch and :func:`unavailable` decides for the ones that need a look inside.
"""

from __future__ import annotations

import asyncpg
import redis.exceptions
import sqlalchemy.exc

# A connect refused or a connection reset or cut. Not ConnectionAbortedError: the edge uses it
# for a client that left.
_SOCKET = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
_DRIVERS = (
    asyncpg.exceptions.PostgresConnectionError,  # connection lost, refused at start-up, too many
    asyncpg.exceptions.InterfaceError,  # "connection is closed"
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection free within the pool's timeout
)
UNAVAILABLE: tuple[type[Exception], ...] = (*_SOCKET, *_DRIVERS, sqlalchemy.exc.DBAPIError)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says a store could not be reached (as opposed to a bad query)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # SQLAlchemy's wrapper of a driver error: a dropped connection, or the driver's own
        # connection error inside; SQLite's "database is locked" is a store busy, not a bug.
        orig = exc.orig
        return (exc.connection_invalidated or isinstance(orig, (*_SOCKET, *_DRIVERS))
                or "database is locked" in str(orig))
    return isinstance(exc, (*_SOCKET, *_DRIVERS))
