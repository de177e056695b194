"""The request log in SQL: bodies (``request_bodies``), day partitions and retention.

PostgreSQL: ``usage_records`` and ``request_bodies`` are range-partitioned by ``created_at``, one
partition per UTC day named ``<table>_pYYYYMMDD``, and a ``<table>_default`` partition for rows
outside them (revision 0010). ``prepare`` makes today's partition and the next days' ahead of
time; ``retain`` drops whole partitions once their day is past the retention age, and the oldest
body partitions while the bodies take more than the size cap (``pg_total_relation_size``). Both
run under a transaction-scoped advisory lock, so instances doing it at once queue up, and with a
short lock timeout, so they never hold up the ledger's writes behind a long query: a pass that
cannot get its locks gives up and the next one does the work. Each table is done in its own
transaction, its partitioned table locked first (``_lock_parent``). Rows the DEFAULT partition holds
past the age (a clock far off, a gateway down for days) are deleted in bounded batches.

SQLite has no partitions: retention deletes by ``created_at`` range in bounded batches (each its
own short transaction) through the ``created_at`` indexes; at an embedded store's volumes that
is quick, and a writer waits at most one batch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import RequestBody, RetentionDone
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import request_bodies as b
from switchboard.stores.sql.tables import usage_records as u
from switchboard.stores.sql.times import from_db, to_db

log = logging.getLogger("switchboard.request_log")

# pg_advisory_xact_lock key of partition maintenance: "switchboard partitions".
PG_LOCK_ID = 0x5377_5061_7274_6974
# Rows deleted per statement (SQLite; PostgreSQL's DEFAULT partitions).
DELETE_BATCH = 5000
LOCK_TIMEOUT = "5s"
_DAY = re.compile(r"_p(\d{8})$")
_PARTITIONED = (u.name, b.name)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _body_row(body: RequestBody) -> dict[str, Any]:
    return {
        "request_id": body.request_id,
        "tenant_id": body.tenant_id,
        "created_at": to_db(body.created_at),
        "request": body.request,
        "response": body.response,
        "request_headers": None if body.request_headers is None else dict(body.request_headers),
        "truncated": body.truncated,
        "log_id": body.log_id,
    }


class SqlRequestLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgresql = engine.dialect.name == "postgresql"

    async def append(self, bodies: Sequence[RequestBody]) -> None:
        if not bodies:
            return
        stmt = insert(self._engine, b).on_conflict_do_nothing(index_elements=[b.c.log_id, b.c.created_at])
        async with self._engine.begin() as conn:
            await conn.execute(stmt, [_body_row(body) for body in bodies])

    async def get(self, tenant_id: str, log_id: str) -> RequestBody | None:
        query = sa.select(b).where(b.c.tenant_id == tenant_id, b.c.log_id == log_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        created = from_db(m["created_at"])
        assert created is not None
        return RequestBody(
            request_id=m["request_id"], tenant_id=m["tenant_id"], created_at=created, request=m["request"],
            response=m["response"], request_headers=m["request_headers"], truncated=bool(m["truncated"]),
            log_id=m["log_id"],
        )

    # -- partitions (PostgreSQL) --

    async def prepare(self, now: datetime, days_ahead: int = 2) -> list[str]:
        if not self._postgresql:
            return []
        today = now.astimezone(UTC).date()
        created: list[str] = []
        for table in _PARTITIONED:
            async with self._engine.begin() as conn:  # one table a transaction: see _lock_parent
                await _serialize(conn)
                for ahead in range(days_ahead + 1):
                    if await _ensure_partition(conn, table, today + timedelta(days=ahead)):
                        created.append(partition_name(table, today + timedelta(days=ahead)))
        if created:
            log.info("request log: created partitions %s", ", ".join(created))
        return created

    # -- retention --

    async def retain(
        self, now: datetime, *, days: int, records_days: int | None = None, max_bytes: int | None = None,
    ) -> RetentionDone:
        ages = [(b, now - timedelta(days=days))]
        if records_days is not None:
            ages.append((u, now - timedelta(days=records_days)))
        if self._postgresql:
            done = await self._retain_pg(ages, now, max_bytes)
        else:
            done = await self._retain_sqlite(ages, now, max_bytes)
        if done.partitions_dropped or done.rows_deleted:
            log.info("request log retention: dropped %d partition(s)%s, deleted %d row(s)",
                     len(done.partitions_dropped),
                     f" ({', '.join(done.partitions_dropped)})" if done.partitions_dropped else "",
                     done.rows_deleted)
        return done

    async def _retain_pg(
        self, ages: list[tuple[sa.Table, datetime]], now: datetime, max_bytes: int | None,
    ) -> RetentionDone:
        dropped: list[str] = []
        deleted = 0
        for table, cutoff in ages:
            async with self._engine.begin() as conn:  # one table a transaction: see _lock_parent
                await _serialize(conn)
                old = [name for name, day in await _day_partitions(conn, table.name)
                       if day_start(day) + timedelta(days=1) <= cutoff]  # every row of it past the age
                if table is b and max_bytes is not None:
                    old += await _over_cap(conn, max_bytes, now.astimezone(UTC).date(), old)
                if old:
                    await _lock_parent(conn, table.name)
                    for name in old:
                        await conn.execute(sa.text(f'DROP TABLE "{name}"'))
                    dropped += old
        for table, cutoff in ages:  # strays in the DEFAULT partitions, in batches
            default = sa.table(f"{table.name}_default", sa.column("created_at"), sa.column("ctid"))
            deleted += await self._delete_batches(default, default.c.created_at, cutoff, "ctid")
        return RetentionDone(tuple(dropped), deleted)

    async def _retain_sqlite(
        self, ages: list[tuple[sa.Table, datetime]], now: datetime, max_bytes: int | None,
    ) -> RetentionDone:
        deleted = 0
        for table, cutoff in ages:
            deleted += await self._delete_batches(table, table.c.created_at, cutoff, "rowid")
        if max_bytes is not None:
            deleted += await self._cap_sqlite(max_bytes, now.astimezone(UTC).date())
        return RetentionDone((), deleted)

    async def _delete_batches(
        self, table: sa.TableClause, created: sa.ColumnElement[Any], before: datetime, row: str,
        since: datetime | None = None,
    ) -> int:
        """Delete the rows of ``table`` created before ``before`` (and from ``since``), a bounded
        batch per statement and transaction, found through the created_at index."""
        where = [created < to_db(before)]
        if since is not None:
            where.append(created >= to_db(since))
        rowid: sa.ColumnClause[Any] = sa.literal_column(row)
        batch = sa.select(rowid).select_from(table).where(*where).limit(DELETE_BATCH).scalar_subquery()
        stmt = sa.delete(table).where(rowid.in_(batch))
        total = 0
        while True:
            async with self._engine.begin() as conn:
                count = (await conn.execute(stmt)).rowcount
            total += count
            if count < DELETE_BATCH:
                return total

    async def _cap_sqlite(self, max_bytes: int, today: date) -> int:
        """Delete the oldest days of bodies while the bodies take more than ``max_bytes`` (their
        text's size: SQLite cannot tell a table's share of the file); today's are kept."""
        size = sa.func.coalesce(sa.func.sum(
            sa.func.coalesce(sa.func.length(sa.cast(b.c.request, sa.LargeBinary)), 0)
            + sa.func.coalesce(sa.func.length(sa.cast(b.c.response, sa.LargeBinary)), 0)
            + sa.func.coalesce(sa.func.length(sa.cast(b.c.request_headers, sa.LargeBinary)), 0)
        ), 0)
        deleted = 0
        async with self._engine.connect() as conn:
            total = int((await conn.execute(sa.select(size))).scalar_one())
        while total > max_bytes:
            async with self._engine.connect() as conn:
                oldest = from_db((await conn.execute(sa.select(sa.func.min(b.c.created_at)))).scalar_one())
            if oldest is None or oldest.date() >= today:
                break
            start = day_start(oldest.date())
            end = start + timedelta(days=1)
            async with self._engine.connect() as conn:
                query = sa.select(size).where(b.c.created_at >= to_db(start), b.c.created_at < to_db(end))
                day_bytes = int((await conn.execute(query)).scalar_one())
            deleted += await self._delete_batches(b, b.c.created_at, end, "rowid", since=start)
            total -= day_bytes
        return deleted


