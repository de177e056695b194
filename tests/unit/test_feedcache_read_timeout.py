"""``FeedCache(read_timeout=...)``: a store that never answers (a database that accepts
connections and stays silent) ends a read at the bound as an unreachable store, so the request
path answers 503 or serves the record it read before; once a read has failed, the retries run
without holding the requests for that record. The in-process feed: nothing here is a store's."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.stores.feedcache import FeedCache
from switchboard.stores.memory.feed import MemoryFeed
from switchboard.stores.unavailable import StoreTimeout, unavailable

BOUND = 0.05  # seconds: the test's own bound, so that it does not wait ten


class Silent:
    """A store that answers until ``hang`` is set, then never again (each read waits forever)."""

    def __init__(self) -> None:
        self.hang = False
        self.reads = 0
        self.now = 1000.0

    async def load(self, key: str) -> str:
        self.reads += 1
        if self.hang:
            await asyncio.Event().wait()
        return f"{key}#{self.reads}"

    def clock(self) -> float:
        return self.now


def _cache(store: Silent, stale_if_error: float = 0.0) -> FeedCache[str, str]:
    return FeedCache("silent", store.load, MemoryFeed(), encode=str, decode=str, ttl=10,
                     clock=store.clock, stale_if_error=stale_if_error, read_timeout=BOUND)


async def test_a_read_that_gets_no_answer_is_an_unreachable_store() -> None:
    store = Silent()
    store.hang = True
    cache = _cache(store)
    with pytest.raises(StoreTimeout) as info:
        await cache.get("never-read")
    assert unavailable(info.value)  # answered 503 store_unavailable, not 500
    # A driver's own timeout inside a read is the same (asyncpg raises the builtin TimeoutError).

    async def driver_timeout(key: str) -> str:
        raise TimeoutError

    timed_out = FeedCache("silent", driver_timeout, MemoryFeed(), encode=str, decode=str, read_timeout=BOUND)
    with pytest.raises(StoreTimeout):
        await timed_out.get("k")
    # Without a bound, a TimeoutError is not taken for a store's: it stays what it was.
    unbounded = FeedCache("silent", driver_timeout, MemoryFeed(), encode=str, decode=str)
    with pytest.raises(TimeoutError) as raw:
        await unbounded.get("k")
    assert not unavailable(raw.value)


async def test_a_record_read_before_is_served_and_retries_do_not_hold_requests() -> None:
    store = Silent()
    cache = _cache(store, stale_if_error=60)
    assert await cache.get("acme") == "acme#1"
    store.hang, store.now = True, store.now + 11  # the entry expired, the store went silent
    assert await cache.get("acme") == "acme#1"  # after the bound: the record as read
    assert store.reads == 2
    store.now += 1.5  # past the retry interval: a new read starts, and nobody waits on it
    served = [await cache.get("acme") for _ in range(3)]
    assert served == ["acme#1"] * 3 and len(cache._pending) == 1  # one retry in flight, not three
    await asyncio.gather(*cache._pending.values())
    assert store.reads == 3
    # The store answers again: the next retry reads it afresh.
    store.hang, store.now = False, store.now + 1.5
    assert await cache.get("acme") == "acme#1"  # served while the retry runs
    await asyncio.gather(*cache._pending.values())
    assert await cache.get("acme") == "acme#4"


async def test_once_a_read_ran_out_its_bound_the_gateways_other_caches_do_not_wait_it_out() -> None:
    """A request reads several caches (the caller, its limits, its budgets): after one read found
    the store silent, the others serve what they may serve stale at once, and read behind."""
    feed, store, other = MemoryFeed(), Silent(), Silent()
    first = FeedCache("one", store.load, feed, encode=str, decode=str, ttl=10, clock=store.clock,
                      stale_if_error=60, read_timeout=BOUND)
    second = FeedCache("two", other.load, feed, encode=str, decode=str, ttl=10, clock=store.clock,
                       stale_if_error=60, read_timeout=BOUND)
    third = FeedCache("three", other.load, feed, encode=str, decode=str, ttl=10, clock=store.clock,
                      stale_if_error=60, read_timeout=BOUND)
    elsewhere = FeedCache("four", other.load, MemoryFeed(), encode=str, decode=str, ttl=10,
                          clock=store.clock, stale_if_error=60, read_timeout=BOUND)
    assert [await first.get("a"), await second.get("b"), await third.get("t")] == ["a#1", "b#1", "t#2"]
    store.hang = other.hang = True
    store.now += 11
    assert await first.get("a") == "a#1"  # waited out the bound
    assert await second.get("b") == "b#1" and len(second._pending) == 1  # at once, read behind
    with pytest.raises(StoreTimeout):  # another gateway's cache (another feed): not told
        await elsewhere.get("never")
    await asyncio.gather(*second._pending.values())
    # The store answers again: a read that succeeds ends it for the gateway's caches.
    store.hang = other.hang = False
    store.now += 1.5
    assert await first.get("a") == "a#1"  # this entry's own retry, behind
    await asyncio.gather(*first._pending.values())
    assert await first.get("a") == "a#3"
    assert await third.get("t") == "t#5"  # never failed itself: read, and waited for, again
