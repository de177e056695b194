"""The portal's catalog over its sources (portal/catalog.py): a new kind is one more source;
entries are merged by id, filtered, paged, and carry the team's subscription state."""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard.context import Principal
from switchboard.portal import CatalogQuery, Entry, PortalCatalog
from switchboard.portal.catalog import public
from switchboard.stores.protocols import SubscriptionQuery, SubscriptionRecord


class Fixed:
    def __init__(self, kind: str, entries: dict[str, list[Entry]]) -> None:
        self.kind = kind
        self._entries = entries

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]:
        return list(self._entries.get(tenant, []))


class Subscriptions:
    def __init__(self, records: list[SubscriptionRecord]) -> None:
        self.records = records
        self.queries: list[tuple[str, SubscriptionQuery]] = []

    async def list_subscriptions(self, tenant: str, query: SubscriptionQuery) -> list[SubscriptionRecord]:
        self.queries.append((tenant, query))
        return [r for r in self.records if r.tenant_id == tenant and r.team_id == query.team_id]


def entry(kind: str, name: str, **fields: Any) -> Entry:
    return Entry(kind=kind, name=name, subject=f"{kind}:{name}", **fields)


def catalog(subs: Subscriptions) -> PortalCatalog:
    widgets = Fixed("widget", {"t1": [entry("widget", "b", description="Blue widget"), entry("widget", "a")]})
    apis = Fixed("api", {"t1": [entry("api", "z", owner="team-9")], "t2": [entry("api", "secret")]})
    return PortalCatalog([widgets, apis], lambda: subs)  # type: ignore[arg-type, return-value]


ALICE = Principal(id="u1", role="developer", key_id="k1", tenant_id="t1", team_id="team-1")


def test_a_new_kind_is_one_more_source() -> None:
    subs = Subscriptions([SubscriptionRecord(id="sub_1", tenant_id="t1", team_id="team-1", model="widget:b",
                                             status="approved")])
    portal = catalog(subs)
    assert portal.kinds == ["widget", "api"]
    page = asyncio.run(portal.page("t1", ALICE, CatalogQuery()))
    assert [e.id for e, _ in page.entries] == ["api:z", "widget:a", "widget:b"]
    shown = {e.id: public(e, s, ALICE.team_id) for e, s in page.entries}
    assert shown["widget:b"]["subscription"] == {"status": "approved", "id": "sub_1"}
    assert shown["widget:a"]["subscription"] == {"status": "none", "id": None}
    assert subs.queries[0][0] == "t1" and subs.queries[0][1].team_id == "team-1"


def test_filters_pages_and_tenants() -> None:
    portal = catalog(Subscriptions([]))
    run = asyncio.run
    assert [e.id for e, _ in run(portal.page("t1", ALICE, CatalogQuery(kind="widget"))).entries] == [
        "widget:a", "widget:b"]
    assert [e.id for e, _ in run(portal.page("t1", ALICE, CatalogQuery(q="BLUE"))).entries] == ["widget:b"]
    assert [e.id for e, _ in run(portal.page("t1", ALICE, CatalogQuery(q="team-9"))).entries] == ["api:z"]
    first = run(portal.page("t1", ALICE, CatalogQuery(limit=2)))
    assert first.has_more and [e.id for e, _ in first.entries] == ["api:z", "widget:a"]
    rest = run(portal.page("t1", ALICE, CatalogQuery(limit=2, after="widget:a")))
    assert not rest.has_more and [e.id for e, _ in rest.entries] == ["widget:b"]
    # Another tenant's entries are its own only.
    assert [e.id for e, _ in run(portal.page("t2", ALICE, CatalogQuery())).entries] == ["api:secret"]


def test_a_caller_without_a_team_has_no_subscriptions() -> None:
    subs = Subscriptions([])
    portal = catalog(subs)
    teamless = Principal(id="u2", role="viewer", key_id="k2", tenant_id="t1")
    page = asyncio.run(portal.page("t1", teamless, CatalogQuery()))
    assert all(s is None for _, s in page.entries) and subs.queries == []
