"""Alerts end to end, on the embedded default (one instance) and on a cluster (two instances
sharing PostgreSQL and Redis, traffic split across both): a deployment whose error rate or
latency crosses its rule's threshold fires one signed ``alert.firing`` at a local receiver, and
one ``alert.resolved`` once it recovers; a delivery that fails is retried with the same event
id; a stream that fails after its first byte counts as a failure; a breaker trip and a budget
threshold fire too, and a breaker incident a restart left open is resolved; two instances open
one incident and send one event; ``GET /admin/v1/alerts`` lists incidents, a tenant admin only
its tenant's budget ones."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from switchboard.observability.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, verify
from switchboard.stores.sql.urls import DB_FILE
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    free_port,
    openai_config,
    spawn,
    start_gateway,
)
from tests.services import Postgres
from tests.webhook_receiver import HANG, Received, WebhookReceiver

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HOOK_SECRET = "whsec-alert-tests-0123456789"
# A Slack-style receiver URL: its path is a credential of its own.
HOOK_PATH_SECRET = "xoxpathsecret0123456789abcdef"
HOOK_PATH = f"/services/T0ALERTS/B0ALERTS/{HOOK_PATH_SECRET}"
PRICED = "alert-priced"  # 5 output tokens (max_tokens=5) cost exactly $0.01
LONG = "tell me a long story about alerts please"  # the mock's reply is longer than 5 words
P = "local-openai"
SHORT: dict[str, Any] = {"timeouts": {"total": 2}}


def _config(mock: Mock, hooks: WebhookReceiver) -> dict[str, Any]:
    config = openai_config(mock)
    config["models"] += [
        {"name": "wobbly", "provider": P, "model": "gpt-4o-mini"},
        {"name": "sluggish", "provider": P, "model": "gpt-4o-mini"},
        {"name": "streamy", "provider": P, "model": "gpt-4o-mini"},
        # Incidents of the listing and cursor tests' own: "wobbly" is test_error_rate_fires_once's.
        *({"name": f"paged-{x}", "provider": P, "model": "gpt-4o-mini"} for x in "abc"),
        {"name": "cursored", "provider": P, "model": "gpt-4o-mini"},
        # The gateway's credential for this provider is wrong: every call is refused upstream.
        {"name": "locked-out", "provider": "bad-key", "model": "gpt-4o-mini"},
        # Callers may send their own credential for it.
        {"name": "own-account", "provider": "own-account", "model": "gpt-4o-mini"},
        # A short total timeout: with Redis, a half-open probe's claim lasts 5 s plus that.
        {"name": "tripping", "deployment": "one", "provider": P, "model": "gpt-4o-mini", **SHORT},
        {"name": "tripping", "deployment": "two", "provider": P, "model": "gpt-4o", **SHORT},
        # The breaker test's during a database outage (a lone deployment is never taken out).
        {"name": "dark", "deployment": "one", "provider": P, "model": "gpt-4o-mini", **SHORT},
        {"name": "dark", "deployment": "two", "provider": P, "model": "gpt-4o", **SHORT},
        {"name": PRICED, "provider": P, "model": "gpt-4o-mini",
         "info": {"input_cost_per_mtok": 0, "output_cost_per_mtok": 2000}},
    ]
    config["providers"].append({"name": "own-account", "type": "openai", "api_base": f"{mock.url}/v1",
                                "api_key": "${UPSTREAM_KEY}", "allow_caller_credentials": True})
    config["auth"]["caller_credentials"] = {"enabled": True}
    config["router"] = {"num_retries": 0, "cooldown": {"failures": 3, "seconds": 1.0}}
    config["alerts"] = {
        "evaluate_seconds": 0.2,
        "webhooks": {"oncall": {"url": hooks.url, "secret": HOOK_SECRET, "max_attempts": 4}},
        "rules": [
            {"name": "wobbly-errors", "kind": "error_rate", "group": "wobbly", "threshold": 0.5,
             "window_seconds": 60, "min_requests": 4},
            {"name": "sluggish-p50", "kind": "latency", "group": "slug*", "threshold": 150,
             "percentile": "p50", "window_seconds": 60, "min_requests": 3, "webhooks": ["oncall"]},
            {"name": "streamy-errors", "kind": "error_rate", "group": "streamy", "threshold": 0.5,
             "window_seconds": 60, "min_requests": 3},
            # Delivered nowhere: their events would reach the receiver while another test counts
            # its deliveries (and take the failure it set up for its own event).
            {"name": "paged-errors", "kind": "error_rate", "group": "paged-*", "threshold": 0.5,
             "window_seconds": 60, "min_requests": 2, "webhooks": []},
            {"name": "cursored-errors", "kind": "error_rate", "group": "cursored", "threshold": 0.5,
             "window_seconds": 60, "min_requests": 2, "webhooks": []},
            {"name": "locked-out-errors", "kind": "error_rate", "group": "locked-out", "threshold": 0.5,
             "window_seconds": 60, "min_requests": 2, "webhooks": []},
            {"name": "own-account-errors", "kind": "error_rate", "group": "own-account", "threshold": 0.25,
             "window_seconds": 60, "min_requests": 2, "webhooks": []},
            {"name": "breakers", "kind": "breaker", "group": "tripping"},
            {"name": "dark-breaker", "kind": "breaker", "group": "dark", "webhooks": []},
            {"name": "budget-full", "kind": "budget", "thresholds": [100], "scopes": ["key"]},
            # The tenant-deletion test's own, delivered nowhere.
            {"name": "budget-tenant", "kind": "budget", "thresholds": [100], "scopes": ["tenant"],
             "webhooks": []},
            # The revived key's test's own (30 %: a threshold no other test's budget lists).
            {"name": "budget-revived", "kind": "budget", "thresholds": [30], "scopes": ["key"],
             "webhooks": []},
        ],
    }
    # Expired key chains looked for as often as the alerts are evaluated.
    config["budgets"] = {"thresholds": [30, 50, 80, 100], "expired_keys_seconds": 0.2}
    return config


@dataclass
class Pair:
    """Two instances of one deployment (embedded: the same instance twice)."""

    kind: str
    first: Gateway
    second: Gateway
    hooks: WebhookReceiver
    config: dict[str, Any]
    postgres: Postgres | None = None  # the cluster's, and its database's name
    database: str = ""

    @property
    def both(self) -> tuple[Gateway, Gateway]:
        return self.first, self.second

    def admin(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None,
              key: str = MASTER_KEY) -> httpx.Response:
        return httpx.request(method, f"{self.first.url}{path}", json=json, params=params,
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def ok(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None,
           key: str = MASTER_KEY, status: int = 200) -> dict[str, Any]:
        resp = self.admin(method, path, json, params, key)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def alerts(self, key: str = MASTER_KEY, **params: Any) -> list[dict[str, Any]]:
        return list(self.ok("GET", "/admin/v1/alerts", params=params, key=key)["data"])

    def sql(self, statement: str) -> None:
        """Run ``statement`` on the instances' database, past the gateway."""
        if self.postgres is not None:
            self.postgres.psql(statement, database=self.database)
            return
        with contextlib.closing(sqlite3.connect(self.first.config_path.parent / "data" / DB_FILE)) as db:
            db.execute(statement)
            db.commit()


