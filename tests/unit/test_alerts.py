"""Alert rules and their evaluation in one process, on a real SQLite incident store: windows
bounded per deployment, percentiles, hysteresis, quiet incidents resolved, budget incidents
resolved at their period's end, the health listener hook, stable event ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from switchboard.config.schema import AlertsConfig, BudgetsConfig, CooldownConfig
from switchboard.errors import UpstreamUnavailable
from switchboard.observability.alerts import signals
from switchboard.observability.alerts.evaluator import Alerts
from switchboard.observability.alerts.incidents import event
from switchboard.observability.alerts.rules import compile_rules, failed, percentile
from switchboard.observability.alerts.signals import Windows
from switchboard.observability.webhooks import verify
from switchboard.routing.health import Health
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.stores import Stores
from switchboard.stores.factory import open_at
from switchboard.stores.protocols import BudgetRecord, Incident, IncidentQuery, IncidentStore
from tests.schemas import copy_sqlite
from tests.unit.routing.health_world import Clock, route, router
from tests.webhook_receiver import HANG, WebhookReceiver

SECRET = "whsec-unit-0123456789abcdef"


def _config(url: str, *rules: dict[str, Any]) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "webhooks": {"hook": {"url": url, "secret": SECRET, "max_attempts": 2}},
        "rules": list(rules), "evaluate_seconds": 60,
    })


@pytest.fixture
async def stores(tmp_path: Path, sqlite_schema: Path) -> AsyncIterator[Stores]:
    # A database migrated once (tests/schemas.py): these tests are about the incidents.
    opened = await open_at(copy_sqlite(sqlite_schema, tmp_path), None)
    yield opened
    await opened.close()


def _store(stores: Stores) -> IncidentStore:
    assert stores.incidents is not None
    return stores.incidents


def test_percentiles_and_what_counts_as_a_failure() -> None:
    assert percentile([], 0.95) == 0.0
    assert percentile([5], 0.5) == 5.0
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50, 95, 99)
    assert [failed(s) for s in (200, 400, 404, 408, 429, 500, 503, 0)] == [
        False, False, False, True, True, True, True, True]
    # The provider account's credit is the deployment's trouble on the gateway's credential,
    # the caller's on its own (as its rate limit); a server error is the deployment's on either.
    assert failed(402) and failed(400, "billing_hard_limit_reached") and not failed(400, "invalid_value")
    assert not failed(402, own_account=True) and not failed(429, own_account=True)
    assert failed(502, "upstream_authentication_failed") and failed(503, own_account=True)


def test_windows_keep_only_watched_deployments_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = compile_rules(AlertsConfig.model_validate({"rules": [
        {"name": "e", "kind": "error_rate", "group": "gpt-*", "deployment": "azure-*", "threshold": 0.5,
         "window_seconds": 10}]}))
    clock = Clock(100.0)
    windows = Windows(rules, clock)
    monkeypatch.setattr(signals, "MAX_SAMPLES", 3)
    windows.add("claude", "azure-1", 500, 10)  # no rule watches it
    for status in (500, 200, 200, 500):
        windows.add("gpt-4o", "azure-eu", status, 10)
    assert list(windows) == [("gpt-4o", "azure-eu")]
    seen = windows.window(("gpt-4o", "azure-eu"), 0)
    assert (seen.requests, seen.failures) == (3, 1)  # the newest three
    clock.now = 200.0
    windows.prune()
    assert list(windows) == []  # older than every rule's window: forgotten


async def test_error_rate_fires_once_then_resolves_on_evidence_only(stores: Stores) -> None:
    clock = Clock(time.time())
    with WebhookReceiver() as hooks:
        alerts = Alerts(_config(hooks.url, {"name": "e", "kind": "error_rate", "threshold": 0.5,
                                            "window_seconds": 600, "min_requests": 4}), clock=clock)
        await alerts.start(_store(stores))
        try:
            for _ in range(3):
                alerts.windows.add("g", "d", 500, 10, clock.now)
            await alerts.evaluate()
            assert await _store(stores).open_incidents() == []  # 3 < min_requests
            alerts.windows.add("g", "d", 500, 10, clock.now)
            for _ in range(3):
                await alerts.evaluate()  # firing on every tick: still one incident
            (opened,) = await _store(stores).open_incidents()
            assert (opened.rule, opened.subject, opened.value, opened.threshold) == ("e", "g/d", 1.0, 0.5)
            # Two answers: 4/6 failed, still firing. Five more: 4/11, clear.
            for _ in range(2):
                alerts.windows.add("g", "d", 200, 10, clock.now)
            await alerts.evaluate()
            assert len(await _store(stores).open_incidents()) == 1
            for _ in range(5):
                alerts.windows.add("g", "d", 200, 10, clock.now)
            await alerts.evaluate()
            # Clear here, but seen holding in the last two evaluations (60 s apart): not yet.
            assert len(await _store(stores).open_incidents()) == 1
            clock.now += 120
            await alerts.evaluate()
            assert await _store(stores).open_incidents() == []
            received = await hooks.await_requests(2)
            assert [r.json()["type"] for r in received] == ["alert.firing", "alert.resolved"]
            ids = [r.json()["id"] for r in received]
            assert ids == [f"evt_{opened.id}_firing", f"evt_{opened.id}_resolved"]
            for r in received:
                signature = r.headers["x-switchboard-signature"]
                assert verify(SECRET.encode(), signature, r.body, now=int(time.time()))
        finally:
            await alerts.close()


async def test_an_incident_nobody_sees_for_two_windows_is_resolved(stores: Stores) -> None:
    clock = Clock(time.time())
    rule = {"name": "e", "kind": "error_rate", "threshold": 0.5, "window_seconds": 10, "min_requests": 2}
    alerts = Alerts(_config("http://127.0.0.1:9/hook", rule), clock=clock)
    await alerts.start(_store(stores))
    try:
        for _ in range(2):
            alerts.windows.add("g", "d", 500, 10, clock.now)
        await alerts.evaluate()
        assert len(await _store(stores).open_incidents()) == 1
        clock.now += 60  # the next evaluation: the failures left the window; no traffic since
        await alerts.evaluate()
        assert len(await _store(stores).open_incidents()) == 1  # silence is not evidence yet
        clock.now += 60  # two windows, and two evaluations (the longer here), since last seen
        await alerts.evaluate()
        assert await _store(stores).open_incidents() == []
        (done,) = await _store(stores).query(IncidentQuery(rule="e"))
        assert done.state == "resolved" and done.resolved_value is None
    finally:
        await alerts.close()


async def _open_with_rule(stores: Stores, clock: Clock, url: str, name: str) -> Incident:
    """An incident opened by an instance whose configuration has rule ``name``."""
    rule = {"name": name, "kind": "error_rate", "threshold": 0.5, "window_seconds": 10, "min_requests": 1}
    old = Alerts(_config(url, rule), clock=clock)
    await old.start(_store(stores))
    try:
        old.windows.add("g", "d", 500, 10, clock.now)
        await old.evaluate()
    finally:
        await old.close()
    (opened,) = await _store(stores).open_incidents()
    return opened


async def test_an_incident_of_a_removed_rule_is_resolved_once_nobody_sees_it(stores: Stores) -> None:
    """A rule removed (or renamed) from the configuration: its open incident is resolved once no
    instance has seen it hold for two evaluations (one still on the old configuration would
    keep it fresh), and its ``alert.resolved`` goes to every alert webhook."""
    clock = Clock(time.time())
    with WebhookReceiver() as hooks:
        opened = await _open_with_rule(stores, clock, hooks.url, "old-name")
        rule = {"name": "new-name", "kind": "error_rate", "threshold": 0.5, "window_seconds": 10}
        alerts = Alerts(_config(hooks.url, rule), clock=clock)
        await alerts.start(_store(stores))
        try:
            clock.now += 60
            await alerts.evaluate()
            assert [i.id for i in await _store(stores).open_incidents()] == [opened.id]  # seen 60 s ago
            clock.now += 60
            await alerts.evaluate()
            assert await _store(stores).open_incidents() == []
            (done,) = await _store(stores).query(IncidentQuery(rule="old-name"))
            assert (done.id, done.state, done.resolved_value) == (opened.id, "resolved", None)
            received = await hooks.await_requests(2)
            assert [(r.json()["type"], r.json()["id"]) for r in received] == [
                ("alert.firing", f"evt_{opened.id}_firing"), ("alert.resolved", f"evt_{opened.id}_resolved")]
        finally:
            await alerts.close()


@pytest.mark.parametrize("kind", ["budget", "latency"])
async def test_an_incident_of_a_rule_whose_kind_changed_is_resolved_as_a_removed_rules(
    stores: Stores, kind: str
) -> None:
    """The same rule name with another kind: the old kind's incident is resolved once nobody sees
    it (a budget rule would never end a deployment's incident), and the new kind's own opens with
    its own ``alert.firing`` rather than keeping the old one alive."""
    clock = Clock(time.time())
    with WebhookReceiver() as hooks:
        opened = await _open_with_rule(stores, clock, hooks.url, "x")  # error_rate on g/d
        rule: dict[str, Any] = {"name": "x", "kind": kind}
        if kind == "latency":
            rule.update(threshold=100, percentile="p50", window_seconds=600, min_requests=1)
        alerts = Alerts(_config(hooks.url, rule), clock=clock)
        await alerts.start(_store(stores))
        try:
            alerts.windows.add("g", "d", 200, 500, clock.now)  # slow: a latency rule fires
            clock.now += 60
            await alerts.evaluate()
            assert [i.id for i in await _store(stores).open_incidents()] == [opened.id]  # seen 60 s ago
            clock.now += 60
            await alerts.evaluate()
            await alerts.evaluate()
            (done,) = await _store(stores).query(IncidentQuery(rule="x", state="resolved"))
            assert (done.id, done.kind, done.resolved_value) == (opened.id, "error_rate", None)
            now_open = await _store(stores).open_incidents()
            assert [i.kind for i in now_open] == ([] if kind == "budget" else ["latency"])
            received = await hooks.await_requests(2 + len(now_open))
            assert [(r.json()["type"], r.json()["data"]["kind"]) for r in received] == [
                ("alert.firing", "error_rate"), ("alert.resolved", "error_rate"),
                *(("alert.firing", i.kind) for i in now_open)]
        finally:
            await alerts.close()


async def test_with_no_rule_left_the_start_resolves_the_incidents_rules_left_open(stores: Stores) -> None:
    clock = Clock(time.time())
    with WebhookReceiver() as hooks:
        opened = await _open_with_rule(stores, clock, hooks.url, "gone")
        clock.now += 120  # settled: nobody has seen it for two evaluations
        alerts = Alerts(_config(hooks.url), clock=clock)  # no rule; the webhook still configured
        await alerts.start(_store(stores))
        try:
            received = await hooks.await_requests(2)
            assert [(r.json()["type"], r.json()["id"]) for r in received] == [
                ("alert.firing", f"evt_{opened.id}_firing"), ("alert.resolved", f"evt_{opened.id}_resolved")]
            assert await _store(stores).open_incidents() == []
        finally:
            await alerts.close()


async def test_budget_incidents_follow_the_rule_and_end_with_the_period(stores: Stores) -> None:
    clock = Clock(time.time())
    alerts = Alerts(_config("http://127.0.0.1:9/hook", {"name": "b", "kind": "budget", "thresholds": [100],
                                                        "scopes": ["team"]}), clock=clock)
    await alerts.start(_store(stores))
    ends = datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1)

    def crossing(scope: str, percent: int) -> dict[str, Any]:
        return {"id": "evt_x", "type": "budget.threshold", "data": {
            "budget": {"id": f"bud_{scope}", "tenant": "t1", "scope": scope, "max_amount": "10.000000000"},
            "threshold_percent": percent, "spent": "10.000000000",
            "period_start": "2026-12-01T00:00:00+00:00", "period_end": ends.isoformat()}}

    try:
        alerts.budget_crossed(crossing("key", 100))  # scope not in the rule
        alerts.budget_crossed(crossing("team", 80))  # threshold not in the rule
        alerts.budget_crossed({"data": "nonsense"})  # ignored
        alerts.budget_crossed(crossing("team", 100))
        await alerts.close()  # waits for the notices under way
        (opened,) = await _store(stores).open_incidents()
        assert (opened.kind, opened.tenant_id) == ("budget", "t1")
        assert (opened.value, opened.threshold) == (100.0, 100.0)
        assert opened.resolves_at == ends
        alerts = Alerts(_config("http://127.0.0.1:9/hook", {"name": "b", "kind": "budget"}), clock=clock)
        await alerts.start(_store(stores))
        await alerts.evaluate()
        assert len(await _store(stores).open_incidents()) == 1
        clock.now += 3600
        await alerts.evaluate()
        assert await _store(stores).open_incidents() == []
    finally:
        await alerts.close()


def test_health_tells_its_listeners_of_cooldowns_and_recoveries() -> None:
    clock = Clock()
    health = Health(CooldownConfig(failures=2, seconds=10), clock=clock)
    r = router([{"name": "g", "deployment": "a"}, {"name": "g", "deployment": "b"}], health=health)
    a = route(r, "g", "a")
    heard: list[tuple[str, str, bool]] = []

    def broken(group: str, deployment: str, tripped: bool) -> None:
        raise RuntimeError("a listener that fails")

    health.listeners += [broken, lambda g, d, t: heard.append((g, d, t))]
    for _ in range(3):  # the third, already out, opens nothing new
        health.failed(a, UpstreamUnavailable("down"))
    assert heard == [("g", "a", True)]
    clock.now += 11
    probe = health.take(a, clock.now)  # the probe
    assert probe
    health.succeeded(a, probe)
    assert heard == [("g", "a", True), ("g", "a", False)]


def test_event_ids_are_stable_per_incident_and_state() -> None:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    incident = Incident(id="inc_1", rule="r", kind="breaker", subject="g/d", value=1.0, threshold=None,
                        started_at=at)
    first, again = event(incident, at), event(incident, at + timedelta(seconds=5))
    assert first["id"] == again["id"] == "evt_inc_1_firing" and first["type"] == "alert.firing"
    resolved = Incident(**{**incident.__dict__, "state": "resolved", "resolved_at": at})
    assert event(resolved, at)["id"] == "evt_inc_1_resolved"
    assert event(resolved, at)["data"]["incident_id"] == "inc_1"


async def test_two_instances_one_incident_one_event_and_no_flapping(stores: Stores) -> None:
    clock = Clock(time.time())
    rule = {"name": "e", "kind": "error_rate", "threshold": 0.5, "window_seconds": 600, "min_requests": 2}
    with WebhookReceiver() as hooks:
        first = Alerts(_config(hooks.url, rule), clock=clock)
        second = Alerts(_config(hooks.url, rule), clock=clock)
        for alerts in (first, second):
            await alerts.start(_store(stores))
        try:
            for alerts in (first, second):
                for _ in range(2):
                    alerts.windows.add("g", "d", 503, 10, clock.now)
            await first.evaluate()
            await second.evaluate()
            assert len(await _store(stores).open_incidents()) == 1
            # The second instance's traffic recovers; the first one's still fails.
            for _ in range(5):
                second.windows.add("g", "d", 200, 10, clock.now)
            for _ in range(3):
                clock.now += 60
                await first.evaluate()  # still holding: last seen now
                await second.evaluate()  # clear here, but not settled: left open
            assert len(await _store(stores).open_incidents()) == 1
            for _ in range(5):
                first.windows.add("g", "d", 200, 10, clock.now)
            clock.now += 60
            await first.evaluate()
            await second.evaluate()
            assert len(await _store(stores).open_incidents()) == 1  # seen holding a tick ago
            clock.now += 60
            await second.evaluate()
            await first.evaluate()
            assert await _store(stores).open_incidents() == []
            received = await hooks.await_requests(2)
            assert [r.json()["type"] for r in received] == ["alert.firing", "alert.resolved"]
            await first.close()
            await second.close()
            assert len(hooks.requests) == 2  # nothing more was queued by either instance
        finally:
            await first.close()
            await second.close()


async def test_a_breaker_incident_whose_recovery_went_unheard_is_resolved_by_the_sweep(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(time.time())
    out = {("g", "d"): True}

    async def tripped(group: str, deployment: str) -> bool:
        return out.get((group, deployment), False)

    alerts = Alerts(_config("http://127.0.0.1:9/hook", {"name": "b", "kind": "breaker"}), clock=clock)
    alerts.tripped = tripped
    await alerts.start(_store(stores))
    try:
        alerts.breaker("g", "d", True)
        await asyncio.gather(*alerts._tasks)
        (opened,) = await _store(stores).open_incidents()
        clock.now += 600
        await alerts.evaluate()  # still out: left open
        assert len(await _store(stores).open_incidents()) == 1
        # Tripped again while the incident is open (e.g. another instance heard it first): the
        # open one is the current one, seen holding now, so the sweep leaves it for two ticks.
        with caplog.at_level(logging.DEBUG, "switchboard.alerts"):
            alerts.breaker("g", "d", True)
            await asyncio.gather(*alerts._tasks)
        assert "alert b for g/d: open already, kept" in caplog.text
        (kept,) = await _store(stores).open_incidents()
        assert kept.id == opened.id and kept.last_seen_at == datetime.fromtimestamp(clock.now, UTC)
        out[("g", "d")] = False  # the cooldown was lost (a restart): no recovery notice comes
        await alerts.evaluate()
        assert len(await _store(stores).open_incidents()) == 1  # seen holding this tick: not settled
        clock.now += 120
        await alerts.evaluate()
        assert await _store(stores).open_incidents() == []
        (done,) = await _store(stores).query(IncidentQuery(rule="b"))
        assert (done.id, done.state, done.resolved_value) == (opened.id, "resolved", 0.0)
    finally:
        await alerts.close()


def _breaker_pair(clock: Clock) -> tuple[Alerts, Alerts]:
    """Two instances with one breaker rule, sharing a store once started."""
    rule = {"name": "b", "kind": "breaker"}
    return (Alerts(_config("http://127.0.0.1:9/hook", rule), clock=clock),
            Alerts(_config("http://127.0.0.1:9/hook", rule), clock=clock))


async def _hear(alerts: Alerts, tripped: bool, group: str = "g", deployment: str = "d") -> None:
    """The health notice of a trip (True) or a recovery, handled to the end."""
    alerts.breaker(group, deployment, tripped)
    await asyncio.gather(*alerts._tasks)


async def test_a_sweep_that_read_an_old_breaker_incident_does_not_resolve_a_new_one(stores: Stores) -> None:
    # Instance A's sweep read incident 1 (open, settled) and asked the router whether the
    # deployment is out: no, it had recovered. Before A resolves, another instance heard the
    # recovery (incident 1 resolved) and a new trip (incident 2 opened): A must leave 2 open.
    clock = Clock(time.time())
    first, second = _breaker_pair(clock)

    async def tripped(group: str, deployment: str) -> bool:
        await _hear(second, False, group, deployment)
        await _hear(second, True, group, deployment)
        return False  # what the router said before the new trip

    first.tripped = tripped
    for alerts in (first, second):
        await alerts.start(_store(stores))
    try:
        await _hear(first, True)
        (opened,) = await _store(stores).open_incidents()
        clock.now += 600
        await first.evaluate()
        (current,) = await _store(stores).open_incidents()
        assert current.id != opened.id and current.state == "open"
        (old,) = await _store(stores).query(IncidentQuery(rule="b", state="resolved"))
        assert old.id == opened.id
    finally:
        await first.close()
        await second.close()


async def test_a_recovery_heard_late_does_not_resolve_the_incident_of_a_later_trip(stores: Stores) -> None:
    # Instance A hears the deployment recover (incident 1 resolved) and trip again (incident 2
    # opened); instance B hears the same recovery later, when the deployment is out again.
    first, second = _breaker_pair(Clock(time.time()))
    out = {("g", "d"): True}

    async def tripped(group: str, deployment: str) -> bool:
        return out.get((group, deployment), False)

    for alerts in (first, second):
        alerts.tripped = tripped
        await alerts.start(_store(stores))
    try:
        await _hear(first, True)
        out[("g", "d")] = False
        await _hear(first, False)
        assert await _store(stores).open_incidents() == []
        out[("g", "d")] = True
        await _hear(first, True)
        (current,) = await _store(stores).open_incidents()
        await _hear(second, False)  # the first recovery, heard late
        assert [i.id for i in await _store(stores).open_incidents()] == [current.id]
        # Its own recovery, heard when the deployment takes traffic again, resolves it.
        out[("g", "d")] = False
        await _hear(second, False)
        assert await _store(stores).open_incidents() == []
        done = await _store(stores).get(current.id)
        assert done is not None and (done.state, done.resolved_value) == ("resolved", 0.0)
    finally:
        await first.close()
        await second.close()


async def test_closing_gives_every_hanging_receiver_the_grace_at_once_not_one_after_another(
    stores: Stores,
) -> None:
    # Four receivers that never answer: each sender's close waits its grace (5 s) for the event
    # in flight, so one after another would hold the shutdown for 20 s.
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(WebhookReceiver(then=HANG)) for _ in range(4)]
        config = AlertsConfig.model_validate({
            "webhooks": {f"h{n}": {"url": r.url, "secret": SECRET, "timeout_seconds": 60}
                         for n, r in enumerate(receivers)},
            "rules": [{"name": "b", "kind": "breaker"}],
        })
        alerts = Alerts(config)
        await alerts.start(_store(stores))
        await _hear(alerts, True)
        for receiver in receivers:
            await receiver.await_requests(1)
        inside, most = 0, 0

        def counted(close: Any) -> Any:
            async def close_counted(grace: float = 5.0) -> None:
                nonlocal inside, most
                inside += 1
                most = max(most, inside)
                try:
                    await close(0.2)  # a short grace: what is measured is the overlap, not the wait
                finally:
                    inside -= 1
            return close_counted

        for sender in alerts.senders.values():
            sender.close = counted(sender.close)  # type: ignore[method-assign]
        await alerts.close()
        assert most == 4  # every sender's grace runs at once, not one after another
        assert [s.dropped for s in alerts.senders.values()] == [1, 1, 1, 1]


async def test_an_incident_held_on_one_instance_is_not_quiet_on_another_between_its_evaluations(
    stores: Stores,
) -> None:
    # A window shorter than the evaluation interval: the instance that sees the deployment
    # failing says so once per evaluation; another one, seeing nothing, must not take the
    # time between two of them for quiet (resolved, then opened again: an event pair a tick).
    clock = Clock(time.time())
    rule = {"name": "e", "kind": "error_rate", "threshold": 0.5, "window_seconds": 30, "min_requests": 2}
    config = AlertsConfig.model_validate({
        "webhooks": {"hook": {"url": "http://127.0.0.1:9/hook", "secret": SECRET, "max_attempts": 1}},
        "rules": [rule], "evaluate_seconds": 120,
    })
    first, second = Alerts(config, clock=clock), Alerts(config, clock=clock)
    for alerts in (first, second):
        await alerts.start(_store(stores))
    try:
        for _ in range(3):
            for _ in range(2):
                first.windows.add("g", "d", 503, 10, clock.now)
            await first.evaluate()  # holding here
            clock.now += 60
            await second.evaluate()  # nothing seen here, half an interval later
            clock.now += 60
        (held,) = await _store(stores).query(IncidentQuery(rule="e"))
        assert held.state == "open"
        # The failures stop: no instance sees the condition for two intervals, then it is quiet.
        for _ in range(2):
            await first.evaluate()
            clock.now += 60
            await second.evaluate()
            clock.now += 60
        await first.evaluate()
        (done,) = await _store(stores).query(IncidentQuery(rule="e"))
        assert (done.id, done.state, done.resolved_value) == (held.id, "resolved", None)
    finally:
        await first.close()
        await second.close()


def test_each_kind_of_warning_has_its_own_minute(caplog: pytest.LogCaptureFixture) -> None:
    """A recurring warning (a failing store, say) does not hide a different one for a minute."""
    alerts = Alerts(AlertsConfig.model_validate({"rules": [{"name": "b", "kind": "breaker"}]}))
    with caplog.at_level(logging.WARNING, logger="switchboard.alerts"):
        for _ in range(3):
            alerts.breaker("g", "d", True)  # not started: the notice is dropped, said once
        alerts._complain("alerts not evaluated: %s", "OperationalError")
        alerts._complain("alerts not evaluated: %s", "OperationalError")
    assert [r.getMessage() for r in caplog.records] == [
        "alert notice dropped: not started", "alerts not evaluated: OperationalError"]


async def _opened_by_a_rule_now_removed(stores: Stores) -> None:
    """An incident an instance with rule "gone" saw firing at its last evaluation, just now."""
    rule = {"name": "gone", "kind": "error_rate", "threshold": 0.5, "window_seconds": 10, "min_requests": 1}
    old = Alerts(AlertsConfig.model_validate({"rules": [rule], "evaluate_seconds": 0.1}))
    await old.start(_store(stores))
    try:
        old.windows.add("g", "d", 500, 10)
        await old.evaluate()
    finally:
        await old.close()


async def test_with_no_rule_left_an_incident_seen_just_before_the_restart_is_resolved_later(
        stores: Stores) -> None:
    """A single instance restarted within 2 x evaluate_seconds of its last evaluation (a normal
    restart: 20 s by default) with every rule removed: the incident its rule saw firing at the
    last evaluation is not settled at the start sweep, and with no rule there is no later
    evaluation: it must still be resolved once settled, not stay open until another restart."""
    await _opened_by_a_rule_now_removed(stores)
    assert len(await _store(stores).open_incidents()) == 1
    fresh = Alerts(AlertsConfig.model_validate({"evaluate_seconds": 0.1}))  # restarted, no rule
    await fresh.start(_store(stores))
    try:
        deadline = time.monotonic() + 5.0  # settled after 0.2 s: 25 times that
        while await _store(stores).open_incidents() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _store(stores).open_incidents() == [], "left open: nothing runs after the start sweep"
    finally:
        await fresh.close()


class _DownOnce:
    """The real incident store, whose first ``open_incidents`` fails as a database that is
    still restarting does; every other call is the store's own."""

    def __init__(self, store: IncidentStore) -> None:
        self._store, self.failed = store, False

    async def open_incidents(self) -> list[Incident]:
        if not self.failed:
            self.failed = True
            raise ConnectionRefusedError("the database is restarting")
        return await self._store.open_incidents()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_with_no_rule_left_a_store_that_fails_at_the_start_is_tried_again(stores: Stores) -> None:
    """The sweep's comment and docs: a store that failed is tried again at the next evaluation,
    not given up on (the incident would stay open until another restart)."""
    await _opened_by_a_rule_now_removed(stores)
    down = _DownOnce(_store(stores))
    fresh = Alerts(AlertsConfig.model_validate({"evaluate_seconds": 0.1}))
    await fresh.start(down)
    try:
        deadline = time.monotonic() + 5.0
        while await _store(stores).open_incidents() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert down.failed
        assert await _store(stores).open_incidents() == [], "left open: the sweep gave up after one failure"
    finally:
        await fresh.close()


class _Refusing:
    """The real incident store, refusing to open incidents while ``down`` (a database outage
    for writes); every other call is the store's own."""

    def __init__(self, store: IncidentStore) -> None:
        self._store, self.down = store, True

    async def open(self, incident: Incident) -> Incident | None:
        if self.down:
            raise ConnectionRefusedError("the database is down")
        return await self._store.open(incident)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _crossing(budget_id: str, tenant: str = "t1", amount: str = "10") -> dict[str, Any]:
    return {"id": "evt_x", "type": "budget.threshold", "data": {
        "budget": {"id": budget_id, "tenant": tenant, "scope": "team", "subject": "team_1", "unit": "usd",
                   "max_amount": amount, "period": "total", "timezone": "UTC"},
        "threshold_percent": 100, "spent": amount, "period_start": "2026-12-01T00:00:00+00:00",
        "period_end": None}}


async def test_a_flood_of_unwritten_trips_does_not_push_out_an_unwritten_budget_incident(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before, both kinds waited in one queue dropping its oldest: trips failing during an outage
    # pushed out a budget's crossing, which nothing brings again (its threshold is claimed).
    monkeypatch.setattr("switchboard.observability.alerts.evaluator.PENDING_MAX", 2)
    store = _Refusing(_store(stores))
    alerts = Alerts(_config("http://127.0.0.1:9/hook", {"name": "b", "kind": "budget", "webhooks": []},
                            {"name": "trips", "kind": "breaker", "webhooks": []}))
    await alerts.start(store)  # type: ignore[arg-type]
    try:
        alerts.budget_crossed(_crossing("bud_flooded"))
        await asyncio.gather(*alerts._tasks)
        for n in range(5):
            alerts.breaker("g", f"d{n}", True)
        await asyncio.gather(*alerts._tasks)
        assert (len(alerts.pending_budgets), len(alerts.pending_trips)) == (1, 2)
        store.down = False
        deadline = time.monotonic() + 10.0
        while len(await _store(stores).open_incidents()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        subjects = sorted(i.subject for i in await _store(stores).open_incidents())
        assert subjects == ["budget bud_flooded 100% of 10 from 2026-12-01T00:00:00+00:00",
                            "g/d3", "g/d4"]
    finally:
        await alerts.close()


async def test_a_budget_deleted_between_its_claim_and_its_first_write_gets_no_incident(
        stores: Stores) -> None:
    # Before, only a write tried again checked that the budget was still set: a budget deleted
    # (its incidents resolved) after its threshold was claimed, and before the first write of
    # the incident, kept that incident open for good (a total budget's period never ends).
    assert stores.budgets is not None
    book = BudgetBook(BudgetsConfig(), stores.budgets, stores.budget_counters, stores.ledger, stores.feed,
                      WebhookSender(None))
    kept, gone = (BudgetRecord(id=f"bud_{x}", tenant_id="t1", scope="team", subject="team_1",
                               max_amount=Decimal(10), period=p)
                  for x, p in (("kept", "total"), ("gone", "monthly")))
    for record in (kept, gone):
        await stores.budgets.put(record)
    alerts = Alerts(_config("http://127.0.0.1:9/hook", {"name": "b", "kind": "budget", "webhooks": []}))
    alerts.budget_alerting = book.alerts_at
    await alerts.start(_store(stores))
    try:
        # Both claimed; then one is deleted (the admin API resolves its incidents: none yet).
        assert await stores.budgets.delete("t1", gone.id)
        alerts.budget_crossed(_crossing(kept.id))
        alerts.budget_crossed(_crossing(gone.id))
        await asyncio.gather(*alerts._tasks)
        opened = await _store(stores).open_incidents()
        assert [i.details["budget"]["id"] for i in opened] == [kept.id]
    finally:
        await alerts.close()
