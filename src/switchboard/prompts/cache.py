"""Prompt versions cached in process memory for the request path.

A call naming a prompt (``{"prompt": {"id": ..., "label": ...}}``) makes no database query once
that (tenant, name, version or label) is resolved. Saving a version or moving a label publishes
(tenant, name) on the change feed under :data:`TOPIC`, and every instance drops every entry of
that prompt; entries also expire after ``prompts.cache_seconds``, the bound on staleness when a
message is lost. The mechanism is :class:`~switchboard.stores.feedcache.FeedCache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.stores.feedcache import ALL, STORE_READ_SECONDS, FeedCache, publish
from switchboard.stores.protocols import ChangeFeed, PromptStore, PromptVersion

TOPIC = "prompts"
_SEP = "\x1f"  # cannot occur in a tenant or prompt name the admin API accepts

# tenant, name, and "v<N>" for a version, "l<label>" for a label, "" for the latest
Key = tuple[str, str, str]


def message_of(tenant_id: str, name: str) -> str:
    return f"{tenant_id}{_SEP}{name}"


def ref_of(version: int | None, label: str | None) -> str:
    return f"v{version}" if version is not None else f"l{label}" if label is not None else ""


async def publish_change(feed: ChangeFeed, tenant_id: str, name: str) -> None:
    """Tell every instance (this one included) that a prompt's versions or labels changed."""
    await publish(feed, TOPIC, message_of(tenant_id, name))


class PromptCache(FeedCache[Key, PromptVersion]):
    """Resolved prompt versions by (tenant, name, reference); None: no such version (cached too,
    briefly)."""

    def __init__(
        self,
        store: PromptStore,
        feed: ChangeFeed,
        *,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        async def load(key: Key) -> PromptVersion | None:
            tenant, name, ref = key
            if ref.startswith("v"):
                return await store.get(tenant, name, version=int(ref[1:]))
            if ref.startswith("l"):
                return await store.get(tenant, name, label=ref[1:])
            return await store.get(tenant, name)

        super().__init__(
            TOPIC, load, feed, encode=lambda key: message_of(key[0], key[1]),
            decode=lambda message: None, ttl=ttl, negative_ttl=min(ttl, 5.0),
            max_entries=max_entries, clock=clock, read_timeout=STORE_READ_SECONDS,
        )

    def drop(self, message: str) -> None:
        """Forget every entry of the prompt a message names (``ALL`` or unknown: everything)."""
        parts = message.split(_SEP)
        if message == ALL or len(parts) != 2:
            super().drop(ALL)
            return
        tenant, name = parts
        self.drop_where(lambda key: (key[0], key[1]) == (tenant, name))

    async def resolve(self, tenant_id: str, name: str, *, version: int | None = None,
                      label: str | None = None) -> PromptVersion | None:
        return await self.get((tenant_id, name, ref_of(version, label)))
