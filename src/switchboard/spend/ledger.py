"""The usage ledger's writer: a local append-only spool first, the database in batches after.

A request's record is appended to this process's spool segment (``<data_dir>/spool/``) with one
``write`` of one JSON line: the bytes are in the operating system's page cache before the client
reads the end of its response, so a killed process loses nothing; the segment is fsync'd in
batches (every flush), which bounds what a machine crash can lose. A background task writes the
records to the database in batches (``UsageLedger.append_rows``) and deletes the segment once they are
stored. While the database is unreachable, records keep going to the spool and the task retries
with backoff, replaying the spooled segments in order once it answers again.

Each segment is locked (``flock``) by the process that writes it. At start-up the writer replays
every segment of the spool directory that no live process holds (a previous run that was killed,
another worker that died), then deletes it. The ledger's key, the record's own ``entry_id``
(made once per request, spooled with the record) and its time, makes any replay idempotent: a
record written twice is stored once, and two requests sharing a caller's request id are two
records.

The spool is bounded (``spend.spool_max_bytes``); when it is full (the database has been down a
long time), new records are dropped, counted and logged: the gateway keeps serving. See
docs/spend.md.

A batch the database refuses for what it holds rather than for being down (stores/refused.py) is
not retried as a whole, which would hold up every record behind it: the ledger stores it with
its values made storable (stores/sql/ledger.py), and the records refused even so are isolated
(the rest of the batch is stored) and written, fsync'd, to a segment of their own that this
process keeps locked and does not replay (``held``). They are never dropped: the error log says
which requests they are, and the next start replays that segment like any other left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson

from switchboard.background import LAST_WRITE_SECONDS, WRITE_SECONDS, finish_within, stop_task
from switchboard.stores.protocols import (
    USAGE_ROW,
    UsageLedger,
    UsageRecord,
    UsageRow,
    usage_record,
    usage_row,
)
from switchboard.stores.refused import isolate, kind

log = logging.getLogger("switchboard.spend")

SUFFIX = ".spool"
REPLAY_BATCH = 500
_MAX_BACKOFF = 5.0
# While the database stays unreachable, how often the spool's growth is reported (the outage's
# first failure is reported at once): a restart of the database is one warning, not one per try.
_STILL_WARN_SECONDS = 60.0


# The spool's line, since 2026-12: the record's row (``USAGE_ROW``) as a JSON array. Lines written
# by earlier versions are JSON objects of the record's fields; ``decode_row`` reads both.
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE
# A row written before columns were added to USAGE_ROW is shorter: the fields it lacks take these
# values (None when not listed). The first row format had 24 fields.
_FIRST_ROW = 24
_ADDED_DEFAULTS: dict[str, object] = {
    "image_input_tokens": 0, "audio_input_tokens": 0, "image_output_tokens": 0, "audio_output_tokens": 0,
}
_ENTRY = USAGE_ROW.index("entry_id")


def encode_row(row: UsageRow) -> bytes:
    """One JSON line (the row's fields in ``USAGE_ROW`` order)."""
    return orjson.dumps(row, option=_DUMPS_OPTIONS)


def decode_row(line: bytes) -> UsageRow:
    """The row of a spooled line, in this version's format or an earlier one's."""
    data = orjson.loads(line)
    if isinstance(data, list):
        # A line that is not a row is skipped here, not left to fail its whole batch's insert.
        if (not _FIRST_ROW <= len(data) <= len(USAGE_ROW) or type(data[0]) is not str
                or type(data[1]) is not str or type(data[7]) is not int or type(data[10]) is not int
                or type(data[12]) is not int):
            raise ValueError("not a usage row")
        if len(data) < len(USAGE_ROW):  # spooled by an earlier version, replayed after an upgrade
            data.extend(_ADDED_DEFAULTS.get(name) for name in USAGE_ROW[len(data):])
            # Keyed by its request id then: the same key as a copy of it stored before the upgrade.
            data[_ENTRY] = data[0]
        return tuple(data)
    # An earlier version's line: the record's fields by name, defaults left out.
    data["cost_usd"] = Decimal(data["cost_usd"])
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    if "tags" in data:
        data["tags"] = tuple(data["tags"])
    return usage_row(UsageRecord(**data))


def encode(record: UsageRecord) -> bytes:
    """One JSON line; ``decode`` gives the same record back (its cost to the billionth of a
    dollar, the ledger's precision)."""
    return encode_row(usage_row(record))


def decode(line: bytes) -> UsageRecord:
    return usage_record(decode_row(line))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _lines(path: Path) -> int:
    """The complete lines of a file: the records of a spool segment (a cut last line is none)."""
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _created_at(path: Path) -> float:
    """When a segment was created (its name's nanoseconds), else its file's last change."""
    try:
        return int(path.name.split("-")[1]) / 1e9
    except (IndexError, ValueError):
        return path.stat().st_mtime


def _append_synced(fd: int, data: bytes) -> None:
    _write_all(fd, data)
    os.fsync(fd)


class Segment:
    """One spool file, open and locked by this process until its records are in the database.

    ``records`` and ``first_at`` (the wall-clock time its first record was written) are what the
    metrics read of it (``LedgerWriter.pending_records``, ``oldest_pending_at``)."""

    __slots__ = ("fd", "first_at", "path", "records", "size")

    def __init__(self, path: Path, fd: int, size: int = 0, records: int = 0, first_at: float = 0.0) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.records = records
        self.first_at = first_at

    @classmethod
    def create(cls, directory: Path) -> Segment:
        name = f"usage-{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        # Locked under a name the start-up scan does not match, then renamed: another process
        # never sees the segment unlocked (and takes it for a dead process's).
        hidden = directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = directory / name
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @classmethod
    def claim(cls, path: Path) -> Segment | None:
        """An orphaned segment (no live process holds its lock), locked for us; else None."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not path.exists():  # replayed and removed by another process meanwhile
            os.close(fd)
            return None
        # Its lines are counted (start-up only, in a thread) so the metrics say how many records
        # wait; its oldest record is at most as old as the segment, named after its creation.
        return cls(path, fd, os.fstat(fd).st_size, _lines(path), _created_at(path))

    def rows(self) -> Iterator[UsageRow]:
        """The records in the file; a line cut short by a crash, or not valid, is skipped."""
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    log.warning("usage spool %s: incomplete last line skipped", self.path.name)
                    continue
                try:
                    yield decode_row(line)
                except Exception:
                    log.warning("usage spool %s: line %d is not a usage record; skipped",
                                self.path.name, number)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    def release(self) -> None:
        """Close without removing: the file is replayed at the next start."""
        os.close(self.fd)


class LedgerWriter:
    """Spools records on the request path (one ``write``), stores them in batches behind it."""

    def __init__(
        self,
        ledger: UsageLedger,
        directory: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        flush_seconds: float = 0.5,
        batch: int = 500,
    ) -> None:
        self._ledger = ledger
        self._dir = directory
        self._max_bytes = max_bytes
        self._flush_seconds = flush_seconds
        self._batch = batch
        self._pending: list[UsageRow] = []  # in the spool, not yet in the database
        # Spooled this loop pass, not yet written: the rows and their lines, in two lists (joined
        # and handed on without a generator each).
        self._unwritten: list[UsageRow] = []
        self._unwritten_lines: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: Segment | None = None
        self._backlog: list[Segment] = []  # spooled, not yet in the database, oldest first
        self._spooled_bytes = 0  # current + backlog
        self._retry_at = 0.0
        self._backoff = 0.5
        self._warned_at = -math.inf  # when the database's absence was last reported
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time (the task's, or close()'s)
        # Set once the segments left by earlier runs have been looked at (and replayed if the
        # database answered).
        self.recovered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._storing: Segment | None = None  # the segment whose batch is being stored
        self._held: Segment | None = None  # records the database refused, kept for the next start
        self.held = 0  # records written to it by this process
        self.dropped = 0  # records lost: the spool was full, or closed, or its disk failed
        self.dropped_full = 0  # of which the spool was full
        self.dropped_closed = 0  # of which the writer was not started yet, or closed already
        self.stored = 0  # records written to the database by this process (replays included)
        self.write_timeouts = 0  # writes that got no answer within WRITE_SECONDS (kept, retried)

    # -- the request path -------------------------------------------------------------------

    def record(self, record: UsageRecord) -> bool:
        """Spool one record; False when it was dropped (spool full, or not started)."""
        return self.spool(usage_row(record))

    def spool(self, row: UsageRow) -> bool:
        """Spool one record given as its row (``USAGE_ROW``): the request path's call; False
        when it was dropped (the spool full, or the writer not started or closed).

        The line is written at the end of the loop pass, together with the others of the pass
        (one ``write``, one GIL release, not one per request), and in any case before any
        response bytes leave: the server runs :meth:`write_spooled` before it sends (see
        ``http/cork.py``), so an answer a client has seen is always in the spool."""
        line = orjson.dumps(row, option=_DUMPS_OPTIONS)
        size = len(line)
        if self._current is None or self._spooled_bytes + size > self._max_bytes:
            # Told apart in the metrics: a full spool wants a larger spool or a faster database;
            # a closed one is a request finishing around start or shutdown.
            closed = self._current is None
            self.dropped += 1
            if closed:
                self.dropped_closed += 1
            else:
                self.dropped_full += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage spool %s: %d usage record(s) dropped so far (request %s)",
                          "closed" if closed else "full", self.dropped, row[0])
            return False
        self._spooled_bytes += size
        unwritten = self._unwritten
        if not unwritten:
            assert self._loop is not None
            self._loop.call_soon(self.write_spooled)
        unwritten.append(row)
        self._unwritten_lines.append(line)
        return True

    def write_spooled(self) -> None:
        """Write the lines spooled since the last call to the current segment, in one call."""
        unwritten = self._unwritten
        if not unwritten:
            return
        data = b"".join(self._unwritten_lines)
        self._unwritten, self._unwritten_lines = [], []
        size = len(data)
        segment = self._current
        if segment is None:  # closed since they were spooled
            self.dropped += len(unwritten)
            self.dropped_closed += len(unwritten)
            self._spooled_bytes -= size
            log.error("usage spool closed: %d usage record(s) dropped (request %s, ...)",
                      len(unwritten), unwritten[0][0])
            return
        try:
            written = os.write(segment.fd, data)
            if written != size:  # a short write (a full disk, a signal): the rest of it
                _write_all(segment.fd, data[written:])
        except OSError as exc:  # a full or failing disk: the requests are served all the same
            # Part of it may be in the file (a disk that filled up mid-write): taken back, or the
            # next pass's first line would be glued to that part and lost to a replay.
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.size)
            self.dropped += len(unwritten)
            self._spooled_bytes -= size
            log.error("usage spool write failed (%s): %d usage record(s) dropped (request %s, ...)",
                      exc.strerror or type(exc).__name__, len(unwritten), unwritten[0][0])
            return
        segment.size += size
        if not segment.records:
            segment.first_at = time.time()
        segment.records += len(unwritten)
        pending = self._pending
        pending.extend(unwritten)
        if len(pending) >= self._batch:
            self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._current = Segment.create(self._dir)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="usage-ledger")

    async def close(self) -> None:
        stopped = await stop_task(self._task, within=LAST_WRITE_SECONDS)
        self._task = None
        self._retry_at = 0.0
        self.write_spooled()
        try:
            if not stopped:  # still in a write the database has not answered: no second one
                raise TimeoutError
            await finish_within(LAST_WRITE_SECONDS, self.flush())
        except TimeoutError:
            log.warning("usage ledger: no answer from the database within %g s at shutdown; the records "
                        "not stored stay in the spool for the next start", LAST_WRITE_SECONDS)
        except Exception as exc:
            log.warning("usage ledger: the last write at shutdown failed (%s); the records not stored "
                        "stay in the spool for the next start", type(exc).__name__)
        if self._current is not None:
            current, self._current = self._current, None
            if current.size == 0:
                current.remove()
            else:
                current.release()
        for segment in self._backlog:
            segment.release()
        self._backlog = []
        if self._held is not None:  # replayed at the next start
            held, self._held = self._held, None
            held.release()

    async def store_all(self) -> bool:
        """Store everything this process spooled so far now (a budget counter about to be
        rebuilt from the ledger reads it all); False when some of it could not be stored (the
        database is down), and waits in the spool. Tries at once, whatever the backoff after an
        outage says: this is rare (a counter rebuilt), and worth a try."""
        async with self._lock:
            self.write_spooled()
            self._retry_at = 0.0
            await self._flush()
            return not self._backlog

    @property
    def flush_seconds(self) -> float:
        return self._flush_seconds

    @property
    def spooled_bytes(self) -> int:
        """The spool's size: records not yet stored and the records held."""
        return self._spooled_bytes

    def _unstored(self) -> Iterator[Segment]:
        yield from self._backlog
        if self._storing is not None:
            yield self._storing
        if self._current is not None:
            yield self._current

    @property
    def pending_records(self) -> int:
        """Records spooled and not yet in the database (the held ones aside): read by the metrics
        at scrape time, a sum over the segments waiting (one, or one per retry of an outage)."""
        return len(self._unwritten) + sum(segment.records for segment in self._unstored())

    @property
    def oldest_pending_at(self) -> float | None:
        """The wall-clock time the oldest record not yet in the database was spooled (None: none;
        a record spooled in this loop pass and not yet written is as good as now)."""
        oldest = min((s.first_at for s in self._unstored() if s.records), default=None)
        if oldest is None and self._unwritten:
            return time.time()
        return oldest

    @property
    def healthy(self) -> bool:
        """Everything spooled so far has reached the database, as far as this writer knows."""
        return not self._backlog

    async def _run(self) -> None:
        try:
            await self._claim_orphans()
        finally:
            self.recovered.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("usage ledger flush failed")

    async def _claim_orphans(self) -> None:
        own = self._current.path if self._current else None
        for path in sorted(self._dir.glob(f"usage-*{SUFFIX}")):
            if path == own:
                continue
            segment = await asyncio.to_thread(Segment.claim, path)
            if segment is None:
                continue
            log.info("usage spool: replaying %s (%d bytes) left by a previous run", path.name, segment.size)
            self._backlog.append(segment)
            self._spooled_bytes += segment.size
        if self._backlog:
            self._retry_at = 0.0
            await self.flush()

    # -- writing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Store what is pending; after an outage, replay the spooled segments first."""
        async with self._lock:
            self.write_spooled()
            await self._flush()

    async def _flush(self) -> None:
        if self._backlog:
            await self._recover()
            return
        if not self._pending or self._current is None:
            return
        fresh = Segment.create(self._dir)  # before anything is taken: a failure changes nothing
        batch, self._pending = self._pending, []
        segment, self._current = self._current, fresh
        self._storing = segment  # its records still count as pending while they are stored
        try:
            try:
                await self._sync(segment)
                await self._store(batch, fresh=True)
            except asyncio.CancelledError:
                # Stopped (shutdown stops the task wherever it is, in the fsync too) or the last
                # write at shutdown ran out of time: kept, for that last write or the next start.
                self._backlog.append(segment)
                raise
            except Exception as exc:
                log.warning("usage ledger: the database is unreachable (%s); %d record(s) kept in the spool",
                            type(exc).__name__, len(batch))
                self._warned_at = time.monotonic()
                self._backlog.append(segment)
                self._retry_at = time.monotonic() + self._backoff
                return
        finally:
            self._storing = None
        await self._drop(segment)

    async def _sync(self, segment: Segment) -> None:
        """Make a segment durable. A failure is logged, not raised: its records are still in
        the file (the page cache) and in memory, so they are stored or kept for a retry as
        usual (raising here left the segment outside both, unretried until the next start); only
        their survival of a machine crash before they are stored is not assured."""
        try:
            await asyncio.to_thread(os.fsync, segment.fd)
        except OSError as exc:
            log.error("usage ledger: the spool segment %s could not be synced to disk (%s); its "
                      "records are stored or retried as usual", segment.path.name, exc)

    async def _recover(self) -> None:
        current = self._current
        if current is not None and current.size:
            await self._sync(current)
        self._pending = []  # they are in the current segment, replayed from there
        if time.monotonic() < self._retry_at:
            return
        if current is not None and current.size:
            self._current = Segment.create(self._dir)
            self._backlog.append(current)
        while self._backlog:
            segment = self._backlog[0]
            try:
                await self._replay(segment)
            except Exception as exc:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
                if time.monotonic() - self._warned_at >= _STILL_WARN_SECONDS:
                    self._warned_at = time.monotonic()
                    log.warning("usage ledger: the database is still unreachable (%s); %d byte(s) spooled",
                                type(exc).__name__, self._spooled_bytes)
                else:
                    log.debug("usage ledger: the database is still unreachable (%s)", type(exc).__name__)
                return
            self._backlog.pop(0)
            await self._drop(segment)
        self._backoff = 0.5
        log.info("usage ledger: spooled records replayed into the database")

    async def _replay(self, segment: Segment) -> None:
        records = await asyncio.to_thread(lambda: list(segment.rows()))
        for start in range(0, len(records), REPLAY_BATCH):
            await self._store(records[start : start + REPLAY_BATCH])

    async def _store(self, records: Sequence[UsageRow], *, fresh: bool = False) -> None:
        """Store a batch; an outage raises (the caller keeps the batch in the spool and retries).
        Records the database refuses for their data are held (:meth:`_hold`), the rest stored.
        A database that does not answer within WRITE_SECONDS is an outage too (TimeoutError)."""
        try:
            async with asyncio.timeout(WRITE_SECONDS):
                refused = await isolate(functools.partial(self._ledger.append_rows, fresh=fresh), records)
        except TimeoutError:
            self.write_timeouts += 1
            raise
        self.stored += len(records) - len(refused)
        if refused:
            await self._hold(refused)

    async def _hold(self, refused: list[tuple[UsageRow, BaseException]]) -> None:
        """Keep records the database refused, as they were spooled, in this process's held
        segment (fsync'd before the segment their batch came from is removed), and say so."""
        data = b"".join(encode_row(row) for row, _ in refused)
        if self._held is None:
            self._held = await asyncio.to_thread(Segment.create, self._dir)
        held = self._held
        await asyncio.to_thread(_append_synced, held.fd, data)
        held.size += len(data)
        self._spooled_bytes += len(data)
        self.held += len(refused)
        reasons = sorted({kind(exc) for _, exc in refused})
        log.error("usage ledger: the database refused %d usage record(s) even with their values made "
                  "storable (request %s; %s). They are kept in the spool, %s, not dropped, and replayed "
                  "at the next start; %d held by this process so far",
                  len(refused), ", ".join(str(row[0]) for row, _ in refused[:10]), "; ".join(reasons),
                  held.path.name, self.held)

    async def _drop(self, segment: Segment) -> None:
        self._spooled_bytes -= segment.size
        # In a thread: unlinking a spooled file took up to a millisecond of the loop's time.
        await asyncio.to_thread(segment.remove)
