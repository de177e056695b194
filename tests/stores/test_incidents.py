"""IncidentStore contract on SQLite and PostgreSQL: one open incident per (rule, subject) across
instances however many open it at once, one resolver, tenant-scoped queries newest first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.stores.protocols import Incident, IncidentQuery, IncidentStore
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _store(stores: object) -> IncidentStore:
    store = getattr(stores, "incidents", None)
    assert store is not None
    return store


def _incident(n: int, rule: str = "errors", subject: str = "g/d", **extra: object) -> Incident:
    fields: dict[str, object] = {"kind": "error_rate", "value": 0.5, "threshold": 0.2,
                                 "started_at": T0 + timedelta(seconds=n), **extra}
    return Incident(id=f"inc_{n:04d}", rule=rule, subject=subject, **fields)  # type: ignore[arg-type]


async def test_one_open_incident_per_rule_and_subject_across_instances(backend: Backend) -> None:
    first, second = _store(backend.stores), _store(await backend.peer())
    results = await asyncio.gather(*(
        (first if i % 2 else second).open(_incident(i, details={"group": "g"})) for i in range(8)))
    won = [r for r in results if r is not None]
    assert len(won) == 1
    opened = await first.open_incidents()
    assert [i.id for i in opened] == [won[0].id] and opened[0].details == {"group": "g"}
    assert opened[0].state == "open" and opened[0].resolved_at is None
    # Another subject, or another rule on the same subject, is another incident.
    assert await second.open(_incident(20, subject="g/other")) is not None
    assert await second.open(_incident(21, rule="slow")) is not None
    assert len(await first.open_incidents()) == 3


async def test_exactly_one_instance_resolves_and_then_a_new_incident_may_open(backend: Backend) -> None:
    first, second = _store(backend.stores), _store(await backend.peer())
    opened = await first.open(_incident(100, rule="r2"))
    assert opened is not None
    at = T0 + timedelta(minutes=5)
    results = await asyncio.gather(*((first if i % 2 else second).resolve("r2", "g/d", at, 0.01)
                                     for i in range(6)))
    resolved = [r for r in results if r is not None]
    assert len(resolved) == 1
    done = resolved[0]
    assert (done.id, done.state, done.resolved_at, done.resolved_value) == (opened.id, "resolved", at, 0.01)
    assert await first.resolve("r2", "g/d", at, None) is None
    assert all(i.rule != "r2" for i in await second.open_incidents())
    again = await second.open(_incident(101, rule="r2"))
    assert again is not None and again.id != opened.id
    stored = await first.get(opened.id)
    assert stored is not None and stored.state == "resolved"
    assert await first.get("inc_missing") is None


async def test_resolving_a_named_incident_leaves_a_newer_one_of_its_subject_open(backend: Backend) -> None:
    # An instance decided from an earlier read that incident A is over; meanwhile another one
    # resolved A and opened B for the same rule and subject: resolving A must not end B.
    first, second = _store(backend.stores), _store(await backend.peer())
    older = await first.open(_incident(200, rule="r3"))
    assert older is not None
    at = T0 + timedelta(minutes=5)
    assert await second.resolve("r3", "g/d", at, 0.0) is not None
    newer = await second.open(_incident(201, rule="r3"))
    assert newer is not None
    assert await first.resolve("r3", "g/d", at, None, incident_id=older.id) is None
    assert [i.id for i in await first.open_incidents() if i.rule == "r3"] == [newer.id]
    done = await first.resolve("r3", "g/d", at, 0.0, incident_id=newer.id)
    assert done is not None and (done.id, done.state) == (newer.id, "resolved")


async def test_the_cursor_orders_incidents_started_at_the_same_instant_by_id(backend: Backend) -> None:
    store = _store(backend.stores)
    same = T0 + timedelta(days=1)
    for n in range(5):
        assert await store.open(_incident(400 + n, rule="tie", subject=f"s{n}", started_at=same)) is not None
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.query(IncidentQuery(rule="tie", before_id=cursor, limit=2))
        if not page:
            break
        seen += [i.id for i in page]
        cursor = page[-1].id
    assert seen == [f"inc_{n:04d}" for n in range(404, 399, -1)]


async def test_touch_moves_last_seen_forward_only(backend: Backend) -> None:
    store = _store(backend.stores)
    opened = await store.open(_incident(200, rule="r3"))
    assert opened is not None
    later = T0 + timedelta(hours=1)
    await store.touch("r3", "g/d", later)
    await store.touch("r3", "g/d", T0)  # older: ignored
    seen = await store.get(opened.id)
    assert seen is not None and seen.last_seen_at == later
    await store.touch("r3", "nothing-open", later)  # no incident: nothing happens


async def test_queries_are_tenant_scoped_and_newest_first(backend: Backend) -> None:
    store = _store(backend.stores)
    ends = T0 + timedelta(days=30)
    for n, tenant in ((300, "t1"), (301, "t2"), (302, "t1")):
        assert await store.open(_incident(n, rule="budget", subject=f"s{n}", kind="budget",
                                          tenant_id=tenant, resolves_at=ends)) is not None
    assert await store.open(_incident(303, rule="deploy", subject="g/x")) is not None
    await store.resolve("budget", "s300", T0 + timedelta(hours=2), None)

    def ids(found: list[Incident]) -> list[str]:
        return [i.id for i in found]

    assert ids(await store.query(IncidentQuery(tenant_id="t1"))) == ["inc_0302", "inc_0300"]
    assert ids(await store.query(IncidentQuery(tenant_id="t2"))) == ["inc_0301"]
    assert ids(await store.query(IncidentQuery(tenant_id="t3"))) == []
    both = await store.query(IncidentQuery(tenant_id="t1", platform=True, since=T0 + timedelta(seconds=300)))
    assert ids(both) == ["inc_0303", "inc_0302", "inc_0300"]
    assert ids(await store.query(IncidentQuery(tenant_id="t1", state="open"))) == ["inc_0302"]
    assert ids(await store.query(IncidentQuery(tenant_id="t1", state="resolved"))) == ["inc_0300"]
    page = await store.query(IncidentQuery(kind="budget", limit=2, since=T0 + timedelta(seconds=300)))
    assert ids(page) == ["inc_0302", "inc_0301"]
    rest = await store.query(IncidentQuery(kind="budget", before_id=page[-1].id,
                                           since=T0 + timedelta(seconds=300)))
    assert ids(rest) == ["inc_0300"]
    assert await store.query(IncidentQuery(before_id="inc_unknown")) == []
    assert ids(await store.query(IncidentQuery(rule="deploy"))) == ["inc_0303"]
    stored = await store.get("inc_0301")
    assert stored is not None and stored.resolves_at == ends and stored.tenant_id == "t2"
