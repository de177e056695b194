"""One change of a stored object at a time in this process.

A PATCH reads a record, checks the change and writes it only over the version it read
(compare-and-set). Admin calls racing on one instance would otherwise spend their few tries
overtaking each other and could all answer 409; queued here, each reads what the one before
wrote. Across instances the compare-and-set still keeps every change."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Held only while some change of the object runs or waits: a lock nobody holds is dropped.
_LOCKS: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Lock] = weakref.WeakValueDictionary()


@asynccontextmanager
async def one_writer(kind: str, *key: str | None) -> AsyncIterator[None]:
    """Run the body alone among the changes of this object (``kind`` and its identifying parts)."""
    name = (kind, *(part or "" for part in key))
    lock = _LOCKS.get(name)
    if lock is None:
        lock = _LOCKS[name] = asyncio.Lock()
    async with lock:
        yield
