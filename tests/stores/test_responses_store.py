"""ResponseStore contract on SQLite and PostgreSQL: put, get, delete, expiry and the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchboard.stores.protocols import ResponseStore, StoredResponse
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC).replace(microsecond=0)


def _store(backend: Backend) -> ResponseStore:
    store = backend.stores.responses
    assert store is not None
    return store


def _record(rid: str, *, expires_in: timedelta = timedelta(days=30), **extra: object) -> StoredResponse:
    fields: dict[str, object] = {
        "tenant_id": "t1",
        "owner": "key_1",
        "created_at": NOW,
        "expires_at": NOW + expires_in,
        "response": {"id": rid, "object": "response", "output": [{"type": "message", "content": []}]},
        "input_items": [{"id": "msg_1", "type": "message", "role": "user", "content": "héllo ✓"}],
        "conversation": [{"role": "user", "content": "héllo ✓"}, {"role": "assistant", "content": "hi"}],
        **extra,
    }
    return StoredResponse(id=rid, **fields)  # type: ignore[arg-type]


async def test_put_get_round_trip(backend: Backend) -> None:
    store = _store(backend)
    record = _record("resp_round")
    await store.put(record)
    found = await store.get("resp_round")
    assert found == record
    assert await store.get("resp_missing") is None
    # Ownerless callers (no tenant) are stored as such.
    await store.put(_record("resp_master", tenant_id=None, owner="master"))
    master = await store.get("resp_master")
    assert master is not None and master.tenant_id is None and master.owner == "master"


async def test_ids_are_unique(backend: Backend) -> None:
    store = _store(backend)
    await store.put(_record("resp_once"))
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error
        await store.put(_record("resp_once", owner="someone_else"))
    found = await store.get("resp_once")
    assert found is not None and found.owner == "key_1"


async def test_delete(backend: Backend) -> None:
    store = _store(backend)
    await store.put(_record("resp_gone"))
    assert await store.delete("resp_gone") is True
    assert await store.get("resp_gone") is None
    assert await store.delete("resp_gone") is False


async def test_expired_rows_are_invisible_and_purged(backend: Backend) -> None:
    store = _store(backend)
    for i in range(5):
        await store.put(_record(f"resp_old_{i}", expires_in=timedelta(seconds=-1 - i)))
    await store.put(_record("resp_fresh"))
    assert await store.get("resp_old_0") is None
    assert await store.purge(datetime.now(UTC), limit=3) == 3
    assert await store.purge(datetime.now(UTC), limit=3) == 2
    assert await store.purge(datetime.now(UTC)) == 0
    assert await store.get("resp_fresh") is not None
