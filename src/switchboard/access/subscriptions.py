"""Subscription states by (tenant, team, model), cached in process memory for the request path.

A call to a model that needs approval makes no database query once its team's state is cached
(including "no subscription"). Every change (requested, approved, rejected, revoked) is
published on the change feed under :data:`TOPIC` and drops that entry on every instance;
entries also expire after ``ttl`` seconds, the bound on staleness when a message is lost. The
mechanism is :class:`~switchboard.stores.feedcache.FeedCache`, as for keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, SubscriptionStore

TOPIC = "subscriptions"
_SEP = "\x1f"  # cannot occur in a tenant, team or model name accepted by the admin API

Key = tuple[str, str, str]  # tenant, team, model


def message_of(tenant_id: str, team_id: str, model: str) -> str:
    return _SEP.join((tenant_id, team_id, model))


def _key_of(message: str) -> Key | None:
    parts = message.split(_SEP)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class SubscriptionCache(FeedCache[Key, str]):
    """The status of a team's subscription to a model; None: it has none (cached too)."""

    def __init__(
        self,
        store: SubscriptionStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        stale_if_error: float = 0.0,
    ) -> None:
        async def load(key: Key) -> str | None:
            record = await store.find(*key)
            return None if record is None else record.status

        super().__init__(
            TOPIC, load, feed, encode=lambda key: message_of(*key), decode=_key_of, ttl=ttl,
            max_entries=max_entries, clock=clock, stale_if_error=stale_if_error,
            read_timeout=STORE_READ_SECONDS,
        )

    async def status(self, tenant_id: str, team_id: str, model: str) -> str | None:
        """The status of this team's subscription to ``model``; None when it has none."""
        return await self.get((tenant_id, team_id, model))
