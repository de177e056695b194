"""Prometheus metrics (docs/observability.md, "Prometheus metrics").

One :class:`Metrics` per process: the observer the observe stage hands every finished request to
(``observe``), its hooks on the way in and out (in-flight gauges, refusals), the deployments'
health read at scrape time, and ``GET /metrics`` (``respond``; the optional listener of
``metrics.port`` is ``observability/metrics_server.py``).

Cost on the request path: one tuple (the request's labels) and one dict lookup find the label
set's pending counts (up to ``MAX_SERIES`` label sets; the requests of any later one are counted
in one series whose labels are all ``other``), then a few additions in plain
Python; the counts are handed to prometheus-client (its locks, its files) at each scrape, and
every second with several workers, not per request. Labels stay bounded: a requested model name
that is no configured model, alias, split or semantic router is ``other``; error codes are the
gateway's own (the classes of the error tree) plus the first few others seen, the rest
``other``; tenant, team, key and user are labels only when ``metrics.labels`` names them, and
each takes at most ``metrics.max_label_values`` distinct values per process (the first seen; later
ones are ``other``, counted in ``switchboard_metric_label_overflow_total``): one set membership
test per label per request.

Several workers (``server.workers > 1``): ``switchboard serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
to a fresh directory before the workers start, each worker writes its values to files there
(every second), and a scrape (answered by any worker) adds up every worker's files
(prometheus-client's multiprocess mode). The in-flight gauges count live workers only: a scrape
drops the files of a worker that is gone. One worker keeps its values in memory, no files.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import hmac
import logging
import math
import os
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from switchboard.background import stop_task
from switchboard.config.schema import MetricsConfig
from switchboard.context import Attempt, RequestContext
from switchboard.errors import RATE_LIMIT_SCOPE, AuthenticationFailed, GatewayError
from switchboard.observability.metrics_server import MetricsServer

if TYPE_CHECKING:
    from switchboard.routing.health import Health
    from switchboard.routing.live import Snapshot
    from switchboard.routing.table import Route
    from switchboard.stores import UsageRecord

log = logging.getLogger("switchboard.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MODEL_CALLS = frozenset({
    "chat", "embeddings", "completions",
    # media (gateway.MODEL_CALLS, docs/api-media.md)
    "rerank", "moderations", "image_generations", "image_edits", "image_variations", "transcriptions",
    "translations", "speech",
})
OTHER = "other"
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Whole requests and upstream exchanges: from a few milliseconds to long generations.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
                   120.0, 300.0)
# The gateway's own time: fractions of a millisecond to a tenth of a second.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BOUNDS = (*LATENCY_BUCKETS, math.inf)
OVERHEAD_BOUNDS = (*OVERHEAD_BUCKETS, math.inf)
FLUSH_SECONDS = 1.0  # several workers: how often each hands its counts to the shared files

ROUTE_LABELS = ("group", "deployment", "provider", "operation", "stream")
EXTRA_LABELS = {"tenant": "tenant", "team": "team", "key": "key", "user": "user"}
# Refusals counted by scope: a rate limit's (the gateway's own, or a provider's 429 passed on) by
# its x-ratelimit-scope header; a budget's, by the codes the budget stage answers with and its
# x-switchboard-budget-scope header. The scopes are a finite set of names.
BUDGET_CODES = frozenset({"budget_exceeded", "request_exceeds_budget"})
SCOPES = frozenset({"global", "model", "tenant", "team", "user", "key", "key_model", "upstream",
                    "service"})  # the last: a service's own rpm (services/stages.py)
MAX_SERIES = 4096  # label sets with series of their own; beyond, each new one is counted as other
MAX_OTHER_CODES = 64  # error codes outside the error tree given a label of their own
_CODE = re.compile(r"^[a-z0-9_.]{1,64}$")
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class Table(Protocol):
    """The live model table, as metrics read it (routing/live.py)."""

    @property
    def current(self) -> Snapshot: ...

    def all_routes(self) -> list[Route]: ...


def _error_codes() -> set[str]:
    """The codes of every class in the error tree (those imported so far)."""
    codes: set[str] = set()
    todo: list[type[GatewayError]] = [GatewayError]
    while todo:
        cls = todo.pop()
        code = cls.__dict__.get("code")
        if isinstance(code, str):
            codes.add(code)
        todo.extend(cls.__subclasses__())
    return codes


class _Hist:
    """Observations of one histogram child not yet handed to it: plain Python arithmetic on the
    request path (no lock, no wrapper call), handed over by :meth:`flush`."""

    __slots__ = ("bounds", "child", "counts", "sum")

    def __init__(self, child: Histogram, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds  # the upper bounds, +Inf last: every value has a bucket
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value

    def flush(self) -> None:
        # prometheus-client's histogram child keeps its sum and per-bucket counts (not yet
        # cumulative) as values ``_sum`` and ``_buckets``, in memory or in the multiprocess
        # files; adding to them is what ``observe`` does, once per observation.
        child = self.child
        child._sum.inc(self.sum)
        counts = self.counts
        for i, n in enumerate(counts):
            if n:
                child._buckets[i].inc(n)
                counts[i] = 0
        self.sum = 0.0


class _Series:
    """One label set (one kind of request): its label children, created once, and what it
    counted since the last flush."""

    __slots__ = ("abandoned", "abandoned_child", "cost", "cost_child", "dirty", "duration", "input",
                 "input_child", "output", "output_child", "overhead", "requests", "requests_child", "ttft",
                 "upstream")

    def __init__(self, m: Metrics, key: tuple[object, ...], *, folded: bool = False) -> None:
        model, group, deployment, provider, operation, stream, status, code, *extra = key
        if folded:  # the label sets beyond MAX_SERIES: every label other, room for every metric
            route: tuple[object, ...] = (OTHER,) * 5
            status_class = OTHER
            called = stream = True
        else:
            route = (group, deployment, provider, operation, "true" if stream else "false")
            status_class = _STATUS_CLASS.get(int(status) // 100, "other")  # type: ignore[call-overload]
            called = operation in MODEL_CALLS and group != ""
        self.requests_child = m.requests.labels(model, *route, str(status), status_class, code, *extra)
        self.duration = _Hist(m.duration.labels(*route, status_class), LATENCY_BOUNDS)
        self.overhead = _Hist(m.overhead.labels(*route), OVERHEAD_BOUNDS) if called else None
        self.upstream = _Hist(m.upstream.labels(*route), LATENCY_BOUNDS) if called else None
        self.ttft = (_Hist(m.ttft.labels(group, deployment, provider, operation), LATENCY_BOUNDS)
                     if called and stream else None)
        tokens = (model, group, deployment, provider, operation, *extra)
        # Made with the series (at 0), so the first abandoned stream is an increase to alert on.
        self.abandoned_child = m.abandoned.labels(*tokens) if called and stream else None
        self.input_child = m.input_tokens.labels(*tokens) if called else None
        self.output_child = m.output_tokens.labels(*tokens) if called else None
        # An MCP tool call has no tokens, but its price is in the ledger (mcp/stages.py).
        self.cost_child = m.cost.labels(*tokens) if called or operation == "mcp" else None
        self.requests = self.input = self.output = self.cost = 0  # cost in billionths of a dollar
        self.abandoned = 0
        self.dirty = False

    def flush(self) -> None:
        self.dirty = False
        self.requests_child.inc(self.requests)
        self.requests = 0
        self.duration.flush()
        for hist in (self.overhead, self.upstream, self.ttft):
            if hist is not None:
                hist.flush()
        if self.input and self.input_child is not None:
            self.input_child.inc(self.input)
        if self.output and self.output_child is not None:
            self.output_child.inc(self.output)
        if self.cost and self.cost_child is not None:
            self.cost_child.inc(self.cost / 1e9)
        if self.abandoned:
            self.abandoned_child.inc(self.abandoned)  # type: ignore[union-attr]  # counted with it only
        self.input = self.output = self.cost = self.abandoned = 0


class LedgerHealth(Protocol):
    """What the metrics read of the usage ledger's writer (spend/ledger.py) at scrape time."""

    @property
    def pending_records(self) -> int: ...
    @property
    def oldest_pending_at(self) -> float | None: ...
    @property
    def spooled_bytes(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def dropped_full(self) -> int: ...
    @property
    def dropped_closed(self) -> int: ...
    @property
    def write_timeouts(self) -> int: ...


class BodiesHealth(Protocol):
    """What the metrics read of the request log's body writer (observability/request_log.py)."""

    @property
    def pending(self) -> int: ...
    @property
    def drops(self) -> dict[str, int]: ...


class LastUsedHealth(Protocol):
    """What the metrics read of the keys' last-used writer (access/last_used.py)."""

    @property
    def pending(self) -> int: ...
    @property
    def failed_writes(self) -> int: ...
    @property
    def refused(self) -> int: ...


class WebhookHealth(Protocol):
    """What the metrics read of a webhook sender (observability/webhooks.py): events counted
    since start, by how they ended."""

    delivered: int
    failed: int
    dropped: int


WEBHOOK_OUTCOMES = ("delivered", "failed", "dropped")


class _Total:
    """A counter child fed from a running total another object keeps (a writer's count since
    start): each flush adds what it grew by since the last one, so the writer counts in plain
    Python and prometheus-client (its lock, its files) is touched at scrape time only."""

    __slots__ = ("child", "read", "seen")

    def __init__(self, child: Counter, read: Callable[[], int]) -> None:
        self.child = child
        self.read = read
        self.seen = 0

    def flush(self) -> None:
        now = self.read()
        if now > self.seen:
            self.child.inc(now - self.seen)
        self.seen = now


class WriterMetrics:
    """The background writers' health (docs/observability.md, "Background writers"), read from
    the writers at each flush. With several workers each worker's values go to its files like
    the rest: the gauges add up live workers (the oldest record's age: the largest), so records
    a dead worker left in the spool count again once the next start claims them."""

    def __init__(self, registry: CollectorRegistry | None, ledger: LedgerHealth | None,
                 bodies: BodiesHealth | None, last_used: LastUsedHealth | None,
                 webhooks: Mapping[str, WebhookHealth] | None = None) -> None:
        self._gauges: list[tuple[Gauge, Callable[[], float]]] = []
        self._totals: list[_Total] = []
        if webhooks:  # a handful, from the configuration: the labels stay bounded
            events = Counter("switchboard_webhook_events", "Webhook events, by receiver and how they ended",
                             ("webhook", "outcome"), registry=registry)
            for name, sender in webhooks.items():
                for outcome in WEBHOOK_OUTCOMES:
                    self._total(events.labels(name, outcome), functools.partial(getattr, sender, outcome))
        if ledger is not None:
            self._gauge(Gauge("switchboard_ledger_pending_records",
                              "Usage records spooled and not yet in the database",
                              registry=registry, multiprocess_mode="livesum"),
                        lambda: ledger.pending_records)
            self._gauge(Gauge("switchboard_ledger_oldest_pending_seconds",
                              "Age of the oldest usage record not yet in the database (0: none)",
                              registry=registry, multiprocess_mode="livemax"),
                        lambda: _age(ledger.oldest_pending_at))
            self._gauge(Gauge("switchboard_ledger_spool_bytes",
                              "Size of the usage spool (records not yet stored and held ones)",
                              registry=registry, multiprocess_mode="livesum"),
                        lambda: ledger.spooled_bytes)
            self._total(Counter("switchboard_ledger_stored_records", "Usage records stored in the database",
                                registry=registry), lambda: ledger.stored)
            self._total(Counter("switchboard_ledger_write_timeouts",
                                "Writes of usage records the database did not answer in time (kept, retried)",
                                registry=registry), lambda: ledger.write_timeouts)
            self._total(Counter("switchboard_ledger_held_records",
                                "Usage records the database refused, kept in the spool for the next start",
                                registry=registry), lambda: ledger.held)
            dropped = Counter("switchboard_ledger_dropped_records", "Usage records lost", ("reason",),
                              registry=registry)
            self._total(dropped.labels("spool_full"), lambda: ledger.dropped_full)
            self._total(dropped.labels("closed"), lambda: ledger.dropped_closed)
            self._total(dropped.labels("spool_write_failed"),
                        lambda: ledger.dropped - ledger.dropped_full - ledger.dropped_closed)
        if bodies is not None:
            self._gauge(Gauge("switchboard_request_log_pending_bodies",
                              "Request-log bodies queued, not yet written",
                              registry=registry, multiprocess_mode="livesum"),
                        lambda: bodies.pending)
            dropped = Counter("switchboard_request_log_bodies_dropped", "Request-log bodies never stored",
                              ("reason",), registry=registry)
            for reason in bodies.drops:
                self._total(dropped.labels(reason), functools.partial(bodies.drops.__getitem__, reason))
        if last_used is not None:
            self._gauge(Gauge("switchboard_key_last_used_pending", "Keys whose last use is not yet written",
                              registry=registry, multiprocess_mode="livesum"),
                        lambda: last_used.pending)
            self._total(Counter("switchboard_key_last_used_failed_writes",
                                "Writes of the keys' last-used times that failed (kept, retried)",
                                registry=registry), lambda: last_used.failed_writes)
            self._total(Counter("switchboard_key_last_used_refused",
                                "Keys whose last-used time the database refused (not recorded)",
                                registry=registry), lambda: last_used.refused)

    def _gauge(self, gauge: Gauge, read: Callable[[], float]) -> None:
        self._gauges.append((gauge, read))

    def _total(self, child: Counter, read: Callable[[], int]) -> None:
        self._totals.append(_Total(child, read))

    def flush(self) -> None:
        for gauge, read in self._gauges:
            gauge.set(read())
        for total in self._totals:
            total.flush()


def _age(at: float | None) -> float:
    return 0.0 if at is None else max(0.0, time.time() - at)


class HealthCollector:
    """Each deployment's cooldown state, read from routing/health.py when scraped."""

    def __init__(self, table: Table, health: Health) -> None:
        self._table = table
        self._health = health

    def collect(self) -> Iterator[Metric]:
        cooling = GaugeMetricFamily(
            "switchboard_deployment_cooling_down",
            "1 while the deployment is cooling down (taken out after failures), else 0",
            labels=["group", "deployment"])
        half_open = GaugeMetricFamily(
            "switchboard_deployment_half_open",
            "1 while the deployment is half-open (its cooldown over, a probe request let through)",
            labels=["group", "deployment"])
        for route in self._table.all_routes():
            status = self._health.state(route)["status"]
            labels = [route.target.name, route.deployment]
            cooling.add_metric(labels, 1.0 if status == "cooling_down" else 0.0)
            half_open.add_metric(labels, 1.0 if status == "half_open" else 0.0)
        yield cooling
        yield half_open


class StoreStates(Protocol):
    """The stores' readiness answers (stores/checks.py)."""

    def latest(self) -> dict[str, str]:
        """The last answers, read without waiting."""
        ...

    async def results(self) -> dict[str, str]:
        """Answers at most a check interval old: a check (bounded) when the last is older."""
        ...


class StoreCollector:
    """``switchboard_store_up``: 1 while a configured store answered its last readiness check
    (``SELECT 1``, a Redis ``PING`` within a second, at most about a second old), else 0. Read
    from stores/checks.py when scraped; a scrape whose answers are older first waits for a check
    (``Metrics.scrape``: a second at most, one per store a second, shared with /health/ready)."""

    def __init__(self, stores: StoreStates) -> None:
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "switchboard_store_up",
            "1 while the store (database, redis) answered its last check, else 0", labels=["store"])
        for store, state in self._stores.latest().items():
            up.add_metric([store], 1.0 if state == "ok" else 0.0)
        yield up


