"""A request's rate limits and budgets in one Redis script (stores/redis/admission.py), on a real
Redis: the same answers as the limiter's and the counters' own scripts called one after the
other, in one round trip, nothing reserved when the limits refuse, and no reservation left
behind by a caller cancelled while its script was in Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from switchboard.stores.protocols import Bucket, Charge
from switchboard.stores.redis.admission import RedisAdmission
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.budgets import RedisBudgetCounters, counter_key
from switchboard.stores.redis.limits import RedisRateLimiter
from tests.services import RedisServer
from tests.stores.test_redis_batch import count_pipelines

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOLD = 30.0


@pytest_asyncio.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis_server.flush()
    client = Redis.from_url(redis_server.url)
    yield client
    await batch_for(client).close()
    await client.aclose()


def _stores(client: Redis) -> tuple[RedisRateLimiter, RedisBudgetCounters, RedisAdmission]:
    limiter, counters = RedisRateLimiter(client), RedisBudgetCounters(client)
    return limiter, counters, RedisAdmission(client, limiter, counters)


def _buckets(who: str) -> list[Bucket]:
    return [Bucket(f"key:{who}:rpm", 2, 60, 1), Bucket(f"key:{who}:tpm", 1000, 60, 300)]


def _charges(who: str, limit: int = 100) -> list[Charge]:
    return [Charge(f"{who}-key:1", limit, 40, 3600.0), Charge(f"{who}-tenant:1", 10 * limit, 40, 3600.0)]


async def test_admitted_takes_the_limits_and_reserves_the_budgets_in_one_round_trip(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter, counters, admission = _stores(client)
    for charge in _charges("a"):
        await counters.load(charge, 10)
    pipelines = count_pipelines(client, monkeypatch)
    acquired, reserved = await admission.acquire_reserve(_buckets("a"), "req-1", _charges("a"), HOLD)
    assert len(pipelines) == 1
    assert acquired.refused is None and [s.used for s in acquired.states] == [1, 300]
    assert reserved is not None and reserved.refused is None and reserved.used == [10, 10]
    assert await counters.usage("a-key:1") == (10, 40)  # spent, held
    # The same as the two scripts one after the other would answer next.
    alone = await limiter.acquire(_buckets("a"))
    assert [s.used for s in alone.states] == [2, 600]
    assert (await counters.reserve("req-2", _charges("a"), HOLD)).used == [50, 50]


async def test_refused_by_the_limits_reserves_nothing(client: Redis) -> None:
    limiter, counters, admission = _stores(client)
    for charge in _charges("b"):
        await counters.load(charge, 0)
    for _ in range(2):  # the minute's two requests
        assert (await limiter.acquire(_buckets("b"))).refused is None
    acquired, reserved = await admission.acquire_reserve(_buckets("b"), "req-3", _charges("b"), HOLD)
    assert acquired.refused == 0 and acquired.retry_after > 0
    assert [s.used for s in acquired.states] == [2, 600]  # as they stand: nothing taken
    assert reserved is None
    assert await counters.usage("b-key:1") == (0, 0)


async def test_a_request_larger_than_a_limit_reserves_nothing(client: Redis) -> None:
    _, counters, admission = _stores(client)
    await counters.load(_charges("c")[0], 0)
    huge = [Bucket("key:c:tpm", 100, 60, 500)]
    acquired, reserved = await admission.acquire_reserve(huge, "req-4", _charges("c")[:1], HOLD)
    assert acquired.refused == 0 and acquired.retry_after == float("inf") and acquired.states == []
    assert reserved is None and await counters.usage("c-key:1") == (0, 0)


async def test_refused_by_a_budget_leaves_the_limits_taken_for_the_caller_to_give_back(client: Redis) -> None:
    limiter, counters, admission = _stores(client)
    charges = _charges("d", limit=50)
    await counters.load(charges[0], 20)  # 20 + 40 > 50
    await counters.load(charges[1], 0)
    acquired, reserved = await admission.acquire_reserve(_buckets("d"), "req-5", charges, HOLD)
    assert acquired.refused is None
    assert reserved is not None and reserved.refused == 0 and reserved.used == [20, 0]  # every budget read
    assert await counters.usage("d-key:1") == (20, 0) and await counters.usage("d-tenant:1") == (0, 0)
    # Given back as the rate-limit stage does after a budget refusal: the minute is whole again.
    back = [b._replace(amount=-b.amount) for b in _buckets("d")]
    await limiter.adjust(back, [s.slot for s in acquired.states])
    assert [s.used for s in (await limiter.acquire(_buckets("d"))).states] == [1, 300]


async def test_a_counter_not_loaded_is_named_as_the_reservation_names_it(client: Redis) -> None:
    _, counters, admission = _stores(client)
    await counters.load(_charges("e")[0], 0)  # the tenant's counter is not loaded
    acquired, reserved = await admission.acquire_reserve(_buckets("e"), "req-6", _charges("e"), HOLD)
    assert acquired.refused is None
    assert reserved is not None and reserved.missing == (1,) and reserved.refused is None
    assert await counters.usage("e-key:1") == (0, 0)


async def test_a_failing_budgets_part_answers_the_limits_alone_and_logs_redis_s_error_once(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    _, counters, admission = _stores(client)
    charges = _charges("f")
    await counters.load(charges[1], 0)
    await client.set(counter_key(charges[0].key), "not a hash")  # a counter Redis cannot read
    caplog.set_level(logging.WARNING, logger="switchboard.budgets")
    for n in (1, 2):
        acquired, reserved = await admission.acquire_reserve(_buckets("f"), f"req-f{n}", charges, HOLD)
        assert acquired.refused is None and [s.used for s in acquired.states] == [n, 300 * n]
        assert reserved is None  # the budget stage reserves in its own call
    warnings = [r.getMessage() for r in caplog.records if r.name == "switchboard.budgets"]
    assert len(warnings) == 1, warnings  # once, not per request
    assert "WRONGTYPE" in warnings[0] and "reserves in its own call" in warnings[0]
    assert await counters.usage(charges[1].key) == (0, 0)  # the other counter: nothing held


@asynccontextmanager
async def _held(client: Redis) -> AsyncIterator[None]:
    """Redis holds the scripts sent meanwhile (they may write: CLIENT PAUSE WRITE) until the
    block ends, then runs them in the order they came."""
    await client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        yield
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")


async def _cancelled_in_redis(client: Redis, call: Awaitable[Any]) -> None:
    """``call`` sent and held in Redis, then its caller cancelled; returns once Redis has run
    it (and whatever was sent after it), the caller long gone."""
    async with _held(client):
        task = asyncio.ensure_future(call)
        for _ in range(1000):  # until Redis holds the script (each check is a round trip)
            if (await client.info("clients"))["blocked_clients"]:
                break
        else:
            raise AssertionError("the script never reached Redis")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _released(counters: RedisBudgetCounters, charges: list[Charge], spent: int) -> None:
    """Polled on Redis's state, bounded: the first call of a script not yet loaded in Redis is
    answered NOSCRIPT and run again (stores/redis/batch.py), after what was sent next."""
    deadline = time.monotonic() + 10
    while [await counters.usage(c.key) for c in charges] != [(spent, 0)] * len(charges):
        assert time.monotonic() < deadline, [await counters.usage(c.key) for c in charges]


async def test_a_caller_cancelled_while_its_script_is_in_redis_leaves_no_budget_reservation(
    client: Redis
) -> None:
    limiter, counters, admission = _stores(client)
    charges = _charges("g")
    for charge in charges:
        await counters.load(charge, 10)
    await _cancelled_in_redis(client, admission.acquire_reserve(_buckets("g"), "req-g", charges, HOLD))
    # Through the same pipeline, after: answered once Redis has run what was sent before.
    after = await limiter.acquire([b._replace(amount=0) for b in _buckets("g")])
    assert [s.used for s in after.states] == [1, 300]  # the script ran; the limits it took stay
    await _released(counters, charges, 10)  # the reservation it made is gone, not held until it lapses


async def test_a_reservation_of_its_own_cancelled_in_redis_is_not_left_behind(client: Redis) -> None:
    _, counters, _ = _stores(client)
    charges = _charges("h")
    for charge in charges:
        await counters.load(charge, 10)
    await _cancelled_in_redis(client, counters.reserve("req-h", charges, HOLD))
    await _released(counters, charges, 10)
    assert (await counters.reserve("req-h2", charges, HOLD)).used == [10, 10]
