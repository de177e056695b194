"""A Redis that accepts connections and never answers (SIGSTOP), at store level: after the first
reply timeout every call near the request path fails at once, with the same error, until a PING
in the background is answered (stores/redis/silence.py). Over the wire and over redis-py's
pipeline (what a TLS URL uses: any connection class but the plain ones selects it), and for the
single redis-py calls: a budget counter's rebuild (load, usage, lost_ago), a settlement tried
again, a half-open probe's claim, a change-feed publish, the shared cache's calls (MCP OAuth
states, MCP pass-through clients). One mark per client, whichever call timed out first."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.stores.protocols import Again, Bucket, Charge
from switchboard.stores.redis import silence as silence_module
from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.budgets import RedisBudgetCounters
from switchboard.stores.redis.cache import RedisCache
from switchboard.stores.redis.feed import CHANNEL, RedisFeed
from switchboard.stores.redis.health import RedisHealth
from switchboard.stores.redis.limits import RedisRateLimiter
from switchboard.stores.redis.silence import silence_for
from tests.services import RedisServer, start_redis

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT = 0.3  # the clients' reply and connect timeouts
AT_ONCE = 0.1  # a call failing "at once": well under one timeout
BUCKET = Bucket("key:w:rpm", 100, 60, 1)
CHARGE = Charge("bud_1:0", 1_000, 10, 3600.0)


class TlsLike(Connection):
    """Any connection class but the plain ones keeps redis-py's pipeline (as a TLS URL does)."""


@pytest.fixture
def frozen_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (it is stopped and resumed); running at first."""
    server = start_redis()
    try:
        yield server
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()


@pytest_asyncio.fixture(params=["wire", "redis-py"])
async def client(request: pytest.FixtureRequest, frozen_redis: RedisServer,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Redis]:
    monkeypatch.setattr(silence_module, "PROBE_SECONDS", 0.05)
    kind = {"connection_class": TlsLike} if request.param == "redis-py" else {}
    pool = ConnectionPool.from_url(frozen_redis.url, socket_timeout=TIMEOUT,
                                   socket_connect_timeout=TIMEOUT, **kind)
    client = Redis(connection_pool=pool)
    assert (batch_for(client)._wire is None) == (request.param == "redis-py")
    yield client
    await batch_for(client).close()
    await client.aclose()


async def _fails_at_once(call: Callable[[], Awaitable[Any]]) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RedisTimeoutError, match="has not answered"):
        await call()
    assert loop.time() - started < AT_ONCE


async def _answering_again(client: Redis) -> None:
    async with asyncio.timeout(10):
        while silence_for(client).silent:  # the probe's PING, every PROBE_SECONDS
            await asyncio.sleep(0.02)


async def test_the_request_path_scripts_fail_at_once_until_redis_answers_again(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    limiter, counters = RedisRateLimiter(client), RedisBudgetCounters(client)
    assert (await limiter.acquire([BUCKET])).refused is None
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    with pytest.raises(RedisTimeoutError):  # the call in flight waits out the timeout
        await limiter.acquire([BUCKET])
    for _ in range(3):
        await _fails_at_once(lambda: limiter.acquire([BUCKET]))
        await _fails_at_once(lambda: counters.reserve("r1", [CHARGE], 60.0))
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    assert (await limiter.acquire([BUCKET])).refused is None


async def test_a_counter_rebuild_a_settlement_again_and_a_probe_claim_fail_at_once(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    counters, health = RedisBudgetCounters(client), RedisHealth(client)
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    with pytest.raises(RedisTimeoutError):  # a single redis-py call sets the client's mark too
        await counters.usage(CHARGE.key)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: counters.usage(CHARGE.key),
        lambda: counters.load(CHARGE, 5),
        lambda: counters.lost_ago(),
        lambda: counters.settle("r1", [(CHARGE.key, 3)], Again(1.0, 60.0)),
        lambda: health.claim_probe("group", "dep", 5_000, "inst:1"),
        lambda: RedisRateLimiter(client).acquire([BUCKET]),  # the batch shares the mark
    ]
    for call in calls:
        await _fails_at_once(call)
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    assert await counters.usage(CHARGE.key) is None
    await counters.load(CHARGE, 5)
    assert await counters.usage(CHARGE.key) == (5, 0)
    assert (await health.claim_probe("group", "dep", 5_000, "inst:1")).claimed


async def test_a_timed_out_batch_marks_the_single_calls_silent(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    counters = RedisBudgetCounters(client)
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    with pytest.raises(RedisTimeoutError):
        await RedisRateLimiter(client).acquire([BUCKET])
    await _fails_at_once(lambda: counters.load(CHARGE, 5))
    await _fails_at_once(lambda: RedisHealth(client).claim_probe("group", "dep", 5_000, "inst:1"))


async def test_every_shared_health_call_fails_at_once_while_redis_is_silent(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    """The reports after each answer (a failure, a success, a probe's extension and release)
    and the breaker sweep's read hold no task for the reply timeout once Redis went quiet."""
    health = RedisHealth(client)
    assert not (await health.failed("group", "dep", 3, 5_000)).opened
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    with pytest.raises(RedisTimeoutError):  # the report in flight waits out the timeout
        await health.failed("group", "dep", 3, 5_000)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: health.failed("group", "dep", 3, 5_000),
        lambda: health.failed("group", "dep", 3, 5_000, force=True),
        lambda: health.succeeded("group", "dep"),
        lambda: health.succeeded("group", "dep", probe=True),
        lambda: health.extend_probe("group", "dep", 5_000, "inst:1"),
        lambda: health.release_probe("group", "dep", "inst:1"),
        lambda: health.cooling_ms("group", "dep"),
        lambda: health.out(),
    ]
    for call in calls:
        await _fails_at_once(call)
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    assert (await health.failed("group", "dep", 3, 5_000, force=True)).opened
    assert await health.cooling_ms("group", "dep") > 0
    assert set(await health.out()) == {("group", "dep")}
    await health.succeeded("group", "dep", probe=True)
    assert await health.cooling_ms("group", "dep") == 0


