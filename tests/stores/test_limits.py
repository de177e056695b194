"""RateLimiter contract: all-or-nothing across buckets, exact under concurrency and across
instances, a sliding window that never admits more than the capacity in any window."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from switchboard.limits.cache import TOPIC as LIMITS_TOPIC
from switchboard.limits.cache import LimitCache
from switchboard.stores.protocols import EVERYTHING, Bucket, LimitRecord
from switchboard.stores.redis.limits import RedisRateLimiter
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rpm(key: str, capacity: int, amount: int = 1, window: float = 60) -> Bucket:
    return Bucket(key, capacity, window, amount)


async def test_concurrent_requests_on_two_instances_never_exceed_the_capacity(backend: Backend) -> None:
    peer = await backend.peer()
    limiters = [backend.stores.limiter, peer.limiter]
    results = await asyncio.gather(
        *(limiters[i % 2].acquire([rpm("key:a:rpm", 60)]) for i in range(100))
    )
    admitted = [r for r in results if r.refused is None]
    assert len(admitted) == 60
    assert sorted(r.states[0].used for r in admitted) == list(range(1, 61))
    refused = [r for r in results if r.refused is not None]
    assert all(r.refused == 0 and 0 < r.retry_after <= 61 for r in refused)


async def test_a_refused_request_takes_from_no_bucket(backend: Backend) -> None:
    limiter = backend.stores.limiter
    wide, narrow = rpm("tenant:t:tpm", 1000, 300), rpm("key:k:tpm", 500, 300)
    assert (await limiter.acquire([wide, narrow])).refused is None
    refused = await limiter.acquire([wide, narrow])
    assert refused.refused == 1  # the key's bucket had no room for 300 more
    # Every bucket's state as it stands, for the refusal's headers: nothing was taken.
    assert [(s.capacity, s.used) for s in refused.states] == [(1000, 300), (500, 300)]
    assert all(0 < s.reset <= 61 for s in refused.states)
    # The tenant's bucket was not charged for the refused request: 700 still fit.
    state = await limiter.acquire([rpm("tenant:t:tpm", 1000, 700)])
    assert state.refused is None and state.states[0].used == 1000


async def test_an_amount_above_the_capacity_never_fits(backend: Backend) -> None:
    refused = await backend.stores.limiter.acquire([rpm("key:big:tpm", 100, 101)])
    assert refused.refused == 0 and math.isinf(refused.retry_after)


async def test_units_return_one_window_after_they_were_taken(backend: Backend) -> None:
    limiter, clock = backend.stores.limiter, backend.clock
    first = await limiter.acquire([rpm("key:w:rpm", 2)])
    assert first.states[0].used == 1 and 60 <= first.states[0].reset <= 61
    clock.advance(30)
    assert (await limiter.acquire([rpm("key:w:rpm", 2)])).states[0].used == 2
    refused = await limiter.acquire([rpm("key:w:rpm", 2)])
    assert refused.refused == 0 and 30 <= refused.retry_after <= 31
    clock.advance(30)  # the first unit is still within 60 s (its slot has not fully left)
    assert (await limiter.acquire([rpm("key:w:rpm", 2)])).refused == 0
    clock.advance(1.001)
    again = await limiter.acquire([rpm("key:w:rpm", 2)])
    assert again.refused is None and again.states[0].used == 2


async def test_a_bucket_whose_window_changes_counts_afresh_and_is_corrected_in_its_own(
    backend: Backend,
) -> None:
    """The same bucket key with another window (a limit reconfigured) is another bucket, on
    every call after the change, however often the key was asked before."""
    limiter = backend.stores.limiter
    for _ in range(3):
        await limiter.acquire([rpm("key:win:tpm", 1000, 300)])
    assert (await limiter.acquire([rpm("key:win:tpm", 1000, 200)])).refused == 0
    hourly = await limiter.acquire([rpm("key:win:tpm", 1000, 900, window=3600)])
    assert hourly.refused is None and hourly.states[0].used == 900
    await limiter.adjust([rpm("key:win:tpm", 1000, -800, window=3600)], [hourly.states[0].slot])
    assert (await limiter.acquire([rpm("key:win:tpm", 1000, 900, window=3600)])).states[0].used == 1000
    # The minute's window kept its own count throughout.
    assert (await limiter.acquire([rpm("key:win:tpm", 1000, 100)])).states[0].used == 1000


async def test_adjust_corrects_a_reservation(backend: Backend) -> None:
    limiter = backend.stores.limiter
    taken = await limiter.acquire([rpm("key:adj:tpm", 1000, 800)])
    slot = taken.states[0].slot
    await limiter.adjust([rpm("key:adj:tpm", 1000, -700)], [slot])  # it used 100, not 800
    after = await limiter.acquire([rpm("key:adj:tpm", 1000, 900)])
    assert after.refused is None and after.states[0].used == 1000
    await limiter.adjust([rpm("key:adj:tpm", 1000, -5000)], [slot])  # never below zero
    assert (await limiter.acquire([rpm("key:adj:tpm", 1000, 0)])).states[0].used == 0
    assert (await limiter.acquire([rpm("key:adj:tpm", 1000, 1000)])).refused is None


async def test_windows_and_keys_are_apart(backend: Backend) -> None:
    limiter = backend.stores.limiter
    assert (await limiter.acquire([rpm("key:x:tpd", 10, 10, window=86400)])).refused is None
    assert (await limiter.acquire([rpm("key:x:tpm", 10, 10)])).refused is None
    assert (await limiter.acquire([rpm("key:y:tpd", 10, 10, window=86400)])).refused is None
    assert (await limiter.acquire([rpm("key:x:tpd", 10, 1, window=86400)])).refused == 0


# -- LimitStore: the records of /admin/v1/limits ---------------------------------------------


async def test_limit_records_are_one_per_subject_and_per_tenant(backend: Backend) -> None:
    store = backend.stores.limits
    assert store is not None
    first, before = await store.put(LimitRecord("lim_1", "t1", "team", "team-a", rpm=5))
    assert before is None and first.id == "lim_1"
    second, before = await store.put(LimitRecord("lim_2", "t1", "team", "team-a", tpm=900))
    assert before is not None and before.rpm == 5
    assert (second.id, second.rpm, second.tpm) == ("lim_1", None, 900)  # replaced, same record
    # The same limits again: nothing written (its updated_at stays), and the store says so.
    third, before = await store.put(LimitRecord("lim_9", "t1", "team", "team-a", tpm=900))
    assert third is before and before == await store.get("t1", "lim_1")
    await store.put(LimitRecord("lim_3", "t2", "team", "team-a", rpm=1))
    assert [(r.id, r.tpm) for r in await store.list_limits("t1")] == [("lim_1", 900)]
    assert await store.get("t2", "lim_1") is None  # another tenant's record is not found
    found = await store.find("lim_3")
    assert found is not None and found.tenant_id == "t2"
    assert not await store.delete("t2", "lim_1")
    assert await store.delete("t1", "lim_1")
    assert await store.list_limits("t1") == []


async def test_idle_buckets_are_forgotten_in_memory() -> None:
    from switchboard.stores.clock import ManualClock
    from switchboard.stores.memory.limits import SWEEP_EVERY, MemoryRateLimiter

    clock = ManualClock()
    limiter = MemoryRateLimiter(clock)
    for i in range(SWEEP_EVERY - 1):
        await limiter.acquire([rpm(f"key:{i}:rpm", 5)])
    clock.advance(62)
    assert (await limiter.acquire([rpm("key:0:rpm", 5)])).states[0].used == 1  # the window moved on
    assert len(limiter._windows) == 1  # only the bucket just used is left


async def test_a_correction_redis_did_not_take_is_made_once_it_answers(cluster: Backend) -> None:
    # A call ending while Redis was down lost its token correction: the whole estimate stayed
    # counted for the window.
    limiter = cluster.stores.limiter
    assert isinstance(limiter, RedisRateLimiter)
    taken = await limiter.acquire([rpm("key:down:tpm", 1000, 800)])
    real = limiter._adjust
    failures = 2

    def flaky(keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("redis is down")
        return real(keys=keys, args=args)

    limiter._adjust = flaky  # type: ignore[assignment]
    await limiter.adjust([rpm("key:down:tpm", 1000, -700)], [taken.states[0].slot])  # no error
    deadline = time.monotonic() + 10
    while (await limiter.acquire([rpm("key:down:tpm", 1000, 0)])).states[0].used != 100:
        assert time.monotonic() < deadline, "the correction was never made"
        await asyncio.sleep(0.05)
    assert failures == 0 and len(limiter.pending) == 0


async def test_the_stored_limits_cache_forgets_every_tenant_when_the_feed_says_everything(
    backend: Backend,
) -> None:
    """A change feed that reconnected hands its subscribers EVERYTHING (what was published while
    it was away is lost): every tenant's limits are read again, not kept until they expire."""
    stores = backend.stores
    assert stores.limits is not None
    cache = LimitCache(stores.limits, stores.feed)
    await cache.start()
    try:
        assert await cache.get("t1") == {} and await cache.get("t2") == {}
        # Changed with no message on the feed (as when it is lost): the cached copies stand.
        await stores.limits.put(LimitRecord("lim_e1", "t1", "team", "team-a", rpm=5))
        await stores.limits.put(LimitRecord("lim_e2", "t2", "team", "team-a", rpm=7))
        assert await cache.get("t1") == {}
        await stores.feed.publish(LIMITS_TOPIC, EVERYTHING)
        deadline = time.monotonic() + 5
        while not await cache.get("t1"):  # over Redis the message takes a moment
            assert time.monotonic() < deadline, "the cache kept its copy"
            await asyncio.sleep(0.01)
        assert (await cache.get("t1"))[("team", "team-a")].rpm == 5
        assert (await cache.get("t2"))[("team", "team-a")].rpm == 7
    finally:
        await cache.close()
