"""The usage spool and its writer, on a real SQLite ledger: records reach the database in
batches and leave the spool; segments left by a dead process are replayed once (a cut last line
skipped), a live process's segment is left alone, and a full spool drops and counts, as does a
writer not started or closed (apart)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from switchboard.http.cork import FLUSH_BYTES, CorkedTransport, before_send
from switchboard.spend.ledger import LedgerWriter, decode, encode
from switchboard.stores import Stores, UsageRecord
from switchboard.stores.factory import open_at
from switchboard.stores.protocols import UsageRow, usage_row
from tests.schemas import copy_sqlite

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 12, 1, 9, 30, 0, 123456, UTC)


def record(rid: str, **fields: object) -> UsageRecord:
    base = UsageRecord(request_id=rid, tenant_id="default", model="gpt-4o-mini", provider="openai",
                       prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.0000045"), tags=("a",),
                       metadata={"operation": "chat"}, created_at=T0)
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="session")
async def stores(tmp_path: Path, sqlite_schema: Path) -> AsyncIterator[Stores]:
    # A database migrated once (tests/schemas.py): these tests are about the ledger writer.
    opened = await open_at(copy_sqlite(sqlite_schema, tmp_path / "db"), None)
    yield opened
    await opened.close()


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.spool"))


async def stored(stores: Stores) -> dict[str, UsageRecord]:
    return {r.request_id: r for r in await stores.ledger.recent("default", 10_000)}



async def test_a_record_survives_the_round_trip_through_a_spool_line() -> None:
    full = record("r1", ttft_ms=12, stream=True, unpriced=True, cache_read_tokens=3, error_code=None,
                  status=502, upstream_model="gpt-4o-mini-2024-07-18", image_input_tokens=4,
                  audio_input_tokens=5, image_output_tokens=6, audio_output_tokens=7)
    line = encode(full)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == full
    assert decode(encode(record("r2"))) == record("r2")


# A line as the spool's first format wrote it (a JSON object, defaults left out).
OLD_LINE = (b'{"request_id":"old-v1","tenant_id":"default","model":"gpt-4o-mini","provider":"openai",'
            b'"prompt_tokens":10,"completion_tokens":5,"tags":["a"],"cost_usd":"0.0000045",'
            b'"created_at":"2026-12-01T09:30:00.123456+00:00","metadata":{"operation":"chat"}}\n')


# A line as the row format wrote it before image and audio units were recorded (24 fields).
ROW_LINE_BEFORE_UNITS = (
    b'["old-row","default",null,null,null,"gpt-4o-mini","openai",200,10,5,4500,0,1796117400123456,'
    b'{"operation":"chat"},0,0,0,0,false,null,false,null,null,["a"]]\n'
)


async def test_a_row_spooled_before_image_and_audio_units_is_replayed(stores: Stores, tmp_path: Path) -> None:
    assert decode(ROW_LINE_BEFORE_UNITS) == record("old-row")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "usage-00000000000000000001-1.spool").write_bytes(ROW_LINE_BEFORE_UNITS)
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        assert (await stored(stores))["old-row"] == record("old-row")
    finally:
        await writer.close()
    assert segments(spool) == []


async def test_a_spool_line_is_one_short_json_array() -> None:
    line = encode(record("r1"))
    assert line.startswith(b'["r1","default",') and len(line) < 200


async def test_a_spool_written_by_the_earlier_format_is_replayed(stores: Stores, tmp_path: Path) -> None:
    assert decode(OLD_LINE) == record("old-v1")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "usage-00000000000000000001-1.spool").write_bytes(OLD_LINE + encode(record("new-v2")))
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        found = await stored(stores)
        assert found["old-v1"] == record("old-v1") and found["new-v2"] == record("new-v2")
    finally:
        await writer.close()


async def test_records_reach_the_database_and_leave_the_spool(stores: Stores, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        assert all(writer.record(record(f"r{i}")) for i in range(5))
        await end_of_pass()  # the pass's records are written together at its end
        assert len(segments(spool)) == 1 and segments(spool)[0].stat().st_size > 0
        await writer.flush()
        assert set(await stored(stores)) == {f"r{i}" for i in range(5)}
        assert (await stored(stores))["r3"] == record("r3")
        assert [p.stat().st_size for p in segments(spool)] == [0]  # a fresh, empty segment
        assert writer.healthy and writer.stored == 5
    finally:
        await writer.close()
    assert segments(spool) == []


async def test_store_all_stores_what_is_spooled_at_once(stores: Stores, tmp_path: Path) -> None:
    """What a budget counter's rebuild relies on: once it returns, every record spooled so far
    is in the database, here long before the next flush."""
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", flush_seconds=60)
    await writer.start()
    try:
        assert writer.record(record("now-1")) and writer.record(record("now-2"))
        assert await writer.store_all()
        assert {"now-1", "now-2"} <= set(await stored(stores)) and writer.healthy
    finally:
        await writer.close()


async def end_of_pass() -> None:
    """Return once the callbacks the loop had scheduled so far have run (they run in order)."""
    loop = asyncio.get_running_loop()
    passed = loop.create_future()
    loop.call_soon(passed.set_result, None)
    await passed


class Socket:
    """A client connection's transport: notes the spool's size when each send leaves."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.sent: list[tuple[bytes, int]] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.sent.append((data, sum(p.stat().st_size for p in segments(self.spool))))


