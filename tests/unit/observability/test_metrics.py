"""The metrics observer in process: what a finished request adds, and the bounds on labels (an
unknown model is ``other``, foreign error codes run out into ``other``, the kept label sets are
bounded), refusals by scope, who may read /metrics, the configuration's bad input, and a worker
that died mid-request in multiprocess mode."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from switchboard.config.schema import MetricsConfig
from switchboard.context import Attempt, RequestContext, Spent
from switchboard.errors import GatewayError, InvalidRequest, RateLimited, UpstreamRateLimited
from switchboard.http import openai_api
from switchboard.observability import metrics as metrics_module
from switchboard.observability.metrics import MULTIPROC_ENV, Metrics
from switchboard.pipeline.budgets import BudgetExceeded
from switchboard.routing.health import Health

MASTER = "master-key-0123456789"
SCRAPER = "scraper-key-0123456789"


def _route(group: str, deployment: str, provider: str = "openai") -> Any:
    return SimpleNamespace(target=SimpleNamespace(name=group, provider=provider), deployment=deployment)


class Table:
    def __init__(self) -> None:
        self.route = _route("gpt", "gpt-a")
        group = SimpleNamespace(name="gpt")
        groups = {"gpt": group, "gpt-alias": group}
        self.current = SimpleNamespace(groups=groups, splits={"gpt-split": object()})

    def all_routes(self) -> list[Any]:
        return [self.route]


def make(**config: Any) -> tuple[Metrics, Table]:
    table = Table()
    return Metrics(MetricsConfig(key=SCRAPER, **config), MASTER, table, Health(), ["semantic-router"]), table


def finished(table: Table, model: str = "gpt", status: int = 200, code: str | None = None,
             routed: bool = True, **fields: Any) -> RequestContext:
    ctx = RequestContext("rid", "chat", openai_api.CHAT, {}, b"", time.perf_counter() - 0.05, **fields)
    ctx.request = {"model": model}
    if routed:
        ctx.group = table.current.groups["gpt"]
        ctx.route = table.route
        ctx.attempts = [Attempt("gpt-a", "gpt", status, code, 10)]
        ctx.split = (0.001, 0.04)
    ctx.outcome.status = status
    ctx.outcome.error_code = code
    ctx.outcome.finished_at = time.perf_counter()
    return ctx


def run(m: Metrics, ctx: RequestContext) -> None:
    m.began()
    m.observe(ctx)


def samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(m: Metrics, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(m).items() if n == name and wanted <= ls)


def test_a_request_counts_once_with_its_route_tokens_cost_and_times() -> None:
    m, table = make()
    ctx = finished(table)
    ctx.spent = Spent(2_500_000, 30, 10, 20)
    run(m, ctx)
    labels = {"model": "gpt", "group": "gpt", "deployment": "gpt-a", "provider": "openai",
              "operation": "chat", "stream": "false", "status": "200", "status_class": "2xx", "code": ""}
    assert samples(m)[("switchboard_requests_total", frozenset(labels.items()))] == 1
    assert total(m, "switchboard_input_tokens_total", model="gpt") == 10
    assert total(m, "switchboard_output_tokens_total", model="gpt") == 20
    assert total(m, "switchboard_cost_usd_total", model="gpt") == pytest.approx(0.0025)
    assert total(m, "switchboard_overhead_seconds_sum") == pytest.approx(0.001)
    assert total(m, "switchboard_upstream_seconds_sum") == pytest.approx(0.04)
    assert total(m, "switchboard_overhead_seconds_bucket", le="0.001") == 1
    assert total(m, "switchboard_request_duration_seconds_count", status_class="2xx") == 1
    assert total(m, "switchboard_requests_in_flight") == 0
    # A non-stream request has no time to first token, an admin call no overhead series.
    assert total(m, "switchboard_time_to_first_token_seconds_count") == 0


def test_names_the_configuration_does_not_know_are_other() -> None:
    m, table = make()
    for name in ("gpt-alias", "gpt-split", "semantic-router"):
        run(m, finished(table, model=name))
    for i in range(50):
        run(m, finished(table, model=f"made-up-{i}", status=404, code="model_not_found", routed=False))
    assert total(m, "switchboard_requests_total", model="gpt-alias") == 1
    assert total(m, "switchboard_requests_total", model="gpt-split") == 1
    assert total(m, "switchboard_requests_total", model="semantic-router") == 1
    assert total(m, "switchboard_requests_total", model="other", group="", code="model_not_found") == 50
    assert not any("made-up" in str(labels) for _, labels in samples(m))


def test_error_codes_are_the_gateways_own_and_a_bounded_few_more() -> None:
    m, table = make()
    run(m, finished(table, status=429, code="rate_limit_exceeded"))
    run(m, finished(table, status=400, code="Not A Code!"))
    for i in range(metrics_module.MAX_OTHER_CODES + 10):
        run(m, finished(table, status=400, code=f"provider_code_{i}"))
    codes = {dict(labels)["code"] for name, labels in samples(m) if name == "switchboard_requests_total"}
    assert "rate_limit_exceeded" in codes and "other" in codes
    assert len(codes - {"rate_limit_exceeded", "other"}) == metrics_module.MAX_OTHER_CODES
    assert total(m, "switchboard_requests_total", code="other") == 11
    # A success never carries a code.
    run(m, finished(table, status=200, code="ignored"))
    assert total(m, "switchboard_requests_total", status="200", code="") == 1


def test_kept_label_sets_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_SERIES", 3)
    m, table = make()
    for status in (200, 400, 401, 403, 404, 500, 502):
        run(m, finished(table, status=status, code=None if status == 200 else "internal_error"))
    assert len(m._series) == 3
    assert total(m, "switchboard_requests_total") == 7
    # The four label sets past the cap are one series, every label other, with all it measured.
    folded = {"model": "other", "group": "other", "deployment": "other", "provider": "other",
              "operation": "other", "stream": "other", "status": "other", "status_class": "other",
              "code": "other"}
    assert samples(m)[("switchboard_requests_total", frozenset(folded.items()))] == 4
    assert total(m, "switchboard_upstream_seconds_count", deployment="other") == 4
    assert total(m, "switchboard_request_duration_seconds_count", status_class="other") == 4
    statuses = {dict(ls)["status"] for n, ls in samples(m) if n == "switchboard_requests_total"}
    assert statuses == {"200", "400", "401", "other"}


def test_label_sets_past_the_cap_make_no_more_children() -> None:
    """Deployments added at run time are not bounded by the configuration: past MAX_SERIES label
    sets, prometheus-client is handed no new children (it keeps every one it made)."""
    m, table = make()
    past = 100
    for i in range(metrics_module.MAX_SERIES + past):
        ctx = finished(table)
        ctx.attempts = [Attempt(f"gpt-{i}", "gpt", 200, None, 10)]
        ctx.spent = Spent(1000, 3, 1, 2)
        run(m, ctx)
    m.flush()
    requests = m.requests.collect()[0].samples
    created = [s for s in requests if s.name == "switchboard_requests_total"]
    assert len(created) == metrics_module.MAX_SERIES + 1
    assert sum(s.value for s in created) == metrics_module.MAX_SERIES + past
    other = [s for s in created if s.labels["deployment"] == "other"]
    assert len(other) == 1 and other[0].value == past
    assert {s.labels["model"] for s in other} == {"other"}
    tokens = [s for s in m.input_tokens.collect()[0].samples if s.name == "switchboard_input_tokens_total"]
    assert len(tokens) == metrics_module.MAX_SERIES + 1
    assert next(s.value for s in tokens if s.labels["deployment"] == "other") == past
    # A label set seen before the cap keeps its own series.
    ctx = finished(table)
    ctx.attempts = [Attempt("gpt-7", "gpt", 200, None, 10)]
    run(m, ctx)
    m.flush()
    assert next(s.value for s in m.requests.collect()[0].samples
                if s.name == "switchboard_requests_total" and s.labels["deployment"] == "gpt-7") == 2


def test_principal_labels_only_when_configured() -> None:
    from switchboard.context import Principal

    principal = Principal("key_1", role="developer", key_id="key_1", tenant_id="acme", team_id="ml")
    m, table = make()
    run(m, finished(table, principal=principal))
    assert not any("acme" in str(labels) for _, labels in samples(m))
    m, table = make(labels=["tenant", "team"])
    run(m, finished(table, principal=principal))
    run(m, finished(table))
    assert total(m, "switchboard_requests_total", tenant="acme", team="ml") == 1
    assert total(m, "switchboard_cost_usd_total", tenant="acme", team="ml") == 0
    assert total(m, "switchboard_requests_total", tenant="", team="") == 1


def test_caller_labels_take_a_bounded_number_of_values() -> None:
    """Past ``metrics.max_label_values`` distinct values a label is ``other``, and each request
    reported so is counted; values seen before keep their own series."""
    from switchboard.context import Principal

    def user(name: str) -> Principal:
        return Principal(f"key_{name}", role="developer", key_id=f"key_{name}", tenant_id="acme",
                         user_id=name)

    m, table = make(labels=["tenant", "user"], max_label_values=2)
    assert total(m, "switchboard_metric_label_overflow_total", label="user") == 0
    for name in ("ann", "bob", "cyd", "dee", "ann", "cyd"):
        run(m, finished(table, principal=user(name)))
    run(m, finished(table))  # no caller: an empty value, never counted against the bound
    users = {dict(labels).get("user") for name, labels in samples(m) if name == "switchboard_requests_total"}
    assert users == {"ann", "bob", "other", ""}
    assert total(m, "switchboard_requests_total", user="ann") == 2
    assert total(m, "switchboard_requests_total", user="other") == 3
    assert total(m, "switchboard_cost_usd_total", user="other") == 0  # the token counters too
    for _ in range(2):  # scraped twice: counted once
        assert total(m, "switchboard_metric_label_overflow_total", label="user") == 3
        assert total(m, "switchboard_metric_label_overflow_total", label="tenant") == 0
    assert total(m, "switchboard_requests_total", tenant="acme") == 6


def test_retries_and_fallbacks_from_the_attempts() -> None:
    m, table = make()
    ctx = finished(table)
    ctx.attempts = [Attempt("gpt-a", "gpt", 502, "upstream_error", 5), Attempt("gpt-b", "gpt", 502, "x", 5),
                    Attempt("other-a", "backup", 200, None, 5)]
    run(m, ctx)
    assert total(m, "switchboard_retries_total", group="gpt", deployment="gpt-b") == 1
    assert total(m, "switchboard_fallbacks_total", group="gpt", fallback="backup") == 1
    assert total(m, "switchboard_requests_total", group="backup", deployment="other-a") == 1


def test_retries_and_fallbacks_take_a_bounded_number_of_label_pairs() -> None:
    """Deployments and groups come and go at run time: past ``metrics.max_label_values`` pairs,
    a retry or fallback is counted under ``other`` and in the overflow counter; pairs seen
    before keep their own series."""
    m, table = make(max_label_values=2)

    def attempts(*pairs: tuple[str, str]) -> None:
        ctx = finished(table)
        ctx.attempts = [Attempt("gpt-a", "gpt", 502, "upstream_error", 5),
                        *(Attempt(deployment, group, 502, "x", 5) for deployment, group in pairs)]
        run(m, ctx)

    attempts(("gpt-b", "gpt"), ("gpt-c", "gpt"), ("fb-a", "backup"))
    attempts(("gpt-d", "gpt"), ("fb-b", "spare"), ("fb-c", "third"), ("gpt-b", "gpt"))
    retried = {dict(labels).get("deployment") for name, labels in samples(m)
               if name == "switchboard_retries_total"}
    assert retried == {"gpt-b", "gpt-c", "other"}
    assert total(m, "switchboard_retries_total", group="gpt", deployment="gpt-b") == 2
    assert total(m, "switchboard_retries_total", group="other", deployment="other") == 1
    fell_back = {dict(labels).get("fallback") for name, labels in samples(m)
                 if name == "switchboard_fallbacks_total"}
    assert fell_back == {"backup", "spare", "other"}
    assert total(m, "switchboard_fallbacks_total", group="other", fallback="other") == 1
    for _ in range(2):  # scraped twice: counted once
        assert total(m, "switchboard_metric_label_overflow_total", label="deployment") == 1
        assert total(m, "switchboard_metric_label_overflow_total", label="fallback") == 1


def test_refusals_by_scope() -> None:
    m, _ = make()
    m.refused(RateLimited("slow down", headers={"x-ratelimit-scope": "team"}))
    m.refused(RateLimited("slow down", headers={"x-ratelimit-scope": "a-scope-we-never-named"}))
    # A provider's 429 passed on: the provider's limit, under its code when it sent one.
    m.refused(UpstreamRateLimited("the provider's 429", headers={"retry-after": "3"}))
    m.refused(UpstreamRateLimited("Gemini's 429", code="resource_exhausted"))
    m.refused(InvalidRequest("too big", code="request_exceeds_limit", headers={"x-ratelimit-scope": "key"}))
    m.refused(BudgetExceeded("spent", headers={"x-switchboard-budget-scope": "tenant"}))
    m.refused(GatewayError("something else"))
    assert total(m, "switchboard_rate_limit_rejections_total", scope="team", code="rate_limit_exceeded") == 1
    assert total(m, "switchboard_rate_limit_rejections_total", scope="other") == 1
    assert total(m, "switchboard_rate_limit_rejections_total", scope="key", code="request_exceeds_limit") == 1
    limited = "switchboard_rate_limit_rejections_total"
    assert total(m, limited, scope="upstream", code="rate_limit_exceeded") == 1
    assert total(m, limited, scope="upstream", code="resource_exhausted") == 1
    assert total(m, "switchboard_rate_limit_rejections_total") == 5
    assert total(m, "switchboard_budget_rejections_total", scope="tenant", code="budget_exceeded") == 1


def test_streams_in_flight_and_time_to_first_token() -> None:
    m, table = make()
    m.began()
    m.stream_began()
    assert total(m, "switchboard_streams_in_flight") == 1 and total(m, "switchboard_requests_in_flight") == 1
    ctx = finished(table)
    ctx.outcome.stream = True
    ctx.outcome.first_byte_at = ctx.started + 0.02
    m.observe(ctx)
    assert total(m, "switchboard_streams_in_flight") == 0 and total(m, "switchboard_requests_in_flight") == 0
    assert total(m, "switchboard_time_to_first_token_seconds_sum") == pytest.approx(0.02)


def test_a_stream_its_client_left_after_it_began_is_counted_abandoned() -> None:
    """Under the status it was sent (200, as the ledger records it), and in a counter of its
    own; a stream read to its end, or a non-stream request the client left (499), is not."""
    m, table = make()
    for left in (False, True, True):
        m.began()
        m.stream_began()
        ctx = finished(table)
        ctx.outcome.stream = True
        ctx.outcome.first_byte_at = ctx.started + 0.01
        ctx.outcome.client_disconnected = left
        m.observe(ctx)
    gone = finished(table)
    gone.outcome.client_disconnected = True
    run(m, gone)
    name = "switchboard_streams_abandoned_total"
    route = {"group": "gpt", "deployment": "gpt-a", "provider": "openai", "operation": "chat"}
    assert total(m, name, model="gpt", **route) == 2
    assert total(m, name) == 2
    assert total(m, "switchboard_requests_total", status="200", stream="true") == 3
    assert total(m, "switchboard_requests_total", status="499", stream="false") == 1


def test_cooling_down_is_read_when_scraped() -> None:
    m, table = make()
    health = Health()
    m._health._health = health
    assert total(m, "switchboard_deployment_cooling_down", group="gpt", deployment="gpt-a") == 0
    for _ in range(3):  # router.cooldown's default: three failures in a row
        health.failed(table.route, _UpstreamDown("down"))
    assert total(m, "switchboard_deployment_cooling_down", group="gpt", deployment="gpt-a") == 1


def test_the_writers_are_read_when_scraped() -> None:
    """Their counts since start become counters (added by what they grew between scrapes),
    their queues gauges; a writer not running (no body policy) exports nothing."""
    m, _ = make()
    ledger = SimpleNamespace(pending_records=0, oldest_pending_at=None, spooled_bytes=0, stored=0, held=0,
                             dropped=0, dropped_full=0, dropped_closed=0, write_timeouts=0)
    last_used = SimpleNamespace(pending=0, failed_writes=0, refused=0)
    m.watch(ledger, None, last_used)  # type: ignore[arg-type]
    assert total(m, "switchboard_ledger_pending_records") == 0
    assert total(m, "switchboard_ledger_oldest_pending_seconds") == 0
    assert total(m, "switchboard_ledger_dropped_records_total", reason="spool_full") == 0
    ledger.pending_records, ledger.oldest_pending_at, ledger.spooled_bytes = 7, time.time() - 30, 900
    ledger.stored, ledger.held, ledger.dropped, ledger.dropped_full, ledger.dropped_closed = 5, 1, 7, 2, 4
    ledger.write_timeouts = 3
    last_used.pending, last_used.failed_writes, last_used.refused = 2, 4, 1
    for _ in range(2):  # scraped twice: counted once
        assert total(m, "switchboard_ledger_pending_records") == 7
        assert 30 <= total(m, "switchboard_ledger_oldest_pending_seconds") < 40
        assert total(m, "switchboard_ledger_spool_bytes") == 900
        assert total(m, "switchboard_ledger_stored_records_total") == 5
        assert total(m, "switchboard_ledger_held_records_total") == 1
        assert total(m, "switchboard_ledger_write_timeouts_total") == 3
        assert total(m, "switchboard_ledger_dropped_records_total", reason="spool_full") == 2
        assert total(m, "switchboard_ledger_dropped_records_total", reason="closed") == 4
        assert total(m, "switchboard_ledger_dropped_records_total", reason="spool_write_failed") == 1
        assert total(m, "switchboard_key_last_used_pending") == 2
        assert total(m, "switchboard_key_last_used_failed_writes_total") == 4
        assert total(m, "switchboard_key_last_used_refused_total") == 1
    ledger.stored = 8
    assert total(m, "switchboard_ledger_stored_records_total") == 8
    assert not any(name.startswith("switchboard_request_log_") for name, _ in samples(m))


def test_the_docs_table_names_every_metric_exported() -> None:
    """docs/observability.md's table and the metrics made (every writer watched) name the same."""
    m, _ = make()
    ledger = SimpleNamespace(pending_records=0, oldest_pending_at=None, spooled_bytes=0, stored=0, held=0,
                             dropped=0, dropped_full=0, dropped_closed=0, write_timeouts=0)
    bodies = SimpleNamespace(pending=0, drops={"queue_full": 0})
    last_used = SimpleNamespace(pending=0, failed_writes=0, refused=0)
    stores = SimpleNamespace(latest=lambda: {"database": "ok"})
    hooks = {"budgets": SimpleNamespace(delivered=0, failed=0, dropped=0)}
    m.watch(ledger, bodies, last_used, stores, hooks)  # type: ignore[arg-type]
    made = set()
    for family in m.registry.collect():
        made.add(f"{family.name}_total" if family.type == "counter" else family.name)
    page = (Path(__file__).parents[3] / "docs" / "observability.md").read_text()
    table = page.split("| metric | type | labels | what |", 1)[1].split("\n\n", 1)[0]
    documented = {name for row in table.splitlines()[2:]
                  for name in re.findall(r"`(switchboard_[a-z_]+)`", row.split("|")[1])}
    assert documented == made


