"""Active health checks (routing/probes.py) in the router's books: a check is in flight while it
runs and leaves the count of real requests as it found it, and a check that ends saying nothing
of the deployment (never built, stopped with the gateway) leaves a half-open deployment's probe
to the next request. The upstream is a stand-in for the client's send; no socket is opened."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from switchboard import catalog
from switchboard.config.schema import CooldownConfig, HealthCheckConfig
from switchboard.errors import UpstreamUnavailable
from switchboard.routing.health import Health
from switchboard.routing.probes import HealthChecks
from switchboard.routing.router import Router
from switchboard.routing.table import Route
from tests.unit.routing.health_world import Clock, route, router, settings

MODELS = [{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}]


def _checks(r: Router, a: Route) -> HealthChecks:
    return HealthChecks(HealthCheckConfig(enabled=True), lambda: [a], r, catalog.build(settings(MODELS)))


def _half_open() -> tuple[Router, Route]:
    """``a`` half-open: its next request (or check) is its probe. Checks read the real
    monotonic clock: the cooldown ended 5 s ago in real time."""
    clock = Clock(time.monotonic() - 10)
    r = router(MODELS, health=Health(CooldownConfig(failures=1, seconds=5), clock=clock))
    a = route(r, "g", "a")
    r.started(a)
    r.finished(a, UpstreamUnavailable("down"), 0.1)
    clock.now = time.monotonic()
    assert r.health.state(a)["status"] == "half_open"
    return r, a


async def test_a_check_is_in_flight_while_it_runs_and_leaves_the_real_requests_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = router(MODELS)
    a = route(r, "g", "a")
    r.started(a)
    r.started(a)  # two real requests in flight
    during: list[int] = []

    async def send(upstream: Any, timeout: Any = None) -> Any:
        d = r.stats.peek(a)
        assert d is not None
        during.append(d.in_flight)
        return SimpleNamespace(status=200, headers={}, body=b"{}")

    monkeypatch.setattr(a.client, "send", send)
    await _checks(r, a).check_all()
    d = r.stats.peek(a)
    assert d is not None
    # Before, the check's end was taken off the real requests: 1 left of 2.
    assert during == [3] and d.in_flight == 2


async def test_a_check_that_cannot_be_built_leaves_the_probe_to_the_next_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, a = _half_open()

    def broken(*args: Any) -> Any:
        raise ValueError("this adapter cannot build the check")

    monkeypatch.setattr(a.adapter, "chat_request", broken)
    await _checks(r, a).check_all()  # took the probe, then could not send it
    assert r.health.take(a, time.monotonic())  # the next request probes at once
    d = r.stats.peek(a)
    assert d is not None and d.in_flight == 0


async def test_a_check_stopped_with_the_gateway_balances_the_books_and_frees_the_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, a = _half_open()
    sent = asyncio.Event()

    async def hang(upstream: Any, timeout: Any = None) -> Any:
        sent.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(a.client, "send", hang)
    task = asyncio.create_task(_checks(r, a).check_all())
    await sent.wait()
    d = r.stats.peek(a)
    assert d is not None and d.in_flight == 1
    assert r.health.take(a, time.monotonic()) is False  # the check is the probe
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert d.in_flight == 0
    assert r.health.take(a, time.monotonic())