def chat(gw: Gateway, model: str, text: str, key: str = MASTER_KEY, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{gw.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """``check()``'s first truthy value, polled with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} (within {timeout} s)"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def pair(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    with WebhookReceiver(path=HOOK_PATH) as hooks:
        config = _config(mock_upstream, hooks)
        if request.param == "embedded":
            gw = start_gateway(config, tmp_path_factory.mktemp("alerts-embedded"))
            yield Pair("embedded", gw, gw, hooks, config)
            gw.process.stop()
            return
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        database = f"alerts_{uuid.uuid4().hex[:8]}"
        config["database"] = {"url": postgres.create_database(database)}
        config["redis"] = {"url": redis.url}
        first = start_gateway(config, tmp_path_factory.mktemp("alerts-a"))
        second = start_gateway(config, tmp_path_factory.mktemp("alerts-b"))
        yield Pair("cluster", first, second, hooks, config, postgres, database)
        first.process.stop()
        second.process.stop()


def events(pair: Pair, rule: str, kind: str | None = None) -> list[Received]:
    """The deliveries received for ``rule`` (of one event type), retries included."""
    return [r for r in pair.hooks.requests
            if r.json()["data"]["rule"] == rule and (kind is None or r.json()["type"] == kind)]


def distinct(received: list[Received]) -> dict[str, dict[str, Any]]:
    """The events among ``received``, by id (a retried delivery is the same event)."""
    return {r.json()["id"]: r.json() for r in received}


def delivered(pair: Pair, rule: str, kind: str, count: int = 1) -> dict[str, dict[str, Any]]:
    """Waits until ``count`` distinct events of ``kind`` for ``rule`` were answered 2xx."""

    def ready() -> dict[str, dict[str, Any]] | None:
        got = [r for r in events(pair, rule, kind) if r.answered == 200]
        found = distinct(got)
        return found if len(found) >= count else None

    found: dict[str, dict[str, Any]] = until(ready, f"{count} {kind} event(s) for {rule}")
    return found


def webhook_events(gw: Gateway, webhook: str, outcome: str) -> float:
    """``switchboard_webhook_events_total`` of ``webhook`` and ``outcome`` on ``gw``."""
    resp = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return sum(sample.value for family in text_string_to_metric_families(resp.text)
               for sample in family.samples
               if sample.name == "switchboard_webhook_events_total"
               and sample.labels == {"webhook": webhook, "outcome": outcome})


def assert_signed(received: list[Received]) -> None:
    for r in received:
        assert verify(HOOK_SECRET.encode(), r.headers[SIGNATURE_HEADER], r.body, now=int(time.time()))
        assert r.headers[EVENT_ID_HEADER] == r.json()["id"]
        assert r.headers[EVENT_TYPE_HEADER] == r.json()["type"]
        assert not verify(b"another-secret-0123456789", r.headers[SIGNATURE_HEADER], r.body,
                          now=int(time.time()))


def test_error_rate_fires_once_retries_with_the_same_id_and_resolves(pair: Pair) -> None:
    pair.hooks.respond([500])  # the first delivery fails: retried with the same event id
    # Failures on both instances: each sees enough to fire, one incident and one event result.
    for i in range(4):
        for gw in pair.both:
            assert chat(gw, "wobbly", f"mock:status=500 failing {i}").status_code >= 500
    firing = delivered(pair, "wobbly-errors", "alert.firing")
    (event,) = firing.values()
    data = event["data"]
    assert data["kind"] == "error_rate" and data["subject"] == "wobbly/local-openai/gpt-4o-mini"
    assert data["value"] >= 0.5 and data["threshold"] == 0.5 and data["started_at"]
    assert data["details"]["group"] == "wobbly" and data["tenant"] is None
    assert event["id"] == f"evt_{data['incident_id']}_firing"
    received = events(pair, "wobbly-errors", "alert.firing")
    assert [r.answered for r in received] == [500, 200]  # one retry, same event
    # The delivery is counted in the metrics of the instance that sent it (a retried event once).
    until(lambda: sum(webhook_events(gw, "alerts.oncall", "delivered") for gw in pair.both) >= 1,
          "the delivery is not counted in switchboard_webhook_events_total")
    assert_signed(received)
    # The retry is logged naming the receiver by its origin only: its secret path stays out.
    retried = until(lambda: [line for gw in pair.both for line in gw.process.lines
                             if "alert webhook oncall" in line and "attempt 1 of 4 failed" in line],
                    "the retry is not logged")
    named = f"alert webhook oncall http://127.0.0.1:{pair.hooks.port}/…:"
    assert all(named in line for line in retried), retried
    assert all(HOOK_PATH_SECRET not in gw.process.output for gw in pair.both)

    listed = pair.alerts(rule="wobbly-errors")
    assert [(i["id"], i["state"]) for i in listed] == [(data["incident_id"], "open")]

    # Recovery: enough answered requests that the rate falls below the threshold.
    for i in range(5):
        for gw in pair.both:
            assert chat(gw, "wobbly", f"fine {i}").status_code == 200
    resolved = delivered(pair, "wobbly-errors", "alert.resolved")
    (done,) = resolved.values()
    assert done["data"]["incident_id"] == data["incident_id"] and done["data"]["state"] == "resolved"
    assert done["data"]["resolved_value"] < 0.5 and done["id"] == f"evt_{data['incident_id']}_resolved"
    assert_signed(events(pair, "wobbly-errors", "alert.resolved"))
    # One incident, one firing, one resolved: the second instance sent nothing of its own.
    listed = until(lambda: (got := pair.alerts(rule="wobbly-errors")) and got[0]["state"] == "resolved"
                   and got, "the incident is not shown resolved")
    assert len(listed) == 1 and listed[0]["resolved_at"] is not None
    assert len(distinct(events(pair, "wobbly-errors"))) == 2


def test_latency_rule_fires_and_resolves(pair: Pair) -> None:
    # Each instance measures the traffic it serves: min_requests (3) on each.
    for i in range(3):
        for gw in pair.both:
            assert chat(gw, "sluggish", f"mock:latency_ms=250 slow {i}").status_code == 200
    (event,) = delivered(pair, "sluggish-p50", "alert.firing").values()
    assert event["data"]["kind"] == "latency" and event["data"]["value"] >= 150
    assert event["data"]["details"]["percentile"] == "p50"
    for i in range(4):
        for gw in pair.both:
            assert chat(gw, "sluggish", f"quick {i}").status_code == 200
    (done,) = delivered(pair, "sluggish-p50", "alert.resolved").values()
    assert done["data"]["incident_id"] == event["data"]["incident_id"]
    assert len(distinct(events(pair, "sluggish-p50"))) == 2


def test_streams_failing_after_their_first_byte_count_as_failures(pair: Pair) -> None:
    for i in range(3):
        for gw in pair.both:
            body = {"model": "streamy", "stream": True,
                    "messages": [{"role": "user", "content": f"mock:fail_after=2 broken {i}"}]}
            with httpx.stream("POST", f"{gw.base_url}/chat/completions", json=body, headers=ADMIN,
                              timeout=30) as resp:
                # The role chunk and one piece of text answered (a stream failing before any
                # text is retried and refused with a status instead); the error event follows.
                assert resp.status_code == 200
                assert "upstream_error" in resp.read().decode()
    (event,) = delivered(pair, "streamy-errors", "alert.firing").values()
    assert event["data"]["subject"] == "streamy/local-openai/gpt-4o-mini"
    assert event["data"]["value"] == 1.0 and event["data"]["details"]["failures"] >= 3


def test_a_provider_refusing_the_gateways_credential_raises_an_error_rate_incident(pair: Pair) -> None:
    """An upstream 401 is the gateway's broken credential, not the caller's bad request: every
    caller gets a 502, and the deployment's error rate says so."""
    for i in range(2):
        for gw in pair.both:
            resp = chat(gw, "locked-out", f"hello {i}")
            assert resp.status_code == 502, resp.text
            assert resp.json()["error"]["code"] == "upstream_authentication_failed"
    (incident,) = until(lambda: pair.alerts(rule="locked-out-errors", state="open"), "no error_rate incident")
    assert incident["kind"] == "error_rate" and incident["subject"] == "locked-out/bad-key/gpt-4o-mini"
    assert incident["value"] == 1.0 and incident["details"]["failures"] >= 2


def test_the_provider_accounts_credit_and_limits_count_on_the_gateways_credential_only(pair: Pair) -> None:
    """Out of credit (402) on the gateway's credential: every caller is refused, the deployment
    failed. On a caller's own credential, its 402s and 429s are its own account's (the breakers
    do not count them either)."""
    own = {"x-provider-authorization": UPSTREAM_KEY}
    for status in ("402", "429"):
        for i in range(2):
            text = f"mock:status={status} {i}"
            body = {"model": "own-account", "messages": [{"role": "user", "content": text}]}
            resp = httpx.post(f"{pair.first.base_url}/chat/completions", json=body, timeout=30,
                              headers={**ADMIN, **own})
            assert resp.status_code == int(status), resp.text
    for i in range(2):
        resp = chat(pair.first, "own-account", f"mock:status=402 out of credit {i}")
        assert resp.status_code == 402 and resp.json()["error"]["code"] == "insufficient_quota", resp.text
    (incident,) = until(lambda: pair.alerts(rule="own-account-errors", state="open"), "no incident")
    # Fired at the gateway's second 402 only: 2 failures among 6 attempts.
    assert (incident["details"]["failures"], incident["details"]["requests"]) == (2, 6)
    assert incident["value"] == round(2 / 6, 4)


def test_a_breaker_trip_fires_and_its_recovery_resolves(pair: Pair) -> None:
    def all_out() -> bool:
        return chat(pair.first, "tripping", "mock:status=500 failing").status_code == 503

    until(all_out, "the deployments of 'tripping' never cooled down")
    firing = delivered(pair, "breakers", "alert.firing", count=2)
    subjects = sorted(e["data"]["subject"] for e in firing.values())
    assert subjects == ["tripping/one", "tripping/two"]
    assert all(e["data"]["kind"] == "breaker" for e in firing.values())

    def recovered() -> bool:
        # Traffic reaches each deployment's half-open probe in turn; its answer recovers it.
        for gw in pair.both:
            chat(gw, "tripping", "are you back?")
        answered = [r for r in events(pair, "breakers", "alert.resolved") if r.answered == 200]
        return len(distinct(answered)) == 2

    try:
        until(recovered, "the deployments never came back", timeout=30)
    except AssertionError as exc:
        seen = [(r.json()["type"], r.json()["data"]["subject"], r.json()["id"][-24:], r.answered)
                for r in events(pair, "breakers")]
        raise AssertionError(f"{exc}: {seen}") from None
    resolved = delivered(pair, "breakers", "alert.resolved", count=2)
    assert sorted(e["data"]["subject"] for e in resolved.values()) == subjects
    # Both instances heard of both cooldowns (Redis): still one firing and one resolved each.
    assert len(distinct(events(pair, "breakers"))) == 4
    assert_signed(events(pair, "breakers"))


def _tenant_admin(pair: Pair, tenant: str) -> str:
    pair.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    user = pair.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "boss", "role": "tenant_admin"},
                   status=201)["id"]
    return str(pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant, "user": user,
                                                   "role": "tenant_admin"}, status=201)["key"])


