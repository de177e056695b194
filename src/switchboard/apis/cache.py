"""Prompt API records cached in process memory for the request path.

A call of ``POST /apis/{name}`` makes no database query once that (tenant, name) is cached,
including "there is no such API" (cached more briefly). Every admin change to an API (create,
status, version or label, split, successor, sunset, approval) publishes (tenant, name) on the
change feed under :data:`TOPIC`, and every instance drops that entry; entries also expire after
``apis.cache_seconds``, the bound on staleness when a message is lost. The mechanism is
:class:`~switchboard.stores.feedcache.FeedCache`, as for prompt versions (prompts/cache.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache, publish
from switchboard.stores.protocols import ApiRecord, ApiStore, ChangeFeed

TOPIC = "apis"
_SEP = "\x1f"  # cannot occur in a tenant or API name the admin API accepts

Key = tuple[str, str]  # tenant, API name


def message_of(tenant_id: str, name: str) -> str:
    return f"{tenant_id}{_SEP}{name}"


def _key_of(message: str) -> Key | None:
    parts = message.split(_SEP)
    return (parts[0], parts[1]) if len(parts) == 2 else None


async def publish_change(feed: ChangeFeed, tenant_id: str, name: str) -> None:
    """Tell every instance (this one included) that the tenant's API ``name`` changed."""
    await publish(feed, TOPIC, message_of(tenant_id, name))


class ApiCache(FeedCache[Key, ApiRecord]):
    """API records by (tenant, name); None: no such API (cached too, briefly)."""

    def __init__(
        self,
        store: ApiStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        async def load(key: Key) -> ApiRecord | None:
            return await store.get(*key)

        super().__init__(
            TOPIC, load, feed, encode=lambda key: message_of(*key), decode=_key_of, ttl=ttl,
            negative_ttl=min(ttl, 5.0), max_entries=max_entries, clock=clock,
            read_timeout=STORE_READ_SECONDS,
        )

    async def record(self, tenant_id: str, name: str) -> ApiRecord | None:
        """The tenant's API ``name`` (any status); None when there is none."""
        return await self.get((tenant_id, name))
