"""Telling "the database refused these rows for what they hold" apart from "it could not be
reached", and finding the rows it refuses in a batch.

A batched writer (the usage ledger, the request log's bodies, the keys' last-used times) keeps a
batch and retries it while the database is down. That is right for an outage and wrong for a
batch the database refuses for its data (a NUL character in a text column, a number out of its
column's range, a string longer than its column, a constraint): such a batch fails every time,
and retried as a whole it would hold up every batch behind it forever. :func:`refused` says which
failure it is; :func:`isolate` stores a batch, and when the database refuses it for its data,
halves it until the rows it refuses are alone, storing the rest (a few extra statements for a
refused batch, none for the others).

The drivers' errors are told by their SQLSTATE class (PostgreSQL's ``22`` data exception, ``23``
integrity constraint violation: asyncpg's errors and SQLAlchemy's adapter of them carry it,
whatever class SQLAlchemy wraps them in) and by the DB-API classes (SQLite's ``DataError`` and
``IntegrityError``); a value no driver can even send (a string with an unpaired surrogate, an
integer past 64 bits) fails as a ``UnicodeError``, ``OverflowError`` or JSON encoding error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import orjson
import sqlalchemy.exc

from switchboard.stores.unavailable import unavailable

T = TypeVar("T")

# PostgreSQL SQLSTATE classes: 22 data exception (bad encoding, out of range, too long, invalid
# JSON), 23 integrity constraint violation (NOT NULL, CHECK, foreign key).
_DATA_CLASSES = ("22", "23")
# Values that cannot be turned into a statement's parameters at all.
_VALUE_ERRORS = (UnicodeError, OverflowError, orjson.JSONEncodeError)


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` says the database (or its driver) refused the data it was given, as
    opposed to being unreachable or failing for another reason: retrying the same rows cannot
    succeed."""
    if unavailable(exc):
        return False
    if isinstance(exc, sqlalchemy.exc.DataError | sqlalchemy.exc.IntegrityError):
        return True
    # SQLAlchemy's wrapper, the dialect's adapter, the driver's own error: look down the chain.
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, _VALUE_ERRORS):
            return True
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _DATA_CLASSES:
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def kind(exc: BaseException) -> str:
    """A short name of why rows were refused, for one log line per kind: the driver's class and
    the first line of its message (``CharacterNotInRepertoireError: invalid byte sequence for
    encoding "UTF8": 0x00``)."""
    found = exc
    seen: BaseException | None = exc
    for _ in range(4):  # the innermost error says it best
        if seen is None:
            break
        found = seen
        seen = getattr(seen, "orig", None) or seen.__cause__
    message = str(found).strip().splitlines()[0] if str(found).strip() else ""
    return f"{type(found).__name__}: {message[:200]}" if message else type(found).__name__


async def isolate(store: Callable[[Sequence[T]], Awaitable[object]],
                  items: Sequence[T]) -> list[tuple[T, BaseException]]:
    """Store ``items`` with ``store`` (one call, one transaction, on the common path). When the
    database refuses them for their data, the batch is halved and each half stored the same way,
    so every row it accepts is stored and the ones it refuses are found alone: returned with
    their error. Any other failure (an outage) is raised as it is: the caller keeps the whole
    batch and retries it, as before, so ``store`` must be idempotent (halves stored before the
    outage are stored again: every batched writer's INSERT or UPDATE is)."""
    try:
        await store(items)
        return []
    except Exception as exc:
        if not refused(exc):
            raise
        if len(items) == 1:
            return [(items[0], exc)]
    middle = len(items) // 2
    return [*await isolate(store, items[:middle]), *await isolate(store, items[middle:])]