def test_a_budget_threshold_fires_and_tenants_see_their_own_incidents(pair: Pair) -> None:
    tenant = f"al-{uuid.uuid4().hex[:6]}"
    boss = _tenant_admin(pair, tenant)
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant}, status=201)
    budget = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 0.02,
                                                  "period": "monthly", "thresholds": [50, 100]}, key=boss)
    for gw in pair.both:
        assert chat(gw, PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    firing = until(lambda: [e for e in delivered(pair, "budget-full", "alert.firing").values()
                            if e["data"]["details"]["budget"]["id"] == budget["id"]], "no budget alert")
    (event,) = firing  # the 50 % crossing is not in the rule's thresholds
    data = event["data"]
    assert data["kind"] == "budget" and data["tenant"] == tenant and data["threshold"] == 100
    assert data["value"] == 100 and data["resolves_at"] is not None
    assert data["details"]["threshold_percent"] == 100 and data["details"]["spent"] == "0.02"

    # The tenant admin sees its tenant's budget incident, not the deployments' ones.
    mine = pair.alerts(key=boss)
    assert [i["id"] for i in mine] == [data["incident_id"]] and mine[0]["kind"] == "budget"
    assert pair.alerts(key=boss, kind="error_rate") == []
    resp = pair.admin("GET", "/admin/v1/alerts", params={"tenant": "default"}, key=boss)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "tenant_not_found"
    other = _tenant_admin(pair, f"al-{uuid.uuid4().hex[:6]}")
    assert pair.alerts(key=other) == []
    # The platform admin sees every incident, or one tenant's.
    assert data["incident_id"] in {i["id"] for i in pair.alerts(kind="budget")}
    assert [i["id"] for i in pair.alerts(tenant=tenant)] == [data["incident_id"]]
    # A developer's role may not read alerts at all.
    dev = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "role": "developer"}, status=201)["key"]
    resp = pair.admin("GET", "/admin/v1/alerts", key=dev)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


