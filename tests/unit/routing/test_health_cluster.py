"""Cooldowns shared through Redis: a cooldown opened by one instance is seen by another within
a second, the failure streak spans instances, one instance at a time sends the half-open
probe, and an unreachable Redis leaves each instance on its own state without failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from switchboard.config.schema import CooldownConfig
from switchboard.errors import UpstreamError, UpstreamUnavailable
from switchboard.routing.health import Health
from switchboard.routing.table import Route
from switchboard.stores.protocols import Claim, Failure
from switchboard.stores.redis.client import connect
from switchboard.stores.redis.feed import RedisFeed
from switchboard.stores.redis.health import RedisHealth
from tests.services import RedisServer
from tests.unit.routing.health_world import route, router

FAIL = UpstreamUnavailable("down")
BAD_REQUEST = UpstreamError("the caller's bad request", status=400)
DEADLINE = 3.0


pytestmark = pytest.mark.asyncio(loop_scope="session")

Pair = Callable[[CooldownConfig], Awaitable[tuple[Health, Health]]]


async def _instance(url: str, config: CooldownConfig) -> tuple[Health, list[Callable[[], object]]]:
    client = await connect(url)
    feed = RedisFeed(client)
    health = Health(config)
    await health.start(RedisHealth(client), feed)
    return health, [health.close, feed.close, client.aclose]


@pytest_asyncio.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[Pair]:
    redis_server.flush()
    closers: list[Callable[[], object]] = []

    async def make(config: CooldownConfig) -> tuple[Health, Health]:
        first, c1 = await _instance(redis_server.url, config)
        second, c2 = await _instance(redis_server.url, config)
        closers.extend(c1 + c2)
        return first, second

    yield make
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result


def _deployment() -> Route:
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}])
    return route(r, "g", "a")


def _took(health: Health, a: Route, taken: list[str]) -> bool:
    """Whether ``health`` gave ``a``'s probe to an attempt now (its token kept in ``taken``)."""
    probe = health.take(a, time.monotonic())
    if probe:
        taken.append(probe)
    return bool(probe)


