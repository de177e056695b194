"""Searching the request log in SQL: usage records, newest first, joined with their stored
bodies when asked, in one statement per page.

Every filter is a plain condition on an indexed column where one exists (revision 0013); the
tenant is always a condition unless the platform admin reads every tenant. Text in the bodies
is PostgreSQL full text (``plainto_tsquery('simple', q)`` against the GIN expression index) or,
on SQLite, one LIKE per word over the bodies of the time range (the API always bounds a list by
time and by ``limit``). The page's end is found with one record more than asked for. On
PostgreSQL each search is planned for its own values (``plan_cache_mode``), never from a
prepared statement's generic plan.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import LogBody, LogEntry, LogPage, LogQuery
from switchboard.stores.sql.ledger import _record
from switchboard.stores.sql.owners import owned
from switchboard.stores.sql.tables import BODY_TEXT_SQL
from switchboard.stores.sql.tables import request_bodies as b
from switchboard.stores.sql.tables import usage_records as u
from switchboard.stores.sql.times import to_db

NANO = Decimal(10**9)
MAX_WORDS = 16  # of a text search; more are ignored
BODY_SLACK = timedelta(hours=1)


def _nano(usd: Decimal, rounding: str) -> int:
    return int((usd * NANO).to_integral_value(rounding))


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _text(dialect: str, text: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        # Literal text, not parameters: the planner uses the index only for its exact expression.
        vector: sa.ColumnElement[Any] = sa.literal_column(BODY_TEXT_SQL)
        return vector.op("@@")(sa.func.plainto_tsquery(sa.literal_column("'simple'"), text))
    words = text.split()[:MAX_WORDS] or [text]
    return sa.and_(*(
        sa.or_(b.c.request.like(_like(w), escape="\\"), b.c.response.like(_like(w), escape="\\"))
        for w in words
    ))


def _conditions(dialect: str, tenant_id: str | None, q: LogQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if tenant_id is not None:
        where.append(u.c.tenant_id == tenant_id)
    if q.since is not None:
        where.append(u.c.created_at >= to_db(q.since))
    if q.until is not None:
        where.append(u.c.created_at < to_db(q.until))
    for column, value in ((u.c.request_id, q.request_id), (u.c.team_id, q.team_id),
                          (u.c.key_id, q.key_id), (u.c.user_id, q.user_id), (u.c.model, q.model),
                          (u.c.deployment, q.deployment), (u.c.provider, q.provider),
                          (u.c.status, q.status), (u.c.error_code, q.error_code)):
        if value is not None:
            where.append(column == value)
    if q.status_class is not None:
        where += [u.c.status >= q.status_class * 100, u.c.status < (q.status_class + 1) * 100]
    if q.min_latency_ms is not None:
        where.append(u.c.latency_ms >= q.min_latency_ms)
    if q.max_latency_ms is not None:
        where.append(u.c.latency_ms <= q.max_latency_ms)
    if q.min_cost_usd is not None:
        where.append(u.c.cost_nano_usd >= _nano(q.min_cost_usd, ROUND_CEILING))
    if q.max_cost_usd is not None:
        where.append(u.c.cost_nano_usd <= _nano(q.max_cost_usd, ROUND_FLOOR))
    if q.abandoned is not None:
        # The usage stage's mark in the record's JSON metadata, absent on every other record.
        marked = sa.func.coalesce(u.c["metadata"]["abandoned"].as_boolean(), sa.false())
        where.append(marked == q.abandoned)
    if q.owners is not None:
        where.append(owned(dialect, u.c.user_id, u.c.key_id, tenant_id, q.owners, q.owner_lineage,
                           u.c.team_id, q.owner_team))
    if q.text is not None:
        where.append(_text(dialect, q.text))
        # The bodies' own time and tenant too, so the database can narrow the bodies by their
        # (tenant_id, created_at) index (and, partitioned, by partition) before matching text. A
        # body is stored under about its record's time; the slack covers any difference.
        if tenant_id is not None:
            where.append(b.c.tenant_id == tenant_id)
        if q.since is not None:
            where.append(b.c.created_at >= to_db(q.since - BODY_SLACK))
        if q.until is not None:
            where.append(b.c.created_at < to_db(q.until + BODY_SLACK))
    if q.before is not None:
        at, request_id, entry_id = q.before[0], q.before[1], q.before[2] if len(q.before) > 2 else None
        at_db = to_db(at)
        after: list[sa.ColumnElement[bool]] = [u.c.created_at < at_db, u.c.request_id < request_id]
        if entry_id is not None:  # records sharing a caller's request id and time: by entry id
            after.append(sa.and_(u.c.request_id == request_id, u.c.entry_id < entry_id))
        where += [u.c.created_at <= at_db, sa.or_(*after)]
    return where


def _legacy(dialect: str) -> sa.ColumnElement[bool]:
    """A record written before revision 0037 (no log_id; its body's log_id is its request id
    since 0043): joined only when no other record has the body's request id, which then cannot
    be another caller's, and only within BODY_SLACK of the record's time (a body kept after its
    own record was deleted is not a later record's). PostgreSQL bounds every join by that window
    already (search_statement); on SQLite, which stores times as text, it is compared as Julian
    days."""
    other = u.alias("other")
    alone = ~sa.exists().where(
        other.c.request_id == b.c.request_id, other.c.tenant_id == b.c.tenant_id,
        other.c.created_at != u.c.created_at,
    )
    if dialect == "postgresql":
        return alone
    days = BODY_SLACK / timedelta(days=1)
    body_at, record_at = sa.func.julianday(b.c.created_at), sa.func.julianday(u.c.created_at)
    return sa.and_(alone, body_at >= record_at - days, body_at <= record_at + days)


def search_statement(dialect: str, tenant_id: str | None, q: LogQuery) -> sa.Select[Any]:
    columns: list[Any] = [u]
    source: sa.FromClause = u
    # A body joins its record on the gateway's own id of the record (log_id), never on the
    # request id alone: that is the caller's X-Request-Id, which a colleague may send too. A
    # record without a log id is an old one (or has no body), whose body carries its request id
    # as log id (0043): one equality either way, for the bodies' key (log_id, created_at). On
    # PostgreSQL a window around the record's time lets the join skip the partitions of other days.
    has_log_id = u.c.log_id.is_not(None)
    on = sa.and_(b.c.log_id == sa.func.coalesce(u.c.log_id, u.c.request_id),
                 b.c.request_id == u.c.request_id, b.c.tenant_id == u.c.tenant_id,
                 sa.or_(has_log_id, _legacy(dialect)))
    if dialect == "postgresql":
        seconds = int(BODY_SLACK.total_seconds())
        slack: sa.ColumnElement[Any] = sa.literal_column(f"interval '{seconds} seconds'")
        on = sa.and_(on, b.c.created_at >= u.c.created_at - slack, b.c.created_at <= u.c.created_at + slack)
    if q.text is not None:
        source = u.join(b, on)
    elif q.include_bodies:
        source = u.outerjoin(b, on)
    if q.include_bodies:
        columns += [b.c.request_id.label("body_request_id"), b.c.request, b.c.response,
                    b.c.request_headers, b.c.truncated]
    return (
        sa.select(*columns)
        .select_from(source)
        .where(*_conditions(dialect, tenant_id, q))
        .order_by(u.c.created_at.desc(), u.c.request_id.desc(), u.c.entry_id.desc())
        .limit(q.limit + 1)
    )


def _entry(row: sa.Row[Any], bodies: bool) -> LogEntry:
    m = row._mapping
    body = None
    if bodies and m["body_request_id"] is not None:
        body = LogBody(request=m["request"], response=m["response"],
                       request_headers=m["request_headers"], truncated=bool(m["truncated"]))
    return LogEntry(record=_record(row), body=body)


class SqlLogSearch:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def search(self, tenant_id: str | None, query: LogQuery) -> LogPage:
        dialect = self._engine.dialect.name
        stmt = search_statement(dialect, tenant_id, query)
        async with self._engine.begin() as conn:
            if dialect == "postgresql":
                # The driver prepares each statement; after five runs PostgreSQL may switch to a
                # generic plan, blind to the values, which for these searches can be a full scan
                # (text matched row by row). A plan per search is a millisecond, and safe.
                await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = (await conn.execute(stmt)).all()
        entries = [_entry(row, query.include_bodies) for row in rows[: query.limit]]
        return LogPage(entries=entries, has_more=len(rows) > query.limit)