def test_a_budget_raised_after_its_incident_opens_another_at_its_new_amount(pair: Pair) -> None:
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    body = {"scope": "key", "subject": key["id"], "max_amount": 0.01, "period": "monthly",
            "thresholds": [100]}
    budget = pair.ok("PUT", "/admin/v1/budgets", body)

    def firing() -> list[dict[str, Any]]:
        return [e for e in delivered(pair, "budget-full", "alert.firing").values()
                if e["data"]["details"]["budget"]["id"] == budget["id"]]

    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    until(firing, "no budget alert")
    pair.ok("PUT", "/admin/v1/budgets", {**body, "max_amount": 0.02})  # raised: 50 % spent
    assert chat(pair.both[1], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    both = until(lambda: len(got := firing()) == 2 and got, "no alert at the new amount")
    assert sorted(e["data"]["details"]["budget"]["max_amount"] for e in both) == ["0.01", "0.02"]
    assert len({e["data"]["incident_id"] for e in both}) == 2
    # The incident at the old amount was resolved by the change (nothing else would have before
    # the period's end); the one at the amount in force stays open.
    old, new = sorted(both, key=lambda e: e["data"]["details"]["budget"]["max_amount"])
    states = {i["id"]: i["state"] for i in pair.alerts(kind="budget")}
    assert states[old["data"]["incident_id"]] == "resolved"
    assert states[new["data"]["incident_id"]] == "open"
    _resolved_event(pair, old["data"]["incident_id"])


def _resolved_event(pair: Pair, incident: str) -> dict[str, Any]:
    found: dict[str, Any] = until(
        lambda: next((e for e in delivered(pair, "budget-full", "alert.resolved").values()
                      if e["data"]["incident_id"] == incident), None), f"no alert.resolved for {incident}")
    assert found["data"]["state"] == "resolved" and found["data"]["resolved_value"] is None
    return found


def test_a_deleted_budgets_incident_is_resolved(pair: Pair) -> None:
    # A total budget's incident has no period end to resolve it: before, deleting the budget left
    # it open for ever.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    budget = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 0.01,
                                                  "period": "total", "thresholds": [100]})
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    (firing,) = until(lambda: [e for e in delivered(pair, "budget-full", "alert.firing").values()
                               if e["data"]["details"]["budget"]["id"] == budget["id"]], "no budget alert")
    incident = firing["data"]["incident_id"]
    assert firing["data"]["resolves_at"] is None
    pair.ok("DELETE", f"/admin/v1/budgets/{budget['id']}")
    assert {i["id"]: i["state"] for i in pair.alerts(kind="budget")}[incident] == "resolved"
    _resolved_event(pair, incident)


def _budget_incident(pair: Pair, budget_id: str) -> str:
    (firing,) = until(lambda: [e for e in delivered(pair, "budget-full", "alert.firing").values()
                               if e["data"]["details"]["budget"]["id"] == budget_id], "no budget alert")
    return str(firing["data"]["incident_id"])


def _states(pair: Pair) -> dict[str, str]:
    return {i["id"]: i["state"] for i in pair.alerts(kind="budget")}


def test_a_dropped_thresholds_incident_is_resolved(pair: Pair) -> None:
    # Before, a budget whose thresholds no longer listed an incident's kept it open until the
    # period's end (for ever on a total budget): no crossing of that threshold could come again.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    budget = {"scope": "key", "subject": key["id"], "max_amount": 0.01, "period": "total",
              "thresholds": [100]}
    set_ = pair.ok("PUT", "/admin/v1/budgets", budget)
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    incident = _budget_incident(pair, set_["id"])
    # Another threshold added: the incident at 100 % is still one of the budget's.
    pair.ok("PUT", "/admin/v1/budgets", {**budget, "thresholds": [80, 100]})
    assert _states(pair)[incident] == "open"
    pair.ok("PUT", "/admin/v1/budgets", {**budget, "thresholds": [50]})
    assert _states(pair)[incident] == "resolved"
    _resolved_event(pair, incident)


def test_a_revoked_keys_own_budget_incident_is_resolved(pair: Pair) -> None:
    # A key's own budget (max_budget_usd) ends with the key: before, revoking it left its total
    # budget's incident open for ever. A rotated key's successor carries the budget on.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "max_budget_usd": 0.01}, status=201)
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    incident = _budget_incident(pair, f"key:{key['id']}")
    successor = pair.ok("POST", f"/admin/v1/keys/{key['id']}/rotate", {"grace_seconds": 60}, status=201)
    pair.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    assert _states(pair)[incident] == "open"
    pair.ok("DELETE", f"/admin/v1/keys/{successor['id']}")
    assert _states(pair)[incident] == "resolved"
    _resolved_event(pair, incident)


def _incidents_of(pair: Pair, budget_id: str, rule: str = "budget-full") -> list[dict[str, Any]]:
    return [i for i in pair.alerts(rule=rule, limit=1000) if i["details"]["budget"]["id"] == budget_id]


def test_a_revoked_keys_budgets_are_deleted_and_their_incidents_resolved(pair: Pair) -> None:
    # Before, a budget set on a key (scope key) stayed stored after the key was revoked, its
    # incident open for ever on a total budget.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "max_budget_usd": 0.01}, status=201)
    set_on = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 0.01,
                                                  "period": "total", "thresholds": [100]})
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    own, other = _budget_incident(pair, f"key:{key['id']}"), _budget_incident(pair, set_on["id"])
    pair.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    states = _states(pair)
    assert (states[own], states[other]) == ("resolved", "resolved")
    _resolved_event(pair, other)
    for gw in pair.both:
        resp = httpx.get(f"{gw.url}/admin/v1/budgets/{set_on['id']}", headers=ADMIN, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
    audit = pair.ok("GET", "/admin/v1/audit", params={"resource_id": set_on["id"]})["data"]
    assert sorted(e["action"] for e in audit) == ["budget.delete", "budget.set"]


def test_a_rotated_keys_budgets_live_on_until_the_last_key_of_its_chain_is_revoked(pair: Pair) -> None:
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    set_on = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 1,
                                                  "period": "total"})
    successor = pair.ok("POST", f"/admin/v1/keys/{key['id']}/rotate", {"grace_seconds": 60}, status=201)
    pair.ok("DELETE", f"/admin/v1/keys/{successor['id']}")  # the old key works on in its grace period
    assert pair.ok("GET", f"/admin/v1/budgets/{set_on['id']}")["subject"] == key["id"]
    pair.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    assert pair.admin("GET", f"/admin/v1/budgets/{set_on['id']}").status_code == 404