async def test_every_shared_cache_call_fails_at_once_while_redis_is_silent(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    """An MCP OAuth state or pass-through client looked up while Redis is silent: the request
    is not held for the reply timeout on each call (and a cache call timing out sets the mark)."""
    cache = RedisCache(client)
    await cache.set("state", b"one", 60)
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    with pytest.raises(RedisTimeoutError):  # the call in flight waits out the timeout, and marks it
        await cache.get("state")
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: cache.get("state"),
        lambda: cache.set("state", b"two", 60),
        lambda: cache.add("other", b"two", 60),
        lambda: cache.take("state"),
        lambda: cache.delete("state"),
        lambda: cache.touch("state", 60, b"o"),  # an MCP session's lookup: a script of the batch
        lambda: RedisRateLimiter(client).acquire([BUCKET]),  # the request path shares the mark
    ]
    for call in calls:
        await _fails_at_once(call)
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    assert await cache.touch("state", 60, b"o") == b"one"
    assert await cache.take("state") == b"one"
    assert await cache.add("state", b"three", 60) and await cache.get("state") == b"three"
    await cache.delete("state")
    assert await cache.get("state") is None


async def test_scripts_run_again_after_noscript_fail_at_once_once_redis_goes_quiet(
    client: Redis, frozen_redis: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flushed script cache answers the batch NOSCRIPT; its calls then run alone, one after
    the other. Redis going quiet right after: the first waits out the timeout, the rest fail at
    once rather than each waiting its own."""
    limiter = RedisRateLimiter(client)
    assert (await limiter.acquire([BUCKET])).refused is None
    await client.script_flush()
    batch = batch_for(client)
    settle = batch._settle

    replied: list[list[Any]] = []

    def then_quiet(calls: Any, results: list[Any]) -> None:  # the batch's own replies, then SIGSTOP
        replied.append(results)
        frozen_redis.proc.send_signal(signal.SIGSTOP)
        settle(calls, results)

    monkeypatch.setattr(batch, "_settle", then_quiet)
    results = await asyncio.gather(*(limiter.acquire([BUCKET]) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(r, RedisTimeoutError) for r in results), results
    assert sum("has not answered" in str(r) for r in results) == 3, results
    assert len(replied) == 1 and len(replied[0]) == 4  # one round trip for the four, answered
    assert all(isinstance(r, ResponseError) for r in replied[0]), replied  # NOSCRIPT each
    monkeypatch.setattr(batch, "_settle", settle)
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    assert (await limiter.acquire([BUCKET])).refused is None


async def _publishes_at_once(feed: RedisFeed) -> None:
    """A publish while Redis is silent returns at once (best effort: it never raises)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await feed.publish("keys", "key_1")
    assert loop.time() - started < AT_ONCE


async def test_a_change_feed_publish_honours_the_mark_and_leaves_setting_it_to_the_reply_timeout(
    client: Redis, frozen_redis: RedisServer,
) -> None:
    """An admin revoking keys one after the other while Redis is silent: each change is stored
    and published, and no publish waits its timeout once the mark is set by a call of the
    request path. A publish's own bound (1 s by default, shorter than the reply timeout) does not
    set it: a Redis merely slow for a second would otherwise fail every guarded call."""
    limiter = RedisRateLimiter(client)
    feed = RedisFeed(client, publish_timeout=TIMEOUT / 2)
    await feed.publish("keys", "key_0")
    frozen_redis.proc.send_signal(signal.SIGSTOP)
    await feed.publish("keys", "key_1")  # the publish in flight waits out its own bound...
    assert not silence_for(client).silent  # ... and leaves the mark alone
    with pytest.raises(RedisTimeoutError):  # a request-path call sets the mark...
        await limiter.acquire([BUCKET])
    for _ in range(3):
        await _publishes_at_once(feed)  # ... which every publish honours
    frozen_redis.proc.send_signal(signal.SIGCONT)
    await _answering_again(client)
    # Redis answering again: a publish reaches the subscribers.
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(CHANNEL + "keys")
        async with asyncio.timeout(10):
            assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"  # type: ignore[index]
            await feed.publish("keys", "key_2")
            message = await pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"key_2", message
    finally:
        await pubsub.aclose()
