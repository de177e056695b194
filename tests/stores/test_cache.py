"""SharedCache contract: bytes in, bytes out, gone after the TTL or a delete."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def eventually_missing(backend: Backend, key: str, timeout: float = 5.0) -> bool:
    """True once ``key`` is gone. In-memory expiry follows the injected clock; Redis expires on
    its own clock, so the Redis case polls with a deadline."""
    deadline = time.monotonic() + timeout
    while await backend.stores.cache.get(key) is not None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_set_get_overwrite_delete(backend: Backend) -> None:
    cache = backend.stores.cache
    assert await cache.get("missing") is None
    await cache.set("k", b"\x00binary\xff", ttl=60)
    assert await cache.get("k") == b"\x00binary\xff"
    await cache.set("k", b"second", ttl=60)
    assert await cache.get("k") == b"second"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("k")  # deleting a missing key is fine


async def test_entries_expire_after_their_ttl(backend: Backend) -> None:
    cache = backend.stores.cache
    await cache.set("short", b"v", ttl=0.2)
    await cache.set("long", b"v", ttl=60)
    assert await cache.get("short") == b"v"
    backend.clock.advance(0.25)
    assert await eventually_missing(backend, "short")
    assert await cache.get("long") == b"v"


async def test_ttl_must_be_positive(backend: Backend) -> None:
    with pytest.raises(ValueError):
        await backend.stores.cache.set("k", b"v", ttl=0)


async def test_cluster_cache_is_shared_by_instances(cluster: Backend) -> None:
    assert cluster.redis is not None
    peer = await cluster.peer()
    await cluster.stores.cache.set("shared", b"v", ttl=60)
    assert await peer.cache.get("shared") == b"v"
    await peer.cache.delete("shared")
    assert await cluster.stores.cache.get("shared") is None


async def test_add_stores_only_when_absent_and_take_removes(backend: Backend) -> None:
    cache = backend.stores.cache
    assert await cache.add("once", b"first", ttl=60) is True
    assert await cache.add("once", b"second", ttl=60) is False
    assert await cache.get("once") == b"first"
    assert await cache.take("once") == b"first"
    assert await cache.take("once") is None
    assert await cache.get("once") is None
    # Once the entry has expired, the key may be added again.
    assert await cache.add("brief", b"v", ttl=0.2) is True
    backend.clock.advance(0.25)
    assert await eventually_missing(backend, "brief")
    assert await cache.add("brief", b"w", ttl=60) is True
    with pytest.raises(ValueError):
        await cache.add("k", b"v", ttl=0)


async def test_racing_adds_and_takes_have_one_winner(backend: Backend) -> None:
    cache = backend.stores.cache
    added = await asyncio.gather(*(cache.add("race", str(i).encode(), ttl=60) for i in range(20)))
    assert added.count(True) == 1
    taken = await asyncio.gather(*(cache.take("race") for _ in range(20)))
    assert [v for v in taken if v is not None] == [str(added.index(True)).encode()]


async def test_cluster_add_and_take_are_atomic_across_instances(cluster: Backend) -> None:
    peer = await cluster.peer()
    mine, theirs = await asyncio.gather(cluster.stores.cache.add("ticket", b"a", ttl=60),
                                        peer.cache.add("ticket", b"b", ttl=60))
    assert sorted([mine, theirs]) == [False, True]
    got = await asyncio.gather(cluster.stores.cache.take("ticket"), peer.cache.take("ticket"))
    assert sorted(got, key=lambda v: v is None) == [b"a" if mine else b"b", None]


async def test_touch_reads_and_sets_the_expiry_anew(backend: Backend) -> None:
    cache = backend.stores.cache
    assert await cache.touch("absent", ttl=60) is None
    assert await cache.get("absent") is None  # nothing stored by touching nothing
    # Touched before it expires, an entry lives the new ttl from then: longer...
    await cache.set("kept", b"v", ttl=0.2)
    assert await cache.touch("kept", ttl=60) == b"v"
    # ... or shorter.
    await cache.set("cut", b"w", ttl=60)
    assert await cache.touch("cut", ttl=0.2) == b"w"
    backend.clock.advance(0.25)
    assert await eventually_missing(backend, "cut")
    assert await cache.get("kept") == b"v"
    with pytest.raises(ValueError):
        await cache.touch("kept", ttl=0)


async def test_touch_with_a_prefix_extends_only_a_value_that_begins_with_it(backend: Backend) -> None:
    """An MCP session presented by another caller: read (to refuse it), its expiry untouched."""
    cache = backend.stores.cache
    await cache.set("owned", b"alice|v", ttl=0.2)
    assert await cache.touch("owned", ttl=60, prefix=b"bob|") == b"alice|v"  # not extended
    assert await cache.touch("absent", ttl=60, prefix=b"bob|") is None
    await cache.set("mine", b"alice|w", ttl=0.2)
    assert await cache.touch("mine", ttl=60, prefix=b"alice|") == b"alice|w"  # extended
    backend.clock.advance(0.25)
    assert await eventually_missing(backend, "owned")
    assert await cache.get("mine") == b"alice|w"


async def test_add_counted_stores_only_while_the_group_counts_fewer_than_its_limit(backend: Backend) -> None:
    """A caller's MCP sessions: at most ``limit`` live at once; one deleted or expired frees its
    place, one touched keeps it; other groups are not counted."""
    cache = backend.stores.cache
    assert await cache.add_counted("s1", b"v", 60, "of:alice", 2)
    assert await cache.add_counted("s2", b"v", 0.2, "of:alice", 2)
    assert not await cache.add_counted("s3", b"v", 60, "of:alice", 2)
    assert await cache.get("s3") is None  # nothing stored when refused
    assert await cache.add_counted("b1", b"v", 60, "of:bob", 2)  # another group
    await cache.delete("s1")
    assert await cache.add_counted("s3", b"v", 60, "of:alice", 2)  # s1's place
    assert not await cache.add_counted("s4", b"v", 60, "of:alice", 2)
    assert await cache.touch("s3", 60, b"", "of:alice") == b"v"
    backend.clock.advance(0.25)
    assert await eventually_missing(backend, "s2")
    assert await cache.add_counted("s4", b"v", 60, "of:alice", 2)  # s2's place
    assert not await cache.add_counted("s5", b"v", 60, "of:alice", 2)
    assert [await cache.get(k) for k in ("s3", "s4", "b1")] == [b"v", b"v", b"v"]


async def test_racing_add_counted_store_no_more_than_the_limit(backend: Backend) -> None:
    cache = backend.stores.cache
    added = await asyncio.gather(*(cache.add_counted(f"r{i}", b"v", 60, "of:racer", 3) for i in range(12)))
    assert added.count(True) == 3
