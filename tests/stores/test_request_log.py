"""RequestLogStore contract: bodies stored once and read within the tenant; day partitions made
ahead (PostgreSQL); retention by age and by size, by dropping whole partitions on PostgreSQL and
by bounded deletes on SQLite; and the 0010 migration keeping a ledger that already has rows."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.observability.request_log import BodyWriter
from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at, open_database
from switchboard.stores.protocols import LogQuery, RequestBody
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.migrate import _config
from switchboard.stores.sql.request_log import partition_name
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC).replace(microsecond=250000)


def body(request_id: str, days_ago: float = 0, tenant: str = "tenant-a", size: int = 0) -> RequestBody:
    filler = base64.b64encode(os.urandom(size)).decode() if size else "hi"
    return RequestBody(
        request_id=request_id, tenant_id=tenant, created_at=NOW - timedelta(days=days_ago),
        request=f'{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}]}}',
        response='{"object":"chat.completion"}', request_headers={"user-agent": "test"},
    )


def record(request_id: str, days_ago: float = 0, tenant: str = "tenant-a") -> UsageRecord:
    return UsageRecord(
        request_id=request_id, tenant_id=tenant, model="gpt-4o-mini", status=200, prompt_tokens=1,
        completion_tokens=2, cost_usd=Decimal("0.000001"), latency_ms=5,
        created_at=NOW - timedelta(days=days_ago),
    )


def _engine(backend: Backend) -> AsyncEngine:
    return create_engine(backend.database)


async def partitions(backend: Backend, table: str) -> set[str]:
    engine = _engine(backend)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table})).scalars())
    finally:
        await engine.dispose()


async def test_bodies_are_stored_once_and_read_within_their_tenant(backend: Backend) -> None:
    log = backend.stores.request_log
    assert log is not None
    first = body("r1")
    await log.append([first, body("r2", tenant="tenant-b")])
    await log.append([replace(first, request="changed", truncated=True)])  # a replay: kept as it was
    await log.append([])
    assert await log.get("tenant-a", "r1") == first
    assert await log.get("tenant-b", "r1") is None
    assert (await log.get("tenant-b", "r2")) == body("r2", tenant="tenant-b")


async def test_bodies_sharing_a_request_id_and_start_are_each_kept_under_their_records(
    backend: Backend,
) -> None:
    """A caller may send one X-Request-Id with requests that start in the same microsecond (two
    instances, two workers): each body is kept and found by its own record's log id, while a
    replay of one body is still stored once."""
    log, ledger, search = backend.stores.request_log, backend.stores.ledger, backend.stores.log_search
    assert log is not None and search is not None
    bodies = [replace(body("shared"), request=f'{{"n": {n}}}', log_id=f"log-{n}") for n in (1, 2)]
    await ledger.append([replace(record("shared"), model=f"m{n}", entry_id=f"log-{n}", log_id=f"log-{n}")
                         for n in (1, 2)])
    await log.append(bodies)
    await log.append([replace(bodies[0], request="changed")])  # a replay: kept as it was
    page = await search.search("tenant-a", LogQuery(request_id="shared", include_bodies=True))
    shown = {e.record.model: e.body.request if e.body else None for e in page.entries}
    assert shown == {"m1": '{"n": 1}', "m2": '{"n": 2}'}
    assert [await log.get("tenant-a", f"log-{n}") for n in (1, 2)] == bodies


async def test_the_ledger_stays_idempotent_with_the_time_in_its_key(backend: Backend) -> None:
    ledger = backend.stores.ledger
    assert await ledger.append([record("same", 1)]) == 1
    assert await ledger.append([record("same", 1)]) == 0  # the replayed record: same id, same time
    assert [r.request_id for r in await ledger.recent("tenant-a")] == ["same"]


async def test_partitions_are_made_ahead_once_even_when_instances_race(backend: Backend) -> None:
    log = backend.stores.request_log
    assert log is not None
    peer = await backend.peer()
    assert peer.request_log is not None
    later = NOW + timedelta(days=10)
    made = await asyncio.gather(log.prepare(later, 2), peer.request_log.prepare(later, 2))
    if backend.kind == "embedded":
        assert made == [[], []]  # SQLite: no partitions, nothing to make
        return
    days = [(later + timedelta(days=n)).date() for n in range(3)]
    expected = {partition_name(t, d) for t in ("usage_records", "request_bodies") for d in days}
    assert set(made[0]) | set(made[1]) == expected and not set(made[0]) & set(made[1])
    assert await log.prepare(later, 2) == []
    found = await partitions(backend, "usage_records") | await partitions(backend, "request_bodies")
    assert expected <= found


async def test_a_partition_made_late_takes_the_rows_the_default_partition_caught(cluster: Backend) -> None:
    log, ledger = cluster.stores.request_log, cluster.stores.ledger
    assert log is not None
    await ledger.append([record("stray", 20)])
    await log.append([body("stray", 20)])
    day = (NOW - timedelta(days=20)).date()
    assert await homes(cluster) == {"usage_records": "usage_records_default",
                                    "request_bodies": "request_bodies_default"}
    assert await log.prepare(NOW - timedelta(days=20), 0) == [
        partition_name("usage_records", day), partition_name("request_bodies", day)]
    assert await homes(cluster) == {"usage_records": partition_name("usage_records", day),
                                    "request_bodies": partition_name("request_bodies", day)}
    assert (await ledger.get("tenant-a", "stray")) == record("stray", 20)
    assert (await log.get("tenant-a", "stray")) == body("stray", 20)


async def homes(backend: Backend) -> dict[str, str]:
    """The partition each table's (one) row is in."""
    engine = _engine(backend)
    try:
        async with engine.connect() as conn:
            return {t: (await conn.execute(sa.text(f"SELECT tableoid::regclass::text FROM {t}"))).scalar_one()
                    for t in ("usage_records", "request_bodies")}
    finally:
        await engine.dispose()


