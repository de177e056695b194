"""ServiceStore contract on SQLite and PostgreSQL: create, the name taken once per tenant, get,
list per tenant, update, delete."""

from __future__ import annotations

import pytest

from switchboard.stores.protocols import ServiceExists, ServiceRecord, ServiceStore
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _store(backend: Backend) -> ServiceStore:
    store = backend.stores.services
    assert store is not None
    return store


def _record(tenant: str, name: str, **spec: object) -> ServiceRecord:
    return ServiceRecord(tenant_id=tenant, name=name, spec={"url": "http://127.0.0.1:9/", **spec},
                         headers={"X-Token": "v1.kid.sealed"}, created_by="master")


async def test_create_get_list_update_delete(backend: Backend) -> None:
    store = _store(backend)
    await store.create(_record("t1", "orders", description="héllo ✓", methods=["GET"]))
    await store.create(_record("t1", "billing"))
    await store.create(_record("t2", "orders"))  # the same name in another tenant
    with pytest.raises(ServiceExists):
        await store.create(_record("t1", "orders"))
    got = await store.get("t1", "orders")
    assert got is not None
    assert got.spec["description"] == "héllo ✓" and got.spec["methods"] == ["GET"]
    assert dict(got.headers) == {"X-Token": "v1.kid.sealed"} and got.created_by == "master"
    assert await store.get("t3", "orders") is None
    assert [r.name for r in await store.list_services("t1")] == ["billing", "orders"]
    assert [(r.tenant_id, r.name) for r in await store.list_services(None)] == [
        ("t1", "billing"), ("t1", "orders"), ("t2", "orders")]
    changed = ServiceRecord(tenant_id="t1", name="orders", spec={"url": "http://127.0.0.1:10/", "rpm": 5},
                            headers={})
    assert await store.update(changed) is not None
    again = await store.get("t1", "orders")
    assert again is not None and again.spec == {"url": "http://127.0.0.1:10/", "rpm": 5} and not again.headers
    assert await store.update(ServiceRecord(tenant_id="t9", name="orders", spec={})) is None
    assert await store.delete("t1", "orders") is True
    assert await store.delete("t1", "orders") is False
    assert await store.get("t1", "orders") is None
    other = await store.get("t2", "orders")
    assert other is not None  # another tenant's service is untouched
