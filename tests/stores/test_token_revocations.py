"""TokenRevocationStore contract (SQLite and PostgreSQL), and the in-memory set every instance
keeps (access/revocations.py): one record per (tenant, user), tenant isolation in every query,
expired records left out and purged, and a change made on one instance applied by another through
the change feed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.access.revocations import TokenRevocations
from switchboard.context import Principal
from switchboard.stores.protocols import TokenRevocation, TooManyRevocations
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The other instance hears of a change on the change feed (milliseconds when idle), else only
# after its 10 s periodic reload or entry ttl: half of that tells the two apart and leaves a
# loaded machine seconds.
FEED_SECONDS = 5.0

NOW = datetime.now(UTC)


def _record(rid: str, tenant: str, user: str, **extra: object) -> TokenRevocation:
    return TokenRevocation(id=rid, tenant_id=tenant, user_id=user, not_before=NOW, created_by="admin",
                           created_by_role="tenant_admin", **extra)  # type: ignore[arg-type]


async def test_one_record_per_user_and_tenants_kept_apart(backend: Backend) -> None:
    store = backend.stores.token_revocations
    assert store is not None
    stored, before = await store.put(_record("trv_1", "acme", "alice", reason="left"))
    assert before is None and stored.id == "trv_1"
    later = stored.created_at + timedelta(minutes=5)
    replaced, before = await store.put(_record("trv_2", "acme", "alice", block=True, created_at=later))
    assert replaced.id == "trv_1" and replaced.block and before is not None and before.reason == "left"
    # A replacement keeps when the record was created, in the answer and as stored.
    assert replaced.created_at == stored.created_at
    kept = await store.get("acme", "trv_1")
    assert kept is not None and kept.created_at == stored.created_at and kept.block
    await store.put(_record("trv_3", "globex", "alice"))
    assert await store.get("acme", "trv_3") is None and await store.delete("acme", "trv_3") is False
    got = await store.get("globex", "trv_3")
    assert got is not None and got.not_before == NOW and got.created_by_role == "tenant_admin"
    assert (await store.find("trv_3")) == got
    assert [r.id for r in await store.list_revocations("acme")] == ["trv_1"]
    assert [r.id for r in await store.list_revocations("acme", user_id="bob")] == []
    assert await store.count("acme") == 1 and await store.count("nobody") == 0
    assert await store.delete("acme", "trv_1") is True
    assert await store.list_revocations("acme") == []


async def test_pages_by_id(backend: Backend) -> None:
    store = backend.stores.token_revocations
    assert store is not None
    for i in range(5):
        await store.put(_record(f"trv_{i}", "pages", f"user-{i}"))
    first = await store.list_revocations("pages", limit=2)
    rest = await store.list_revocations("pages", after=first[-1].id, limit=10)
    assert [r.id for r in first + rest] == [f"trv_{i}" for i in range(5)]


async def test_expired_records_no_longer_apply_and_are_purged(backend: Backend) -> None:
    store = backend.stores.token_revocations
    assert store is not None
    await store.put(_record("trv_old", "acme", "old", expires_at=NOW + timedelta(seconds=1)))
    await store.put(_record("trv_live", "acme", "live", expires_at=NOW + timedelta(days=1)))
    await store.put(_record("trv_ever", "acme", "ever"))
    later = NOW + timedelta(seconds=2)
    assert {r.id for r in await store.active(later)} == {"trv_live", "trv_ever"}
    assert await store.purge_expired(later) == 1
    assert await store.find("trv_old") is None and await store.find("trv_live") is not None


async def test_a_revocation_made_on_one_instance_applies_on_another(backend: Backend) -> None:
    peer = await backend.peer()
    assert backend.stores.token_revocations is not None and peer.token_revocations is not None
    here, there = TokenRevocations(), TokenRevocations()
    await here.start(backend.stores.token_revocations, backend.stores.feed)
    await there.start(peer.token_revocations, peer.feed)
    try:
        caller = Principal(id="oidc:x:alice", role="developer", tenant_id="acme", user_id="alice")
        above = Principal(id="oidc:x:alice", role="platform_admin", tenant_id="acme", user_id="alice")
        assert not there.by_user
        await backend.stores.token_revocations.put(_record("trv_x", "acme", "alice"))
        await here.changed()
        assert here.refusal(caller, NOW.timestamp() - 1) is not None
        assert here.refusal(caller, None) is not None  # no iat: issued whenever
        assert here.refusal(caller, NOW.timestamp() + 1) is None  # signed in again since
        assert here.refusal(above, NOW.timestamp() - 1) is None  # above the revoker's role
        deadline = time.monotonic() + FEED_SECONDS
        while not there.by_user:
            assert time.monotonic() < deadline, "the other instance never heard of the revocation"
            await asyncio.sleep(0)  # only yields to the feed's listener and the reload it starts
        assert there.refusal(caller, NOW.timestamp() - 1) is not None
    finally:
        await here.close()
        await there.close()


async def test_the_cap_holds_for_creations_at_once_from_two_instances(backend: Backend) -> None:
    """The cap is counted with the insert: creations at once (on two instances) cannot pass it
    together; exactly the cap is stored, and a replacement at the cap still is one."""
    here, peer = backend.stores.token_revocations, (await backend.peer()).token_revocations
    assert here is not None and peer is not None
    cap = 5
    for i in range(cap - 2):
        await here.put(_record(f"trv_cap_{i}", "capped", f"old-{i}"), cap=cap)
    stores = [here, peer] * 4

    async def create(n: int) -> bool:
        try:
            await stores[n].put(_record(f"trv_new_{n}", "capped", f"new-{n}"), cap=cap)
        except TooManyRevocations:
            return False
        return True

    created = await asyncio.gather(*(create(n) for n in range(len(stores))))
    assert sum(created) == 2 and await here.count("capped") == cap
    # At the cap: another user is refused, the same user's record is replaced.
    with pytest.raises(TooManyRevocations):
        await peer.put(_record("trv_over", "capped", "one-more"), cap=cap)
    replaced, before = await peer.put(_record("trv_again", "capped", "old-0", block=True), cap=cap)
    assert before is not None and replaced.id == "trv_cap_0" and replaced.block
    assert await here.count("capped") == cap
    # Another tenant has its own count.
    await here.put(_record("trv_other", "uncapped", "new-0"), cap=cap)
