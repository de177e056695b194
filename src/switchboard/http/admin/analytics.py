"""``GET /admin/v1/analytics``: time series and totals over the hourly rollups of the usage ledger.

Requests, errors and error rate, tokens, cost, and latency and time-to-first-token averages and
percentiles, per hour or UTC day, optionally per model, deployment, provider, team, key, user,
tag or tenant, over whole UTC hours (``from`` rounded down, ``to`` up; by default the last 24).
The rollups (stores/sql/analytics.py) make a month's chart read hundreds of rows, not every
record. Percentiles come from fixed-bucket histograms (stores/histogram.py): within one bucket
(a factor of 2^0.25) of the exact value. Who sees what follows the ``analytics`` row of the
permission table, scoped as ``GET /admin/v1/usage`` is (docs/observability.md, "Analytics").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request

from switchboard.config.schema import check_timezone
from switchboard.errors import InvalidRequest
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import query_params, rfc3339, within_reach
from switchboard.spend.cost import format_usd
from switchboard.stores.histogram import BUCKETS, merged, percentiles
from switchboard.stores.protocols import (
    ANALYTICS_GROUPS,
    ANALYTICS_INTERVALS,
    AnalyticsQuery,
    AnalyticsRow,
    AnalyticsStore,
    TooManyGroups,
)

router = APIRouter(prefix="/admin/v1/analytics", tags=["analytics"])

DEFAULT_RANGE = timedelta(hours=24)
HOUR = timedelta(hours=1)
FILTERS = {"model": "model", "deployment": "deployment", "provider": "provider", "team": "team_id",
           "key": "key_id", "user": "user_id", "tag": "tag"}
PARAMETERS = frozenset({"from", "to", "interval", "group_by", "tenant", "tz", *FILTERS})
# The per-tag rollup has no model, deployment or provider.
UNTAGGED = ("model", "deployment", "provider")
NANO = Decimal(10**9)
# Rollup rows above which the answer is summed in a worker thread (about 50 µs a row).
THREAD_ABOVE = 2_000
QUANTILE_NAMES = ("p50", "p95", "p99")
QUANTILES = (0.5, 0.95, 0.99)






def _floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(value: datetime) -> datetime:
    floor = _floor_hour(value)
    return floor if floor == value else floor + HOUR


def _range(params: dict[str, str], max_days: int) -> tuple[datetime, datetime]:
    """``from`` and ``to`` widened to whole UTC hours (the rollups' resolution)."""
    given = rfc3339("to", params.get("to"), clamp=False)
    end = given or datetime.now(UTC)
    to = _ceil_hour(end)
    since = rfc3339("from", params.get("from"), clamp=False)
    start = to - DEFAULT_RANGE if since is None else _floor_hour(since)
    # Compared as given: widened, a from after a to within the same hour would pass, and a
    # range of exactly max_days not on the hour would be refused.
    if start > to or (since is not None and given is not None and since > given):
        raise InvalidRequest("from: after to", param="from", code="invalid_time_range")
    if end - (start if since is None else since) > timedelta(days=max_days):
        raise InvalidRequest(f"from..to: longer than {max_days} days", param="from", code="range_too_large")
    return start, to


def _choice(params: dict[str, str], name: str, allowed: tuple[str, ...], code: str, default: str | None
            ) -> str | None:
    value = params.get(name, default)
    if value is not None and value not in allowed:
        raise InvalidRequest(f"{name}: expected one of {', '.join(allowed)}", param=name, code=code)
    return value


def _zone(params: dict[str, str], interval: str) -> tzinfo | None:
    """The time zone whose days ``interval=day`` follows (None: UTC, done in the database)."""
    name = params.get("tz")
    if name is None or name == "UTC":
        return None
    if interval != "day":
        raise InvalidRequest("tz: only with interval=day (hours are the same everywhere)", param="tz",
                             code="invalid_combination")
    try:
        return ZoneInfo(check_timezone(name))
    except ValueError as exc:
        raise InvalidRequest(f"tz: {exc}", param="tz", code="invalid_timezone") from None


def _local_days(rows: list[AnalyticsRow], zone: tzinfo) -> list[tuple[datetime, AnalyticsRow]]:
    """Hourly rows as (local midnight, row): each hour belongs to the local day it starts in."""
    days = []
    for row in rows:
        local = row.start.astimezone(zone)
        days.append((datetime(local.year, local.month, local.day, tzinfo=zone), row))
    return days


def _scope(access: Access, params: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The tenant to read (None: every tenant) and the filters, narrowed to the caller's reach,
    as ``GET /admin/v1/usage`` narrows them."""
    filters: dict[str, Any] = {field_name: params.get(name) for name, field_name in FILTERS.items()}
    return within_reach(access, params.get("tenant"), filters), filters


@dataclass
class Sums:
    """Rollup rows added up: one point, one series' totals, or the whole answer's."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nano_usd: int = 0
    latency_ms_sum: int = 0
    ttft_ms_sum: int = 0
    ttft_count: int = 0
    latency: Sequence[int] = field(default_factory=lambda: (0,) * BUCKETS)
    ttft: Sequence[int] = field(default_factory=lambda: (0,) * BUCKETS)

    @classmethod
    def of(cls, row: AnalyticsRow) -> Sums:
        return cls(row.requests, row.errors, row.prompt_tokens, row.completion_tokens, row.cached_tokens,
                   row.reasoning_tokens, row.cost_nano_usd, row.latency_ms_sum, row.ttft_ms_sum,
                   row.ttft_count, row.latency_histogram, row.ttft_histogram)

    def add(self, row: AnalyticsRow) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.cached_tokens += row.cached_tokens
        self.reasoning_tokens += row.reasoning_tokens
        self.cost_nano_usd += row.cost_nano_usd
        self.latency_ms_sum += row.latency_ms_sum
        self.ttft_ms_sum += row.ttft_ms_sum
        self.ttft_count += row.ttft_count
        self.latency = merged(self.latency, row.latency_histogram)
        self.ttft = merged(self.ttft, row.ttft_histogram)

    def public(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 4) if self.requests else 0.0,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": format_usd((Decimal(self.cost_nano_usd) / NANO).normalize()),
            "latency_ms": _timing(self.latency_ms_sum, self.requests, self.latency),
            "ttft_ms": _timing(self.ttft_ms_sum, self.ttft_count, self.ttft),
        }


def _timing(total: int, count: int, histogram: Sequence[int]) -> dict[str, float | None]:
    """The average (exact) and percentiles (from the histogram); null when nothing was timed."""
    timing: dict[str, float | None] = {"avg": round(total / count, 1) if count else None}
    for name, value in zip(QUANTILE_NAMES, percentiles(histogram, QUANTILES), strict=True):
        timing[name] = None if value is None else round(value, 1)
    return timing


def _start(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_start(value: datetime) -> str:
    return value.isoformat(timespec="seconds")  # a local midnight, with its offset


def _summed(rows: list[AnalyticsRow], zone: tzinfo | None, group_by: str | None
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The answer's series (points and totals per group, most requests first) and totals."""
    starts = _local_days(rows, zone) if zone else [(row.start, row) for row in rows]
    groups: dict[str | None, tuple[Sums, dict[datetime, Sums]]] = {}
    totals = Sums()
    for start, row in starts:
        group_totals, points = groups.setdefault(row.group, (Sums(), {}))
        point = points.get(start)
        if point is None:
            points[start] = Sums.of(row)
        else:
            point.add(row)  # another hour of the same local day
        group_totals.add(row)
        totals.add(row)
    shown = _start if zone is None else _local_start
    ordered = sorted(groups.items(), key=lambda item: (-item[1][0].requests, item[0] or ""))
    series = [{"group": group,
               "points": [{"start": shown(start), **p.public()} for start, p in sorted(points.items())],
               "totals": sums.public()}
              for group, (sums, points) in ordered]
    if not series and group_by is None:
        series = [{"group": None, "points": [], "totals": Sums().public()}]
    return series, totals.public()


async def _tag_totals(store: AnalyticsStore, tenant: str | None, query: AnalyticsQuery) -> dict[str, Any]:
    """The totals of an answer grouped by tag: a record counts under each of its key's tags
    (and an untagged one under none), so the series do not add up to them. Read ungrouped with
    the same filters, per day (few rows), each record once, as ``GET /admin/v1/usage`` counts."""
    days = (query.until - query.since).days + 2  # a row per UTC day touched, never too many
    rows = await store.series(tenant, replace(query, group_by=None, interval="day", max_rows=days))
    totals = Sums()
    for row in rows:
        totals.add(row)
    return totals.public()


@router.get("", summary="Time series and totals of requests, tokens, cost, errors and latency")
async def analytics(request: Request, access: Annotated[Access, Depends(allow("analytics", "read"))]
                    ) -> dict[str, Any]:
    params = query_params(request, PARAMETERS, nonblank=True)  # a blank filter: a 400, as on logs
    config = request.app.state.services.settings.analytics
    interval = _choice(params, "interval", ANALYTICS_INTERVALS, "invalid_interval", "hour")
    group_by = _choice(params, "group_by", ANALYTICS_GROUPS, "invalid_group_by", None)
    since, until = _range(params, config.max_range_days)
    if params.get("tag") is not None or group_by == "tag":
        clash = next((n for n in UNTAGGED if params.get(n) is not None or group_by == n), None)
        if clash is not None:
            raise InvalidRequest(
                f"{clash}: cannot be combined with tag (tags are counted per key, not per {clash})",
                param=clash, code="invalid_combination")
    zone = _zone(params, interval or "hour")
    tenant, filters = _scope(access, params)
    # Local days are summed here from the hours; UTC days in the database.
    query = AnalyticsQuery(since=since, until=until, interval="hour" if zone else interval or "hour",
                           group_by=group_by, max_rows=config.max_points, **filters)
    store = request.app.state.services.stores().analytics
    try:
        rows = await store.series(tenant, query)
    except TooManyGroups:
        raise InvalidRequest(
            f"more than {config.max_points} points: narrow the range, use interval=day, or filter",
            param="group_by", code="too_many_points",
        ) from None
    if len(rows) > THREAD_ABOVE:  # a large answer is summed off the event loop
        series, totals = await asyncio.to_thread(_summed, rows, zone, group_by)
    else:
        series, totals = _summed(rows, zone, group_by)
    if group_by == "tag":
        totals = await _tag_totals(store, tenant, query)
    return {
        "object": "analytics",
        "from": _start(since),
        "to": _start(until),
        "interval": interval,
        "tz": "UTC" if zone is None else params["tz"],
        "group_by": group_by,
        "tenant": tenant,
        "series": series,
        "totals": totals,
    }
