"""Cooldowns and circuit breakers in one process: consecutive failures and failure rates open
a cooldown, the half-open probe lets exactly one request through, its answer decides."""

from __future__ import annotations

import time

import pytest

from switchboard.config.schema import CooldownConfig
from switchboard.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamBadGateway,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.pipeline.attempts import AttemptAbandoned, DeadlinePassed
from switchboard.routing.health import Health
from switchboard.routing.router import Router
from switchboard.routing.table import Route
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
    assert health.available(a, clock.now)
    health.failed(a, FAIL)
    assert not health.available(a, clock.now)
    assert health.state(a)["status"] == "cooling_down"
    assert health.state(a)["until"] is not None
    clock.now += 9.9
    assert not health.available(a, clock.now)
    clock.now += 0.2
    assert health.state(a)["status"] == "half_open"
    assert health.available(a, clock.now)  # the probe
    health.started(a)
    assert not health.available(a, clock.now)  # one at a time
    assert not health.available(a, clock.now + 5)
    health.succeeded(a)
    assert health.available(a, clock.now)
    assert health.state(a) == {"status": "healthy", "until": None, "recent_failures": 0}


def test_a_plan_takes_the_probe_of_the_deployment_it_tries_first_and_leaves_the_others() -> None:
    # Both deployments half-open: the plan tries ``a`` first (round-robin) and takes its probe;
    # ``b``, planned behind it and not tried, keeps its own for the next request. (Taking every
    # planned deployment's probe left ``b`` out until its grant lapsed, request after request,
    # for as long as the strategy put it second.)
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
    assert [x.deployment for x in r.plan(g)] == ["b"]  # a's probe is out, b's was kept
    assert r.plan(g) == []  # one probe each, at a time
    # A retry reaching a half-open deployment the plan did not take the probe for makes it
    # the probe: its answer brings it back, as for any probe.
    clock.now = time.monotonic() - 50
    health.failed(a, FAIL)  # the probe failed: out again, half-open again 10 s later
    clock.now = time.monotonic()
    assert health.eligible(a, clock.now)
    r.started(a)
    assert not health.eligible(a, time.monotonic())
    r.finished(a, None, 0.1)
    assert health.state(a)["status"] == "healthy"


def test_a_retry_asks_the_router_and_takes_a_half_open_deployments_probe_once() -> None:
    # The attempts stage asks Router.available before each retry: a cooling deployment is
    # skipped, a half-open one lets one retry through (its probe), and another request's retry
    # then finds the probe held and goes elsewhere (before, both were sent: two probes).
    clock = Clock(time.monotonic() - 50)
    health = Health(CooldownConfig(failures=1, seconds=10), clock=clock)
    r, a = _one(health)
    b = route(r, "g", "b")
    health.failed(a, FAIL)  # 50 s ago: half-open now
    clock.now = time.monotonic()
    health.failed(b, FAIL)
    assert not r.available(b)  # cooling down
    assert health.state(a)["status"] == "half_open"
    assert r.available(a)  # this retry is the probe
    r.started(a)
    assert not r.available(a)  # another request's retry: the probe is out
    r.finished(a, None, 0.1)
    assert r.available(a) and health.state(a)["status"] == "healthy"


def test_a_failed_probe_cools_the_deployment_down_again() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=5), clock=clock)
    _, a = _one(health)
    health.failed(a, UpstreamTimeout("slow"))
    clock.now += 5
    assert health.available(a, clock.now)
    health.started(a)
    health.failed(a, UpstreamBadGateway("still broken", status=500))
    assert not health.available(a, clock.now)
    assert not health.available(a, clock.now + 4.9)
    assert health.available(a, clock.now + 5)


def test_a_probe_let_through_but_never_sent_frees_the_slot() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=1, seconds=1), clock=clock)
    _, a = _one(health)
    health.failed(a, FAIL)
    clock.now += 1
    assert health.available(a, clock.now)  # planned, but another answered
    assert not health.available(a, clock.now + 1)
    assert health.available(a, clock.now + 5)


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
    assert health.available(a, clock.now)  # the probe
    r.started(a)
    assert not health.available(a, clock.now)
    r.finished(a, outcome, 0.1)
    assert health.state(a)["status"] == "half_open"  # no answer yet: still half-open...
    assert health.available(a, clock.now)  # ... and the next request is the probe
    r.started(a)
    assert not health.available(a, clock.now)  # one at a time still
    r.finished(a, None, 0.1)
    assert health.state(a)["status"] == "healthy"


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
    assert health.available(solo.single, clock.now)
    r.started(solo.single)
    r.finished(solo.single, AttemptAbandoned("gone"), 0.1)
    assert health.available(solo.single, clock.now)


def test_a_success_resets_the_streak() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=2), clock=clock)
    _, a = _one(health)
    for _ in range(5):
        health.failed(a, FAIL)
        health.succeeded(a)
    assert health.available(a, clock.now)
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
    assert health.available(a, clock.now)
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
    assert health.available(a, clock.now)
    clock.now += 20  # the window moves on: those are forgotten
    for _ in range(6):
        health.succeeded(a)
    for _ in range(3):
        health.failed(a, FAIL)
    assert health.available(a, clock.now)  # 3 of 9
    health.failed(a, FAIL)  # 4 of 10: under 50 %
    assert health.available(a, clock.now)
    health.failed(a, FAIL)
    health.failed(a, FAIL)  # 6 of 12
    assert not health.available(a, clock.now)


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
    assert r.health.available(backed.single, time.monotonic() + 61)
