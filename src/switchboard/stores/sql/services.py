"""Plain REST services registered through the admin API, in SQL (revision 0019)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, ServiceExists, ServiceRecord, SubscriptionRecord, utcnow
from switchboard.stores.protocols.access import RevokeAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.subscriptions import revoke_approved
from switchboard.stores.sql.tables import services as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> ServiceRecord:
    m = row._mapping
    return ServiceRecord(
        tenant_id=m["tenant_id"],
        name=m["name"],
        spec=m["spec"] or {},
        headers=m["headers"] or {},
        created_by=m["created_by"],
        created_at=from_db(m["created_at"]) or utcnow(),
        updated_at=from_db(m["updated_at"]) or utcnow(),
        by_platform_admin=bool(m["by_platform_admin"]),
    )


async def _append(conn: AsyncConnection, audited: AuditEntry | None) -> None:
    """The change's audit entry, in its transaction: a failing entry undoes the change."""
    if audited is not None:
        await append_in(conn, audited)


class SqlServiceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, record: ServiceRecord, *, audited: AuditEntry | None = None) -> ServiceRecord:
        async with self._engine.begin() as conn:
            try:
                await conn.execute(sa.insert(t).values(
                    tenant_id=record.tenant_id, name=record.name, spec=dict(record.spec),
                    headers=dict(record.headers), created_by=record.created_by,
                    created_at=to_db(record.created_at), updated_at=to_db(record.updated_at),
                    by_platform_admin=record.by_platform_admin,
                ))
            except IntegrityError:
                raise ServiceExists(record.name) from None  # only the insert's: not a refused entry
            await _append(conn, audited)
        return record

    async def get(self, tenant_id: str, name: str) -> ServiceRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def list_services(self, tenant_id: str | None) -> list[ServiceRecord]:
        query = sa.select(t).order_by(t.c.tenant_id, t.c.name)
        if tenant_id is not None:
            query = query.where(t.c.tenant_id == tenant_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).fetchall()
        return [_record(r) for r in rows]

    async def update(self, record: ServiceRecord, read: datetime | None = None, *,
                     audited: AuditEntry | None = None) -> ServiceRecord | None:
        # Compare-and-set on updated_at (every write sets a new one): a change made from a
        # version another change has overtaken is not written over it.
        unchanged = [] if read is None else [t.c.updated_at == to_db(read)]
        query = (sa.update(t).where(t.c.tenant_id == record.tenant_id, t.c.name == record.name, *unchanged)
                 .values(spec=dict(record.spec), headers=dict(record.headers),
                         updated_at=to_db(record.updated_at), by_platform_admin=record.by_platform_admin))
        async with self._engine.begin() as conn:
            if not (await conn.execute(query)).rowcount:
                return None
            await _append(conn, audited)
        return record

    async def delete(self, tenant_id: str, name: str, deleted_by: str | None = None, *,
                     audited: AuditEntry | None = None, revoke_audited: RevokeAudited | None = None
                     ) -> list[tuple[SubscriptionRecord, SubscriptionRecord]] | None:
        query = sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.name == name)
        async with self._engine.begin() as conn:
            result = await conn.execute(query)
            if not result.rowcount:
                return None
            await _append(conn, audited)
            return await revoke_approved(conn, tenant_id, f"service:{name}", deleted_by,
                                         "the service was deleted", revoke_audited)

    async def reseal(self, headers: Callable[[ServiceRecord], Mapping[str, str]]) -> int:
        changed = 0
        async with self._engine.begin() as conn:
            rows = (await conn.execute(sa.select(t))).fetchall()
            for row in rows:
                record = _record(row)
                sealed = dict(headers(record))
                if sealed != dict(record.headers):
                    await conn.execute(sa.update(t).where(t.c.tenant_id == record.tenant_id,
                                                          t.c.name == record.name).values(headers=sealed))
                    changed += 1
        return changed
