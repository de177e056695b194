"""SubscriptionStore contract on both backends: one subscription per (tenant, team, model),
compare-and-set decisions, rejected, revoked and withdrawn ones reopened, tenants isolated; and the
request path's cache: no store query once seen, invalidated through the change feed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.access.subscriptions import SubscriptionCache
from switchboard.stores.protocols import SubscriptionExists, SubscriptionQuery, SubscriptionRecord
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The other instance hears of a change on the change feed (milliseconds when idle), else only
# after its 10 s periodic reload or entry ttl: half of that tells the two apart and leaves a
# loaded machine seconds.
FEED_SECONDS = 5.0

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def sub(n: int, team: str = "team-a", model: str = "gpt-4o", tenant: str = "tenant-a") -> SubscriptionRecord:
    return SubscriptionRecord(
        id=f"sub_{n:04d}", tenant_id=tenant, team_id=team, model=model, requested_by="key_dev",
        reason="we need it", created_at=T0 + timedelta(minutes=n),
    )


async def test_request_get_find_round_trip(backend: Backend) -> None:
    store = backend.stores.subscriptions
    stored, reopened = await store.request_over(sub(1))
    assert reopened is None  # a new one
    assert stored.status == "pending"
    got = await store.get("tenant-a", "sub_0001")
    assert got == stored
    assert (got.team_id, got.model, got.requested_by, got.reason, got.created_at) == (
        "team-a", "gpt-4o", "key_dev", "we need it", T0 + timedelta(minutes=1))
    assert got.decided_by is None and got.decided_at is None
    assert await store.find("tenant-a", "team-a", "gpt-4o") == stored
    assert await store.find("tenant-a", "team-b", "gpt-4o") is None


async def test_one_subscription_per_team_and_model(backend: Backend) -> None:
    store = backend.stores.subscriptions
    await store.request(sub(1))
    with pytest.raises(SubscriptionExists) as exists:
        await store.request(sub(2))
    assert exists.value.existing.id == "sub_0001"
    # Another team, another model, another tenant: each its own.
    await store.request(sub(3, team="team-b"))
    await store.request(sub(4, model="claude"))
    await store.request(sub(5, tenant="tenant-b"))
    all_a = await store.list_subscriptions("tenant-a", SubscriptionQuery())
    assert [s.id for s in all_a] == ["sub_0001", "sub_0003", "sub_0004"]


async def test_concurrent_requests_store_one(backend: Backend) -> None:
    store = backend.stores.subscriptions
    results = await asyncio.gather(*(store.request(sub(i)) for i in range(1, 9)), return_exceptions=True)
    stored = [r for r in results if isinstance(r, SubscriptionRecord)]
    assert len(stored) == 1
    assert all(isinstance(r, SubscriptionExists) for r in results if r not in stored)
    assert len(await store.list_subscriptions("tenant-a", SubscriptionQuery())) == 1


async def test_decisions_are_compare_and_set(backend: Backend) -> None:
    store = backend.stores.subscriptions
    await store.request(sub(1))
    approved = await store.decide("tenant-a", "sub_0001", expect=("pending",), status="approved",
                                  decided_by="admin", reason=None)
    assert approved is not None and approved.status == "approved" and approved.decided_by == "admin"
    assert approved.reason == "we need it"  # no reason given: the request's kept
    assert approved.decided_at is not None and approved.decided_at.tzinfo is not None
    # Not pending any more: a second approval or a rejection changes nothing.
    assert await store.decide("tenant-a", "sub_0001", expect=("pending",), status="rejected",
                              decided_by="other", reason="no") is None
    assert (await store.get("tenant-a", "sub_0001")).status == "approved"  # type: ignore[union-attr]
    # Another tenant cannot decide it, nor see it.
    assert await store.decide("tenant-b", "sub_0001", expect=("approved",), status="revoked",
                              decided_by="x", reason=None) is None
    assert await store.get("tenant-b", "sub_0001") is None
    revoked = await store.decide("tenant-a", "sub_0001", expect=("approved",), status="revoked",
                                 decided_by="admin", reason="left the project")
    assert revoked is not None and (revoked.status, revoked.reason) == ("revoked", "left the project")


async def test_two_admins_deciding_at_once_one_wins(backend: Backend) -> None:
    store = backend.stores.subscriptions
    peer = (await backend.peer()).subscriptions
    await store.request(sub(1))
    results = await asyncio.gather(
        store.decide("tenant-a", "sub_0001", expect=("pending",), status="approved", decided_by="a",
                     reason=None),
        peer.decide("tenant-a", "sub_0001", expect=("pending",), status="rejected", decided_by="b",
                    reason="no"),
    )
    assert sum(r is not None for r in results) == 1


@pytest.mark.parametrize("ending", ["rejected", "revoked", "withdrawn"])
async def test_a_rejected_revoked_or_withdrawn_team_may_ask_again(backend: Backend, ending: str) -> None:
    store = backend.stores.subscriptions
    await store.request(sub(1))
    if ending == "revoked":
        await store.decide("tenant-a", "sub_0001", expect=("pending",), status="approved", decided_by="a",
                           reason=None)
    assert await store.decide("tenant-a", "sub_0001", expect=("pending", "approved"), status=ending,
                              decided_by="a", reason="not now") is not None
    ended = await store.get("tenant-a", "sub_0001")
    again, reopened = await store.request_over(sub(7))
    assert reopened == ended and reopened is not None and reopened.status == ending  # as it was
    assert (again.id, again.status, again.decided_by, again.decided_at) == ("sub_0001", "pending", None, None)
    assert again.created_at == T0 + timedelta(minutes=7) and again.reason == "we need it"
    assert await store.get("tenant-a", "sub_0001") == again
    with pytest.raises(SubscriptionExists):
        await store.request(sub(8))


async def test_listing_filters_and_pages(backend: Backend) -> None:
    store = backend.stores.subscriptions
    for i, (team, model) in enumerate(
        [("t1", "m1"), ("t1", "m2"), ("t2", "m1"), ("t2", "m2"), ("t3", "m1")], start=1
    ):
        await store.request(sub(i, team=team, model=model))
    await store.decide("tenant-a", "sub_0002", expect=("pending",), status="approved", decided_by="a",
                       reason=None)
    ids = lambda found: [s.id for s in found]  # noqa: E731
    by_team = await store.list_subscriptions("tenant-a", SubscriptionQuery(team_id="t2"))
    assert ids(by_team) == ["sub_0003", "sub_0004"]
    assert ids(await store.list_subscriptions("tenant-a", SubscriptionQuery(model="m1"))) == [
        "sub_0001", "sub_0003", "sub_0005"]
    by_status = await store.list_subscriptions("tenant-a", SubscriptionQuery(status="approved"))
    assert ids(by_status) == ["sub_0002"]
    page = await store.list_subscriptions("tenant-a", SubscriptionQuery(limit=2))
    rest = await store.list_subscriptions("tenant-a", SubscriptionQuery(after_id=page[-1].id))
    assert ids(page) + ids(rest) == [f"sub_{i:04d}" for i in range(1, 6)]
    assert await store.list_subscriptions("tenant-b", SubscriptionQuery()) == []


async def test_the_cache_asks_the_store_once_and_follows_the_feed(backend: Backend) -> None:
    store = backend.stores.subscriptions
    here = SubscriptionCache(store, backend.stores.feed)
    peer_stores = await backend.peer()
    there = SubscriptionCache(peer_stores.subscriptions, peer_stores.feed)
    await here.start()
    await there.start()
    try:
        # "No subscription" is cached too.
        seen = await asyncio.gather(*(there.status("tenant-a", "team-a", "gpt-4o") for _ in range(10)))
        assert seen == [None] * 10
        assert there.lookups == 1
        await store.request(sub(1))
        await here.changed(("tenant-a", "team-a", "gpt-4o"))
        await _until(there, "pending")
        await store.decide("tenant-a", "sub_0001", expect=("pending",), status="approved", decided_by="a",
                           reason=None)
        await here.changed(("tenant-a", "team-a", "gpt-4o"))
        assert await here.status("tenant-a", "team-a", "gpt-4o") == "approved"  # at once where it changed
        await _until(there, "approved")
        lookups = there.lookups
        for _ in range(20):
            assert await there.status("tenant-a", "team-a", "gpt-4o") == "approved"
        assert there.lookups == lookups  # served from memory
        # Other tenants' and teams' entries are not the changed one.
        assert await there.status("tenant-b", "team-a", "gpt-4o") is None
    finally:
        await here.close()
        await there.close()


async def test_the_cache_expires_entries_when_a_message_is_lost(backend: Backend) -> None:
    now = [0.0]
    store = backend.stores.subscriptions
    cache = SubscriptionCache(store, backend.stores.feed, ttl=5.0, clock=lambda: now[0])
    await cache.start()
    try:
        assert await cache.status("tenant-a", "team-a", "gpt-4o") is None
        await store.request(sub(1))  # no message published: as if it was lost
        assert await cache.status("tenant-a", "team-a", "gpt-4o") is None
        now[0] = 5.1
        assert await cache.status("tenant-a", "team-a", "gpt-4o") == "pending"
    finally:
        await cache.close()


async def _until(cache: SubscriptionCache, status: str) -> None:
    deadline = time.monotonic() + FEED_SECONDS
    while (seen := await cache.status("tenant-a", "team-a", "gpt-4o")) != status:
        assert time.monotonic() < deadline, f"still {seen!r} after {FEED_SECONDS} s"
        await asyncio.sleep(0.005)
