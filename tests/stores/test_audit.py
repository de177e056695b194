"""AuditLog contract: append-only, per tenant, filtered, newest first, with a cursor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.stores import AuditEntry, AuditQuery
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(
    action: str, resource: str, tenant: str = "tenant-a", actor: str = "master", minutes: int = 0
) -> AuditEntry:
    return AuditEntry(
        tenant_id=tenant, actor=actor, actor_role="admin", action=action, resource_type="api_key",
        resource_id=resource, before={"enabled": True}, after={"enabled": False, "models": ["m"]},
        client="127.0.0.1", request_id=f"req-{action}-{resource}", at=T0 + timedelta(minutes=minutes),
    )


async def test_entries_round_trip_newest_first(backend: Backend) -> None:
    audit = backend.stores.audit
    ids = [
        await audit.append(entry("key.create", "k1", minutes=0)),
        await audit.append(entry("key.revoke", "k1", minutes=1)),
        await audit.append(entry("key.create", "k2", minutes=2, actor="ops")),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    got = await audit.query("tenant-a", AuditQuery())
    assert [e.id for e in got] == ids[::-1]
    first = got[-1]
    assert (first.action, first.resource_id, first.actor, first.client, first.request_id) == (
        "key.create", "k1", "master", "127.0.0.1", "req-key.create-k1")
    assert first.before == {"enabled": True} and first.after == {"enabled": False, "models": ["m"]}
    assert first.at == T0


async def test_filters_cursor_and_tenant_isolation(backend: Backend) -> None:
    audit = backend.stores.audit
    for i in range(5):
        await audit.append(entry("key.create", f"k{i}", minutes=i))
    await audit.append(entry("key.revoke", "k0", minutes=10, actor="ops"))
    await audit.append(entry("key.create", "other", tenant="tenant-b"))
    assert [e.resource_id for e in await audit.query("tenant-a", AuditQuery(action="key.revoke"))] == ["k0"]
    assert len(await audit.query("tenant-a", AuditQuery(resource_id="k0"))) == 2
    assert [e.actor for e in await audit.query("tenant-a", AuditQuery(actor="ops"))] == ["ops"]
    recent = await audit.query("tenant-a", AuditQuery(since=T0 + timedelta(minutes=3)))
    assert [e.resource_id for e in recent] == ["k0", "k4", "k3"]
    page1 = await audit.query("tenant-a", AuditQuery(limit=2))
    page2 = await audit.query("tenant-a", AuditQuery(limit=2, before_id=page1[-1].id))
    assert len(page1) == len(page2) == 2 and page2[0].id < page1[-1].id  # type: ignore[operator]
    assert [e.resource_id for e in await audit.query("tenant-b", AuditQuery())] == ["other"]
    assert await audit.query("tenant-c", AuditQuery()) == []
    # Resource types a reader may not see are left out, in the query (a page stays full).
    await audit.append(replace(entry("provider.create", "p1", minutes=11), resource_type="provider"))
    assert [e.resource_id for e in await audit.query("tenant-a", AuditQuery(limit=1))] == ["p1"]
    shown = await audit.query("tenant-a", AuditQuery(limit=1, hidden_types=("provider", "split")))
    assert [e.resource_id for e in shown] == ["k0"]
