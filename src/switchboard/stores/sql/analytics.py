"""Analytics rollups in SQL: hourly sums and latency histograms of the usage ledger.

The ledger (stores/sql/ledger.py) counts each batch of records it stores into a :class:`Rollup`
(in Python: one entry per hour and combination of dimensions, histograms merged there), then
writes it with :class:`RollupWriter`, in the same transaction as the records: one
``INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x`` per table, run over the batch's
entries (``executemany``). Entries are written in key order so two instances writing the same
hours lock the rows in the same order (no deadlock).

Queries sum the rollup rows per interval (the hour, or its UTC day) and group in the database;
the histograms come back as bucket counts and the HTTP layer reads percentiles from them
(stores/histogram.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.histogram import BUCKETS, bucket_of
from switchboard.stores.protocols import AnalyticsQuery, AnalyticsRow, TooManyGroups, UsageRow
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.owners import owned
from switchboard.stores.sql.tables import (
    ANALYTICS_BUCKETS,
    ANALYTICS_MEASURES,
    LATENCY_COLUMNS,
    TTFT_COLUMNS,
    analytics_hourly,
    analytics_tags_hourly,
    usage_records,
)
from switchboard.stores.sql.times import from_db, to_db

if ANALYTICS_BUCKETS != BUCKETS:  # the table's columns and the histogram's buckets must agree
    raise RuntimeError("analytics histogram columns do not match stores/histogram.py")

COLUMNS = (*ANALYTICS_MEASURES, *LATENCY_COLUMNS, *TTFT_COLUMNS)
_LATENCY_AT = len(ANALYTICS_MEASURES)  # where the latency histogram starts in an entry
_TTFT_AT = _LATENCY_AT + BUCKETS
_WIDTH = len(COLUMNS)
MAIN_KEY = ("bucket", "tenant_id", "team_id", "key_id", "user_id", "model", "deployment", "provider")
TAG_KEY = ("bucket", "tenant_id", "team_id", "key_id", "user_id", "tag")
TAG_LENGTH = 256
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_HOUR_MICROS = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floor = floor_hour(value)
    return floor if floor == value else floor + HOUR


class Rollup:
    """A batch of records summed per hour and dimensions (and per hour, key and tag)."""

    def __init__(self) -> None:
        self.main: dict[tuple[Any, ...], list[int]] = {}
        self.tags: dict[tuple[Any, ...], list[int]] = {}
        self.records = 0
        self._hours: dict[int, datetime] = {}

    def add_row(self, row: UsageRow) -> None:
        """Count one ledger row (``USAGE_ROW`` order; ``created_at`` in epoch microseconds)."""
        micros = row[12] - row[12] % _HOUR_MICROS
        hour = self._hours.get(micros)
        if hour is None:
            hour = self._hours[micros] = _EPOCH + timedelta(microseconds=micros)
        self.add(hour, row[1], row[3], row[2], row[4], row[5], row[28], row[6], row[7], row[8], row[9],
                 row[14], row[17], row[10], row[11], row[19], row[23])

    def add(self, hour: datetime, tenant: str, team: str | None, key: str | None, user: str | None,
            model: str, deployment: str | None, provider: str | None, status: int, prompt: int,
            completion: int, cached: int, reasoning: int, nano: int, latency: int, ttft: int | None,
            tags: Iterable[str] | None) -> None:
        who = (hour, tenant, team or "", key or "", user or "")
        entries = [self._entry(self.main, (*who, model or "", deployment or "", provider or ""))]
        for tag in dict.fromkeys(tags or ()):  # a tag named twice counts once
            entries.append(self._entry(self.tags, (*who, str(tag)[:TAG_LENGTH])))
        latency_bucket = _LATENCY_AT + bucket_of(latency)
        ttft_bucket = None if ttft is None else _TTFT_AT + bucket_of(ttft)
        ttft_ms = ttft or 0
        for e in entries:
            e[0] += 1
            if status >= 400:
                e[1] += 1
            e[2] += prompt
            e[3] += completion
            e[4] += cached
            e[5] += reasoning
            e[6] += nano
            e[7] += latency
            e[latency_bucket] += 1
            if ttft_bucket is not None:
                e[8] += ttft_ms
                e[9] += 1
                e[ttft_bucket] += 1
        self.records += 1

    @staticmethod
    def _entry(entries: dict[tuple[Any, ...], list[int]], key: tuple[Any, ...]) -> list[int]:
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = [0] * _WIDTH
        return entry


def _upsert_sql(engine: AsyncEngine, table: sa.Table, key: tuple[str, ...]) -> str:
    """The upsert of one entry in the driver's own parameter style (key columns, then
    ``COLUMNS``): compiled once, run with the driver's executemany, none of SQLAlchemy's
    per-row parameter processing (174 parameters a row)."""
    names = (*key, *COLUMNS)
    values = {name: sa.bindparam(name, type_=table.c[name].type) for name in names}
    stmt = insert(engine, table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_={name: table.c[name] + stmt.excluded[name] for name in COLUMNS},
    )
    compiled = stmt.compile(dialect=engine.dialect)
    if tuple(compiled.positiontup or ()) != names:  # the rows below follow this order
        raise RuntimeError(f"unexpected parameter order: {compiled.positiontup}")
    return str(compiled.string)


def _sqlite_hour(hour: datetime) -> str:
    """An hour as SQLAlchemy stores a UTC timestamp in SQLite (text), so the rows the writer and
    SQLAlchemy's own statements (queries, rebuild) address are the same."""
    return hour.strftime("%Y-%m-%d %H:%M:%S.%f")


