"""Key records by hash, cached in process memory and kept honest across instances.

The request path makes no database query for a key it has seen: records (and "no such key")
are cached. Every change to a key (created, revoked, disabled, rotated) is published on the
change feed, and every instance drops that entry when the message arrives, within milliseconds
on Redis pub/sub. The feed is at most once (a message can be lost while Redis reconnects), so
every entry also expires after ``ttl`` seconds: the bound on staleness when a message is lost.

A lookup that races with an invalidation does not cache what it read (a generation counter),
so a revoked key cannot be put back by a read that started before the revocation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from switchboard.context import Principal
from switchboard.stores.protocols import ChangeFeed, KeyRecord, KeyStore, Subscription

log = logging.getLogger("switchboard.access")

TOPIC = "keys"
ALL = "*"


class CachedKey(NamedTuple):
    """A key record and the principal it authenticates as, built once per cache fill."""

    record: KeyRecord
    principal: Principal


def principal_of(record: KeyRecord) -> Principal:
    return Principal(
        id=record.id,
        role=record.role,
        key_id=record.id,
        tenant_id=record.tenant_id,
        team_id=record.team_id,
        # A service account stands for an application as a user stands for a person.
        user_id=record.user_id or record.service_account_id,
        allowed_models=record.allowed_models,
        metadata=record.metadata,
        rpm_limit=record.rpm_limit,
        tpm_limit=record.tpm_limit,
    )


@dataclass(slots=True)
class _Entry:
    key: CachedKey | None
    expires: float


class KeyCache:
    def __init__(
        self,
        store: KeyStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._feed = feed
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Task[CachedKey | None]] = {}
        self._generation = 0
        self._subscription: Subscription | None = None
        self.lookups = 0  # store queries made, for tests and metrics

    async def start(self) -> None:
        self._subscription = await self._feed.subscribe(TOPIC, self._on_change)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    async def get(self, key_hash: str) -> CachedKey | None:
        entry = self._entries.get(key_hash)
        if entry is not None and entry.expires > self._clock():
            return entry.key
        task = self._pending.get(key_hash)
        if task is None:
            # One store query per key at a time, however many requests present it. The query is
            # the cache's own task, so a caller that is cancelled does not cancel it for others.
            task = asyncio.get_running_loop().create_task(self._lookup(key_hash))
            self._pending[key_hash] = task
            task.add_done_callback(partial(self._finished, key_hash))
        return await asyncio.shield(task)

    async def _lookup(self, key_hash: str) -> CachedKey | None:
        generation = self._generation
        self.lookups += 1
        record = await self._store.get_by_hash(key_hash)
        key = None if record is None else CachedKey(record, principal_of(record))
        if generation == self._generation:  # no invalidation arrived meanwhile
            self._put(key_hash, key)
        return key

    def _finished(self, key_hash: str, task: asyncio.Task[CachedKey | None]) -> None:
        self._pending.pop(key_hash, None)
        if not task.cancelled() and task.exception() is not None:
            log.debug("key lookup failed: %r", task.exception())

    def _put(self, key_hash: str, key: CachedKey | None) -> None:
        if len(self._entries) >= self._max and key_hash not in self._entries:
            del self._entries[next(iter(self._entries))]  # the oldest entry
        ttl = self._ttl if key is not None else self._negative_ttl
        self._entries[key_hash] = _Entry(key, self._clock() + ttl)

    def drop(self, key_hash: str) -> None:
        self._generation += 1
        if key_hash == ALL:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)

    async def changed(self, key_hash: str) -> None:
        """A key changed here: forget it now, and tell every other instance."""
        self.drop(key_hash)
        await self._feed.publish(TOPIC, key_hash)

    async def _on_change(self, topic: str, message: str) -> None:
        self.drop(message)
