"""A caller cancelled while its budget reservation waits to be run again after NOSCRIPT (a Redis
that restarted with its data, or SCRIPT FLUSH): the reservation must not be left held until it
lapses. Its release, answered NOSCRIPT too, is run again in another task; the reservation, which
never ran, is not run for a caller that left (stores/redis/batch.py ``_again``, ``skippable``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import ConnectionPool, Redis

from switchboard.stores.protocols import Charge
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.budgets import RedisBudgetCounters, counter_key
from tests.services import RedisServer
from tests.stores.test_redis_batch import TlsLike

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(params=["wire", "redis-py"])
async def client(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis_server.flush()
    if request.param == "wire":
        client = Redis.from_url(redis_server.url)
    else:
        client = Redis(connection_pool=ConnectionPool.from_url(redis_server.url, connection_class=TlsLike))
    yield client
    await batch_for(client).close()
    await client.aclose()


async def test_a_reservation_cancelled_while_run_again_after_noscript_is_released(client: Redis) -> None:
    counters = RedisBudgetCounters(client)
    charge = Charge("w-key:1", 10**9, 40, 3600.0)
    await counters.load(charge, 10)
    await client.script_flush()  # the next EVALSHA of every script is answered NOSCRIPT
    # Held by Redis until UNPAUSE (scripts may write), so all 20 leave in one batch, and the
    # cancelled caller's release in the next; both come back NOSCRIPT and are run again.
    await client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        tasks = [asyncio.ensure_future(counters.reserve(f"rq-w{i}", [charge], 30.0)) for i in range(20)]
        for _ in range(1000):  # until Redis holds the batch (each check is a round trip)
            if (await client.info("clients"))["blocked_clients"]:
                break
        else:
            raise AssertionError("the batch never reached Redis")
        tasks[-1].cancel()
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[-1], asyncio.CancelledError)
    assert not any(isinstance(d, BaseException) for d in done[:-1]), done
    running = batch_for(client)._running  # the calls run again after NOSCRIPT, and the release
    while running:
        await asyncio.gather(*running, return_exceptions=True)
    fields = await client.hkeys(counter_key(charge.key))
    assert b"r:rq-w18" in fields  # the callers still waiting reserved
    assert b"r:rq-w19" not in fields, "the cancelled caller's reservation is held until it lapses"