async def _until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> float:
    """Poll ``condition`` until true; the seconds it took (fails after ``deadline``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < deadline, what
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_cooldown_opened_by_one_instance_is_seen_by_the_other_within_a_second(pair: Pair) -> None:
    first, second = await pair(CooldownConfig(failures=3, seconds=30))
    a = _deployment()
    for _ in range(3):
        first.failed(a, FAIL)
    assert not first.eligible(a, time.monotonic())
    took = await _until(lambda: not second.eligible(a, time.monotonic()), "the other instance never saw it")
    assert took < 1.0
    assert second.state(a)["status"] == "cooling_down"


async def test_an_instance_started_later_takes_on_the_cooldowns_and_half_open_deployments(
        pair: Pair, redis_server: RedisServer) -> None:
    # An instance that starts hears nothing of the cooldowns the feed announced before: it used
    # to send each deployment out of traffic one request (failing) before Redis told it.
    first, _ = await pair(CooldownConfig(failures=1, seconds=30))
    quick = router([{"name": "q", "deployment": "a"}, {"name": "q", "deployment": "b"}])
    a, q = _deployment(), route(quick, "q", "a")
    first.failed(a, FAIL)
    first.failed(q, FAIL, None)
    await _until(lambda: not first._tasks, "the failures were never reported")
    client = await connect(redis_server.url)
    try:
        # q's cooldown ended a moment ago, no probe has answered: half-open everywhere.
        await client.hset(RedisHealth._key("q", "a"), "until", "1")
        later = Health(CooldownConfig(failures=1, seconds=30))
        await later.start(RedisHealth(client), None)
        try:
            assert later.state(a)["status"] == "cooling_down"
            assert later.take(a, time.monotonic()) is False
            assert later.state(q)["status"] == "half_open"
            assert later.state(route(quick, "q", "b"))["status"] == "healthy"
            # The half-open one goes to a single probe, claimed in Redis as on every instance.
            waiting = later.claims([q])
            assert waiting is not None
            await waiting
            probe = later.take(q, time.monotonic())
            assert probe
            later.started(q, probe)
            later.succeeded(q, probe)
            await _until(lambda: not later._tasks, "the recovery was never reported")
            assert await RedisHealth(client).out() == {("g", "a"): pytest.approx(30_000, abs=2_000)}
        finally:
            await later.close()
    finally:
        await client.aclose()


async def test_the_failure_streak_spans_instances(pair: Pair) -> None:
    first, second = await pair(CooldownConfig(failures=3, seconds=30))
    a = _deployment()
    first.failed(a, FAIL)
    first.failed(a, FAIL)
    # Nothing is awaited by the caller: the reports run in the background.
    await _until(lambda: not first._tasks, "the failures were never reported")
    second.failed(a, FAIL)  # the third failure, on the other instance
    await _until(lambda: not first.eligible(a, time.monotonic()), "the streak did not open the cooldown")
    await _until(lambda: not second.eligible(a, time.monotonic()), "the streak did not open the cooldown")


async def test_one_instance_at_a_time_probes_and_its_answer_reaches_every_instance(pair: Pair) -> None:
    first, second = await pair(CooldownConfig(failures=1, seconds=0.3))
    a = _deployment()
    first.failed(a, FAIL)
    await _until(lambda: not second.eligible(a, time.monotonic()), "the other instance never saw it")
    granted: list[tuple[Health, str]] = []
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        for health in (first, second):
            if probe := health.take(a, time.monotonic()):
                granted.append((health, probe))
                health.started(a, probe)
        await asyncio.sleep(0.01)
    assert len(granted) == 1, "exactly one probe across both instances"
    prober, probe = granted[0]
    other = second if prober is first else first
    assert other.take(a, time.monotonic()) is False
    prober.succeeded(a, probe)
    assert prober.take(a, time.monotonic()) is None
    await _until(lambda: other.take(a, time.monotonic()) is None, "the recovery never reached the other")
    assert other.state(a)["status"] == "healthy"


async def test_a_probe_that_ends_saying_nothing_releases_its_claim_to_every_instance(pair: Pair) -> None:
    # The probe's holder extends its claim to the probe's whole timeout once it is sent; a
    # probe ending in a caller's 400 (or the client leaving) kept that claim, so no instance
    # could probe for ten minutes. Now its holder drops it and any instance probes at once.
    first, second = await pair(CooldownConfig(failures=1, seconds=0.3))
    a = _deployment()
    first.failed(a, FAIL)
    await _until(lambda: not second.eligible(a, time.monotonic()), "the other instance never saw it")
    taken: list[str] = []
    await _until(lambda: _took(first, a, taken), "no probe was granted", deadline=DEADLINE)
    first.started(a, taken[0])  # the probe is sent: its claim now outlasts it
    await _until(lambda: not first._tasks, "the claim was never extended")
    assert second.take(a, time.monotonic()) is False
    first.failed(a, BAD_REQUEST, taken[0])
    await _until(lambda: _took(second, a, taken), "the claim was never released")
    second.started(a, taken[1])
    second.succeeded(a, taken[1])
    await _until(lambda: first.state(a)["status"] == "healthy", "the recovery never reached the other")


async def test_an_older_attempt_ending_saying_nothing_leaves_the_probes_claim(pair: Pair) -> None:
    # An attempt sent before the breaker opened, ending in a caller's 400 on the instance that
    # holds the probe, dropped that instance's claim: another instance then sent a second probe.
    first, second = await pair(CooldownConfig(failures=1, seconds=0.3))
    a = _deployment()
    first.failed(a, FAIL)
    await _until(lambda: not second.eligible(a, time.monotonic()), "the other instance never saw it")
    taken: list[str] = []
    await _until(lambda: _took(first, a, taken), "no probe was granted", deadline=DEADLINE)
    first.started(a, taken[0])
    first.failed(a, BAD_REQUEST)  # the older attempt: no probe of its own
    await _until(lambda: not first._tasks, "the claim was never extended")
    await _until(lambda: second.state(a)["status"] == "half_open", "the other is not half-open")
    assert second.take(a, time.monotonic()) is False  # asks Redis for the claim...
    await _until(lambda: not second._tasks, "the claim was never asked for")
    assert second.take(a, time.monotonic()) is False  # ... refused: the probe holds it
    first.succeeded(a, taken[0])
    await _until(lambda: second.take(a, time.monotonic()) is None, "the recovery never reached the other")


async def test_the_first_request_after_a_cooldown_waits_for_the_claim_and_is_the_probe(pair: Pair) -> None:
    # The request finding the cooldown over only started the claim in the background and was
    # refused; the claim lapsed after 5 s, so an instance seeing one request per more than 5 s
    # never probed. Now the request awaits the claim first (one Redis call) and takes the probe.
    first, second = await pair(CooldownConfig(failures=1, seconds=0.3))
    a = _deployment()
    b = route(router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}]), "g", "b")
    assert first.claims([a, b]) is None  # nothing out: nothing to wait for
    first.failed(a, FAIL)
    await _until(lambda: second.state(a)["status"] == "half_open", "the other never saw the cooldown end")
    await _until(lambda: first.state(a)["status"] == "half_open", "the cooldown never ended")
    claims = second.claims([a, b])
    assert claims is not None
    await claims
    probe = second.take(a, time.monotonic())
    assert probe, "the request that waited for the claim is the probe"
    second.started(a, probe)
    # The other instance asks too, and is refused while that probe is out.
    other = first.claims([a, b])
    assert other is not None
    await other
    assert first.take(a, time.monotonic()) is False
    second.succeeded(a, probe)
    await _until(lambda: first.take(a, time.monotonic()) is None, "the recovery never reached the other")
    assert first.claims([a, b]) is None


class _Down:
    """A Redis that cannot be reached."""

    async def failed(self, group: str, deployment: str, threshold: int, cooldown_ms: int,
                     force: bool = False) -> Failure:
        raise ConnectionError("redis is down")

    async def succeeded(self, group: str, deployment: str, probe: bool = False) -> None:
        raise ConnectionError("redis is down")

    async def claim_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> Claim:
        raise ConnectionError("redis is down")

    async def extend_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> bool:
        raise ConnectionError("redis is down")

    async def release_probe(self, group: str, deployment: str, holder: str) -> bool:
        raise ConnectionError("redis is down")

    async def cooling_ms(self, group: str, deployment: str) -> int:
        raise ConnectionError("redis is down")

    async def out(self) -> dict[tuple[str, str], int]:
        raise ConnectionError("redis is down")


async def test_an_unreachable_redis_leaves_the_state_in_this_process() -> None:
    health = Health(CooldownConfig(failures=2, seconds=0.2))
    await health.start(_Down(), None)
    a = _deployment()
    health.failed(a, FAIL)
    health.failed(a, FAIL)
    assert not health.eligible(a, time.monotonic())
    await _until(lambda: not health._tasks, "the reports never ended")
    # Half-open: the claim fails, the probe is granted on this instance's own say.
    taken: list[str] = []
    await _until(lambda: _took(health, a, taken), "no probe without redis")
    health.started(a, taken[0])
    health.succeeded(a, taken[0])
    assert health.state(a)["status"] == "healthy"
    await _until(lambda: not health._tasks, "the reports never ended")
    await health.close()