class _UpstreamDown(GatewayError):
    status = 502
    code = "upstream_error"
    from_upstream = True


def test_who_may_read() -> None:
    m, _ = make()

    def ok(*headers: tuple[bytes, bytes]) -> bool:
        return m.authorized(list(headers))

    assert ok((b"authorization", b"Bearer " + MASTER.encode()))
    assert ok((b"authorization", b"bearer " + SCRAPER.encode()))
    assert not ok()
    assert not ok((b"authorization", b"Bearer"))
    assert not ok((b"authorization", b"Basic " + MASTER.encode()))
    assert not ok((b"authorization", b"Bearer " + MASTER.encode() + b"x"))
    assert not ok((b"authorization", SCRAPER.encode()))
    assert not ok((b"x-api-key", MASTER.encode()))


@pytest.mark.parametrize("config", [
    {"key": "short"},
    {"key": ["not", "a", "string"]},
    {"labels": ["ip_address"]},
    {"labels": ["tenant", "team", "key", "user", "tenant"]},
    {"labels": ["tenant", "tenant"]},
    {"max_label_values": 0},
    {"max_label_values": "many"},
    {"port": 0},
    {"port": "metrics"},
    {"enabled": "sometimes"},
    {"scrape": True},
])
def test_bad_configuration_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MetricsConfig(**config)


