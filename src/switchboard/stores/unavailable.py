"""Telling "the database or Redis cannot be reached right now" apart from a fault of the code.

The drivers raise their own classes for a lost or refused connection (asyncpg and redis-py their
own, SQLAlchemy wraps some, a refused connect is a plain OSError). An answer built on a store
that is down should say so (503, retry) rather than "internal error". The drivers are looked up
among the modules already loaded, never imported here: an exception of a driver that was never
loaded cannot be raised, and importing redis-py alone loads OpenTelemetry's SDK.
"""

from __future__ import annotations

import logging
import sys
import time

import sqlalchemy.exc

# A connect refused or a connection reset or cut. Not ConnectionAbortedError: the edge uses it
# for a client that left.
_SOCKET = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
# (module, class names): connection lost or refused, "connection is closed", Redis unreachable.
# PostgreSQL answering that it cannot take connections yet or any more (starting up, shutting
# down, out of connection slots) is as unreachable as a refused connect.
_DRIVERS = (
    ("asyncpg.exceptions", ("PostgresConnectionError", "InterfaceError", "CannotConnectNowError",
                            "AdminShutdownError", "CrashShutdownError", "TooManyConnectionsError")),
    ("redis.exceptions", ("ConnectionError", "TimeoutError")),
)


def _driver_error(exc: BaseException | None) -> bool:
    # SQLAlchemy's asyncpg adapter raises its own error "from" the driver's: look down the chain.
    for _ in range(4):
        if exc is None:
            return False
        if isinstance(exc, _SOCKET):
            return True
        for module_name, names in _DRIVERS:
            module = sys.modules.get(module_name)
            if module is not None and isinstance(exc, tuple(getattr(module, n) for n in names)):
                return True
        exc = exc.__cause__
    return False


class StoreTimeout(Exception):
    """A read of a store that got no answer in time: a database that accepts connections and
    never answers (asyncpg's connect and command timeouts raise the builtin TimeoutError, which
    alone does not say what timed out). Raised by the reader that knows it was reading a store."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer from the store within {seconds:g} s")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says a store could not be reached (as opposed to a bad query)."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError | StoreTimeout):
        return True  # no pooled connection free within the pool's timeout, or no answer at all
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # SQLAlchemy's wrapper of a driver error: a dropped connection, or the driver's own
        # connection error inside; SQLite's "database is locked" is a store busy, not a bug.
        return (exc.connection_invalidated or _driver_error(exc.orig)
                or "database is locked" in str(exc.orig))
    return _driver_error(exc)


class OutageLog:
    """How background work on a store (a periodic reload, a batched write) logs its failures:
    one warning when the store stops answering, one line when it answers again, debug lines in
    between, so a database restart does not print a traceback every few seconds. A failure that
    is not a store out of reach is a fault of the code and keeps its traceback each time."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._since: float | None = None  # when the store stopped answering, until it answers

    def failed(self, exc: BaseException, then: str = "") -> None:
        """``then``: what happens meanwhile, appended to the warning (``"; ..."``). A TimeoutError
        is the store's here: the work is a store's, and a database that accepts connections and
        never answers ends it with the driver's (builtin) TimeoutError."""
        if not (unavailable(exc) or isinstance(exc, TimeoutError)):
            self._log.warning("%s failed%s", self._what, then, exc_info=exc)
        elif self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s failed: the database or Redis is unreachable (%s)%s", self._what,
                              type(exc).__name__, then)
        else:
            self._log.debug("%s failed again (%s)", self._what, type(exc).__name__)

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.info("%s works again after %.1f s", self._what, time.monotonic() - self._since)
            self._since = None
