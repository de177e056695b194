"""Subscription states by (tenant, team, model), cached in process memory for the request path.

A call to a model that needs approval makes no database query once its team's state is cached
(including "no subscription"). Every change (requested, approved, rejected, revoked) is
published on the change feed under :data:`TOPIC`, and every instance drops that entry when the
message arrives (milliseconds on Redis pub/sub). The feed is at most once, so entries also
expire after ``ttl`` seconds: the bound on staleness when a message is lost. As in
``access/cache.py``, a lookup that races with an invalidation does not cache what it read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from switchboard.stores.protocols import ChangeFeed, Subscription, SubscriptionStore

log = logging.getLogger("switchboard.access")

TOPIC = "subscriptions"
ALL = "*"
_SEP = "\x1f"  # cannot occur in a tenant, team or model name accepted by the admin API

Key = tuple[str, str, str]  # tenant, team, model


def message_of(tenant_id: str, team_id: str, model: str) -> str:
    return _SEP.join((tenant_id, team_id, model))


@dataclass(slots=True)
class _Entry:
    status: str | None  # None: no subscription
    expires: float


class SubscriptionCache:
    def __init__(
        self,
        store: SubscriptionStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._feed = feed
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._pending: dict[Key, asyncio.Task[str | None]] = {}
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

    async def status(self, tenant_id: str, team_id: str, model: str) -> str | None:
        """The status of this team's subscription to ``model``; None when it has none."""
        key = (tenant_id, team_id, model)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > self._clock():
            return entry.status
        task = self._pending.get(key)
        if task is None:
            # One store query per key at a time; the cache's own task, so a cancelled caller
            # does not cancel it for the others waiting on it.
            task = asyncio.get_running_loop().create_task(self._lookup(key))
            self._pending[key] = task
            task.add_done_callback(partial(self._finished, key))
        return await asyncio.shield(task)

    async def _lookup(self, key: Key) -> str | None:
        generation = self._generation
        self.lookups += 1
        record = await self._store.find(*key)
        status = None if record is None else record.status
        if generation == self._generation:  # no invalidation arrived meanwhile
            if len(self._entries) >= self._max and key not in self._entries:
                del self._entries[next(iter(self._entries))]  # the oldest entry
            self._entries[key] = _Entry(status, self._clock() + self._ttl)
        return status

    def _finished(self, key: Key, task: asyncio.Task[str | None]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.debug("subscription lookup failed: %r", task.exception())

    def drop(self, message: str) -> None:
        self._generation += 1
        if message == ALL:
            self._entries.clear()
            return
        parts = message.split(_SEP)
        if len(parts) == 3:
            self._entries.pop((parts[0], parts[1], parts[2]), None)
        else:
            self._entries.clear()  # a message this version does not understand: be safe

    async def changed(self, tenant_id: str, team_id: str, model: str) -> None:
        """A subscription changed here: forget it now, and tell every other instance."""
        message = message_of(tenant_id, team_id, model)
        self.drop(message)
        await self._feed.publish(TOPIC, message)

    async def _on_change(self, topic: str, message: str) -> None:
        self.drop(message)
