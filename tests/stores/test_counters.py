"""Counters contract: atomic increments within a fixed window, windows and scopes apart."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from switchboard.stores.redis.counters import counter_key
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_concurrent_increments_are_atomic(backend: Backend) -> None:
    # Two instances (in cluster mode, two connection pools) racing on one counter.
    peer = await backend.peer()
    stores = [backend.stores, peer]
    results = await asyncio.gather(
        *(stores[i % 2].counters.incr("tenant-a", "requests", window=60) for i in range(200))
    )
    assert sorted(results) == list(range(1, 201))
    assert await backend.stores.counters.get("tenant-a", "requests", window=60) == 200


async def test_amount_scope_name_and_window_size_are_separate_counters(backend: Backend) -> None:
    c = backend.stores.counters
    assert await c.incr("tenant-a", "tokens", window=60, amount=150) == 150
    assert await c.incr("tenant-a", "tokens", window=60, amount=50) == 200
    assert await c.incr("tenant-b", "tokens", window=60) == 1
    assert await c.incr("tenant-a", "requests", window=60) == 1
    assert await c.incr("tenant-a", "tokens", window=3600) == 1
    assert await c.get("tenant-a", "tokens", window=60) == 200
    assert await c.get("tenant-c", "tokens", window=60) == 0


async def test_a_new_window_starts_from_zero(backend: Backend) -> None:
    c, clock = backend.stores.counters, backend.clock
    clock.now = 60 * 28_333_333 + 40.0  # 40 s into a minute
    assert await c.incr("k", "requests", window=60, amount=5) == 5
    clock.advance(19.9)  # still the same minute
    assert await c.incr("k", "requests", window=60) == 6
    clock.advance(0.2)  # the next minute
    assert await c.get("k", "requests", window=60) == 0
    assert await c.incr("k", "requests", window=60) == 1


async def test_bad_window_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError):
        await backend.stores.counters.incr("k", "n", window=0)


async def test_redis_keys_of_a_scope_share_a_cluster_slot(cluster: Backend) -> None:
    assert cluster.redis is not None
    await cluster.stores.counters.incr("tenant-a", "requests", window=60)
    await cluster.stores.counters.incr("tenant-a", "tokens", window=3600)
    keys = [counter_key("tenant-a", "requests", 60_000), counter_key("tenant-a", "tokens", 3_600_000)]
    client = Redis.from_url(cluster.redis)
    try:
        assert await client.exists(*keys) == 2
        # Expires on its own: nothing lingers once the window is gone.
        assert 0 < await client.pttl(keys[0]) <= 120_000
    finally:
        await client.aclose()
    assert key_slot(keys[0].encode()) == key_slot(keys[1].encode())
    assert key_slot(keys[0].encode()) != key_slot(counter_key("tenant-b", "requests", 60_000).encode())
