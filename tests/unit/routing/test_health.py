"""Cooldowns and circuit breakers in one process: consecutive failures and failure rates open
a cooldown, the half-open probe lets exactly one request through, its answer decides."""

from __future__ import annotations

import time

import pytest

from switchboard.config.schema import CooldownConfig
from switchboard.context import Reply, RequestContext
from switchboard.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamBadGateway,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.pipeline.attempts import AttemptAbandoned, AttemptStage, DeadlinePassed
from switchboard.routing.health import Health
from switchboard.routing.pinning import PIN_DEPLOYMENT, pinned
from switchboard.routing.router import ANYWHERE, Router
from switchboard.routing.table import Route
from tests.unit.pipeline.attempts_fakes import new_context
from tests.unit.routing.health_world import Clock, route, router

FAIL = UpstreamUnavailable("down")


def _one(health: Health) -> tuple[Router, Route]:
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}], health=health)
    return r, route(r, "g", "a")


def test_consecutive_failures_open_a_cooldown_then_one_probe_decides() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=3, seconds=10), clock=clock)
    _, a = _one(health)
    for _ in range(2):
        health.failed(a, FAIL)
    assert health.take(a, clock.now) is None  # closed: sent, no probe
    health.failed(a, FAIL)
    assert health.take(a, clock.now) is False
    assert health.state(a)["status"] == "cooling_down"
    assert health.state(a)["until"] is not None
    clock.now += 9.9
    assert health.take(a, clock.now) is False
    clock.now += 0.2
    assert health.state(a)["status"] == "half_open"
    probe = health.take(a, clock.now)
    assert isinstance(probe, str)  # this attempt is the probe
    health.started(a, probe)
    assert health.take(a, clock.now) is False  # one at a time
    assert health.take(a, clock.now + 5) is False
    health.succeeded(a, probe)
    assert health.take(a, clock.now) is None
    assert health.state(a) == {"status": "healthy", "until": None, "recent_failures": 0}


def test_a_plan_takes_no_probe_the_attempt_that_sends_takes_it() -> None:
    # Both deployments half-open: the plan lists both and takes neither probe; the attempt that
    # sends to one takes its probe, and the other keeps its own for the next request. (The plan
    # used to take the probe of the deployment it put first, held unused when a pin or a split
    # then sent the request elsewhere.)
    clock = Clock(time.monotonic() - 100)  # the cooldowns below ended long ago in real time
    health = Health(CooldownConfig(failures=1, seconds=10), clock=clock)
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}],
               {"strategy": "round-robin"}, health=health)
    g, a, b = r.group("g"), route(r, "g", "a"), route(r, "g", "b")
    assert g is not None
    health.failed(a, FAIL)
    health.failed(b, FAIL)
    clock.now = time.monotonic()
    assert health.state(a)["status"] == health.state(b)["status"] == "half_open"
    assert [x.deployment for x in r.plan(g)] == ["a", "b"]
    assert [x.deployment for x in r.plan(g)] == ["b", "a"]  # nothing was taken
    probe = r.take(a)
    assert probe
    assert [x.deployment for x in r.plan(g)] == ["b"]  # a's probe is out, b's was kept
    assert r.take(b)
    assert r.plan(g) == []  # one probe each, at a time
    r.started(a, 0, probe)
    r.finished(a, None, 0.1, None, probe)
    assert health.state(a)["status"] == "healthy"


def test_a_retry_takes_a_half_open_deployments_probe_once() -> None:
    # The attempts stage asks Router.take before each retry: a cooling deployment is skipped, a
    # half-open one lets one retry through (its probe), and another request's retry then finds
    # the probe held and goes elsewhere.
    clock = Clock(time.monotonic() - 50)
    health = Health(CooldownConfig(failures=1, seconds=10), clock=clock)
    r, a = _one(health)
    b = route(r, "g", "b")
    health.failed(a, FAIL)  # 50 s ago: half-open now
    clock.now = time.monotonic()
    health.failed(b, FAIL)
    assert r.take(b) is False  # cooling down
    assert health.state(a)["status"] == "half_open"
    probe = r.take(a)  # this retry is the probe
    assert probe
    r.started(a, 0, probe)
    assert r.take(a) is False  # another request's retry: the probe is out
    r.finished(a, None, 0.1, None, probe)
    assert r.take(a) is None and health.state(a)["status"] == "healthy"


def test_a_failed_probe_cools_the_deployment_down_again() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=5), clock=clock)
    _, a = _one(health)
    health.failed(a, UpstreamTimeout("slow"))
    clock.now += 5
    probe = health.take(a, clock.now)
    assert probe
    health.started(a, probe)
    health.failed(a, UpstreamBadGateway("still broken", status=500), probe)
    assert health.take(a, clock.now) is False
    assert health.take(a, clock.now + 4.9) is False
    assert health.take(a, clock.now + 5)


