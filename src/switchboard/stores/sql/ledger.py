"""The usage ledger in SQL: idempotent appends (``ON CONFLICT (entry_id, created_at) DO NOTHING``;
a replayed record has the same id and time, and the key holds the time for the time partitions,
revisions 0010 and 0042). The entry id is the gateway's own per request, never the caller's
request id, which several requests may share and start within the same microsecond with.

``append_rows`` is the usage writer's path, many records a second under load: one statement
prepared by the driver and run over every row (``executemany``), each row converted by one small
function per dialect, none of SQLAlchemy's per-row parameter processing. It stores exactly what
``append`` stores (the contract tests compare them).

Both update the analytics rollups (stores/sql/analytics.py) in the same transaction, counting
only the records they actually inserted.

A batch the database refuses for its data (stores/refused.py: a NUL character PostgreSQL's text
cannot hold, a name longer than its column, a count past its column's range, say from an
upstream's answer) is stored again once with every row made storable (``storable_row``: NUL
characters and unpaired surrogates become U+FFFD, text is cut to its column's length, integers
capped to their column's range) and a warning naming the records changed. Rows that are already
storable are unchanged by it, so nothing is paid for them on the common path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from switchboard.stores.protocols import (
    USAGE_ROW,
    TooManyGroups,
    UsageRecord,
    UsageReportQuery,
    UsageReportRow,
    UsageRow,
    usage_row,
)
from switchboard.stores.refused import kind, refused
from switchboard.stores.sql.analytics import Rollup, RollupWriter
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.owners import owned
from switchboard.stores.sql.tables import api_keys
from switchboard.stores.sql.tables import usage_records as t
from switchboard.stores.sql.times import from_db, to_db

log = logging.getLogger("switchboard.spend")

# The column a budget's scope is recorded in (the tenant's is the tenant itself).
_SCOPE_COLUMNS = {"tenant": t.c.tenant_id, "team": t.c.team_id, "user": t.c.user_id, "key": t.c.key_id}
# The primary key: a replayed record has the same entry id and time (revisions 0010, 0042).
KEY = [t.c.entry_id, t.c.created_at]
# The key's positions in a row (USAGE_ROW): entry_id and created_at.
_ENTRY, _CREATED = USAGE_ROW.index("entry_id"), USAGE_ROW.index("created_at")
# Rows per INSERT: well under SQLite's and asyncpg's bound-parameter limits.
BATCH = 500
# Rows per INSERT on SQLite within one batch's transaction (see SqlUsageLedger.__init__).
SQLITE_CHUNK = 25
NANO = Decimal(10**9)


def _row(r: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "tenant_id": r.tenant_id,
        "key_id": r.key_id,
        "team_id": r.team_id,
        "user_id": r.user_id,
        "model": r.model,
        "provider": r.provider,
        "status": r.status,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost_nano_usd": int((r.cost_usd * NANO).to_integral_value(ROUND_HALF_EVEN)),
        "latency_ms": r.latency_ms,
        "created_at": to_db(r.created_at),
        "metadata": dict(r.metadata),
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_5m_tokens": r.cache_write_5m_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "unpriced": r.unpriced,
        "ttft_ms": r.ttft_ms,
        "stream": r.stream,
        "error_code": r.error_code,
        "upstream_model": r.upstream_model,
        "tags": list(r.tags),
        "image_input_tokens": r.image_input_tokens,
        "audio_input_tokens": r.audio_input_tokens,
        "image_output_tokens": r.image_output_tokens,
        "audio_output_tokens": r.audio_output_tokens,
        "deployment": r.deployment,
        "attempts": None if r.attempts is None else [dict(a) for a in r.attempts],
        "overhead_ms": r.overhead_ms,
        "upstream_ms": r.upstream_ms,
        "log_id": r.log_id,
        "entry_id": r.entry_id,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_dumps = orjson.dumps


_SECONDS: dict[int, str] = {}  # "2026-06-01 12:00:00" by epoch second: a batch shares a few


def _sqlite_time(micros: int) -> str:
    """SQLAlchemy's SQLite storage of a UTC timestamp: ``2026-06-01 12:00:00.250000``."""
    seconds, fraction = divmod(micros, 1_000_000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{prefix}.{fraction:06d}"


def _sqlite_value(row: UsageRow) -> tuple[Any, ...]:
    """A row as the SQLite driver takes it, stored as SQLAlchemy stores it: the timestamp as
    UTC text with microseconds, JSON as text, booleans as 0/1."""
    (rid, tenant, key, team, user, model, provider, status, prompt, completion, nano, latency,
     created, meta, cache_read, write_5m, write_1h, reasoning, unpriced, ttft, stream, error,
     upstream, tags, image_in, audio_in, image_out, audio_out, deployment, attempts, overhead,
     upstream_ms, log_id, entry_id) = row
    return (
        rid, tenant, key, team, user, model, provider, status, prompt, completion, nano, latency,
        _sqlite_time(created), _dumps(meta).decode(), cache_read, write_5m, write_1h, reasoning,
        1 if unpriced else 0, ttft, 1 if stream else 0, error, upstream,
        _dumps(tags).decode() if tags else "[]", image_in, audio_in, image_out, audio_out,
        deployment, None if attempts is None else _dumps(attempts).decode(), overhead, upstream_ms, log_id,
        entry_id,
    )


def _postgres_value(row: UsageRow) -> tuple[Any, ...]:
    """A row as asyncpg takes it: an aware timestamp, JSON as text, booleans as booleans."""
    return (
        *row[:12], _EPOCH + row[12] * _MICRO, _dumps(row[13]).decode(), *row[14:18],
        bool(row[18]), row[19], bool(row[20]), row[21], row[22],
        _dumps(row[23]).decode() if row[23] else "[]", *row[24:28],
        row[28], None if row[29] is None else _dumps(row[29]).decode(), row[30], row[31], row[32], row[33],
    )


def _insert_rows_sql(engine: AsyncEngine) -> tuple[str, Callable[[UsageRow], tuple[Any, ...]]]:
    """The INSERT of one row in the driver's own parameter style, and the row converter."""
    values = {name: sa.bindparam(name, type_=t.c[name].type) for name in USAGE_ROW}
    stmt = insert(engine, t).values(values).on_conflict_do_nothing(index_elements=KEY)
    compiled = stmt.compile(dialect=engine.dialect)
    if tuple(compiled.positiontup or ()) != USAGE_ROW:  # the converters follow USAGE_ROW's order
        raise RuntimeError(f"unexpected parameter order: {compiled.positiontup}")
    return compiled.string, _postgres_value if engine.dialect.name == "postgresql" else _sqlite_value


# -- rows the database refuses as they are ----------------------------------------------------

_INT32 = 2**31 - 1
_INT64 = 2**63 - 1


def _column_kinds() -> tuple[tuple[int, str, int | None], ...]:
    """(position in USAGE_ROW, "text" | "int" | "json", the text's length or the int's bound)
    of every column ``storable_row`` may have to change."""
    kinds: list[tuple[int, str, int | None]] = []
    for index, name in enumerate(USAGE_ROW):
        column_type = t.c[name].type
        if isinstance(column_type, sa.String):
            kinds.append((index, "text", column_type.length))
        elif isinstance(column_type, sa.BigInteger):
            kinds.append((index, "int", _INT64))
        elif isinstance(column_type, sa.Integer):
            kinds.append((index, "int", _INT32))
        elif isinstance(column_type, sa.JSON):
            kinds.append((index, "json", None))
    return tuple(kinds)


_KINDS = _column_kinds()


def _text(value: str, length: int | None) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode()
    except UnicodeEncodeError:  # an unpaired surrogate: no driver can send it
        value = value.encode(errors="surrogatepass").decode(errors="replace")
    return value if length is None else value[:length]


def _json(value: Any) -> Any:
    """A JSON value with its strings (keys too) made storable and its integers within 64 bits."""
    if isinstance(value, str):
        return _text(value, None)
    if isinstance(value, dict):
        return {_text(k, None) if isinstance(k, str) else k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):  # a list stays a list, the tags' tuple a tuple
        return type(value)(_json(v) for v in value)
    if type(value) is int:
        return max(-_INT64 - 1, min(_INT64, value))
    return value


def storable_row(row: UsageRow) -> UsageRow:
    """``row`` as every dialect stores it: NUL characters and unpaired surrogates replaced by
    U+FFFD, text cut to its column's length, integers capped to their column's range (in the
    JSON columns too). A row that is storable already comes back equal."""
    out = list(row)
    for index, form, bound in _KINDS:
        value = out[index]
        if value is None:
            continue
        if form == "text" and isinstance(value, str):
            out[index] = _text(value, bound)
        elif form == "int" and type(value) is int and bound is not None:
            out[index] = max(-bound - 1, min(bound, value))
        elif form == "json":
            out[index] = _json(value)
    return tuple(out)


def _micros(value: datetime) -> int:
    """A stored ``created_at`` as ``UsageRow`` has it: microseconds since the epoch."""
    at = from_db(value)
    assert at is not None
    return (at - _EPOCH) // _MICRO


def _add_new_rows(rollup: Rollup, seen: set[tuple[str, int]], rows: Sequence[UsageRow]) -> None:
    """Add to the rollup the rows whose key (entry id and time) is not in ``seen`` (rows stored
    before, or met earlier in this batch): each key once, the first row winning, as in the INSERT."""
    for row in rows:
        key = (row[_ENTRY], row[_CREATED])
        if key not in seen:
            seen.add(key)
            rollup.add_row(row)


def _record(row: sa.Row[Any]) -> UsageRecord:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    return UsageRecord(
        request_id=m["request_id"],
        tenant_id=m["tenant_id"],
        key_id=m["key_id"],
        team_id=m["team_id"],
        user_id=m["user_id"],
        model=m["model"],
        provider=m["provider"],
        status=m["status"],
        prompt_tokens=m["prompt_tokens"],
        completion_tokens=m["completion_tokens"],
        cost_usd=(Decimal(m["cost_nano_usd"]) / NANO).normalize(),
        latency_ms=m["latency_ms"],
        created_at=created,
        metadata=m["metadata"] or {},
        cache_read_tokens=m["cache_read_tokens"],
        cache_write_5m_tokens=m["cache_write_5m_tokens"],
        cache_write_1h_tokens=m["cache_write_1h_tokens"],
        reasoning_tokens=m["reasoning_tokens"],
        unpriced=bool(m["unpriced"]),
        ttft_ms=m["ttft_ms"],
        stream=bool(m["stream"]),
        error_code=m["error_code"],
        upstream_model=m["upstream_model"],
        tags=tuple(m["tags"] or ()),
        image_input_tokens=m["image_input_tokens"],
        audio_input_tokens=m["audio_input_tokens"],
        image_output_tokens=m["image_output_tokens"],
        audio_output_tokens=m["audio_output_tokens"],
        deployment=m["deployment"],
        attempts=None if m["attempts"] is None else tuple(m["attempts"]),
        overhead_ms=m["overhead_ms"],
        upstream_ms=m["upstream_ms"],
        log_id=m["log_id"],
        entry_id=m["entry_id"],
    )


# Report group names -> the column they group by (day and hour are computed per dialect).
_GROUP_COLUMNS = {
    "tenant": t.c.tenant_id, "team": t.c.team_id, "key": t.c.key_id, "user": t.c.user_id,
    "model": t.c.model, "provider": t.c.provider, "deployment": t.c.deployment,
}
_SQLITE_BUCKETS = {"day": "%Y-%m-%dT00:00:00Z", "hour": "%Y-%m-%dT%H:00:00Z"}
_PG_BUCKETS = {"day": 'YYYY-MM-DD"T00:00:00Z"', "hour": 'YYYY-MM-DD"T"HH24":00:00Z"'}


def _bucket(dialect: str, name: str) -> sa.ColumnElement[Any]:
    """The UTC day or hour of ``created_at`` as text, ``2026-06-01T12:00:00Z``, on either dialect
    (SQLite stores UTC timestamps as text; PostgreSQL's are ``timestamptz``)."""
    # Formats as literals, not parameters: PostgreSQL matches the SELECT's expression to the GROUP
    # BY's textually, and two parameters are two different expressions to it.
    if dialect == "postgresql":
        utc = sa.func.timezone(sa.literal_column("'UTC'"), t.c.created_at)
        return sa.func.to_char(utc, sa.literal_column(f"'{_PG_BUCKETS[name]}'"))
    return sa.func.strftime(sa.literal_column(f"'{_SQLITE_BUCKETS[name]}'"), t.c.created_at)


def _metadata_key(dialect: str, name: str) -> sa.ColumnElement[Any]:
    """The text of ``metadata.<name>`` (a prompt API's name or version), on either dialect; a
    literal, not a parameter, for PostgreSQL's GROUP BY matching (see _bucket)."""
    if dialect == "postgresql":
        return sa.literal_column(f"(usage_records.metadata ->> '{name}')")
    return sa.cast(sa.func.json_extract(t.c.metadata, sa.literal_column(f"'$.{name}'")), sa.String)


def _group(dialect: str, name: str) -> sa.ColumnElement[Any]:
    if name in ("day", "hour"):
        return _bucket(dialect, name)
    if name in ("api", "api_version"):
        return _metadata_key(dialect, name)
    return _GROUP_COLUMNS[name]


def _sum(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(column), 0)


def report_statement(dialect: str, tenant_id: str | None, query: UsageReportQuery) -> sa.Select[Any]:
    groups = [_group(dialect, name).label(f"g_{name}") for name in query.group_by]
    sums = [
        sa.func.count().label("requests"),
        _sum(sa.case((t.c.status >= 400, 1), else_=0)).label("errors"),
        _sum(t.c.prompt_tokens).label("prompt_tokens"),
        _sum(t.c.completion_tokens).label("completion_tokens"),
        _sum(t.c.cache_read_tokens).label("cache_read_tokens"),
        _sum(t.c.cache_write_5m_tokens + t.c.cache_write_1h_tokens).label("cache_write_tokens"),
        _sum(t.c.reasoning_tokens).label("reasoning_tokens"),
        _sum(t.c.image_input_tokens).label("image_input_tokens"),
        _sum(t.c.audio_input_tokens).label("audio_input_tokens"),
        _sum(t.c.image_output_tokens).label("image_output_tokens"),
        _sum(t.c.audio_output_tokens).label("audio_output_tokens"),
        _sum(t.c.cost_nano_usd).label("cost_nano_usd"),
        _sum(sa.case((t.c.unpriced, 1), else_=0)).label("unpriced"),
        sa.func.avg(t.c.latency_ms).label("latency_ms_avg"),
        sa.func.avg(t.c.ttft_ms).label("ttft_ms_avg"),
    ]
    where: list[sa.ColumnElement[bool]] = [
        t.c.created_at >= to_db(query.since), t.c.created_at < to_db(query.until),
    ]
    if tenant_id is not None:
        tenant: sa.ColumnElement[bool] = t.c.tenant_id == tenant_id
        if dialect == "sqlite" and query.owners is not None:
            # SQLite plans without statistics and rates the tenant's (tenant_id, created_at)
            # index above the owners' key and user indexes (likely() does not change that here):
            # ``+tenant_id`` is SQLite's way to keep a term from choosing an index, so the
            # owners' records are read through their own indexes (stores/sql/owners.py).
            tenant = UnaryExpression(t.c.tenant_id, operator=custom_op("+"), type_=sa.String) == tenant_id
        where.append(tenant)
    for column, value in ((t.c.model, query.model), (t.c.key_id, query.key_id),
                          (t.c.team_id, query.team_id), (t.c.user_id, query.user_id)):
        if value is not None:
            where.append(column == value)
    if query.api is not None:
        where.append(_metadata_key(dialect, "api") == query.api)
    if query.api_version is not None:
        where.append(_metadata_key(dialect, "api_version") == str(query.api_version))
    if query.owners is not None:
        where.append(owned(dialect, t.c.user_id, t.c.key_id, tenant_id, query.owners, query.owner_lineage,
                           t.c.team_id, query.owner_team))
    stmt = sa.select(*groups, *sums).where(*where)
    if groups:
        stmt = stmt.group_by(*groups).order_by(*(g.asc().nulls_first() for g in groups))
    return stmt.limit(query.max_groups + 1)


def total_statement(dialect: str, tenant_id: str, scope: str, subject: str, since: datetime,
                    unit: str) -> sa.Select[Any]:
    """What ``subject`` of ``scope`` spent in ``unit`` since ``since``, in one query."""
    column = _SCOPE_COLUMNS[scope]
    amount = t.c.cost_nano_usd if unit == "usd" else t.c.prompt_tokens + t.c.completion_tokens
    tenant: sa.ColumnElement[bool] = t.c.tenant_id == tenant_id
    match = column == subject
    if scope == "key":
        # A key's subject is its lineage: the chain's first key and every key naming it as its
        # lineage. One IN over their ids: each id is then a (key_id, created_at) index range.
        # ``key_id = subject OR key_id IN (sub-select)`` is no index condition, and PostgreSQL
        # read and filtered every record of the tenant since ``since``.
        chain = sa.select(api_keys.c.id).where(api_keys.c.tenant_id == tenant_id,
                                               api_keys.c.lineage_id == subject)
        match = column.in_(sa.union(sa.select(sa.literal(subject, sa.String)), chain))
        if dialect == "sqlite":
            # SQLite plans without statistics (nothing runs ANALYZE on the embedded file) and
            # rates an IN over a sub-select below the tenant's (tenant_id, created_at) index:
            # likely() says what is true, the tenant holds most records, so the keys' index wins.
            tenant = sa.literal_column("+usage_records.tenant_id") == tenant_id
    return sa.select(sa.func.coalesce(sa.func.sum(amount), 0)).where(
        tenant, t.c.created_at >= to_db(since), match)


def _report_row(row: sa.Row[Any], group_by: tuple[str, ...]) -> UsageReportRow:
    m = row._mapping
    return UsageReportRow(
        group={name: m[f"g_{name}"] for name in group_by},
        requests=int(m["requests"]),
        errors=int(m["errors"]),
        prompt_tokens=int(m["prompt_tokens"]),
        completion_tokens=int(m["completion_tokens"]),
        cache_read_tokens=int(m["cache_read_tokens"]),
        cache_write_tokens=int(m["cache_write_tokens"]),
        reasoning_tokens=int(m["reasoning_tokens"]),
        image_input_tokens=int(m["image_input_tokens"]),
        audio_input_tokens=int(m["audio_input_tokens"]),
        image_output_tokens=int(m["image_output_tokens"]),
        audio_output_tokens=int(m["audio_output_tokens"]),
        cost_usd=(Decimal(int(m["cost_nano_usd"])) / NANO).normalize(),
        unpriced=int(m["unpriced"]),
        latency_ms_avg=_average(m["latency_ms_avg"]),
        ttft_ms_avg=_average(m["ttft_ms_avg"]),
    )


def _average(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


class SqlUsageLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert_rows, self._convert = _insert_rows_sql(engine)
        self._rollups = RollupWriter(engine)  # analytics: updated with every batch stored
        # SQLite inserts in the gateway's own process (a driver thread, on the cores the event
        # loop uses): a 500-row INSERT with the table's nine indexes is ~10 ms of CPU that the
        # scheduler can hand the thread while a request waits (at concurrency 1 that was the
        # whole p99 tail). In pieces of SQLITE_CHUNK rows, the loop runs between pieces. On
        # PostgreSQL the server does the work elsewhere: one statement (0: the whole batch).
        self._chunk = SQLITE_CHUNK if engine.dialect.name == "sqlite" else 0

    async def append(self, records: Sequence[UsageRecord]) -> int:
        inserted = 0
        rollup = Rollup()
        async with self._engine.begin() as conn:
            stmt = (
                insert(self._engine, t)
                .on_conflict_do_nothing(index_elements=KEY)
                .returning(t.c.entry_id, t.c.created_at)
            )
            for start in range(0, len(records), BATCH):
                # executemany: the dialect batches the rows into multi-row INSERTs itself, and
                # the statement is compiled once rather than once per batch.
                chunk = records[start : start + BATCH]
                rows = [_row(r) for r in chunk]
                new = {(entry, _micros(at)) for entry, at in (await conn.execute(stmt, rows)).all()}
                inserted += len(new)
                # The analytics rollups count what RETURNING says was inserted, each key once.
                for record in chunk:
                    row = usage_row(record)
                    key = (row[_ENTRY], row[_CREATED])
                    if key in new:
                        new.discard(key)
                        rollup.add_row(row)
            await self._rollups.write(conn, rollup)
        return inserted

    async def append_rows(self, rows: Sequence[UsageRow], *, fresh: bool = False) -> None:
        if not rows:
            return
        try:
            await self._append_rows(rows, fresh)
        except Exception as exc:
            if not refused(exc):
                raise
            # Refused for what it holds: once more with every row made storable (the failed
            # transaction stored nothing). Still refused: raised, for the writer to isolate.
            clean = [storable_row(row) for row in rows]
            changed = [row[0] for row, made in zip(rows, clean, strict=True) if made != row]
            if not changed:
                raise
            await self._append_rows(clean, fresh)
            log.warning("usage ledger: %d record(s) stored with values their columns could not hold "
                        "as they were (NUL characters and unpaired surrogates replaced by U+FFFD, text "
                        "cut to its column, integers capped): request %s; the database said %s",
                        len(changed), ", ".join(map(str, changed[:10])), kind(exc))

    async def _append_rows(self, rows: Sequence[UsageRow], fresh: bool) -> None:
        convert, step = self._convert, self._chunk or len(rows)
        rollup = Rollup()
        async with self._engine.begin() as conn:
            # A first attempt needs no lookup: only a replay can meet rows stored before.
            seen = set() if fresh else await self._stored(conn, rows)
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                await conn.exec_driver_sql(self._insert_rows, [convert(row) for row in chunk])
                _add_new_rows(rollup, seen, chunk)
            await self._rollups.write(conn, rollup)

    async def _stored(self, conn: AsyncConnection, rows: Sequence[UsageRow]) -> set[tuple[str, int]]:
        """Which of the rows' keys (entry id, time) the ledger holds already, asked before the
        INSERT.

        The analytics rollups must count only the rows this INSERT really adds: the spool replays
        a batch after a failure, and a replayed row is stored once (ON CONFLICT DO NOTHING on the
        same key) so it must be counted once. ``append`` learns that from RETURNING; here the
        INSERT is the driver's own executemany (the fast path, no result rows), so the keys are
        looked up first: one indexed query per batch (its primary key), bounded by the batch's
        time range so PostgreSQL reads only the partitions the batch falls in.

        Limit: two writers storing the same record at the same moment could both find it absent
        and both count it (the INSERT itself still stores it once). A record is written by the
        one instance that served the request, and its spool replays sequentially, so this does
        not happen in practice; ``switchboard analytics rebuild`` recounts a range exactly."""
        created = [row[_CREATED] for row in rows]
        since, until = _EPOCH + min(created) * _MICRO, _EPOCH + max(created) * _MICRO
        ids = list({row[_ENTRY] for row in rows})
        found: set[tuple[str, int]] = set()
        for start in range(0, len(ids), BATCH):
            query = sa.select(t.c.entry_id, t.c.created_at).where(
                t.c.entry_id.in_(ids[start : start + BATCH]),
                t.c.created_at >= since, t.c.created_at <= until)
            found.update((entry, _micros(at)) for entry, at in await conn.execute(query))
        return found

    async def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        # Several records may share a caller's request id: the first one made.
        query = (sa.select(t).where(t.c.tenant_id == tenant_id, t.c.request_id == request_id)
                 .order_by(t.c.created_at, t.c.entry_id).limit(1))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def recent(self, tenant_id: str, limit: int = 100) -> list[UsageRecord]:
        query = (
            sa.select(t)
            .where(t.c.tenant_id == tenant_id)
            .order_by(t.c.created_at.desc(), t.c.request_id.desc(), t.c.entry_id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def total(self, tenant_id: str, scope: str, subject: str, since: datetime, unit: str) -> Decimal:
        query = total_statement(self._engine.dialect.name, tenant_id, scope, subject, since, unit)
        async with self._engine.connect() as conn:
            value = int((await conn.execute(query)).scalar_one())
        return Decimal(value) / NANO if unit == "usd" else Decimal(value)

    async def report(self, tenant_id: str | None, query: UsageReportQuery) -> list[UsageReportRow]:
        stmt = report_statement(self._engine.dialect.name, tenant_id, query)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        if len(rows) > query.max_groups:
            raise TooManyGroups(f"more than {query.max_groups} groups")
        if not query.group_by and rows and rows[0]._mapping["requests"] == 0:
            return []  # no records: no total row
        return [_report_row(row, query.group_by) for row in rows]
