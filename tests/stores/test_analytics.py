"""AnalyticsStore contract: the ledger keeps hourly rollups of what it stores (``append`` and
``append_rows``), counting a replayed record once; queries sum them per hour or day and group,
scoped to the tenant, its team or its owners; ``rebuild`` recounts a range from the ledger."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from switchboard.observability.rollups import RollupRetention
from switchboard.stores import UsageRecord
from switchboard.stores.histogram import bucket_of
from switchboard.stores.protocols import (
    AnalyticsQuery,
    AnalyticsRow,
    AnalyticsStore,
    TooManyGroups,
    UsageReportQuery,
    usage_row,
)
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.ledger import SQLITE_CHUNK
from switchboard.stores.sql.tables import analytics_hourly, analytics_tags_hourly
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 6, 1, 10, 15, tzinfo=UTC)  # 10:15 UTC
DAY = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))


def usage(request_id: str, minutes: int = 0, **fields: object) -> UsageRecord:
    record = UsageRecord(
        request_id=request_id, tenant_id="tenant-a", model="gpt-4o-mini", key_id="key-1",
        team_id="team-1", user_id="user-1", provider="openai", deployment="gpt-4o-mini/0", status=200,
        prompt_tokens=10, completion_tokens=20, cache_read_tokens=4, reasoning_tokens=2,
        cost_usd=Decimal("0.000001234"), latency_ms=100, ttft_ms=40,
        created_at=T0 + timedelta(minutes=minutes), tags=("billing", "eu"),
    )
    return replace(record, **fields)  # type: ignore[arg-type]


def world() -> list[UsageRecord]:
    return [
        usage("a1"),
        usage("a2", minutes=30, latency_ms=300, ttft_ms=None),  # 10:45
        usage("a3", minutes=60, status=500, model="claude", provider="anthropic",
              deployment="claude/0", key_id="key-2", user_id=None, tags=()),  # 11:15
        usage("a4", minutes=60 * 20, team_id="team-2", key_id="key-3", tags=("eu",)),  # 06-02 06:15
        usage("b1", tenant_id="tenant-b", cost_usd=Decimal(1)),
    ]


def store(backend: Backend) -> AnalyticsStore:
    assert backend.stores.analytics is not None
    return backend.stores.analytics


async def series(backend: Backend, tenant: str | None = "tenant-a", **fields: object) -> list[AnalyticsRow]:
    query = AnalyticsQuery(since=DAY[0], until=DAY[1] + timedelta(days=1), **fields)  # type: ignore[arg-type]
    return await store(backend).series(tenant, query)


def summary(rows: list[AnalyticsRow]) -> dict[tuple[str, str | None], tuple[int, int, int]]:
    return {(r.start.isoformat(), r.group): (r.requests, r.errors, r.prompt_tokens) for r in rows}


async def test_the_ledger_keeps_hourly_rollups_of_what_it_stores(backend: Backend) -> None:
    await backend.stores.ledger.append(world())
    rows = await series(backend)
    assert summary(rows) == {
        ("2026-06-01T10:00:00+00:00", None): (2, 0, 20),
        ("2026-06-01T11:00:00+00:00", None): (1, 1, 10),
        ("2026-06-02T06:00:00+00:00", None): (1, 0, 10),
    }
    first = rows[0]
    assert (first.completion_tokens, first.cached_tokens, first.reasoning_tokens) == (40, 8, 4)
    assert first.cost_nano_usd == 2468 and first.latency_ms_sum == 400
    assert (first.ttft_ms_sum, first.ttft_count) == (40, 1)
    assert first.latency_histogram[bucket_of(100)] == 1 and first.latency_histogram[bucket_of(300)] == 1
    assert sum(first.latency_histogram) == 2 and sum(first.ttft_histogram) == 1
    by_day = await series(backend, interval="day", group_by="model")
    assert summary(by_day) == {
        ("2026-06-01T00:00:00+00:00", "claude"): (1, 1, 10),
        ("2026-06-01T00:00:00+00:00", "gpt-4o-mini"): (2, 0, 20),
        ("2026-06-02T00:00:00+00:00", "gpt-4o-mini"): (1, 0, 10),
    }
    everyone = await series(backend, None, interval="day", group_by="tenant")
    assert {(r.group, r.requests) for r in everyone} == {("tenant-a", 3), ("tenant-a", 1), ("tenant-b", 1)}


async def test_groups_filters_and_absent_dimensions(backend: Backend) -> None:
    await backend.stores.ledger.append(world())
    day = {"interval": "day", "since": DAY[0], "until": DAY[1]}

    async def grouped(**fields: object) -> dict[str | None, int]:
        query = AnalyticsQuery(**{**day, **fields})  # type: ignore[arg-type]
        return {r.group: r.requests for r in await store(backend).series("tenant-a", query)}

    assert await grouped(group_by="user") == {None: 1, "user-1": 2}  # a3 had no user
    assert await grouped(group_by="key") == {"key-1": 2, "key-2": 1}
    assert await grouped(group_by="provider") == {"anthropic": 1, "openai": 2}
    assert await grouped(group_by="deployment") == {"claude/0": 1, "gpt-4o-mini/0": 2}
    assert await grouped(group_by="team") == {"team-1": 3}
    assert await grouped(group_by="tag") == {"billing": 2, "eu": 2}
    assert await grouped(group_by="tag", key_id="key-1") == {"billing": 2, "eu": 2}
    assert await grouped(group_by="model", provider="anthropic") == {"claude": 1}
    assert await grouped(tag="eu") == {None: 2}
    assert await grouped(owners=("key-2",)) == {None: 1}
    assert await grouped(owners=()) == {}
    with pytest.raises(ValueError):  # no model in the per-tag rollup
        await grouped(tag="eu", model="claude")
    with pytest.raises(ValueError):
        await grouped(tag="eu", group_by="provider")
    with pytest.raises(TooManyGroups):
        await series(backend, group_by="model", max_rows=2)


async def test_a_replayed_row_is_counted_once(backend: Backend) -> None:
    ledger = backend.stores.ledger
    rows = [usage_row(r) for r in world()]
    await ledger.append_rows(rows)
    await ledger.append_rows(rows)  # the spool replays a batch after a failure
    await ledger.append_rows(rows[:2] + rows[:1])  # and the same id twice in one batch
    assert await ledger.append(world()) == 0
    await ledger.append_rows([usage_row(usage("a5", minutes=5))])
    rows_now = await series(backend, interval="day")
    assert [(r.start.day, r.requests, r.errors) for r in rows_now] == [(1, 4, 1), (2, 1, 0)]
    tags = await series(backend, interval="day", group_by="tag")
    assert {(r.start.day, r.group): r.requests for r in tags} == {
        (1, "billing"): 3, (1, "eu"): 3, (2, "eu"): 1}
    # A record is keyed by its request id and time: the same id at another time is another
    # record to the ledger, and to the rollups.
    await ledger.append_rows([usage_row(usage("a1", minutes=2))] * 2)
    await ledger.append([usage("a2", minutes=3), usage("a2", minutes=3)])
    rows_now = await series(backend, interval="day")
    report = await ledger.report("tenant-a", UsageReportQuery(since=DAY[0], until=DAY[1] + timedelta(days=1)))
    assert [(r.start.day, r.requests) for r in rows_now] == [(1, 6), (2, 1)]
    assert sum(r.requests for r in rows_now) == report[0].requests == 7


async def test_a_fresh_batch_skips_the_lookup_and_still_counts_a_repeated_row_once(backend: Backend) -> None:
    ledger = backend.stores.ledger
    rows = [usage_row(r) for r in world()]
    await ledger.append_rows(rows + rows[:1], fresh=True)  # the spool's first attempt at a batch
    await ledger.append_rows(rows)  # then replayed (the first attempt's reply was lost)
    days = await series(backend, interval="day")
    assert [(r.start.day, r.requests, r.errors) for r in days] == [(1, 3, 1), (2, 1, 0)]  # tenant-a
    assert len(await ledger.recent("tenant-a", 100)) == 4


async def test_a_batch_larger_than_one_insert_counts_each_row_once(backend: Backend) -> None:
    """SQLite stores a batch in pieces of SQLITE_CHUNK rows: a key repeated across pieces is
    stored and counted once, whether the batch is fresh or replayed."""
    ledger = backend.stores.ledger
    rows = [usage_row(usage(f"c{i}", minutes=i % 50)) for i in range(2 * SQLITE_CHUNK + 5)]
    repeated = [*rows, rows[3], rows[-1]]  # the same records again, in later pieces
    await ledger.append_rows(repeated, fresh=True)
    await ledger.append_rows(repeated)  # replayed: nothing new
    [day] = await series(backend, interval="day")
    assert day.requests == len(rows)
    assert len(await ledger.recent("tenant-a", 1000)) == len(rows)


async def test_append_and_append_rows_count_the_same(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append([usage("x1"), usage("x2", status=429)])
    await ledger.append_rows([usage_row(usage("y1")), usage_row(usage("y2", status=429))])
    [row] = await series(backend, group_by="key")
    assert (row.requests, row.errors, row.prompt_tokens, row.cost_nano_usd) == (4, 2, 40, 4936)


async def test_rebuild_recounts_a_range_from_the_ledger(backend: Backend) -> None:
    await backend.stores.ledger.append(world())
    before = await series(backend, None, group_by="tag")
    engine = create_engine(backend.database)
    try:
        async with engine.begin() as conn:  # records from before the rollups existed
            await conn.execute(sa.delete(analytics_hourly))
            await conn.execute(sa.delete(analytics_tags_hourly))
            await conn.execute(sa.update(analytics_hourly).values(requests=0))
    finally:
        await engine.dispose()
    assert await series(backend, None) == []
    analytics = store(backend)
    assert await analytics.rebuild(T0, T0 + timedelta(minutes=1), "tenant-b") == 1
    assert [r.group for r in await series(backend, None, group_by="tenant")] == ["tenant-b"]
    assert await analytics.rebuild(DAY[0], DAY[1] + timedelta(days=1)) == 5
    assert await series(backend, None, group_by="tag") == before
    assert await analytics.rebuild(DAY[0], DAY[1] + timedelta(days=1)) == 5  # idempotent
    assert await series(backend, None, group_by="tag") == before
    full = await series(backend, None)
    assert sum(r.requests for r in full) == 5


async def test_a_rebuild_of_the_calendars_last_hours_stays_within_it(backend: Backend) -> None:
    """Its day-long steps went past year 9999 (OverflowError) from a start on its last day."""
    last_hour = datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert await store(backend).rebuild(last_hour - timedelta(days=1, hours=2), last_hour) == 0
    assert await store(backend).rebuild(last_hour - timedelta(hours=1), last_hour) == 0


async def test_retention_deletes_the_rollups_of_older_hours_a_day_at_a_time(backend: Backend) -> None:
    older = [usage(f"o{i}", minutes=-60 * 24 * i, tags=("old",)) for i in (3, 5, 9)]  # days back
    await backend.stores.ledger.append([*world(), *older])
    analytics = store(backend)
    everything = AnalyticsQuery(since=T0 - timedelta(days=30), until=T0 + timedelta(days=30))
    hours_before = {r.start for r in await analytics.series(None, everything)}
    assert len(hours_before) == 6  # three old days, 10:00 and 11:00 on 06-01, 06:00 on 06-02
    # Everything before 11:30 on 06-01 goes: the old days and the 10:00 hour (its tag rows too).
    deleted = await analytics.purge(T0 + timedelta(minutes=75))
    assert deleted > 4
    left = await analytics.series(None, everything)
    assert {r.start.isoformat() for r in left} == {"2026-06-01T11:00:00+00:00", "2026-06-02T06:00:00+00:00"}
    tags = await analytics.series(None, replace(everything, group_by="tag"))
    assert {r.group for r in tags} == {"eu"} and min(r.start for r in tags) >= T0
    assert await analytics.purge(T0 + timedelta(minutes=75)) == 0  # nothing left to delete
    assert await analytics.purge(T0 - timedelta(days=400)) == 0  # before the oldest: nothing


async def test_the_retention_task_keeps_the_configured_days(backend: Backend) -> None:
    await backend.stores.ledger.append(world())
    retention = RollupRetention(store(backend), days=1)
    assert await retention.run_once(now=T0 + timedelta(hours=12)) == 0  # everything is younger
    assert await retention.run_once(now=DAY[1] + timedelta(days=1, hours=7)) > 0  # all older
    assert await series(backend, None) == []


async def test_concurrent_writers_add_up_exactly(backend: Backend) -> None:
    """Two instances storing batches for the same hours and keys at once: every record counted
    once (the upsert adds in the database; no lost update, no deadlock)."""
    peer = await backend.peer()
    ledgers = [backend.stores.ledger, peer.ledger]
    batches = [[usage_row(usage(f"c{b}-{i}", minutes=i % 90, key_id=f"key-{i % 3}")) for i in range(40)]
               for b in range(10)]
    await asyncio.gather(*(ledgers[b % 2].append_rows(batch) for b, batch in enumerate(batches)))
    rows = await series(backend, group_by="key")
    assert {r.group: 0 for r in rows} == {"key-0": 0, "key-1": 0, "key-2": 0}
    assert sum(r.requests for r in rows) == 400 and sum(r.prompt_tokens for r in rows) == 4000
    tags = await series(backend, group_by="tag", interval="day")
    assert {r.group: r.requests for r in tags} == {"billing": 400, "eu": 400}