def test_a_probe_let_through_but_never_sent_frees_the_slot() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=1), clock=clock)
    _, a = _one(health)
    health.failed(a, FAIL)
    clock.now += 1
    assert health.take(a, clock.now)  # taken, but never sent
    assert health.take(a, clock.now + 1) is False
    assert health.take(a, clock.now + 5)


NEUTRAL = [
    pytest.param(UpstreamError("bad", status=400), id="upstream-400"),  # the caller's, per the upstream
    pytest.param(UpstreamError("no such thing", status=404), id="upstream-404"),
    pytest.param(UpstreamError("policy", status=400, code="content_policy_violation"), id="content-policy"),
    pytest.param(UpstreamError("too long", status=400, code="context_length_exceeded"), id="context-window"),
    pytest.param(AttemptAbandoned("the client closed the request"), id="client-gone"),
    pytest.param(DeadlinePassed("the request's deadline passed"), id="deadline"),
]


@pytest.mark.parametrize("outcome", NEUTRAL)
def test_a_probe_that_ends_saying_nothing_of_the_deployment_frees_the_slot_at_once(
    outcome: GatewayError,
) -> None:
    # The probe's slot used to stay taken until the probe's total timeout (600 s by default)
    # after such an ending: the deployment took no traffic for ten minutes, not ``seconds``.
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=5), clock=clock)
    r, a = _one(health)
    r.started(a)
    r.finished(a, FAIL, 0.1)
    clock.now += 5
    probe = health.take(a, clock.now)  # the probe
    assert probe
    r.started(a, 0, probe)
    assert health.take(a, clock.now) is False
    r.finished(a, outcome, 0.1, None, probe)
    assert health.state(a)["status"] == "half_open"  # no answer yet: still half-open...
    again = health.take(a, clock.now)  # ... and the next request is the probe
    assert again
    r.started(a, 0, again)
    assert health.take(a, clock.now) is False  # one at a time still
    r.finished(a, None, 0.1, None, again)
    assert health.state(a)["status"] == "healthy"


def test_only_the_attempt_holding_the_probe_frees_it_or_decides_it() -> None:
    # Attempts sent before the breaker opened, ending while the deployment is half-open: one
    # ending saying nothing freed the probe's slot though another attempt held it (two probes
    # out at once), and any answer or failure was taken as the probe's.
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=5), clock=clock)
    r, a = _one(health)
    for _ in range(3):
        r.started(a)  # older requests, in flight
    r.started(a)
    r.finished(a, FAIL, 0.1)  # opens the breaker
    clock.now += 5
    probe = health.take(a, clock.now)
    assert probe
    r.started(a, 0, probe)
    r.finished(a, UpstreamError("bad", status=400), 0.1)  # an older one ends saying nothing
    assert health.take(a, clock.now) is False  # the probe is still out: no second one
    r.finished(a, FAIL, 0.1)  # an older one fails: not the probe's result
    assert health.state(a)["status"] == "half_open"
    r.finished(a, None, 0.1)  # an older one answers: not the probe's result either
    assert health.state(a)["status"] == "half_open" and health.take(a, clock.now) is False
    r.finished(a, UpstreamError("bad", status=400), 0.1, None, probe)  # the probe ends saying nothing
    newer = health.take(a, clock.now)
    assert newer and newer != probe
    r.started(a, 0, newer)
    health.released(a, probe)  # a late release of the older probe frees nothing
    assert health.take(a, clock.now) is False
    r.finished(a, FAIL, 0.1, None, newer)  # the probe's failure decides
    assert health.state(a)["status"] == "cooling_down"


def test_a_probe_of_the_one_deployment_that_may_not_cool_down_is_freed_too() -> None:
    # A cooldown adopted for a deployment the router never takes out (a group of one): an
    # ending that counts as nothing still goes to Health, which frees the probe.
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=5), clock=clock)
    r = router([{"name": "solo"}], health=health)
    solo = r.group("solo")
    assert solo is not None and solo.single is not None and not r.may_cool_down(solo.single)
    health.failed(solo.single, FAIL)
    clock.now += 5
    probe = health.take(solo.single, clock.now)
    assert probe
    r.started(solo.single, 0, probe)
    r.finished(solo.single, AttemptAbandoned("gone"), 0.1, None, probe)
    assert health.take(solo.single, clock.now)


def test_a_success_resets_the_streak() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=2), clock=clock)
    _, a = _one(health)
    for _ in range(5):
        health.failed(a, FAIL)
        health.succeeded(a)
    assert health.take(a, clock.now) is None
    assert health.state(a)["recent_failures"] == 5


