"""The catalog: every source's entries for the caller's tenant, the caller team's subscription
state on each, filtered by kind and text and paged by id. The team's subscriptions are kept in the
catalog's cache (portal/cache.py) when there is one, dropped by every subscription change."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.context import Principal
from switchboard.portal.cache import SUBSCRIPTIONS, CatalogCache
from switchboard.portal.sources import Entry, Source
from switchboard.stores.protocols import SubscriptionQuery, SubscriptionRecord, SubscriptionStore

KINDS = ("api", "service", "model")
# A team's subscriptions read per catalog request: pages of this many, at most this many pages.
SUBSCRIPTION_PAGE = 1000
SUBSCRIPTION_PAGES = 20


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    kind: str | None = None  # one of the sources' kinds; None: every kind
    q: str | None = None  # case-insensitive text in the name, description or owner
    after: str | None = None  # the last id of the previous page
    limit: int = 100


@dataclass(frozen=True, slots=True)
class CatalogPage:
    entries: list[tuple[Entry, SubscriptionRecord | None]]
    has_more: bool


class PortalCatalog:
    def __init__(self, sources: Sequence[Source], subscriptions: Callable[[], SubscriptionStore],
                 cache: Callable[[], CatalogCache | None] = lambda: None) -> None:
        self.sources = list(sources)
        self._subscriptions = subscriptions
        self._cache = cache

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.sources]

    async def team_subscriptions(self, tenant: str, team: str | None) -> dict[str, SubscriptionRecord]:
        """The team's subscriptions by subject (one per subject), from the cache when there is
        one (the returned dict is then shared: read it, never change it)."""
        if team is None:
            return {}
        cache = self._cache()
        if cache is None:  # not started: read as it is
            return await self._read_subscriptions(tenant, team)
        cache.use(SUBSCRIPTIONS, self._read_subscriptions)
        found: dict[str, SubscriptionRecord] = await cache.value(tenant, SUBSCRIPTIONS, team)
        return found

    async def _read_subscriptions(self, tenant: str, team: str) -> dict[str, SubscriptionRecord]:
        store = self._subscriptions()
        out: dict[str, SubscriptionRecord] = {}
        after: str | None = None
        for _ in range(SUBSCRIPTION_PAGES):
            page = await store.list_subscriptions(
                tenant, SubscriptionQuery(team_id=team, after_id=after, limit=SUBSCRIPTION_PAGE))
            for record in page:
                out[record.model] = record
            if len(page) < SUBSCRIPTION_PAGE:
                break
            after = page[-1].id
        return out

    async def entries(self, tenant: str, principal: Principal, kind: str | None = None) -> list[Entry]:
        """Every entry of the tenant (of ``kind`` only, when given), by id."""
        found: list[Entry] = []
        for source in self.sources:
            if kind is None or source.kind == kind:
                found += await source.entries(tenant, principal)
        found.sort(key=lambda e: e.id)
        return found

    async def page(self, tenant: str, principal: Principal, query: CatalogQuery) -> CatalogPage:
        found = await self.entries(tenant, principal, query.kind)
        if query.q:
            needle = query.q.lower()
            found = [e for e in found if needle in e.text()]
        if query.after is not None:
            found = [e for e in found if e.id > query.after]
        page = found[: query.limit]
        subs = await self.team_subscriptions(tenant, principal.team_id) if page else {}
        return CatalogPage([(e, subs.get(e.subject)) for e in page], len(found) > query.limit)


def public(entry: Entry, subscription: SubscriptionRecord | None, team: str | None) -> dict[str, Any]:
    """An entry as GET /admin/v1/catalog shows it to a caller of ``team``."""
    return {
        "id": entry.id,
        "object": "catalog_entry",
        "kind": entry.kind,
        "name": entry.name,
        "description": entry.description,
        "owner": entry.owner,
        "approval_required": entry.needs_approval(team),
        "subscription": {
            "status": subscription.status if subscription is not None else "none",
            "id": subscription.id if subscription is not None else None,
        },
        **entry.fields,
    }