async def _serialize(conn: AsyncConnection) -> None:
    """One instance at a time does partition work; none waits long for a lock (another
    instance's maintenance, a table a long query reads): it gives up, and the next round works."""
    await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})


async def _lock_parent(conn: AsyncConnection, table: str) -> None:
    """Lock the partitioned ``table`` (and so its partitions) before creating or dropping one.

    Every query locks a partitioned table before its partitions; DROP TABLE of a partition locks
    the partition and then the parent, the other way round, so a reader of the table could wait
    on the drop while holding what the drop waits for (a deadlock PostgreSQL resolves by failing
    the reader). Taking the parent first keeps one order; one table per transaction keeps a
    reader of both tables from closing a cycle across them."""
    await conn.execute(sa.text(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE'))


async def _day_partitions(conn: AsyncConnection, table: str) -> list[tuple[str, date]]:
    """The day partitions of ``table``, oldest first (the DEFAULT one is not listed)."""
    query = sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass)"
    )
    found: list[tuple[str, date]] = []
    for name in (await conn.execute(query, {"parent": table})).scalars():
        match = _DAY.search(name)
        if match is not None:
            found.append((name, datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()))
    return sorted(found, key=lambda item: item[1])


def _like(name: str, table: sa.Table) -> sa.Table:
    """A table named ``name`` with ``table``'s columns (a partition of it), for statements."""
    return sa.Table(name, sa.MetaData(), *(sa.Column(c.name, c.type) for c in table.columns))


