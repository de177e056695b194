"""The audit log in SQL: append-only, read per tenant with filters, newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, AuditQuery
from switchboard.stores.sql.tables import audit_log as t
from switchboard.stores.sql.times import from_db, to_db


def _entry(row: sa.Row[Any]) -> AuditEntry:
    m = row._mapping
    at = from_db(m["at"])
    assert at is not None
    return AuditEntry(
        id=m["id"],
        tenant_id=m["tenant_id"],
        at=at,
        actor=m["actor"],
        actor_role=m["actor_role"],
        action=m["action"],
        resource_type=m["resource_type"],
        resource_id=m["resource_id"],
        before=m["before"],
        after=m["after"],
        client=m["client"],
        request_id=m["request_id"],
    )


async def append_in(conn: AsyncConnection, entry: AuditEntry) -> int:
    """Append ``entry`` in ``conn``'s transaction (a change and its entry: both or neither); its id."""
    row = {
        "tenant_id": entry.tenant_id,
        "at": to_db(entry.at),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "before": None if entry.before is None else dict(entry.before),
        "after": None if entry.after is None else dict(entry.after),
        "client": entry.client,
        "request_id": entry.request_id,
    }
    result = await conn.execute(sa.insert(t).values(row).returning(t.c.id))
    return int(result.scalar_one())


class SqlAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, entry: AuditEntry) -> int:
        async with self._engine.begin() as conn:
            return await append_in(conn, entry)

    async def query(self, tenant_id: str, query: AuditQuery) -> list[AuditEntry]:
        async with self._engine.connect() as conn:
            if query.since is not None and self._engine.dialect.name == "postgresql":
                # Whether the (tenant_id, at, id) index or the newest-first scan is cheaper
                # depends on how recent ``since`` is: a prepared statement's generic plan, blind
                # to it, could read the whole history. As log_search.py does; the setting ends with
                # this connection's transaction.
                await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            return [_entry(row) for row in await conn.execute(query_statement(tenant_id, query))]


def query_statement(tenant_id: str, query: AuditQuery) -> sa.Select[Any]:
    """A tenant's entries matching ``query``, newest first: through (tenant_id, id), or
    (tenant_id, resource_id, id) for one resource's (revision 0027), (tenant_id, actor, id) for
    one actor's (revision 0028)."""
    stmt = sa.select(t).where(t.c.tenant_id == tenant_id)
    if query.action is not None:
        stmt = stmt.where(t.c.action == query.action)
    if query.resource_id is not None:
        stmt = stmt.where(t.c.resource_id == query.resource_id)
    if query.actor is not None:
        stmt = stmt.where(t.c.actor == query.actor)
    if query.since is not None:
        # Through (tenant_id, at, id) when few entries are that recent (revision 0028): newest
        # first by id alone, a scan cannot know that no older entry is that recent and read the
        # tenant's whole history looking for more.
        stmt = stmt.where(t.c.at >= to_db(query.since))
    if query.before_id is not None:
        stmt = stmt.where(t.c.id < query.before_id)
    if query.hidden_types:
        stmt = stmt.where(t.c.resource_type.not_in(query.hidden_types))
    return stmt.order_by(t.c.id.desc()).limit(query.limit)
