"""The limits set through the admin API, per tenant, cached in process memory.

The request path makes no database query: a tenant's records are read once and kept for ``ttl``
seconds. Every change is published on the change feed (topic ``limits``, the tenant id), and
every instance drops that tenant's entry when the message arrives; the TTL bounds staleness
when a message is lost. A read that races with an invalidation is not cached (a generation
counter), as in ``access/cache.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from switchboard.config.schema import LimitValues
from switchboard.limits.plan import Stored
from switchboard.stores.protocols import EVERYTHING, ChangeFeed, LimitRecord, LimitStore, Subscription

TOPIC = "limits"


def values_of(record: LimitRecord) -> LimitValues:
    return LimitValues(rpm=record.rpm, tpm=record.tpm, tpd=record.tpd)


class LimitCache:
    def __init__(
        self,
        store: LimitStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._feed = feed
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[Stored, float]] = {}
        self._pending: dict[str, asyncio.Task[Stored]] = {}
        self._generation = 0
        self._subscription: Subscription | None = None
        self.lookups = 0  # store queries made, for tests

    async def start(self) -> None:
        self._subscription = await self._feed.subscribe(TOPIC, self._on_change)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    def peek(self, tenant_id: str) -> Stored | None:
        """The tenant's limits if they are cached and fresh, without waiting; None otherwise."""
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def get(self, tenant_id: str) -> Stored:
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        task = self._pending.get(tenant_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lookup(tenant_id))
            self._pending[tenant_id] = task
            task.add_done_callback(partial(self._finished, tenant_id))
        return await asyncio.shield(task)

    async def _lookup(self, tenant_id: str) -> Stored:
        generation = self._generation
        self.lookups += 1
        records = await self._store.list_limits(tenant_id)
        stored = {(r.scope, r.subject): values_of(r) for r in records}
        if generation == self._generation:
            self._entries[tenant_id] = (stored, self._clock() + self._ttl)
        return stored

    def _finished(self, tenant_id: str, task: asyncio.Task[Stored]) -> None:
        self._pending.pop(tenant_id, None)
        if not task.cancelled():
            task.exception()  # retrieved: a failed read is the caller's error, not a warning

    def drop(self, tenant_id: str) -> None:
        """Forget a tenant's limits (``EVERYTHING``: every tenant's, the feed reconnected)."""
        self._generation += 1
        if tenant_id == EVERYTHING:
            self._entries.clear()
        else:
            self._entries.pop(tenant_id, None)

    async def changed(self, tenant_id: str) -> None:
        """A tenant's limits changed here: forget them now, and tell every other instance."""
        self.drop(tenant_id)
        await self._feed.publish(TOPIC, tenant_id)

    async def _on_change(self, topic: str, message: str) -> None:
        self.drop(message)