class Metrics:
    """The Prometheus metrics of this process (see the module's docstring)."""

    def __init__(self, config: MetricsConfig, master_key: str, table: Table, health: Health,
                 semantic: Iterable[str] = ()) -> None:
        self.config = config
        self._keys = [master_key.encode()]
        if config.key is not None:
            self._keys.append(config.key.get_secret_value().encode())
        self._table = table
        self._semantic = frozenset(semantic)
        self._extra = tuple(config.labels)
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        # Multiprocess: values live in files; a scrape reads every worker's through the collector.
        registry = None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        self._values = registry  # where metrics made later (the writers') keep their values
        extra = tuple(EXTRA_LABELS[name] for name in self._extra)
        route = ROUTE_LABELS
        self.requests = Counter(
            "switchboard_requests", "Requests answered, by requested model, route and status",
            ("model", *route, "status", "status_class", "code", *extra), registry=registry)
        self.duration = Histogram(
            "switchboard_request_duration_seconds", "Time from the request's arrival to its last byte",
            (*route, "status_class"), buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram(
            "switchboard_time_to_first_token_seconds", "Streams: time from arrival to the first chunk sent",
            ("group", "deployment", "provider", "operation"), buckets=LATENCY_BUCKETS, registry=registry)
        self.overhead = Histogram(
            "switchboard_overhead_seconds",
            "The gateway's own time until the response headers (x-switchboard-overhead-ms)",
            route, buckets=OVERHEAD_BUCKETS, registry=registry)
        self.upstream = Histogram(
            "switchboard_upstream_seconds",
            "Time inside upstream calls, every attempt (x-switchboard-upstream-ms); "
            "streams: until the first chunk",
            route, buckets=LATENCY_BUCKETS, registry=registry)
        token_labels = ("model", "group", "deployment", "provider", "operation", *extra)
        self.input_tokens = Counter("switchboard_input_tokens",
                                    "Prompt tokens, as recorded in the usage ledger", token_labels,
                                    registry=registry)
        self.output_tokens = Counter("switchboard_output_tokens",
                                     "Completion tokens, as recorded in the usage ledger", token_labels,
                                     registry=registry)
        self.cost = Counter("switchboard_cost_usd", "Cost in US dollars, as recorded in the usage ledger",
                            token_labels, registry=registry)
        self.abandoned = Counter(
            "switchboard_streams_abandoned",
            "Streams the client left after they began (counted under the status sent, 200)",
            token_labels, registry=registry)
        self.rate_limited = Counter("switchboard_rate_limit_rejections", "Requests refused by a rate limit",
                                    ("scope", "code"), registry=registry)
        self.budget_rejected = Counter("switchboard_budget_rejections", "Requests refused by a budget",
                                       ("scope", "code"), registry=registry)
        self.retries = Counter("switchboard_retries", "Attempts after the first within the same group",
                               ("group", "deployment"), registry=registry)
        self.fallbacks = Counter("switchboard_fallbacks", "Attempts in a fallback group",
                                 ("group", "fallback"), registry=registry)
        self.in_flight = Gauge("switchboard_requests_in_flight", "Requests being served",
                               registry=registry, multiprocess_mode="livesum")
        self.streams_in_flight = Gauge("switchboard_streams_in_flight", "Streams being written",
                                       registry=registry, multiprocess_mode="livesum")
        self.label_overflow = Counter(
            "switchboard_metric_label_overflow",
            "Requests whose metrics.labels value (retries and fallbacks: attempts whose deployment or "
            "fallback group) was reported as other (metrics.max_label_values reached)",
            ("label",), registry=registry)
        self._health = HealthCollector(table, health)
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._health)
        self.registry = registry
        self._series: dict[tuple[object, ...], _Series] = {}
        # Where label sets beyond MAX_SERIES are counted (made when the first one comes).
        self._folded: _Series | None = None
        self._codes: dict[str, str] = {code: code for code in _error_codes()}
        self._other_codes = 0
        # metrics.labels: the values each label has been given (bounded), and the requests whose
        # value came too late to get one since the last flush (counted in plain Python).
        self._max_values = config.max_label_values
        self._label_values: tuple[set[str], ...] = tuple(set() for _ in self._extra)
        self._overflow = [0] * len(self._extra)
        self._overflow_children = tuple(self.label_overflow.labels(EXTRA_LABELS[name])
                                        for name in self._extra)
        # Retries and fallbacks: a child per (group, deployment) and per (group, fallback) pair,
        # at most max_label_values of each, as the caller labels: groups and deployments are
        # added at run time, through the admin API, not bounded by the configuration.
        self._retry_children: dict[tuple[str, str], Any] = {}
        self._fallback_children: dict[tuple[str, str], Any] = {}
        self._retry_overflow = self.label_overflow.labels("deployment")
        self._fallback_overflow = self.label_overflow.labels("fallback")
        self._server: MetricsServer | None = None
        self._dirty: list[_Series] = []  # label sets with counts not yet flushed
        self._active = 0  # requests in flight
        self._streams = 0  # streams in flight
        self._flusher: asyncio.Task[None] | None = None
        self._writers: WriterMetrics | None = None
        self._stores: StoreStates | None = None

    def watch(self, ledger: LedgerHealth | None, bodies: BodiesHealth | None = None,
              last_used: LastUsedHealth | None = None, stores: StoreStates | None = None,
              webhooks: Mapping[str, WebhookHealth] | None = None) -> None:
        """Export the background writers' health, the webhook senders' counts and whether the
        stores answer (the gateway calls it once they are made)."""
        self._writers = WriterMetrics(self._values, ledger, bodies, last_used, webhooks)
        self._stores = stores
        if stores is not None:
            self.registry.register(StoreCollector(stores))

    # -- the request path ----------------------------------------------------------------------

    def began(self) -> None:
        self._active += 1

    def stream_began(self) -> None:
        self._streams += 1


    def refused(self, error: GatewayError) -> None:
        """A request the chain refused: rate limits (a provider's 429 passed on among them, scope
        ``upstream``) and budgets are counted by scope. Error path only."""
        headers = error.headers
        if not headers:
            return
        code = error.code
        if (scope := headers.get(RATE_LIMIT_SCOPE)) is not None:
            # A provider's 429 carries the provider's code, when it sent one: bounded as any.
            self.rate_limited.labels(scope if scope in SCOPES else OTHER, self._code(code or "")).inc()
        elif code in BUDGET_CODES and (scope := headers.get("x-switchboard-budget-scope")) is not None:
            self.budget_rejected.labels(scope if scope in SCOPES else OTHER, code).inc()

    def observe(self, ctx: RequestContext) -> None:
        """A finished request (the observer the observe stage calls after the response): added
        to its label set's pending counts, handed to prometheus-client at the next flush."""
        self._active -= 1
        outcome = ctx.outcome
        if outcome.stream:  # the edge set it writing the StreamReply stream_began() counted
            self._streams -= 1
        status = outcome.recorded_status()
        attempts = ctx.attempts
        route = ctx.route
        if attempts:
            last = attempts[-1]
            group, deployment = last.group, last.deployment
        else:
            group = ctx.group.name if ctx.group is not None else ""
            deployment = route.deployment if route is not None and ctx.group is not None else ""
        provider = route.target.provider if route is not None and group else ""
        code = outcome.error_code
        key: tuple[object, ...] = (
            # The stream label: a stream reply was written, or the client asked for one (as the
            # ledger records it) and left, or the request failed, before it began.
            self._model(ctx), group, deployment, provider, ctx.operation, outcome.stream or ctx.stream,
            status, "" if code is None or status < 400 else self._code(code),
        )
        if self._extra:
            key = (*key, *self._extras(ctx))
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.requests += 1
        series.duration.observe((outcome.finished_at or time.perf_counter()) - ctx.started)
        split = ctx.split
        if series.overhead is not None and split is not None:
            series.overhead.observe(split[0])
            series.upstream.observe(split[1])  # type: ignore[union-attr]  # set with overhead
        if series.ttft is not None and outcome.stream:
            # A stream that began: its first chunk went out then, even if it failed later (its
            # status is then the error's); an error answered instead of a stream has no first token.
            if outcome.first_byte_at is not None:
                series.ttft.observe(outcome.first_byte_at - ctx.started)
            # Its client left before the end: the status stays the one sent (200), as the ledger's.
            if outcome.client_disconnected:
                series.abandoned += 1
        spent = ctx.spent
        if spent is not None:
            series.input += spent.prompt
            series.output += spent.completion
            series.cost += spent.nano_usd
        if ctx.calls is not None:  # the tool loop's model calls: each retries on its own
            for call in ctx.calls:
                self._count_attempts(call)
        elif attempts is not None and len(attempts) > 1:
            self._count_attempts(attempts)
        if not series.dirty:
            series.dirty = True
            self._dirty.append(series)

    def _count_attempts(self, attempts: list[Attempt]) -> None:
        """One call's attempts after its first: retries within its first group, else fallbacks."""
        first = attempts[0].group
        for attempt in attempts[1:]:
            if attempt.group == first:
                self._attempt_child(self._retry_children, self.retries, self._retry_overflow,
                                    (first, attempt.deployment)).inc()
            else:
                self._attempt_child(self._fallback_children, self.fallbacks, self._fallback_overflow,
                                    (first, attempt.group)).inc()

    def _attempt_child(self, children: dict[tuple[str, str], Any], counter: Counter, overflow: Any,
                       labels: tuple[str, str]) -> Any:
        """The retries' or fallbacks' child for ``labels``: its own while fewer than
        ``max_label_values`` pairs have one (kept for the process' life), else the one labelled
        ``other``, the attempt counted in the overflow counter."""
        child = children.get(labels)
        if child is not None:
            return child
        if len(children) < self._max_values:
            child = children[labels] = counter.labels(*labels)
            return child
        overflow.inc()
        return counter.labels(OTHER, OTHER)

    def _new_series(self, key: tuple[object, ...]) -> _Series:
        """A label set seen for the first time: a series of its own while there are fewer than
        MAX_SERIES, else the one series whose labels are all ``other``. prometheus-client keeps
        every child it ever made (and, with workers, its file entries): past the cap, new label
        sets (deployments added at run time, say) must not make more."""
        if len(self._series) < MAX_SERIES:
            series = self._series[key] = _Series(self, key)
            return series
        if self._folded is None:
            log.warning("metrics: %d label sets counted; requests of further ones are counted with "
                        "every label 'other'", MAX_SERIES)
            self._folded = _Series(self, (OTHER,) * len(key), folded=True)
        return self._folded

    def observe_unserved(self, ctx: RequestContext) -> None:
        """A request the edge answered without running its chain (http/endpoint.py: refused
        before it, or routed nowhere): counted as every other, with what it has (no model or
        route, no caller). It never entered the in-flight gauge, which ``observe`` leaves."""
        self._active += 1
        self.observe(ctx)

    def flush(self) -> None:
        """Hand what was counted since the last flush to prometheus-client (and, with several
        workers, to this worker's files): before every scrape, and every second with workers."""
        self.in_flight.set(self._active)
        self.streams_in_flight.set(self._streams)
        dirty, self._dirty = self._dirty, []
        for series in dirty:
            series.flush()
        overflow = self._overflow
        for i, n in enumerate(overflow):
            if n:
                self._overflow_children[i].inc(n)
                overflow[i] = 0
        if self._writers is not None:
            self._writers.flush()

    def batch_charged(self, record: UsageRecord) -> None:
        """A batch's ledger record, written when the batch was priced (http/files/service.py,
        on the one instance that stored it): its tokens and cost, which no request carried, under
        ``operation="batches"``, its provider and model (``other`` unless a configured name), so
        the token and cost counters add up to the ledger. Rare: straight to prometheus-client."""
        extras = {"tenant": record.tenant_id, "team": record.team_id, "key": record.key_id,
                  "user": record.user_id}
        labels = (self._known(record.model), "", "", record.provider or "", "batches",
                  *(self._bounded(i, extras[name] or "") for i, name in enumerate(self._extra)))
        if record.prompt_tokens:
            self.input_tokens.labels(*labels).inc(record.prompt_tokens)
        if record.completion_tokens:
            self.output_tokens.labels(*labels).inc(record.completion_tokens)
        if record.cost_usd:
            self.cost.labels(*labels).inc(float(record.cost_usd))

    def _model(self, ctx: RequestContext) -> str:
        """The requested model name when it is one the configuration knows, else ``other``."""
        model = ctx.requested_model or (ctx.request.get("model") if ctx.request else None)
        if not isinstance(model, str):
            return ""
        return self._known(model)

    def _known(self, model: str) -> str:
        """``model`` when the configuration knows the name, else ``other``."""
        current = self._table.current
        if model in current.groups or model in current.splits or model in self._semantic:
            return model
        return OTHER

    def _code(self, code: str) -> str:
        known = self._codes.get(code)
        if known is not None:
            return known
        if self._other_codes >= MAX_OTHER_CODES or not _CODE.match(code):
            return OTHER
        self._other_codes += 1
        self._codes[code] = code
        return code

    def _extras(self, ctx: RequestContext) -> tuple[str, ...]:
        p = ctx.principal
        if p is None:
            return ("",) * len(self._extra)
        values = {"tenant": p.tenant_id, "team": p.team_id, "key": p.key_id, "user": p.user_id}
        return tuple(self._bounded(i, values[name] or "") for i, name in enumerate(self._extra))

    def _bounded(self, i: int, value: str) -> str:
        """``value`` as the ``i``-th extra label: itself once it has been seen (or while there is
        room for one more), else ``other``. The users an OIDC provider sends, the keys made
        through the admin API, are not bounded by the configuration: the series are."""
        if not value:
            return value
        seen = self._label_values[i]
        if value in seen:
            return value
        if len(seen) >= self._max_values:
            self._overflow[i] += 1
            return OTHER
        seen.add(value)
        return value

    # -- scraping ------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format of every metric (all workers' in multiprocess mode)."""
        self.flush()
        if self.multiprocess_dir is not None:
            self._forget_dead_workers()
        return generate_latest(self.registry)

    async def fresh_stores(self) -> None:
        """Before a scrape: when the stores' answers are older than their check interval (a
        second: the scrapes come less often, or this is the first in a while), check them now,
        so ``switchboard_store_up`` says how they are rather than how they were at the scrape
        before. Bounded by the check's own bound (a second, the stores asked in parallel); a
        scrape within the interval, or joining a check under way, costs no extra question."""
        if self._stores is not None:
            await self._stores.results()

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                self.flush()
            except Exception:  # a full disk, say: try again next time
                log.exception("metrics: flush failed")

    def _forget_dead_workers(self) -> None:
        """Drop the live gauges' files of workers that are gone (a killed or restarted one)."""
        assert self.multiprocess_dir is not None
        seen: set[int] = set()
        for path in glob.glob(os.path.join(self.multiprocess_dir, "gauge_live*_*.db")):
            try:
                pid = int(path.rsplit("_", 1)[1][:-3])
            except ValueError:
                continue
            if pid in seen or pid == os.getpid():
                continue
            seen.add(pid)
            if not _alive(pid):
                mark_process_dead(pid, self.multiprocess_dir)

    async def start(self) -> None:
        """Open the ``metrics.port`` listener, if configured."""
        if self.multiprocess_dir is not None:  # another worker may answer the scrape: flush often
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_every(FLUSH_SECONDS), name="metrics-flush")
        port = self.config.port
        if port is not None:
            self._server = MetricsServer(self.config.host, port, self.exposition, CONTENT_TYPE,
                                         reuse_port=self.multiprocess_dir is not None,
                                         before=self.fresh_stores)
            await self._server.start()

    async def close(self) -> None:
        """Close the listener; in multiprocess mode this worker's in-flight gauges stop counting."""
        if self._server is not None:
            await self._server.close()
            self._server = None
        await stop_task(self._flusher)
        self._flusher = None
        if self.multiprocess_dir is not None:
            self._active = self._streams = 0
            self.flush()  # the counts of the last requests stay, with the worker's other files
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def authorized(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """The master key or ``metrics.key`` as ``Authorization: Bearer``, compared in constant
        time against each."""
        presented = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if not presented:
            return False
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(presented, key)
        return ok

    async def respond(self, headers: list[tuple[bytes, bytes]], send: Send,
                      extra: list[tuple[bytes, bytes]]) -> None:
        """``GET /metrics`` on the API port (the app routes it here with the request's headers
        and its own response headers, ``x-request-id``): the key is required."""
        if not self.authorized(headers):
            missing = not any(name == b"authorization" for name, _ in headers)
            error = AuthenticationFailed(
                "missing key: send 'Authorization: Bearer <master key or metrics.key>'"
                if missing else "invalid key for /metrics", code="missing_api_key" if missing else None)
            await _send(send, 401, orjson.dumps(error.to_openai()), b"application/json",
                        [*extra, CHALLENGE])  # RFC 9110: a 401 names the scheme it takes
            return
        await self.fresh_stores()
        await _send(send, 200, self.exposition(), CONTENT_TYPE, extra)


CHALLENGE = (b"www-authenticate", b'Bearer realm="switchboard metrics"')


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                extra: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), *extra]})
    await send({"type": "http.response.body", "body": body})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
