"""A ``FeedCache`` read under way when its record changes (a key revoked while the store is
being read for it): the callers that asked before the change may get what that read finds, but
one that asks after the change has been applied here (the admin's answer) waits for a read of
its own, never the one that started before. The in-process feed: nothing here is a store's."""

from __future__ import annotations

import asyncio

from switchboard.stores.feedcache import ALL, FeedCache
from switchboard.stores.memory.feed import MemoryFeed


class Store:
    """A record per key whose reads wait on ``gate`` while it is not set."""

    def __init__(self) -> None:
        self.value = "enabled"
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.reads = 0

    async def load(self, key: str) -> str:
        self.reads += 1
        seen = self.value  # what the database answers when the query runs
        self.started.set()
        await self.gate.wait()
        return seen


async def _raced(change: str) -> tuple[str, str, Store, FeedCache[str, str]]:
    store = Store()
    cache: FeedCache[str, str] = FeedCache("keys", store.load, MemoryFeed(), encode=str, decode=str, ttl=600)
    before = asyncio.ensure_future(cache.get("k"))
    await store.started.wait()  # the read has run its query and waits for its answer
    store.value = "revoked"
    cache.drop(change)  # the change applied here, before the admin's answer
    after = asyncio.ensure_future(cache.get("k"))
    store.gate.set()
    return await before, await after, store, cache


async def test_a_caller_after_a_change_does_not_get_the_read_that_predates_it() -> None:
    first, second, store, cache = await _raced("k")
    assert first == "enabled"  # asked before the change: either answer is fair
    assert second == "revoked" and store.reads == 2
    assert await cache.get("k") == "revoked" and store.reads == 2  # and that is what is cached


async def test_the_same_after_a_message_that_drops_every_entry() -> None:
    _, second, store, _ = await _raced(ALL)
    assert second == "revoked" and store.reads == 2


async def test_drop_where_also_starts_a_read_of_its_own() -> None:
    store = Store()
    cache: FeedCache[str, str] = FeedCache("keys", store.load, MemoryFeed(), encode=str, decode=str, ttl=600)
    before = asyncio.ensure_future(cache.get("k"))
    await store.started.wait()
    store.value = "revoked"
    cache.drop_where(lambda key: key == "k")
    after = asyncio.ensure_future(cache.get("k"))
    store.gate.set()
    assert (await before, await after) == ("enabled", "revoked")


async def test_a_close_cancels_the_reads_an_invalidation_left_running() -> None:
    """A read a change took out of the cache's hands still runs for the callers that wait on it:
    closing the cache cancels it, as it does the reads still in hand (it ran to its read timeout,
    holding the shutdown)."""
    store = Store()
    cache: FeedCache[str, str] = FeedCache("keys", store.load, MemoryFeed(), encode=str, decode=str, ttl=600)
    waiting = asyncio.ensure_future(cache.get("k"))
    await store.started.wait()
    cache.drop("k")
    await cache.close()
    done, _ = await asyncio.wait([waiting], timeout=5)
    assert waiting in done and waiting.cancelled()