@pytest.mark.parametrize("size", [100, 2 * FLUSH_BYTES])
async def test_no_answer_leaves_before_its_record_is_in_the_spool(
    stores: Stores, tmp_path: Path, size: int
) -> None:
    spool = tmp_path / "spool"
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    unhook = before_send(writer.write_spooled)
    try:
        socket = Socket(spool)
        out = CorkedTransport(socket, asyncio.get_running_loop())  # type: ignore[arg-type]
        assert writer.record(record("r1")) and writer.record(record("r2"))
        out.write(b"x" * size)  # large: sent at once, before the pass ends
        await end_of_pass()
        line = len(encode(record("r1")))
        assert socket.sent == [(b"x" * size, 2 * line)]
    finally:
        unhook()
        await writer.close()


async def test_a_failed_spool_write_drops_that_pass_and_keeps_going(stores: Stores, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        current = writer._current
        assert current is not None
        real, current.fd = current.fd, os.open(os.devnull, os.O_RDONLY)  # writes fail (EBADF)
        assert writer.record(record("lost-1")) and writer.record(record("lost-2"))
        await end_of_pass()
        assert writer.dropped == 2
        os.close(current.fd)
        current.fd = real
        assert writer.record(record("r1"))
        await writer.flush()
        assert set(await stored(stores)) == {"r1"}
    finally:
        await writer.close()


async def test_a_spool_write_cut_by_a_full_disk_leaves_no_part_line_behind(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the disk fills up in the middle of (the spool grows while the database is down)
    drops that pass's records; the part of it that was written is taken back, so the next
    pass's first line is not glued to it, and every record spooled since is replayed."""
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", flush_seconds=60)
    await writer.start()
    real_write = os.write
    current = writer._current
    assert current is not None
    fd = current.fd

    def filling(target: int, data: bytes | memoryview) -> int:
        if target != fd:
            return real_write(target, data)
        if len(data) > 10:  # the disk takes ten bytes, then is full
            return real_write(target, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    try:
        assert writer.record(record("cut-1"))
        monkeypatch.setattr(os, "write", filling)
        await end_of_pass()
        monkeypatch.setattr(os, "write", real_write)
        assert writer.dropped == 1
        assert writer.record(record("after-1")) and writer.record(record("after-2"))
        await end_of_pass()
        # What a replay reads (the database was down, or the process is killed now).
        spooled = [decode(line).request_id for line in current.path.read_bytes().splitlines(keepends=True)]
        assert spooled == ["after-1", "after-2"]
    finally:
        monkeypatch.setattr(os, "write", real_write)
        await writer.close()


async def test_a_segment_that_cannot_be_synced_is_still_stored(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that refuses fsync (EIO) costs the records' crash safety, not the records: they
    are stored from memory in the same pass (they were left unretried until the next start)."""
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", flush_seconds=60)
    await writer.start()
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    try:
        assert writer.record(record("unsynced-1")) and writer.record(record("unsynced-2"))
        await end_of_pass()
        monkeypatch.setattr(os, "fsync", failing)
        await writer.flush()
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert {"unsynced-1", "unsynced-2"} <= set(await stored(stores))
        assert writer.stored == 2 and writer.dropped == 0
        assert "could not be synced" in caplog.text
    finally:
        monkeypatch.setattr(os, "fsync", real_fsync)
        await writer.close()


async def test_records_being_synced_as_the_writer_closes_are_stored_by_its_last_write(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown stops the writer's task wherever it is: in a flush's fsync of the segment it has
    just taken, that segment's records are stored by the last write all the same (they were left
    in the spool for a next start, which a replaced machine or volume never has)."""
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", flush_seconds=0.01)
    real_fsync = os.fsync
    syncing, release = threading.Event(), threading.Event()

    def slow(fd: int) -> None:  # the first fsync waits until the task has been stopped
        if not syncing.is_set():
            syncing.set()
            release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow)
    await writer.start()
    task = writer._task
    assert task is not None
    try:
        assert writer.record(record("syncing-1"))
        assert await asyncio.to_thread(syncing.wait, 10)  # the task's flush is in its fsync
        closing = asyncio.create_task(writer.close())
        await asyncio.wait({task})  # stopped in the fsync
        release.set()
        await closing
    finally:
        release.set()
        monkeypatch.setattr(os, "fsync", real_fsync)
    assert "syncing-1" in await stored(stores)
    assert writer.stored == 1 and writer.dropped == 0


async def test_a_dead_process_segment_is_replayed_once_and_removed(stores: Stores, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    await stores.ledger.append([record("old-1")])  # stored before the crash, spooled too
    lines = b"".join(encode(record(rid)) for rid in ("old-1", "old-2", "old-3"))
    cut = encode(record("old-4"))[:20]  # the process died in the middle of a line
    (spool / "usage-00000000000000000001-1.spool").write_bytes(lines + cut)
    (spool / "usage-00000000000000000002-1.spool").write_bytes(
        b"not json\n" + b'["short",1]\n' + encode(record("x"))[:-1].replace(b",200,", b',"200",') + b"\n"
        + encode(record("old-5")))
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        found = await stored(stores)
        assert set(found) == {"old-1", "old-2", "old-3", "old-5"} and found["old-2"] == record("old-2")
        assert len(segments(spool)) == 1  # replayed segments are removed; the writer's own stays
    finally:
        await writer.close()


async def test_a_segment_held_by_a_live_process_is_left_alone(stores: Stores, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    busy = spool / "usage-00000000000000000001-99.spool"
    busy.write_bytes(encode(record("busy-1")))
    fd = os.open(busy, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other process, alive
    writer = LedgerWriter(stores.ledger, spool, flush_seconds=60)
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        assert "busy-1" not in await stored(stores) and busy.exists()
    finally:
        await writer.close()
        os.close(fd)


async def test_a_full_spool_drops_and_counts_and_keeps_going(stores: Stores, tmp_path: Path) -> None:
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", max_bytes=len(encode(record("r0"))) * 3,
                          flush_seconds=60)
    await writer.start()
    try:
        kept = [writer.record(record(f"r{i}")) for i in range(5)]
        assert kept == [True, True, True, False, False] and writer.dropped == writer.dropped_full == 2
        assert writer.dropped_closed == 0
        await writer.flush()  # stored: the spool has room again
        assert writer.record(record("r9"))
        await writer.flush()
        assert set(await stored(stores)) == {"r0", "r1", "r2", "r9"}
    finally:
        await writer.close()


async def test_a_writer_not_started_or_closed_drops_and_says_so(stores: Stores, tmp_path: Path) -> None:
    """Counted as closed, not as a full spool (the metrics tell the two apart), nor as a failed
    disk: before the start and after the close; what was spooled before the close is stored."""
    writer = LedgerWriter(stores.ledger, tmp_path / "spool", flush_seconds=60)
    assert writer.record(record("before-start")) is False
    assert (writer.dropped, writer.dropped_closed, writer.dropped_full) == (1, 1, 0)
    await writer.start()
    assert writer.record(record("while-open"))
    await writer.close()
    assert writer.record(record("after-close")) is False
    assert (writer.dropped, writer.dropped_closed, writer.dropped_full) == (2, 2, 0)
    assert set(await stored(stores)) == {"while-open"}


class Outage:
    """The ledger, unreachable until ``down`` is cleared."""

    def __init__(self, stores: Stores) -> None:
        self.ledger = stores.ledger
        self.down = True

    async def append_rows(self, rows: Sequence[UsageRow], *, fresh: bool = False) -> None:
        if self.down:
            raise ConnectionRefusedError("the database is down")
        await self.ledger.append_rows(rows, fresh=fresh)


async def test_pending_records_and_their_age_cover_the_spool_a_previous_run_left(
    stores: Stores, tmp_path: Path
) -> None:
    """What the metrics read: records spooled and not stored (a dead run's segment counted from
    its creation, the name's nanoseconds; this run's own from their first write), 0 once stored."""
    spool = tmp_path / "spool"
    spool.mkdir()
    created = time.time() - 120
    left = spool / f"usage-{int(created * 1e9):020d}-1.spool"
    left.write_bytes(b"".join(encode(record(rid)) for rid in ("left-1", "left-2")) + b'["cut')
    outage = Outage(stores)
    writer = LedgerWriter(outage, spool, flush_seconds=60)  # type: ignore[arg-type]
    assert writer.pending_records == 0 and writer.oldest_pending_at is None
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        assert writer.pending_records == 2  # the cut line is no record
        assert writer.oldest_pending_at == pytest.approx(created, abs=1e-3)
        assert writer.record(record("new-1")) and writer.record(record("new-2"))
        assert writer.pending_records == 4  # spooled in this pass, not yet written: pending too
        await end_of_pass()
        await writer.flush()  # fails: kept
        assert writer.pending_records == 4 and writer.spooled_bytes > 0
        assert writer.oldest_pending_at == pytest.approx(created, abs=1e-3)
        outage.down = False
        assert await writer.store_all()
        assert set(await stored(stores)) >= {"left-1", "left-2", "new-1", "new-2"}
        assert writer.pending_records == 0 and writer.oldest_pending_at is None
        assert writer.stored == 4 and writer.held == 0 and writer.dropped == 0
    finally:
        await writer.close()


def line_before_entry_ids(r: UsageRecord) -> bytes:
    """A spool line as the version before entry ids wrote it: the row's first 33 fields."""
    return orjson.dumps(list(usage_row(r)[:33])) + b"\n"


async def test_requests_sharing_an_id_and_start_are_each_kept_through_an_outage(
    stores: Stores, tmp_path: Path
) -> None:
    """Two requests under one X-Request-Id that started in the same microsecond (two workers),
    spooled while the database is down and replayed, are two records; the replay stores neither
    twice. A record the previous version spooled (no entry id) is keyed by its request id, as
    its copy stored before the upgrade is: stored once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    await stores.ledger.append([record("before")])  # stored, and still in a dead run's spool
    left = line_before_entry_ids(record("before", status=500)) + line_before_entry_ids(record("prior"))
    (spool / "usage-00000000000000000001-1.spool").write_bytes(left)
    first = record("shared", entry_id="e-first")
    second = record("shared", entry_id="e-second", model="gpt-4o", cost_usd=Decimal("0.0001"))
    outage = Outage(stores)
    writer = LedgerWriter(outage, spool, flush_seconds=60)  # type: ignore[arg-type]
    await writer.start()
    try:
        await asyncio.wait_for(writer.recovered.wait(), 10)
        assert writer.record(first) and writer.record(second)
        await end_of_pass()
        await writer.flush()  # fails: kept in the spool
        outage.down = False
        assert await writer.store_all()
        await writer.store_all()  # nothing more to store
    finally:
        await writer.close()
    found = sorted(await stores.ledger.recent("default", 100), key=lambda r: (r.request_id, r.entry_id or ""))
    assert found == [record("before"), record("prior"), first, second]
    assert await stores.ledger.total("default", "tenant", "default", T0, "usd") == (
        3 * Decimal("0.0000045") + Decimal("0.0001"))
