"""Telling "the database or Redis cannot be reached right now" apart from a fault of the code.

The drivers raise their own classes for a lost or refused connection (asyncpg and redis-py their
own, SQLAlchemy wraps some, a refused connect is a plain OSError). An answer built on a store
that is down should say so (503, retry) rather than "internal error". The drivers are looked up
among the modules already loaded, never imported here: an exception of a driver that was never
loaded cannot be raised, and importing redis-py alone loads OpenTelemetry's SDK.
"""

from __future__ import annotations

import sys

import sqlalchemy.exc

# A connect refused or a connection reset or cut. Not ConnectionAbortedError: the edge uses it
# for a client that left.
_SOCKET = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
# (module, class names): connection lost or refused, "connection is closed", Redis unreachable.
_DRIVERS = (
    ("asyncpg.exceptions", ("PostgresConnectionError", "InterfaceError")),
    ("redis.exceptions", ("ConnectionError", "TimeoutError")),
)


def _driver_error(exc: BaseException | None) -> bool:
    if isinstance(exc, _SOCKET):
        return True
    for module_name, names in _DRIVERS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, tuple(getattr(module, n) for n in names)):
            return True
    return False


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says a store could not be reached (as opposed to a bad query)."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True  # no pooled connection free within the pool's timeout
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # SQLAlchemy's wrapper of a driver error: a dropped connection, or the driver's own
        # connection error inside; SQLite's "database is locked" is a store busy, not a bug.
        return (exc.connection_invalidated or _driver_error(exc.orig)
                or "database is locked" in str(exc.orig))
    return _driver_error(exc)