def test_an_expired_keys_own_budget_incident_is_resolved(pair: Pair) -> None:
    # Before, a key past its expires_at kept its total budget's incident open for ever.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "max_budget_usd": 0.01,
                                             "expires_at": expires.isoformat()}, status=201)
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    incident = _budget_incident(pair, f"key:{key['id']}")
    assert _states(pair)[incident] == "open" or datetime.now(UTC) >= expires
    until(lambda: _states(pair)[incident] == "resolved", "the expired key's incident left open")
    assert datetime.now(UTC) >= expires
    _resolved_event(pair, incident)


def test_an_expired_key_chains_budgets_are_deleted_as_a_revoke_deletes_them(pair: Pair) -> None:
    # Before, a chain whose last key expired (rotated, its successor revoked, the old key's grace
    # over) had its incidents resolved but kept the budgets set on it: only a revoke deleted them.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    set_on = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 0.01,
                                                  "period": "total", "thresholds": [100]})
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    incident = _budget_incident(pair, set_on["id"])
    successor = pair.ok("POST", f"/admin/v1/keys/{key['id']}/rotate", {"grace_seconds": 3}, status=201)
    pair.ok("DELETE", f"/admin/v1/keys/{successor['id']}")
    ends = datetime.fromisoformat(successor["previous_expires_at"])
    assert pair.admin("GET", f"/admin/v1/budgets/{set_on['id']}").status_code == 200 \
        or datetime.now(UTC) >= ends  # the old key spends on in its grace period
    until(lambda: pair.admin("GET", f"/admin/v1/budgets/{set_on['id']}").status_code == 404,
          "the expired chain's budget left stored")
    assert datetime.now(UTC) >= ends
    # The sweep deletes the budgets first, then resolves their incidents: a moment apart.
    until(lambda: _states(pair)[incident] == "resolved", "the expired chain's incident left open")
    _resolved_event(pair, incident)
    for gw in pair.both:
        resp = httpx.get(f"{gw.url}/admin/v1/budgets/{set_on['id']}", headers=ADMIN, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
        listed = httpx.get(f"{gw.url}/admin/v1/budgets", params={"scope": "key"}, headers=ADMIN, timeout=10)
        assert set_on["id"] not in {b["id"] for b in listed.json()["data"]}
    audit = pair.ok("GET", "/admin/v1/audit", params={"resource_id": set_on["id"]})["data"]
    deleted = [e for e in audit if e["action"] == "budget.delete"]
    assert sorted(e["action"] for e in audit) == ["budget.delete", "budget.set"]
    assert (deleted[0]["actor"], deleted[0]["actor_role"]) == ("system", "system")
    assert deleted[0]["before"]["id"] == set_on["id"]


def test_an_expired_key_chains_incident_the_store_refused_to_resolve_is_resolved_later(pair: Pair) -> None:
    # The sweep deletes the chain's budgets, then resolves their incidents: a store that refuses
    # the resolve (a database outage) leaves the chain, its budgets gone, no longer found by the
    # sweep; the alerts' own evaluation resolves a key budget's incident whose chain cannot spend.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    set_on = pair.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "max_amount": 0.01,
                                                  "period": "total", "thresholds": [100]})
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    incident = _budget_incident(pair, set_on["id"])
    pair.sql("ALTER TABLE alert_incidents RENAME TO alert_incidents_away")
    try:
        pair.ok("PATCH", f"/admin/v1/keys/{key['id']}",
                {"expires_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()})
        until(lambda: pair.admin("GET", f"/admin/v1/budgets/{set_on['id']}").status_code == 404,
              "the expired chain's budget left stored")
        until(lambda: any(f"key:{key['id']}" in x and "not resolved" in x
                          for gw in pair.both for x in list(gw.process.lines)),
              "the sweep's resolve not refused")
    finally:
        pair.sql("ALTER TABLE alert_incidents_away RENAME TO alert_incidents")
    until(lambda: _states(pair)[incident] == "resolved", "the expired chain's incident left open")
    _resolved_event(pair, incident)


def test_an_expired_key_brought_back_alerts_again_as_it_spends(pair: Pair) -> None:
    # Before, the claim of the threshold its incident was at outlived the incident the sweep
    # resolved for the expiry: the key, its expires_at pushed back, crossed it again silently.
    expires = datetime.now(UTC) + timedelta(seconds=3)
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "max_budget_usd": 0.03,
                                             "expires_at": expires.isoformat()}, status=201)
    own = f"key:{key['id']}"
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200  # 33 %
    (first,) = until(lambda: _incidents_of(pair, own, "budget-revived"), "no alert at 30 %")
    until(lambda: _incidents_of(pair, own, "budget-revived")[0]["state"] == "resolved",
          "the expired key's incident left open")
    assert datetime.now(UTC) >= expires
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    pair.ok("PATCH", f"/admin/v1/keys/{key['id']}", {"expires_at": later})
    # 67 %: past 30 % again, in a chain that can spend again; on the instance that settled the
    # first crossing (and remembered its claim), once told of the change.
    until(lambda: chat(pair.first, PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200,
          "the key brought back is refused")
    again = until(lambda: [i for i in _incidents_of(pair, own, "budget-revived") if i["state"] == "open"],
                  "brought back past its threshold, no alert")
    assert [i["id"] for i in again] != [first["id"]]


def test_a_deleted_tenants_budgets_go_with_it_and_their_incidents_resolve(pair: Pair) -> None:
    tenant = f"gone-{uuid.uuid4().hex[:6]}"
    pair.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant}, status=201)
    budget = pair.ok("PUT", "/admin/v1/budgets", {"scope": "tenant", "tenant": tenant, "max_amount": 0.01,
                                                  "period": "total", "thresholds": [100]})
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    (incident,) = until(lambda: _incidents_of(pair, budget["id"], "budget-tenant"), "no tenant budget alert")
    pair.ok("DELETE", f"/admin/v1/keys/{key['id']}")
    pair.ok("DELETE", f"/admin/v1/tenants/{tenant}")
    (after,) = _incidents_of(pair, budget["id"], "budget-tenant")
    assert (after["id"], after["state"]) == (incident["id"], "resolved")
    # Its incidents outlive it, as its audit log does: still listed by its name.
    assert [i["id"] for i in pair.alerts(tenant=tenant)] == [incident["id"]]
    for gw in pair.both:  # not left in the table, out of every list's reach
        resp = httpx.get(f"{gw.url}/admin/v1/budgets/{budget['id']}", headers=ADMIN, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "budget_not_found"
    audit = pair.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "resource_id": budget["id"]})["data"]
    assert sorted(e["action"] for e in audit) == ["budget.delete", "budget.set"]


def test_alerts_of_an_unknown_tenant_are_a_404_as_on_every_list(pair: Pair) -> None:
    for path in ("/admin/v1/alerts", "/admin/v1/budgets"):
        resp = pair.admin("GET", path, params={"tenant": f"nope-{uuid.uuid4().hex[:6]}"})
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "tenant_not_found"
    assert pair.admin("GET", "/admin/v1/alerts", params={"tenant": "default"}).status_code == 200