_COMPILED: dict[str, tuple[str, str]] = {}


class RollupWriter:
    """Adds a :class:`Rollup` to the rollup tables inside the caller's transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name != "postgresql"

    def _statements(self) -> tuple[str, str]:
        # Compiled on first use, once per dialect and process (a fifth of a second each).
        dialect = self._engine.dialect.name
        found = _COMPILED.get(dialect)
        if found is None:
            found = _COMPILED[dialect] = (_upsert_sql(self._engine, analytics_hourly, MAIN_KEY),
                                          _upsert_sql(self._engine, analytics_tags_hourly, TAG_KEY))
        return found

    async def write(self, conn: AsyncConnection, rollup: Rollup) -> None:
        if not rollup.records:
            return
        main, tags = self._statements()
        tables = ((main, rollup.main), (tags, rollup.tags))
        hours: dict[datetime, Any] = {}
        for sql, entries in tables:
            if not entries:
                continue
            params = []
            # Sorted: concurrent writers take the rows' locks in one order.
            for key in sorted(entries):
                hour = key[0]
                value = hours.get(hour)
                if value is None:
                    value = hours[hour] = _sqlite_hour(hour) if self._sqlite else hour
                params.append((value, *key[1:], *entries[key]))
            await conn.exec_driver_sql(sql, params)


# -- queries --

_GROUP_COLUMNS = {"model": "model", "deployment": "deployment", "provider": "provider", "team": "team_id",
                  "key": "key_id", "user": "user_id", "tag": "tag", "tenant": "tenant_id"}
_SQLITE_STARTS = {"day": "%Y-%m-%dT00:00:00Z", "hour": "%Y-%m-%dT%H:00:00Z"}
_PG_STARTS = {"day": 'YYYY-MM-DD"T00:00:00Z"', "hour": 'YYYY-MM-DD"T"HH24":00:00Z"'}


def _start(dialect: str, table: sa.Table, interval: str) -> sa.ColumnElement[Any]:
    """The interval's UTC start as text, ``2026-06-01T12:00:00Z``, on either dialect. Formats are
    literals, not parameters: PostgreSQL matches the SELECT's expression to the GROUP BY's."""
    if dialect == "postgresql":
        utc = sa.func.timezone(sa.literal_column("'UTC'"), table.c.bucket)
        return sa.func.to_char(utc, sa.literal_column(f"'{_PG_STARTS[interval]}'"))
    return sa.func.strftime(sa.literal_column(f"'{_SQLITE_STARTS[interval]}'"), table.c.bucket)


# What the per-tag rollup does not have: no filter or group on these with a tag.
UNTAGGED_GROUPS = ("model", "deployment", "provider")


def uses_tags(query: AnalyticsQuery) -> bool:
    return query.group_by == "tag" or query.tag is not None


def series_statement(dialect: str, tenant_id: str | None, query: AnalyticsQuery) -> sa.Select[Any]:
    tagged = uses_tags(query)
    table = analytics_tags_hourly if tagged else analytics_hourly
    if tagged and (query.model or query.deployment or query.provider
                   or query.group_by in UNTAGGED_GROUPS):
        raise ValueError("the per-tag rollup has no model, deployment or provider")
    if query.interval not in _SQLITE_STARTS:
        raise ValueError(f"unknown interval {query.interval!r}")
    start = _start(dialect, table, query.interval).label("start")
    groups: list[sa.ColumnElement[Any]] = [start]
    if query.group_by is not None:
        groups.append(table.c[_GROUP_COLUMNS[query.group_by]].label("grp"))
    where: list[sa.ColumnElement[bool]] = [
        table.c.bucket >= to_db(floor_hour(query.since)), table.c.bucket < to_db(query.until),
    ]
    if tenant_id is not None:
        where.append(table.c.tenant_id == tenant_id)
    filters: list[tuple[str, str | None]] = [
        ("team_id", query.team_id), ("key_id", query.key_id), ("user_id", query.user_id)]
    if tagged:
        filters.append(("tag", query.tag))
    else:
        filters += [("model", query.model), ("deployment", query.deployment), ("provider", query.provider)]
    for name, value in filters:
        if value is not None:
            where.append(table.c[name] == value)
    if query.owners is not None:
        where.append(owned(dialect, table.c.user_id, table.c.key_id, tenant_id, query.owners,
                           query.owner_lineage, table.c.team_id, query.owner_team))
    sums = [sa.func.sum(table.c[name]).label(name) for name in COLUMNS]
    return (sa.select(*groups, *sums).where(*where).group_by(*groups)
            .order_by(*(g.asc() for g in groups)).limit(query.max_rows + 1))


def _series_row(row: sa.Row[Any], grouped: bool) -> AnalyticsRow:
    cells: tuple[Any, ...] = tuple(row)
    values = [int(v or 0) for v in cells[2 if grouped else 1:]]
    group = cells[1] if grouped else None
    return AnalyticsRow(
        start=datetime.fromisoformat(cells[0].replace("Z", "+00:00")),
        group=group or None,  # '' is an absent dimension
        **dict(zip(ANALYTICS_MEASURES, values, strict=False)),
        latency_histogram=tuple(values[_LATENCY_AT:_TTFT_AT]),
        ttft_histogram=tuple(values[_TTFT_AT:]),
    )


# The ledger columns a rebuild reads, in ``Rollup.add``'s order after the hour.
_REBUILD_COLUMNS = tuple(usage_records.c[name] for name in (
    "tenant_id", "team_id", "key_id", "user_id", "model", "deployment", "provider", "status",
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "reasoning_tokens", "cost_nano_usd",
    "latency_ms", "ttft_ms", "tags"))


class SqlAnalyticsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = RollupWriter(engine)

    async def series(self, tenant_id: str | None, query: AnalyticsQuery) -> list[AnalyticsRow]:
        stmt = series_statement(self._engine.dialect.name, tenant_id, query)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        if len(rows) > query.max_rows:
            raise TooManyGroups(f"more than {query.max_rows} rows")
        return [_series_row(row, query.group_by is not None) for row in rows]

    async def rebuild(self, since: datetime, until: datetime, tenant_id: str | None = None) -> int:
        """One transaction per hour: its rollup rows deleted and recounted from the ledger, so
        a reader sees each hour either before or after, and a large range holds no lock for
        long. Records stored into an hour while it is being rebuilt may be counted by both the
        ledger and the rebuild (or neither): rebuild hours that are complete."""
        hour, end = floor_hour(since), ceil_hour(until)
        counted = 0
        while hour < end:
            stop = end if end - hour <= DAY else hour + DAY  # never a day past the calendar's end
            if await self._anything(hour, stop, tenant_id):  # a day with nothing: two cheap reads
                while hour < stop:
                    counted += await self._rebuild_hour(hour, tenant_id)
                    hour += HOUR
            hour = stop
        return counted

    async def purge(self, before: datetime) -> int:
        """Delete the rollups of the hours that start before ``before``, one day per transaction
        (a first purge of a long history never holds the write lock for long); returns how many
        rows went."""
        cutoff = floor_hour(before)
        tables = (analytics_hourly, analytics_tags_hourly)
        known: list[datetime] = []
        async with self._engine.connect() as conn:
            for table in tables:
                oldest = from_db((await conn.execute(sa.select(sa.func.min(table.c.bucket)))).scalar())
                if oldest is not None:
                    known.append(oldest)
        deleted = 0
        day = min(known, default=cutoff)
        while day < cutoff:
            stop = min(day + DAY, cutoff)
            async with self._engine.begin() as conn:
                for table in tables:
                    result = await conn.execute(sa.delete(table).where(table.c.bucket < to_db(stop)))
                    deleted += result.rowcount
            day = stop
        return deleted

    async def _anything(self, since: datetime, until: datetime, tenant_id: str | None) -> bool:
        """Whether the ledger or the rollups hold anything in ``[since, until)``."""
        tables = ((usage_records, usage_records.c.created_at), (analytics_hourly, analytics_hourly.c.bucket),
                  (analytics_tags_hourly, analytics_tags_hourly.c.bucket))
        async with self._engine.connect() as conn:
            for table, at in tables:
                check = sa.select(sa.literal(1)).select_from(table).where(
                    at >= to_db(since), at < to_db(until))
                if tenant_id is not None:
                    check = check.where(table.c.tenant_id == tenant_id)
                if (await conn.execute(check.limit(1))).first() is not None:
                    return True
        return False

    async def _rebuild_hour(self, hour: datetime, tenant_id: str | None) -> int:
        u = usage_records
        async with self._engine.begin() as conn:
            for table in (analytics_hourly, analytics_tags_hourly):
                delete = sa.delete(table).where(table.c.bucket == to_db(hour))
                if tenant_id is not None:
                    delete = delete.where(table.c.tenant_id == tenant_id)
                await conn.execute(delete)
            select = sa.select(*_REBUILD_COLUMNS).where(
                u.c.created_at >= to_db(hour), u.c.created_at < to_db(hour + HOUR))
            if tenant_id is not None:
                select = select.where(u.c.tenant_id == tenant_id)
            rollup = Rollup()
            for row in await conn.execute(select):
                rollup.add(hour, *row)
            await self._writer.write(conn, rollup)
        return rollup.records


def rollup_of(rows: Sequence[UsageRow]) -> Rollup:
    rollup = Rollup()
    for row in rows:
        rollup.add_row(row)
    return rollup
