"""Key records by hash, cached in process memory and kept honest across instances.

The request path makes no database query for a key it has seen: records (and "no such key")
are cached. Every change to a key (created, revoked, disabled, rotated) is published on the
change feed and drops that entry on every instance; entries also expire after ``ttl`` seconds
("no such key" after ``negative_ttl``), the bound on staleness when a message is lost. The
mechanism (single flight, generation guard) is :class:`~switchboard.stores.feedcache.FeedCache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from switchboard.context import Principal
from switchboard.stores.feedcache import ALL, STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, KeyRecord, KeyStore

TOPIC = "keys"
__all__ = ["ALL", "TOPIC", "CachedKey", "KeyCache", "principal_of"]


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
        tags=tuple(record.tags),
        rpm_limit=record.rpm_limit,
        tpm_limit=record.tpm_limit,
        max_budget_usd=record.max_budget_usd,
        budget_period=record.budget_period,
        allowed_regions=record.effective_regions,
        mcp_tools=tuple(rule for rule in (record.team_mcp_tools, record.mcp_tools) if rule),
        key_mcp_tools=record.mcp_tools,
        key_expires_at=record.expires_at,
        key_regions=record.allowed_regions,
        key_prefix=record.prefix,
        key_lineage=record.lineage,
    )


class KeyCache(FeedCache[str, CachedKey]):
    """Key records (and the principal each authenticates as) by key hash."""

    def __init__(
        self,
        store: KeyStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        stale_if_error: float = 0.0,
    ) -> None:
        async def load(key_hash: str) -> CachedKey | None:
            record = await store.get_by_hash(key_hash)
            return None if record is None else CachedKey(record, principal_of(record))

        super().__init__(
            TOPIC, load, feed, encode=_same, decode=_same, ttl=ttl, negative_ttl=negative_ttl,
            max_entries=max_entries, clock=clock, stale_if_error=stale_if_error,
            read_timeout=STORE_READ_SECONDS,
        )


def _same(message: str) -> str:
    return message