async def _prepare_days(backend: Backend, *days_ago: int) -> None:
    """The day partitions of rows a test back-dates (maintenance only makes today's and later)."""
    log = backend.stores.request_log
    assert log is not None
    for n in days_ago:
        await log.prepare(NOW - timedelta(days=n), 0)


def _day(days_ago: int) -> date:
    return (NOW - timedelta(days=days_ago)).date()


async def test_retention_removes_what_is_past_its_age_and_keeps_the_rest(backend: Backend) -> None:
    log, ledger = backend.stores.request_log, backend.stores.ledger
    assert log is not None
    await _prepare_days(backend, 90, 45, 1)  # not 100: that body lands in the DEFAULT partition
    await ledger.append([record("r90", 90), record("r45", 45), record("r1", 1), record("r0")])
    await log.append([body("b100", 100), body("b45", 45), body("b1", 1), body("b0")])

    # Bodies past 30 days go; the usage records are kept (no records_days).
    done = await log.retain(NOW, days=30)
    assert {r.request_id for r in await ledger.recent("tenant-a")} == {"r90", "r45", "r1", "r0"}
    assert [await log.get("tenant-a", b) is not None for b in ("b100", "b45", "b1", "b0")] == [
        False, False, True, True]
    if backend.kind == "cluster":  # whole partitions dropped, the DEFAULT partition's stray deleted
        assert set(done.partitions_dropped) == {partition_name("request_bodies", _day(90)),
                                                partition_name("request_bodies", _day(45))}
        assert done.rows_deleted == 1
        assert not set(done.partitions_dropped) & await partitions(backend, "request_bodies")
    else:
        assert (done.partitions_dropped, done.rows_deleted) == ((), 2)

    # Records past 60 days go too when records_days says so.
    done = await log.retain(NOW, days=30, records_days=60)
    assert {r.request_id for r in await ledger.recent("tenant-a")} == {"r45", "r1", "r0"}
    if backend.kind == "cluster":
        assert done.partitions_dropped == (partition_name("usage_records", _day(90)),)
        assert partition_name("usage_records", _day(45)) in await partitions(backend, "usage_records")
    else:
        assert done.rows_deleted == 1


async def _until_blocked_by(backend: Backend, pid: int) -> None:
    """Wait until another session waits for a lock ``pid`` holds."""
    engine = _engine(backend)
    query = sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :pid = ANY(pg_blocking_pids(pid))")
    try:
        async with engine.connect() as conn:
            for _ in range(500):
                if (await conn.execute(query, {"pid": pid})).scalar_one():
                    return
                await conn.rollback()
                await asyncio.sleep(0.01)  # polling pg_locks: nothing to wait on
        raise AssertionError("no session waited for the reader's locks")
    finally:
        await engine.dispose()


