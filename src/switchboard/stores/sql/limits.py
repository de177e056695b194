"""Rate limits set through the admin API, in SQL: one row per (tenant, scope, subject). The
request path never reads this table: ``limits/cache.py`` keeps each tenant's rows in memory."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import AuditEntry, LimitRecord
from switchboard.stores.protocols.limits import LimitAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import rate_limits as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> LimitRecord:
    m = row._mapping
    created, updated = from_db(m["created_at"]), from_db(m["updated_at"])
    assert created is not None and updated is not None
    return LimitRecord(
        id=m["id"], tenant_id=m["tenant_id"], scope=m["scope"], subject=m["subject"],
        rpm=m["rpm"], tpm=m["tpm"], tpd=m["tpd"], created_at=created, updated_at=updated,
        created_by=m["created_by"],
    )


class SqlLimitStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: LimitRecord, *, audited: LimitAudited | None = None
                  ) -> tuple[LimitRecord, LimitRecord | None]:
        try:
            return await self._put(record, audited)
        except _Raced:  # created by someone else meanwhile: now it is an update
            return await self._put(record, audited)

    async def _put(self, record: LimitRecord, audited: LimitAudited | None
                   ) -> tuple[LimitRecord, LimitRecord | None]:
        where = (t.c.tenant_id == record.tenant_id, t.c.scope == record.scope, t.c.subject == record.subject)
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(t).where(*where).with_for_update())).first()
            before = None if row is None else _record(row)
            if before is None:
                stored = record
                try:
                    await conn.execute(sa.insert(t).values(
                        id=record.id, tenant_id=record.tenant_id, scope=record.scope, subject=record.subject,
                        rpm=record.rpm, tpm=record.tpm, tpd=record.tpd, created_at=to_db(record.created_at),
                        updated_at=to_db(record.updated_at), created_by=record.created_by,
                    ))
                except IntegrityError:
                    raise _Raced from None  # only the insert's: a refused audit entry is not a race
            elif (before.rpm, before.tpm, before.tpd) == (record.rpm, record.tpm, record.tpd):
                return before, before  # the limits it has already: nothing written (nor audited)
            else:
                stored = replace(record, id=before.id, created_at=before.created_at,
                                 created_by=before.created_by)
                await conn.execute(sa.update(t).where(t.c.id == before.id).values(
                    rpm=record.rpm, tpm=record.tpm, tpd=record.tpd, updated_at=to_db(record.updated_at),
                ))
            if audited is not None:
                await append_in(conn, audited(stored, before))  # a failing entry undoes the change
        return stored, before

    async def get(self, tenant_id: str, limit_id: str) -> LimitRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == limit_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def find(self, limit_id: str) -> LimitRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id == limit_id))).first()
        return None if row is None else _record(row)

    async def list_limits(self, tenant_id: str) -> list[LimitRecord]:
        query = sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.scope, t.c.subject)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def delete(self, tenant_id: str, limit_id: str, *, audited: AuditEntry | None = None) -> bool:
        stmt = sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.id == limit_id)
        async with self._engine.begin() as conn:
            if not (await conn.execute(stmt)).rowcount:
                return False
            if audited is not None:
                await append_in(conn, audited)  # a failing entry undoes the delete
        return True


class _Raced(Exception):
    """The limit was created by another writer between the read and the insert."""
