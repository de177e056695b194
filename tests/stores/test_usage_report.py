"""UsageLedger.report contract: the ledger grouped and summed in the database, on SQLite and
PostgreSQL alike: exact costs, UTC day and hour buckets, filters, tenant scoping, a bound."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from switchboard.stores import UsageRecord
from switchboard.stores.protocols import TooManyGroups, UsageReportQuery
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 6, 1, 23, 30, 0, 250000, tzinfo=UTC)
WINDOW = {"since": T0 - timedelta(days=1), "until": T0 + timedelta(days=1)}


def usage(request_id: str, **fields: object) -> UsageRecord:
    record = UsageRecord(
        request_id=request_id, tenant_id="tenant-a", model="gpt-4o-mini", key_id="key-1",
        team_id="team-1", user_id="user-1", provider="openai", status=200, prompt_tokens=10,
        completion_tokens=20, cost_usd=Decimal("0.000000001"), created_at=T0,
        cache_read_tokens=3, cache_write_5m_tokens=1, cache_write_1h_tokens=2, reasoning_tokens=5,
        image_input_tokens=1, audio_input_tokens=2, image_output_tokens=3, audio_output_tokens=4,
    )
    return replace(record, **fields)  # type: ignore[arg-type]


def world() -> list[UsageRecord]:
    return [
        usage("a1"),
        usage("a2", cost_usd=Decimal("0.123456789"), status=429, error_code="rate_limited"),
        usage("a3", model="claude", provider="anthropic", key_id="key-2", user_id="user-2",
              team_id="team-2", created_at=T0 + timedelta(minutes=45), unpriced=True),
        usage("b1", tenant_id="tenant-b", key_id="key-b"),
        usage("old", created_at=T0 - timedelta(days=3)),
    ]


async def test_groups_and_sums_are_exact(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append(world())
    rows = await ledger.report("tenant-a", UsageReportQuery(group_by=("model", "key"), **WINDOW))
    assert [dict(r.group) for r in rows] == [
        {"model": "claude", "key": "key-2"}, {"model": "gpt-4o-mini", "key": "key-1"},
    ]
    gpt = rows[1]
    assert (gpt.requests, gpt.errors, gpt.unpriced) == (2, 1, 0)
    assert (gpt.prompt_tokens, gpt.completion_tokens, gpt.cache_read_tokens,
            gpt.cache_write_tokens, gpt.reasoning_tokens) == (20, 40, 6, 6, 10)
    assert (gpt.image_input_tokens, gpt.audio_input_tokens, gpt.image_output_tokens,
            gpt.audio_output_tokens) == (2, 4, 6, 8)
    assert gpt.cost_usd == Decimal("0.123456790")  # billionths summed, no float on the way
    assert (rows[0].requests, rows[0].unpriced) == (1, 1)

    total = await ledger.report("tenant-a", UsageReportQuery(**WINDOW))
    assert len(total) == 1 and total[0].requests == 3 and dict(total[0].group) == {}
    empty = UsageReportQuery(since=T0 + timedelta(days=5), until=T0 + timedelta(days=6))
    assert await ledger.report("tenant-a", empty) == []


async def test_day_and_hour_buckets_are_utc(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append(world())
    hours = await ledger.report("tenant-a", UsageReportQuery(group_by=("hour",), **WINDOW))
    assert [(r.group["hour"], r.requests) for r in hours] == [
        ("2026-06-01T23:00:00Z", 2), ("2026-06-02T00:00:00Z", 1),
    ]
    days = await ledger.report(None, UsageReportQuery(group_by=("tenant", "day"), **WINDOW))
    assert [(r.group["tenant"], r.group["day"], r.requests) for r in days] == [
        ("tenant-a", "2026-06-01T00:00:00Z", 2), ("tenant-a", "2026-06-02T00:00:00Z", 1),
        ("tenant-b", "2026-06-01T00:00:00Z", 1),
    ]


async def test_filters_tenants_and_owners(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append(world())
    by_tenant = await ledger.report(None, UsageReportQuery(group_by=("tenant",), **WINDOW))
    assert [(r.group["tenant"], r.requests) for r in by_tenant] == [("tenant-a", 3), ("tenant-b", 1)]
    only_b = await ledger.report("tenant-b", UsageReportQuery(group_by=("key",), **WINDOW))
    assert [(r.group["key"], r.requests) for r in only_b] == [("key-b", 1)]
    for query, requests in (
        (UsageReportQuery(model="claude", **WINDOW), 1),
        (UsageReportQuery(key_id="key-1", **WINDOW), 2),
        (UsageReportQuery(team_id="team-2", **WINDOW), 1),
        (UsageReportQuery(user_id="user-1", **WINDOW), 2),
        (UsageReportQuery(owners=("user-2",), **WINDOW), 1),
        (UsageReportQuery(owners=("nobody", "key-1"), **WINDOW), 2),
        (UsageReportQuery(since=T0 - timedelta(days=4), until=T0, group_by=()), 1),
    ):
        rows = await ledger.report("tenant-a", query)
        assert sum(r.requests for r in rows) == requests, query


async def test_the_number_of_groups_is_bounded(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append(world())
    query = UsageReportQuery(group_by=("model",), max_groups=1, **WINDOW)
    with pytest.raises(TooManyGroups):
        await ledger.report("tenant-a", query)
    assert len(await ledger.report("tenant-a", replace(query, max_groups=2))) == 2


async def test_grouped_by_deployment_with_latency_averages(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append([
        usage("d1", tenant_id="tenant-d", deployment="stable", latency_ms=100, ttft_ms=None),
        usage("d2", tenant_id="tenant-d", deployment="stable", latency_ms=301, ttft_ms=40, stream=True),
        usage("d3", tenant_id="tenant-d", deployment="canary", latency_ms=50, ttft_ms=None),
        usage("d4", tenant_id="tenant-d", deployment=None, latency_ms=10),
    ])
    rows = await ledger.report("tenant-d", UsageReportQuery(group_by=("deployment",), **WINDOW))
    got = {r.group["deployment"]: (r.requests, r.latency_ms_avg, r.ttft_ms_avg) for r in rows}
    assert got == {None: (1, 10.0, None), "canary": (1, 50.0, None), "stable": (2, 200.5, 40.0)}