async def test_retention_waits_for_a_reader_of_both_tables_without_deadlock(cluster: Backend) -> None:
    log, ledger = cluster.stores.request_log, cluster.stores.ledger
    assert log is not None
    await _prepare_days(cluster, 90)
    await ledger.append([record("r90", 90)])
    await log.append([body("b90", 90)])
    engine = _engine(cluster)
    try:
        async with engine.connect() as reader:  # one transaction reading both tables, records first
            await reader.execute(sa.text("SELECT count(*) FROM usage_records"))
            pid = (await reader.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            retention = asyncio.create_task(log.retain(NOW, days=30, records_days=60))
            await _until_blocked_by(cluster, pid)
            # The retention waits for the records, holding nothing of the bodies: their old day is
            # already dropped and committed.
            assert (await reader.execute(sa.text("SELECT count(*) FROM request_bodies"))).scalar_one() == 0
            await reader.commit()
        done = await retention
    finally:
        await engine.dispose()
    assert set(done.partitions_dropped) == {partition_name("usage_records", _day(90)),
                                            partition_name("request_bodies", _day(90))}
    assert await ledger.get("tenant-a", "r90") is None


async def _bodies_size(backend: Backend) -> int:
    engine = _engine(backend)
    try:
        async with engine.connect() as conn:
            if backend.kind == "cluster":
                query = ("SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i "
                         "WHERE i.inhparent = 'request_bodies'::regclass")
            else:
                query = ("SELECT sum(length(CAST(request AS BLOB)) + length(CAST(response AS BLOB)) "
                         "+ length(CAST(request_headers AS BLOB))) FROM request_bodies")
            return int((await conn.execute(sa.text(query))).scalar_one())
    finally:
        await engine.dispose()


async def test_the_size_cap_drops_the_oldest_days_first_and_never_today(backend: Backend) -> None:
    log = backend.stores.request_log
    assert log is not None
    await _prepare_days(backend, 3, 2, 1)
    await log.append([body("b3", 3, size=300_000), body("b2", 2, size=300_000), body("b1", 1, size=300_000),
                      body("b0", size=300_000)])
    total = await _bodies_size(backend)
    ids = ("b3", "b2", "b1", "b0")

    await log.retain(NOW, days=30, max_bytes=total)  # within the cap: nothing goes
    assert [await log.get("tenant-a", b) is not None for b in ids] == [True, True, True, True]
    await log.retain(NOW, days=30, max_bytes=total - 1)  # just over: the oldest day goes
    assert [await log.get("tenant-a", b) is not None for b in ids] == [False, True, True, True]
    await log.retain(NOW, days=30, max_bytes=1)  # far over: every day but today's
    assert [await log.get("tenant-a", b) is not None for b in ids] == [False, False, False, True]


async def test_the_migration_keeps_the_records_a_ledger_already_has(fresh_url: str) -> None:
    if fresh_url.startswith("sqlite"):
        Path(fresh_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(fresh_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0009"))
            # The table as revision 0009 has it (no entry_id yet).
            usage_records = await conn.run_sync(
                lambda c: sa.Table("usage_records", sa.MetaData(), autoload_with=c))
            await conn.execute(sa.insert(usage_records), [
                {"request_id": f"old-{n}", "tenant_id": "tenant-a", "model": "gpt-4o-mini", "status": 200,
                 "prompt_tokens": 1, "completion_tokens": 2, "cost_nano_usd": 1000, "latency_ms": 5,
                 "created_at": NOW - timedelta(days=n), "metadata": {}}
                for n in (0, 3, 400)
            ])
    finally:
        await engine.dispose()
    stores = await open_at(fresh_url, None)  # migrates to the head
    try:
        assert {r.request_id for r in await stores.ledger.recent("tenant-a")} == {"old-0", "old-3", "old-400"}
        assert await stores.ledger.append([record("old-3", 3)]) == 0  # same id and time: stored once
    finally:
        await stores.close()
    if fresh_url.startswith("postgresql"):  # recent rows in their day's partition, made by the migration
        engine, _ = await open_database(fresh_url)
        try:
            async with engine.connect() as conn:
                rows = dict((await conn.execute(sa.text(
                    "SELECT request_id, tableoid::regclass::text FROM usage_records"))).all())
        finally:
            await engine.dispose()
        assert rows == {"old-0": partition_name("usage_records", _day(0)),
                        "old-3": partition_name("usage_records", _day(3)),
                        "old-400": "usage_records_default"}  # older than the days partitioned


async def test_the_body_writer_drops_what_overflows_and_flushes_on_close(backend: Backend) -> None:
    log = backend.stores.request_log
    assert log is not None
    writer = BodyWriter(log, queue_max=3, flush_seconds=30, batch=2)
    writer.start()
    for n in range(5):
        writer.put(body(f"w{n}"))
    assert (writer.pending, writer.dropped) == (3, 2)  # the queue holds 3; 2 were dropped, counted
    await writer.close()  # the last bodies are written before the stores close
    assert writer.pending == 0
    stored = [await log.get("tenant-a", f"w{n}") is not None for n in range(5)]
    assert stored == [True, True, True, False, False]
