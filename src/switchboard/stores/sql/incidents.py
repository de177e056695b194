"""Alert incidents in SQL (revision 0012), shared by every instance.

``alert_incidents`` holds every incident, open and resolved; ``alert_open`` the one open incident
per (rule, subject). Opening inserts into both in one transaction, the ``alert_open`` row with
``ON CONFLICT DO NOTHING``: an insert that conflicts means another instance (or an earlier
evaluation) opened it, and that caller gets None. Resolving deletes the ``alert_open`` row with
its incident id in the condition: only the caller whose delete removed it resolves the incident
(and a caller naming the incident it read resolves that one only, never a newer one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import Incident, IncidentQuery
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import alert_incidents as t
from switchboard.stores.sql.tables import alert_open as o
from switchboard.stores.sql.times import from_db, to_db


def _incident(row: sa.Row[Any]) -> Incident:
    m = row._mapping
    started = from_db(m["started_at"])
    assert started is not None
    return Incident(
        id=m["id"], rule=m["rule"], kind=m["kind"], subject=m["subject"], value=float(m["value"]),
        threshold=None if m["threshold"] is None else float(m["threshold"]), started_at=started,
        tenant_id=m["tenant_id"], details=m["details"], state=m["state"],
        last_seen_at=from_db(m["last_seen_at"]), resolves_at=from_db(m["resolves_at"]),
        resolved_at=from_db(m["resolved_at"]),
        resolved_value=None if m["resolved_value"] is None else float(m["resolved_value"]),
    )


class SqlIncidentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open(self, incident: Incident) -> Incident | None:
        claim = insert(self._engine, o).values(
            rule=incident.rule, subject=incident.subject, incident_id=incident.id,
        ).on_conflict_do_nothing()
        async with self._engine.begin() as conn:
            if not (await conn.execute(claim)).rowcount:
                return None
            await conn.execute(sa.insert(t).values(
                id=incident.id, rule=incident.rule, kind=incident.kind, subject=incident.subject,
                tenant_id=incident.tenant_id, state="open", value=incident.value,
                threshold=incident.threshold, details=dict(incident.details or {}) or None,
                started_at=to_db(incident.started_at),
                last_seen_at=to_db(incident.last_seen_at or incident.started_at),
                resolves_at=to_db(incident.resolves_at),
            ))
        return incident

    async def touch(self, rule: str, subject: str, at: datetime) -> None:
        opened = sa.select(o.c.incident_id).where(o.c.rule == rule, o.c.subject == subject).scalar_subquery()
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(t).where(t.c.id == opened, t.c.last_seen_at < to_db(at))
                               .values(last_seen_at=to_db(at)))

    async def resolve(self, rule: str, subject: str, at: datetime, value: float | None, *,
                      incident_id: str | None = None) -> Incident | None:
        async with self._engine.begin() as conn:
            found = (await conn.execute(sa.select(o.c.incident_id)
                                        .where(o.c.rule == rule, o.c.subject == subject))).first()
            if found is None or (incident_id is not None and found[0] != incident_id):
                return None  # none open, or a newer incident than the caller's
            incident_id = found[0]
            gone = await conn.execute(sa.delete(o).where(o.c.rule == rule, o.c.subject == subject,
                                                         o.c.incident_id == incident_id))
            if not gone.rowcount:
                return None  # resolved by another instance meanwhile
            await conn.execute(sa.update(t).where(t.c.id == incident_id).values(
                state="resolved", resolved_at=to_db(at), resolved_value=value))
            row = (await conn.execute(sa.select(t).where(t.c.id == incident_id))).first()
        return None if row is None else _incident(row)

    async def open_incidents(self) -> list[Incident]:
        query = sa.select(t).join(o, o.c.incident_id == t.c.id).order_by(t.c.started_at, t.c.id)
        async with self._engine.connect() as conn:
            return [_incident(row) for row in await conn.execute(query)]

    async def get(self, incident_id: str) -> Incident | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id == incident_id))).first()
        return None if row is None else _incident(row)

    async def query(self, query: IncidentQuery) -> list[Incident]:
        async with self._engine.connect() as conn:
            return [_incident(row) for row in await conn.execute(query_statement(query))]


def query_statement(query: IncidentQuery) -> sa.Select[Any]:
    """The incidents matching ``query``, newest first in (started_at, id) order."""
    stmt = sa.select(t)
    if query.tenant_id is not None:
        mine = t.c.tenant_id == query.tenant_id
        stmt = stmt.where(sa.or_(mine, t.c.tenant_id.is_(None)) if query.platform else mine)
    if query.state is not None:
        stmt = stmt.where(t.c.state == query.state)
    if query.kind is not None:
        stmt = stmt.where(t.c.kind == query.kind)
    if query.rule is not None:
        stmt = stmt.where(t.c.rule == query.rule)
    if query.since is not None:
        stmt = stmt.where(t.c.started_at >= to_db(query.since))
    if query.before_id is not None:  # after the cursor in (started_at, id) order, newest first
        cursor = sa.select(t.c.started_at).where(t.c.id == query.before_id).scalar_subquery()
        # The plain bound first: it starts the started_at index scan at the cursor (the OR
        # alone does not), so a later page reads a page, not every incident after it.
        older = sa.or_(t.c.started_at < cursor, sa.and_(t.c.started_at == cursor, t.c.id < query.before_id))
        stmt = stmt.where(t.c.started_at <= cursor, older)
    return stmt.order_by(t.c.started_at.desc(), t.c.id.desc()).limit(query.limit)
