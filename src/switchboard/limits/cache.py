"""The limits set through the admin API, per tenant, cached in process memory.

The request path makes no database query: a tenant's records are read once and kept for ``ttl``
seconds. Every change is published on the change feed (topic ``limits``, the tenant id), and
every instance drops that tenant's entry when the message arrives; the TTL bounds staleness
when a message is lost. The mechanism (single flight, generation guard, what is served while
the database cannot be read) is :class:`~switchboard.stores.feedcache.FeedCache`, as for keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.config.schema import LimitValues
from switchboard.limits.plan import Stored
from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, LimitRecord, LimitStore

TOPIC = "limits"


def values_of(record: LimitRecord) -> LimitValues:
    return LimitValues(rpm=record.rpm, tpm=record.tpm, tpd=record.tpd)


class LimitCache(FeedCache[str, Stored]):
    """A tenant's stored limits by (scope, subject); a tenant with none has an empty mapping."""

    def __init__(
        self,
        store: LimitStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        stale_if_error: float = 0.0,
    ) -> None:
        async def load(tenant_id: str) -> Stored:
            return {(r.scope, r.subject): values_of(r) for r in await store.list_limits(tenant_id)}

        super().__init__(TOPIC, load, feed, encode=_same, decode=_same, ttl=ttl, clock=clock,
                         stale_if_error=stale_if_error, read_timeout=STORE_READ_SECONDS)

    async def limits(self, tenant_id: str) -> Stored:
        """The tenant's limits: cached, else read (one query however many ask at once)."""
        cached = self.peek(tenant_id, None)
        if cached is None:
            cached = await self.get(tenant_id)
        return {} if cached is None else cached


def _same(message: str) -> str:
    return message