async def _ensure_partition(conn: AsyncConnection, table: str, day: date) -> bool:
    """Make ``table``'s partition for ``day`` unless it exists; rows of that day the DEFAULT
    partition already holds are moved into it. True when it was created."""
    name = partition_name(table, day)
    exists = (await conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": name})).scalar_one()
    if exists is not None:
        return False
    await _lock_parent(conn, table)
    start = day_start(day)
    bounds = f"FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
    end = start + timedelta(days=1)
    source = b if table == b.name else u
    default = _like(f"{table}_default", source)
    in_day = (default.c.created_at >= start, default.c.created_at < end)
    query = sa.select(sa.literal(1)).select_from(default).where(*in_day).limit(1)
    strays = (await conn.execute(query)).first()
    if strays is None:
        await conn.execute(sa.text(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES {bounds}'))
        return True
    # The DEFAULT partition has rows of that day: a partition cannot be made over them, so they
    # are moved into a new table first, which then becomes the partition.
    await conn.execute(sa.text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    target = _like(name, source)
    moved = sa.delete(default).where(*in_day).returning(*default.c).cte("moved")
    columns = [c.name for c in source.columns]
    await conn.execute(sa.insert(target).from_select(columns, sa.select(*(moved.c[n] for n in columns))))
    await conn.execute(sa.text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES {bounds}'))
    return True


async def _over_cap(conn: AsyncConnection, max_bytes: int, today: date, dropping: list[str]) -> list[str]:
    """The oldest body partitions to drop, besides ``dropping``, for the bodies to take at most
    ``max_bytes`` on disk (tables, indexes and TOAST, DEFAULT partition included); today's is kept."""
    query = sa.text(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:parent AS regclass)"
    )
    sizes = {name: int(size) for name, size in (await conn.execute(query, {"parent": b.name})).all()}
    total = sum(size for name, size in sizes.items() if name not in dropping)
    over: list[str] = []
    for name, day in await _day_partitions(conn, b.name):
        if total <= max_bytes or day >= today:
            break
        if name not in dropping:
            total -= sizes.get(name, 0)
            over.append(name)
    return over