def test_a_budget_set_back_to_an_amount_already_alerted_at_alerts_again(pair: Pair) -> None:
    # Before, the claim at 0.01 outlived its incident (resolved by the raise): set back to 0.01
    # with $0.01 spent, the budget was over and nothing fired.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    body = {"scope": "key", "subject": key["id"], "max_amount": 0.01, "period": "total",
            "thresholds": [100]}
    budget = pair.ok("PUT", "/admin/v1/budgets", body)
    assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
    first = _budget_incident(pair, budget["id"])
    pair.ok("PUT", "/admin/v1/budgets", {**body, "max_amount": 0.02})
    assert _states(pair)[first] == "resolved"
    # Set back on the other instance, which settled nothing: it alerts all the same.
    resp = httpx.put(f"{pair.second.url}/admin/v1/budgets", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    again = until(lambda: [i for i in _incidents_of(pair, budget["id"]) if i["state"] == "open"],
                  "set back over its amount, no alert")
    assert [i["id"] for i in again] != [first]
    assert again[0]["details"]["budget"]["max_amount"] == "0.01"
    # Set again, the same amount with another change, and the same as it is: no second alert.
    pair.ok("PUT", "/admin/v1/budgets", {**body, "timezone": "Europe/Paris"})
    pair.ok("PUT", "/admin/v1/budgets", {**body, "timezone": "Europe/Paris"})
    firing = until(lambda: [e for e in delivered(pair, "budget-full", "alert.firing", 2).values()
                            if e["data"]["details"]["budget"]["id"] == budget["id"]], "no firing events")
    assert len(_incidents_of(pair, budget["id"])) == 2
    assert {e["data"]["incident_id"] for e in firing} == {first, again[0]["id"]}


def test_a_budget_alert_the_incident_store_refused_is_written_once_it_takes_it(pair: Pair) -> None:
    # Before, an incident write failing as the threshold was claimed lost the alert for good:
    # the claim was made, and a budget at 100 % refuses every later request.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"], "max_budget_usd": 0.01}, status=201)
    pair.sql("ALTER TABLE alert_incidents RENAME TO alert_incidents_away")
    try:
        assert chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
        resp = chat(pair.both[0], PRICED, LONG, key=key["key"], max_tokens=5)
        assert resp.status_code == 429, resp.text  # spent: no later request comes to alert
    finally:
        pair.sql("ALTER TABLE alert_incidents_away RENAME TO alert_incidents")
    incident = _budget_incident(pair, f"key:{key['id']}")
    assert _states(pair)[incident] == "open"
    assert len(_incidents_of(pair, f"key:{key['id']}")) == 1


def test_a_breaker_trip_the_incident_store_refused_is_written_once_it_takes_it(pair: Pair) -> None:
    # Before, a trip whose incident write failed (a database outage) was lost: its cooldown tells
    # of it once, and the deployment stays out until a probe answers.
    pair.sql("ALTER TABLE alert_incidents RENAME TO alert_incidents_away")
    try:
        until(lambda: chat(pair.first, "dark", "mock:status=500 failing").status_code == 503,
              "'dark' never cooled down")
        pair.first.process.wait_for_all("alert dark-breaker for dark/", "the incident store failed")
    finally:
        pair.sql("ALTER TABLE alert_incidents_away RENAME TO alert_incidents")
    listed = until(lambda: len(got := pair.alerts(rule="dark-breaker")) == 2 and got,
                   "the trips' incidents never written")
    assert sorted((i["kind"], i["subject"], i["state"]) for i in listed) == [
        ("breaker", "dark/one", "open"), ("breaker", "dark/two", "open")]


@pytest.mark.parametrize("change", ["deleted", "raised"])
def test_a_budget_changed_while_its_incident_waited_for_the_store_gets_none(pair: Pair, change: str) -> None:
    # Before, the incident written again once the store took it opened for a budget deleted (or
    # set to another amount) meanwhile, whose incidents that change had resolved, and nothing
    # ever resolved it: a total budget's period never ends.
    key = pair.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    body = {"scope": "key", "subject": key["id"], "max_amount": 0.01, "period": "total", "thresholds": [100]}
    budget = pair.ok("PUT", "/admin/v1/budgets", body)
    pair.sql("ALTER TABLE alert_incidents RENAME TO alert_incidents_away")
    try:
        assert chat(pair.first, PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200
        pair.first.process.wait_for_all(f"budget {budget['id']} ", "crossed 100 %")
        if change == "deleted":
            pair.ok("DELETE", f"/admin/v1/budgets/{budget['id']}")
        else:
            pair.ok("PUT", "/admin/v1/budgets", {**body, "max_amount": 0.02})
    finally:
        pair.sql("ALTER TABLE alert_incidents_away RENAME TO alert_incidents")
    # Tried again once the store is back: it opens the incident, or says why it does not.
    until(lambda: any(f"for budget {budget['id']} " in x and ("firing" in x or "deleted or changed" in x)
                      for x in list(pair.first.process.lines)), "the incident's write not tried again")
    assert _incidents_of(pair, budget["id"]) == []


def test_listing_pages_newest_first(pair: Pair) -> None:
    # Three incidents of its own (one per group), whichever tests ran before.
    for model in ("paged-a", "paged-b", "paged-c"):
        for i in range(2):
            for gw in pair.both:
                chat(gw, model, f"mock:status=500 failing again {i}")
    until(lambda: len(pair.alerts(rule="paged-errors", state="open")) == 3, "no three new incidents")
    everything = pair.alerts(limit=1000)
    assert len(everything) >= 3
    starts = [i["started_at"] for i in everything]
    assert starts == sorted(starts, reverse=True)
    first = pair.ok("GET", "/admin/v1/alerts", params={"limit": 2})
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = pair.alerts(limit=1000, before=first["last_id"])
    paged = first["data"] + rest
    ids = [i["id"] for i in paged]
    assert len(ids) == len(set(ids))
    assert [i["started_at"] for i in paged] == sorted((i["started_at"] for i in paged), reverse=True)
    # The rules keep running on both instances, so an incident may open between the reads: the
    # pages hold every incident listed before, in its order, and besides only newer ones.
    known = [i["id"] for i in everything]
    assert [x for x in ids if x in known] == known
    assert all(i["started_at"] >= everything[0]["started_at"] for i in paged if i["id"] not in known)
    assert all(i["state"] == "open" for i in pair.alerts(state="open"))


def test_a_cursor_outside_the_callers_list_is_a_400(pair: Pair) -> None:
    for i in range(2):
        for gw in pair.both:
            chat(gw, "cursored", f"mock:status=500 failing for the cursor {i}")
    platform = until(lambda: pair.alerts(rule="cursored-errors"), "no cursored incident")[0]
    # The platform admin pages on from it; a tenant admin, whose list it is not in, may not.
    assert pair.admin("GET", "/admin/v1/alerts", params={"before": platform["id"]}).status_code == 200
    admin = _tenant_admin(pair, f"cursor-{uuid.uuid4().hex[:6]}")
    resp = pair.admin("GET", "/admin/v1/alerts", params={"before": platform["id"]}, key=admin)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": "before: not an incident of this list (pass the last_id of the previous page)",
        "type": "invalid_request_error", "param": "before", "code": "invalid_cursor"}


def test_a_cursor_outside_the_lists_filters_is_a_400_but_its_state_may_have_changed(pair: Pair) -> None:
    for i in range(2):
        for gw in pair.both:
            chat(gw, "cursored", f"mock:status=500 failing for the filtered cursor {i}")
    cursor = until(lambda: pair.alerts(rule="cursored-errors", state="open"), "no open cursored incident")[0]
    later = (datetime.fromisoformat(cursor["started_at"]) + timedelta(seconds=1)).isoformat()
    # Another list's last_id: a kind, rule or time range it is not in.
    for params in ({"kind": "budget"}, {"rule": "paged-errors"}, {"since": later}):
        resp = pair.admin("GET", "/admin/v1/alerts", params={**params, "before": cursor["id"]})
        assert resp.status_code == 400, (params, resp.text)
        error = resp.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_cursor", "before"), params
    for params in ({"kind": "error_rate"}, {"rule": "cursored-errors"}, {"since": cursor["started_at"]}):
        resp = pair.admin("GET", "/admin/v1/alerts", params={**params, "before": cursor["id"]})
        assert resp.status_code == 200, (params, resp.text)
    # Its state is another matter: the last open incident of a page may be resolved before the
    # next page is asked for. The page starts right after it, in the list's order.
    everything = pair.alerts(limit=1000)
    after = everything[[i["id"] for i in everything].index(cursor["id"]) + 1:]
    page = pair.alerts(limit=1000, state="resolved", before=cursor["id"])
    assert all(i["state"] == "resolved" for i in page)
    assert all(i["started_at"] <= cursor["started_at"] and i["id"] != cursor["id"] for i in page)
    # Resolved by the time of the page's read: every one listed after the cursor then, and
    # resolved already, is on it.
    listed = {i["id"] for i in page}
    assert {i["id"] for i in after if i["state"] == "resolved"} <= listed


@pytest.mark.parametrize(("params", "code", "param"), [
    ({"state": "bogus"}, "invalid_value", "state"),
    ({"kind": "weather"}, "invalid_value", "kind"),
    ({"limit": 0}, "invalid_value", "limit"),
    ({"limit": 5000}, "invalid_value", "limit"),
    ({"limit": "many"}, "invalid_value", "limit"),
    ({"since": "yesterday"}, "invalid_value", "since"),
    ({"since": "2026-12-01T00:00:00"}, "invalid_value", "since"),  # no time zone
    ({"since": "9999-12-31T23:59:59-23:59"}, "invalid_value", "since"),  # past year 9999 in UTC
    ({"since": "0001-01-01T00:00:00+23:59"}, "invalid_value", "since"),  # before year 1 in UTC
    ({"rule": "r" * 65}, "invalid_value", "rule"),
    ({"tenant": "t" * 65}, "invalid_value", "tenant"),
    ({"before": "i" * 65}, "invalid_value", "before"),
    ({"before": "inc_not_one_of_ours"}, "invalid_cursor", "before"),  # not "no more incidents"
    ({"severity": "high"}, "unknown_parameter", "severity"),
])
def test_bad_alert_queries_are_400(pair: Pair, params: dict[str, Any], code: str, param: str) -> None:
    resp = pair.admin("GET", "/admin/v1/alerts", params=params)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert pair.admin("GET", "/admin/v1/alerts").status_code == 200  # still serving


def test_a_parameter_given_twice_is_a_400(pair: Pair) -> None:
    resp = httpx.get(f"{pair.first.url}/admin/v1/alerts?limit=1&limit=2", headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("duplicate_parameter", "limit")


@pytest.mark.parametrize(("change", "problem"), [
    ({"rules": [{"name": "r", "kind": "breaker", "webhooks": ["pager"]}]},
     "alerts.rules[0].webhooks: unknown webhook 'pager' (known: oncall)"),
    ({"rules": [{"name": "r", "kind": "error_rate", "threshold": 2}]},
     "alerts.rules[0].threshold: an error rate is a share of requests, 0 < threshold <= 1, got 2"),
    # No resolver takes it: refused here rather than failing every delivery at run time.
    ({"webhooks": {"oncall": {"url": "http://hooks example.com/x", "secret": HOOK_SECRET}}},
     "alerts.webhooks.oncall.url: the host of 'http://hooks example.com/…' contains a space or a "
     "control character"),
])
def test_a_bad_alerts_section_stops_the_server_with_one_clear_line(
    pair: Pair, tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    config = {**pair.config, "alerts": {**pair.config["alerts"], **change}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["serve", "--config", str(path), "--port", str(free_port())],
                 env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY})
    assert proc.wait_exit() == 2, proc.output
    assert f"{path}: {problem}" in proc.output and "Traceback" not in proc.output
    assert HOOK_SECRET not in proc.output
    assert pair.admin("GET", "/admin/v1/alerts").status_code == 200  # the running gateway is unaffected


def test_a_breaker_incident_outlives_no_restart_and_a_later_trip_fires_again(
    pair: Pair, mock_upstream: Mock, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The cooldown lives in memory (or in Redis, for its seconds): a restart loses the
    recovery notice. The incidents are resolved once the deployments are seen back, and a new
    trip opens new incidents with their own ``alert.firing``."""
    with WebhookReceiver() as hooks:
        config = openai_config(mock_upstream)
        config["models"] += [{"name": "fragile", "deployment": name, "provider": P, "model": "gpt-4o-mini",
                              **SHORT} for name in ("one", "two")]
        config["router"] = {"num_retries": 0, "cooldown": {"failures": 2, "seconds": 1.0}}
        config["alerts"] = {"evaluate_seconds": 0.2,
                            "webhooks": {"oncall": {"url": hooks.url, "secret": HOOK_SECRET}},
                            "rules": [{"name": "fragile-breaker", "kind": "breaker", "group": "fragile"}]}
        if pair.kind == "cluster":
            postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
            config["database"] = {"url": postgres.create_database(f"alerts_{uuid.uuid4().hex[:8]}")}
            config["redis"] = {"url": redis.url}
        watched = Pair(pair.kind, (gw := start_gateway(config, tmp_path)), gw, hooks, config)

        def trip() -> None:
            until(lambda: chat(watched.first, "fragile", "mock:status=500 failing").status_code == 503,
                  "'fragile' never cooled down")

        try:
            trip()
            first = delivered(watched, "fragile-breaker", "alert.firing", count=2)
            gw.process.stop()  # before the probes: nothing will tell of the recoveries
            gw = watched.first = watched.second = start_gateway(config, tmp_path)
            # On Redis the new instance takes on the cooldowns (503 until they end), then each
            # deployment's first call is its probe; in memory it starts with both in traffic.

            def back() -> dict[str, dict[str, Any]] | None:
                assert chat(gw, "fragile", "are you there?").status_code in (200, 503)
                got = distinct([r for r in events(watched, "fragile-breaker", "alert.resolved")
                                if r.answered == 200])
                return got if len(got) >= 2 else None

            resolved = until(back, "both deployments seen back and their incidents resolved")
            opened = {e["data"]["incident_id"] for e in first.values()}
            assert {e["data"]["incident_id"] for e in resolved.values()} == opened
            trip()
            firing = delivered(watched, "fragile-breaker", "alert.firing", count=4)
            again = {e["data"]["incident_id"] for e in firing.values()} - opened
            assert len(again) == 2
            listed = watched.alerts(rule="fragile-breaker")
            assert sorted((i["state"], i["subject"]) for i in listed) == [
                ("open", "fragile/one"), ("open", "fragile/two"),
                ("resolved", "fragile/one"), ("resolved", "fragile/two")]
            assert {i["id"] for i in listed if i["state"] == "open"} == again
        finally:
            gw.process.stop()


def test_a_rule_changed_to_breaker_ends_its_former_kinds_incidents_and_a_trip_opens_its_own(
    pair: Pair, mock_upstream: Mock, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A rule given another kind under its name: its open incidents of the former kind (same
    rule, same subjects) no longer stand in for the new kind's. A breaker trip, told once,
    resolves them and opens its own breaker incidents, with their events."""
    with WebhookReceiver() as hooks:
        config = openai_config(mock_upstream)
        config["models"] += [{"name": "shifty", "deployment": name, "provider": P, "model": "gpt-4o-mini",
                              **SHORT} for name in ("one", "two")]
        config["router"] = {"num_retries": 0, "cooldown": {"failures": 1000, "seconds": 30}}
        config["alerts"] = {"evaluate_seconds": 0.2,
                            "webhooks": {"oncall": {"url": hooks.url, "secret": HOOK_SECRET}},
                            "rules": [{"name": "shifty", "kind": "error_rate", "group": "shifty",
                                       "threshold": 0.5, "window_seconds": 60, "min_requests": 2}]}
        if pair.kind == "cluster":
            postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
            config["database"] = {"url": postgres.create_database(f"alerts_{uuid.uuid4().hex[:8]}")}
            config["redis"] = {"url": redis.url}
        gw = start_gateway(config, tmp_path)
        watched = Pair(pair.kind, gw, gw, hooks, config)
        try:
            def both_failing() -> list[dict[str, Any]] | None:
                assert chat(gw, "shifty", "mock:status=500 failing").status_code == 502
                found = watched.alerts(rule="shifty", state="open")
                return found if len(found) == 2 else None

            before = until(both_failing, "no error_rate incident on both deployments")
            assert {i["kind"] for i in before} == {"error_rate"}
            gw.process.stop()
            # The same rule as a breaker rule; evaluations far apart, so only the trip can end
            # the error_rate incidents within this test.
            config["router"]["cooldown"]["failures"] = 2
            config["alerts"]["evaluate_seconds"] = 60
            config["alerts"]["rules"] = [{"name": "shifty", "kind": "breaker", "group": "shifty"}]
            gw = watched.first = watched.second = start_gateway(config, tmp_path)
            until(lambda: chat(gw, "shifty", "mock:status=500 failing").status_code == 503,
                  "'shifty' never cooled down")

            def replaced() -> list[dict[str, Any]] | None:
                found = watched.alerts(rule="shifty", state="open")
                return found if len(found) == 2 and all(i["kind"] == "breaker" for i in found) else None

            after = until(replaced, "no breaker incidents opened in place of the error_rate ones")
            assert sorted(i["subject"] for i in after) == ["shifty/one", "shifty/two"]
            old = {i["id"]: i for i in watched.alerts(rule="shifty", state="resolved")}
            assert set(old) == {i["id"] for i in before}
            assert all(i["kind"] == "error_rate" and i["resolved_value"] is None for i in old.values())
            firing = delivered(watched, "shifty", "alert.firing", count=4)
            assert {e["data"]["incident_id"] for e in firing.values()} == set(old) | {i["id"] for i in after}
            resolved = delivered(watched, "shifty", "alert.resolved", count=2)
            assert {e["data"]["incident_id"] for e in resolved.values()} == set(old)
        finally:
            gw.process.stop()


def test_shutdown_gives_hanging_budget_and_alert_receivers_their_grace_once(
    pair: Pair, mock_upstream: Mock, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """One receiver that hangs, as budgets.webhook and as an alert webhook (the same host down):
    the exit waits its few seconds once, not once for the budget event and again for the alert."""
    with WebhookReceiver(then=HANG) as hooks:
        config = openai_config(mock_upstream)
        config["models"] += [m for m in pair.config["models"] if m["name"] == PRICED]
        hook = {"url": hooks.url, "secret": HOOK_SECRET, "timeout_seconds": 60}
        config["budgets"] = {"webhook": hook}
        config["alerts"] = {"webhooks": {"oncall": hook},
                            "rules": [{"name": "budget-full", "kind": "budget", "thresholds": [100]}]}
        if pair.kind == "cluster":
            postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
            config["database"] = {"url": postgres.create_database(f"alerts_{uuid.uuid4().hex[:8]}")}
            config["redis"] = {"url": redis.url}
        gw = start_gateway(config, tmp_path)
        try:
            resp = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
            key = resp.json()
            resp = httpx.put(f"{gw.url}/admin/v1/budgets", headers=ADMIN, timeout=10, json={
                "scope": "key", "subject": key["id"], "max_amount": 0.01, "thresholds": [100]})
            assert resp.status_code == 200, resp.text
            assert chat(gw, PRICED, LONG, key=key["key"], max_tokens=5).status_code == 200  # $0.01
            sent = {r.json()["type"] for r in hooks.wait_for(2, timeout=20)}
            assert sent == {"budget.threshold", "alert.firing"}  # both in flight, hanging
            began = time.monotonic()
            assert gw.process.stop() == 0
            elapsed = time.monotonic() - began
            assert elapsed < 8.5, f"the exit took {elapsed:.1f} s: the grace (5 s) twice over"
            out = gw.process.output
            assert "budget webhook" in out and "alert webhook oncall" in out  # both cut, and said so
        finally:
            gw.process.stop()