def test_a_dead_workers_in_flight_requests_stop_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed mid-request: its counters stay (they happened), its in-flight gauge goes.
    child = (
        "import os\n"
        "from prometheus_client import Counter, Gauge\n"
        "Gauge('switchboard_requests_in_flight', 'x', multiprocess_mode='livesum').inc()\n"
        "Counter('switchboard_retries', 'x', ('group', 'deployment')).labels('gpt', 'gpt-a').inc()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", child], env={MULTIPROC_ENV: str(tmp_path)}, check=True)
    assert list(tmp_path.glob("gauge_livesum_*.db"))
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    m, _ = make()
    assert m.multiprocess_dir == str(tmp_path)
    assert total(m, "switchboard_requests_in_flight") == 0
    assert not list(tmp_path.glob("gauge_livesum_*.db"))
    assert total(m, "switchboard_retries_total", group="gpt", deployment="gpt-a") == 1


def test_pending_observations_land_in_the_same_buckets_as_observe() -> None:
    # The request path counts in plain Python and hands the counts over at a flush: the
    # exposition must be what prometheus-client's own observe() would have produced.
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    reference = Histogram("reference", "x", buckets=metrics_module.OVERHEAD_BUCKETS, registry=registry)
    m, table = make()
    values = [0.0, 0.0004, 0.0005, 0.00051, 0.003, 0.1, 0.2, 7.0]
    for value in values:
        reference.observe(value)
        ctx = finished(table)
        ctx.split = (value, 0.0)
        run(m, ctx)
    expected = {dict(s.labels)["le"]: s.value for s in registry.collect().__next__().samples
                if s.name == "reference_bucket"}
    got = {dict(labels)["le"]: v for (name, labels), v in samples(m).items()
           if name == "switchboard_overhead_seconds_bucket"}
    assert got == expected
    assert total(m, "switchboard_overhead_seconds_sum") == pytest.approx(sum(values))
    assert total(m, "switchboard_overhead_seconds_count") == len(values)
