"""The request path's Lua scripts in one pipeline per event-loop pass (stores/redis/batch.py),
on a real Redis: one round trip for the calls of a pass, each script still atomic, a flushed
script cache recovered, a failed connection reported to every caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from switchboard.stores.protocols import Bucket, Charge
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.budgets import RedisBudgetCounters
from switchboard.stores.redis.limits import RedisRateLimiter
from switchboard.stores.redis.wire import Then
from tests.servers import refused_port
from tests.services import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


class TlsLike(Connection):
    """Any connection class but the plain ones keeps redis-py's pipeline (as a TLS URL does)."""


@pytest_asyncio.fixture(params=["wire", "redis-py"])
async def client(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis_server.flush()
    if request.param == "wire":
        client = Redis.from_url(redis_server.url)
    else:
        client = Redis(connection_pool=ConnectionPool.from_url(redis_server.url, connection_class=TlsLike))
    assert (batch_for(client)._wire is None) == (request.param == "redis-py")
    yield client
    await batch_for(client).close()
    await client.aclose()


def count_pipelines(client: Redis, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The round trips the batch makes from now on (counted, not replaced): writes on its own
    connection, or redis-py pipelines."""
    opened: list[object] = []
    wire = batch_for(client)._wire
    if wire is not None:  # a batch reaches it by call() (to connect) or post() (connected)
        call, post = wire.call, wire.post

        async def called(payload: bytes, count: int) -> list[object]:
            opened.append(payload)
            return await call(payload, count)

        def posted(payload: bytes, count: int, then: Then, arg: object) -> None:
            opened.append(payload)
            post(payload, count, then, arg)

        monkeypatch.setattr(wire, "call", called)
        monkeypatch.setattr(wire, "post", posted)
        return opened
    original = client.pipeline

    def counted(*args: object, **kwargs: object) -> object:
        pipe = original(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(pipe)
        return pipe

    monkeypatch.setattr(client, "pipeline", counted)
    return opened


async def test_the_calls_of_one_pass_leave_in_one_pipeline_and_stay_atomic(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisRateLimiter(client)
    pipelines = count_pipelines(client, monkeypatch)
    results = await asyncio.gather(*(limiter.acquire([Bucket("key:b:rpm", 20, 60, 1)]) for _ in range(50)))

    assert len(pipelines) == 1  # fifty callers, one pass: one pipeline
    admitted = [r for r in results if r.refused is None]
    assert len(admitted) == 20 and sorted(r.states[0].used for r in admitted) == list(range(1, 21))


async def test_the_limiter_and_the_budget_counters_share_one_batch(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter, counters = RedisRateLimiter(client), RedisBudgetCounters(client)
    assert batch_for(client) is batch_for(client)
    pipelines = count_pipelines(client, monkeypatch)
    acquired, reserved = await asyncio.gather(
        limiter.acquire([Bucket("key:s:rpm", 5, 60, 1)]),
        counters.reserve("req-1", [Charge("key:s:usd", 1_000_000, 10, 60.0)], 30.0),
    )
    assert acquired.refused is None and reserved.refused is None
    assert len(pipelines) == 1  # a rate-limit script and a budget script, one round trip


async def test_a_flushed_script_cache_is_reloaded(client: Redis) -> None:
    limiter = RedisRateLimiter(client)
    assert (await limiter.acquire([Bucket("key:f:rpm", 3, 60, 1)])).refused is None
    await client.script_flush()  # as after a Redis restart
    again = await asyncio.gather(*(limiter.acquire([Bucket("key:f:rpm", 3, 60, 1)]) for _ in range(3)))
    assert [r.refused for r in again] == [None, None, 0]


async def test_a_connection_failure_reaches_every_caller() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{refused_port()}/0", socket_connect_timeout=2)
    try:
        limiter = RedisRateLimiter(client)
        results = await asyncio.gather(
            *(limiter.acquire([Bucket("key:x:rpm", 5, 60, 1)]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results)
        # The batch keeps working for later passes once Redis is reachable: here, it still is not.
        with pytest.raises(RedisConnectionError):
            await limiter.acquire([Bucket("key:x:rpm", 5, 60, 1)])
    finally:
        await client.aclose()


async def test_a_connected_wire_takes_the_batch_without_a_task(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the wire is connected a batch is written from the loop's callback and its replies
    handed over by the wire as they are read: the task (to connect, for TLS) is not used."""
    limiter = RedisRateLimiter(client)
    assert (await limiter.acquire([Bucket("key:t:rpm", 5, 60, 1)])).refused is None  # connects
    batch = batch_for(client)
    run = batch._run
    ran: list[int] = []

    async def counted(calls: list[object]) -> None:
        ran.append(len(calls))
        await run(calls)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "_run", counted)
    results = await asyncio.gather(*(limiter.acquire([Bucket("key:t:rpm", 5, 60, 1)]) for _ in range(6)))
    assert [r.refused for r in results].count(None) == 4  # one admitted before, five in all
    assert ran == ([] if batch._wire is not None else [6])