@pytest.mark.parametrize("error", [
    InvalidRequest("bad"),  # the gateway refused the caller
    RateLimited("own limit"),  # the gateway's own rate limit, not the provider's
    UpstreamError("no such thing", status=404),  # the caller's request, per the upstream
    UpstreamError("policy", status=400, code="content_policy_violation"),
])
def test_failures_outside_the_configured_classes_do_not_count(error: GatewayError) -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1), clock=clock)
    _, a = _one(health)
    health.failed(a, error)
    assert health.take(a, clock.now) is None
    assert health.state(a)["status"] == "healthy"


def test_a_failure_rate_within_the_window_opens_a_cooldown() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1000, failure_rate=0.5, min_requests=10, window_seconds=10),
                    clock=clock)
    _, a = _one(health)
    for i in range(8):  # 4 of 8: under min_requests
        clock.now += 0.1
        if i % 2:
            health.failed(a, FAIL)
        else:
            health.succeeded(a)
    assert health.eligible(a, clock.now)
    clock.now += 20  # the window moves on: those are forgotten
    for _ in range(6):
        health.succeeded(a)
    for _ in range(3):
        health.failed(a, FAIL)
    assert health.eligible(a, clock.now)  # 3 of 9
    health.failed(a, FAIL)  # 4 of 10: under 50 %
    assert health.eligible(a, clock.now)
    health.failed(a, FAIL)
    health.failed(a, FAIL)  # 6 of 12
    assert not health.eligible(a, clock.now)


def test_the_router_plans_around_a_cooling_deployment_and_refuses_with_503_naming_the_group() -> None:
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}],
               {"cooldown": {"failures": 1, "seconds": 60}})
    a, b = route(r, "g", "a"), route(r, "g", "b")
    g = r.group("g")
    assert g is not None
    r.started(a)
    r.finished(a, FAIL, 0.1)
    assert r.plan(g) == [b]
    r.started(b)
    r.finished(b, UpstreamTimeout("slow"), 0.1)
    assert r.plan(g) == []
    refusal = r.refusal(g)
    assert refusal.status == 503 and refusal.code == "no_healthy_deployment"
    assert "'g'" in refusal.message
    assert r.health.state(a)["status"] == "cooling_down"
    assert r.health.state(b)["recent_failures"] == 1


def test_the_one_deployment_of_a_group_without_fallbacks_is_never_taken_out() -> None:
    r = router([{"name": "solo"}, {"name": "backed"}, {"name": "spare"}],
               {"cooldown": {"failures": 2, "seconds": 60}, "fallbacks": {"backed": ["spare"]}})
    solo, backed = r.group("solo"), r.group("backed")
    assert solo is not None and solo.single is not None
    assert backed is not None and backed.single is not None
    for _ in range(5):
        r.finished(solo.single, FAIL, 0.1)
        r.finished(backed.single, FAIL, 0.1)
    # Nowhere else to go: the provider's own errors are better than a 503.
    assert r.plan(solo) == [solo.single]
    # With a fallback, taking it out sends requests there at once.
    assert r.plan(backed) == []
    assert r.health.eligible(backed.single, time.monotonic() + 61)


async def test_a_pinned_request_takes_the_probe_of_the_deployment_it_is_sent_to() -> None:
    # Both deployments half-open, the request pinned to the one the plan puts second: the plan
    # used to take the first one's probe (held unused while the request went elsewhere) and send
    # the pinned one without taking its probe (a second probe could go out at once).
    clock = Clock(time.monotonic() - 100)
    health = Health(CooldownConfig(failures=1, seconds=10), clock=clock)
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}],
               {"strategy": "round-robin", "allow_pinning": True}, health=health)
    g, a, b = r.group("g"), route(r, "g", "a"), route(r, "g", "b")
    assert g is not None
    health.failed(a, FAIL)
    health.failed(b, FAIL)
    clock.now = time.monotonic()
    candidates = pinned(r, g, ANYWHERE, {PIN_DEPLOYMENT: "b"})
    assert candidates == [b]
    assert health.eligible(a, time.monotonic())  # nothing taken for a, which is not sent
    held: list[bool] = []

    async def upstream(ctx: RequestContext) -> Reply:
        held.append(health.take(b, time.monotonic()) is False)  # b's probe is out: this one
        return Reply({"ok": True})

    await AttemptStage(r)(new_context(group=g, candidates=candidates), upstream)
    assert held == [True]
    assert health.state(b)["status"] == "healthy"  # the probe's answer decided
    assert health.state(a)["status"] == "half_open" and health.take(a, time.monotonic())
