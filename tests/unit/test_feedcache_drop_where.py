"""``FeedCache.drop_where``: the caches whose change-feed messages name a group of keys (a
tenant's documents, every reference of one prompt) forget that group and nothing else, and a
lookup under way while they do is not cached. The in-process feed: nothing here is a store's."""

from __future__ import annotations

import asyncio

from switchboard.stores.feedcache import FeedCache
from switchboard.stores.memory.feed import MemoryFeed

Key = tuple[str, str]


def _cache(feed: MemoryFeed, reads: list[Key], gate: dict[Key, asyncio.Event],
           started: asyncio.Event | None = None) -> FeedCache[Key, str]:
    async def load(key: Key) -> str:
        reads.append(key)
        if key in gate:
            if started is not None:
                started.set()
            await gate[key].wait()
        return f"{key[0]}/{key[1]}#{len(reads)}"

    return FeedCache("groups", load, feed, encode="/".join, decode=lambda m: None, ttl=600)


async def test_only_the_matching_entries_are_forgotten() -> None:
    reads: list[Key] = []
    cache = _cache(MemoryFeed(), reads, {})
    keys = [("acme", "a"), ("acme", "b"), ("globex", "a")]
    first = [await cache.get(k) for k in keys]
    cache.drop_where(lambda key: key[0] == "acme")
    again = [await cache.get(k) for k in keys]
    assert again[2] == first[2]  # globex kept: no read
    assert again[:2] != first[:2] and reads == [*keys, ("acme", "a"), ("acme", "b")]


async def test_a_lookup_under_way_is_not_cached() -> None:
    reads: list[Key] = []
    slow = ("acme", "slow")
    gate = {slow: asyncio.Event()}
    started = asyncio.Event()
    cache = _cache(MemoryFeed(), reads, gate, started)
    pending = asyncio.ensure_future(cache.get(slow))
    await started.wait()  # the lookup has begun, and waits on the gate
    cache.drop_where(lambda key: key == ("other", "x"))  # whatever it names: the read predates it
    gate[slow].set()
    assert await pending == "acme/slow#1"
    assert cache.peek(slow, "absent") == "absent"
    assert await cache.get(slow) == "acme/slow#2"
