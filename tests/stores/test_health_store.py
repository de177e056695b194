"""The shared deployment health in Redis (stores/redis/health.py): the failure streak spans
callers, a cooldown opens at the threshold or when forced, one caller at a time claims the
half-open probe, and the probe's answer ends the cooldown. Time is the backend's clock."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from switchboard.stores.redis.health import RedisHealth
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_streaks_cooldowns_and_probe_claims(cluster: Backend) -> None:
    here = cluster.stores.health
    there = (await cluster.peer()).health
    assert here is not None and there is not None
    assert (await here.failed("g", "d", 3, 5000)) == (False, 0)
    assert (await there.failed("g", "d", 3, 5000)) == (False, 0)
    assert (await here.failed("g", "d", 3, 5000)) == (True, 5000)  # the third, across callers
    assert (await there.failed("g", "d", 3, 5000)) == (False, 5000)  # already out
    assert await there.cooling_ms("g", "d") == 5000
    assert (await here.claim_probe("g", "d", 1000, "here")).cooling_ms == 5000  # no probe while cooling
    cluster.clock.advance(5)
    assert await here.cooling_ms("g", "d") == 0
    assert (await here.claim_probe("g", "d", 60_000, "here")) == (True, 0)
    assert (await there.claim_probe("g", "d", 60_000, "there")) == (False, 0)  # one at a time
    # The probe failed: out again at once, whatever the streak.
    assert (await here.failed("g", "d", 3, 5000, force=True)) == (True, 5000)
    cluster.clock.advance(5)
    assert (await there.claim_probe("g", "d", 60_000, "there")) == (True, 0)  # the old claim is gone
    await there.succeeded("g", "d", probe=True)
    assert await here.cooling_ms("g", "d") == 0
    assert (await here.claim_probe("g", "d", 60_000, "here")) == (True, 0)


async def test_only_the_holder_extends_a_probe_claim_and_an_unused_one_lapses(cluster: Backend) -> None:
    here = cluster.stores.health
    there = (await cluster.peer()).health
    assert here is not None and there is not None
    assert (await here.claim_probe("g", "p", 200, "here")) == (True, 0)
    assert not await there.extend_probe("g", "p", 60_000, "there")  # not its claim
    assert (await here.claim_probe("g", "p", 200, "here")) == (True, 0)  # its own, asked again
    assert (await there.claim_probe("g", "p", 200, "there")) == (False, 0)
    await _lapse(cluster, "g", "p")
    assert (await there.claim_probe("g", "p", 200, "there")) == (True, 0)  # the unused claim lapsed
    assert await there.extend_probe("g", "p", 60_000, "there")  # the probe is out: kept
    assert (await here.claim_probe("g", "p", 200, "here")) == (False, 0)


async def test_only_the_holder_releases_a_probe_claim_and_then_anyone_may_claim(cluster: Backend) -> None:
    here = cluster.stores.health
    there = (await cluster.peer()).health
    assert here is not None and there is not None
    assert (await here.claim_probe("g", "r", 60_000, "here")) == (True, 0)
    assert await here.extend_probe("g", "r", 600_000, "here")  # the probe is out
    assert not await there.release_probe("g", "r", "there")  # not its claim
    assert (await there.claim_probe("g", "r", 60_000, "there")) == (False, 0)
    assert await here.release_probe("g", "r", "here")  # the probe ended saying nothing
    assert (await there.claim_probe("g", "r", 60_000, "there")) == (True, 0)  # at once
    assert not await here.release_probe("g", "r", "here")  # no longer its claim


async def test_an_older_probe_of_the_same_instance_cannot_free_a_newer_claim(cluster: Backend) -> None:
    here = cluster.stores.health
    there = (await cluster.peer()).health
    assert here is not None and there is not None
    assert (await here.claim_probe("g", "s", 60_000, "here:1")) == (True, 0)
    # The same instance asks anew for a newer probe: the claim passes to its token.
    assert (await here.claim_probe("g", "s", 60_000, "here:2")) == (True, 0)
    assert not await here.release_probe("g", "s", "here:1")  # the older probe's late release
    assert not await here.extend_probe("g", "s", 60_000, "here:1")
    assert (await there.claim_probe("g", "s", 60_000, "there:1")) == (False, 0)  # still held
    assert await here.release_probe("g", "s", "here:2")
    assert (await there.claim_probe("g", "s", 60_000, "there:1")) == (True, 0)


async def test_an_answer_resets_the_streak_but_not_a_cooldown(cluster: Backend) -> None:
    health = cluster.stores.health
    assert health is not None
    await health.failed("g", "e", 2, 1000)
    await health.succeeded("g", "e")
    assert (await health.failed("g", "e", 2, 1000)) == (False, 0)  # the streak started again
    assert (await health.failed("g", "e", 2, 1000)).opened
    await health.succeeded("g", "e")  # a request sent before the cooldown answered
    assert await health.cooling_ms("g", "e") == 1000
    assert await health.cooling_ms("g", "other") == 0


async def test_the_deployments_out_are_listed_for_an_instance_that_starts(cluster: Backend) -> None:
    here = cluster.stores.health
    there = (await cluster.peer()).health
    assert here is not None and there is not None
    group = f"out-{uuid.uuid4().hex[:8]}"

    def mine(out: dict[tuple[str, str], int]) -> dict[str, int]:
        return {d: ms for (g, d), ms in out.items() if g == group}

    await here.failed(group, "streak", 3, 5000)  # failing, not out
    assert (await here.failed(group, "cold", 1, 5000)).opened
    assert (await here.failed(group, "warm", 1, 2000)).opened
    assert mine(await there.out()) == {"cold": 5000, "warm": 2000}
    cluster.clock.advance(3)
    assert mine(await there.out()) == {"cold": 2000, "warm": 0}  # warm is half-open
    await there.succeeded(group, "warm", probe=True)  # its probe answered: back
    assert mine(await here.out()) == {"cold": 2000}
    await there.succeeded(group, "cold")  # an answer that is not the probe's: still out
    assert mine(await here.out()) == {"cold": 2000}


async def test_embedded_stores_keep_health_in_the_process(backend: Backend) -> None:
    assert (backend.stores.health is None) == (backend.kind == "embedded")


async def _lapse(cluster: Backend, group: str, deployment: str) -> None:
    """Wait (bounded) until Redis expires the probe claim: its TTL runs on Redis's own clock."""
    assert cluster.redis is not None
    client = Redis.from_url(cluster.redis)
    key = RedisHealth._key(group, deployment) + ":probe"
    deadline = time.monotonic() + 5
    try:
        while await client.exists(key):
            assert time.monotonic() < deadline, "the claim never lapsed"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
