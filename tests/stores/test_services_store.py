"""ServiceStore contract on SQLite and PostgreSQL: create, the name taken once per tenant, get,
list per tenant, update, delete; the services table's cache of them is bounded."""

from __future__ import annotations

import pytest

from switchboard.stores.protocols import ServiceExists, ServiceRecord, ServiceStore
from tests.stores.conftest import Backend
from tests.stores.test_api_cache import Counted

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
    assert await store.delete("t1", "orders") == []  # deleted; no approved subscription to revoke
    assert await store.delete("t1", "orders") is None
    assert await store.get("t1", "orders") is None
    other = await store.get("t2", "orders")
    assert other is not None  # another tenant's service is untouched


async def test_secrets_rotate_reseals_service_headers(backend: Backend) -> None:
    from switchboard.crypto.keyring import DecryptError, Keyring, service_header_aad
    from switchboard.crypto.rotate import rotate_services

    store = _store(backend)
    old = Keyring.from_secrets("old-secret-0123456789abcdefghijklmnop")
    both = Keyring.from_secrets("new-secret-0123456789abcdefghijklmnop",
                                ["old-secret-0123456789abcdefghijklmnop"])
    new = Keyring.from_secrets("new-secret-0123456789abcdefghijklmnop")
    sealed = {"X-Token": old.encrypt("tok-1", service_header_aad("t1", "svc", "X-Token"))}
    await store.create(ServiceRecord(tenant_id="t1", name="svc", spec={"url": "http://h/"}, headers=sealed))
    await store.create(ServiceRecord(tenant_id="t1", name="bare", spec={"url": "http://h/"}))
    with pytest.raises(DecryptError):  # the new secret alone opens nothing: nothing written
        await rotate_services(store, new)
    assert await rotate_services(store, both) == 1
    assert await rotate_services(store, both) == 0  # idempotent
    got = await store.get("t1", "svc")
    assert got is not None
    assert new.decrypt(got.headers["X-Token"], service_header_aad("t1", "svc", "X-Token")) == "tok-1"


async def test_the_table_caches_as_many_services_as_the_prompt_and_api_caches(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown names take entries too, so the bound is what a caller can fill: the oldest entry
    goes once it is reached, and the same bound as the prompt and API caches'."""
    import inspect

    from switchboard.apis.cache import ApiCache
    from switchboard.prompts.cache import PromptCache
    from switchboard.services import table as services_table

    bounds = {inspect.signature(cache.__init__).parameters["max_entries"].default
              for cache in (PromptCache, ApiCache)}
    assert bounds == {services_table.CACHED_SERVICES} == {10_000}

    monkeypatch.setattr(services_table, "CACHED_SERVICES", 3)
    store = Counted(_store(backend))
    await _store(backend).create(_record("bounded", "orders"))
    table = services_table.ServiceTable([])
    await table.start(store, backend.stores.feed, None)  # type: ignore[arg-type]
    try:
        assert (await table.lookup("bounded", "orders")) is not None
        assert (await table.lookup("bounded", "orders")) is not None
        assert store.reads["get"] == 1  # cached
        for i in range(3):  # names nobody registered: the third pushes the oldest entry out
            assert await table.lookup("bounded", f"made-up-{i}") is None
        assert store.reads["get"] == 4
        assert (await table.lookup("bounded", "orders")) is not None
        assert store.reads["get"] == 5  # read again: it had been dropped
        assert await table.lookup("bounded", "made-up-2") is None
        assert store.reads["get"] == 5  # the newest are still cached
    finally:
        await table.close()
