"""ApiStore contract on SQLite and PostgreSQL: create, unique names per tenant, get, list and
update, tenants apart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from switchboard.stores.protocols import ApiExists, ApiRecord, ApiStore
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _store(backend: Backend) -> ApiStore:
    store = backend.stores.apis
    assert store is not None
    return store


async def test_create_get_list_update(backend: Backend) -> None:
    store = _store(backend)
    record = ApiRecord(tenant_id="t-apis", name="sentiment", prompt="sentiment", label="production",
                       team_id="owners", description="Classifies", require_approval=True,
                       created_by="master")
    await store.create(record)
    found = await store.get("t-apis", "sentiment")
    assert found is not None
    assert (found.prompt, found.label, found.version, found.status, found.team_id) == (
        "sentiment", "production", None, "published", "owners")
    assert found.require_approval and found.split is None and found.sunset_at is None
    with pytest.raises(ApiExists):
        await store.create(replace(record, prompt="other"))
    # Names are per tenant.
    await store.create(replace(record, tenant_id="t-apis-2", version=3, label=None))
    assert [a.name for a in await store.list_apis("t-apis")] == ["sentiment"]
    other = await store.get("t-apis-2", "sentiment")
    assert other is not None and other.version == 3
    assert await store.get("t-apis-3", "sentiment") is None

    sunset = datetime(2027, 1, 1, tzinfo=UTC)
    split = ({"version": 1, "percent": 30}, {"version": 2, "percent": 70})
    updated = await store.update(replace(found, status="deprecated", successor="sentiment-v2",
                                         sunset_at=sunset, split=split))
    assert updated.updated_at >= found.updated_at
    again = await store.get("t-apis", "sentiment")
    assert again is not None
    assert (again.status, again.successor, again.sunset_at) == ("deprecated", "sentiment-v2", sunset)
    assert again.split == split and again.created_at == found.created_at
    with pytest.raises(KeyError):
        await store.update(replace(found, name="missing"))
