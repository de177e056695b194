"""Prompts published as APIs in SQL (revision 0017): one row per (tenant, name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import ApiExists, ApiRecord, AuditEntry, utcnow
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import apis as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> ApiRecord:
    m = row._mapping
    created, updated = from_db(m["created_at"]), from_db(m["updated_at"])
    assert created is not None and updated is not None
    return ApiRecord(
        tenant_id=m["tenant_id"], name=m["name"], prompt=m["prompt"], version=m["version"],
        label=m["label"], status=m["status"], description=m["description"], team_id=m["team_id"],
        require_approval=bool(m["require_approval"]), successor=m["successor"],
        sunset_at=from_db(m["sunset_at"]), deprecated_at=from_db(m["deprecated_at"]),
        split=tuple(m["split"]) if m["split"] is not None else None,
        sessions=m["sessions"], created_by=m["created_by"], created_at=created, updated_at=updated,
    )


def _values(record: ApiRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id, "name": record.name, "prompt": record.prompt,
        "version": record.version, "label": record.label, "status": record.status,
        "description": record.description, "team_id": record.team_id,
        "require_approval": record.require_approval, "successor": record.successor,
        "sunset_at": to_db(record.sunset_at), "deprecated_at": to_db(record.deprecated_at),
        "split": [dict(arm) for arm in record.split] if record.split is not None else None,
        "sessions": dict(record.sessions) if record.sessions is not None else None,
        "created_by": record.created_by, "created_at": to_db(record.created_at),
        "updated_at": to_db(record.updated_at),
    }


class SqlApiStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, record: ApiRecord, *, audited: AuditEntry | None = None) -> ApiRecord:
        async with self._engine.begin() as conn:
            try:
                await conn.execute(sa.insert(t).values(_values(record)))
            except IntegrityError:
                raise ApiExists(record.name) from None  # only the insert's: not a refused entry
            if audited is not None:
                await append_in(conn, audited)  # a failing entry undoes the create
        return record

    async def get(self, tenant_id: str, name: str) -> ApiRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def list_apis(self, tenant_id: str) -> list[ApiRecord]:
        query = sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.name)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def update(self, record: ApiRecord, read: datetime | None = None, *,
                     audited: Callable[[ApiRecord], AuditEntry] | None = None) -> ApiRecord:
        stored = replace(record, updated_at=utcnow())
        values = _values(stored)
        del values["tenant_id"], values["name"], values["created_at"], values["created_by"]
        # Compare-and-set on updated_at (every write sets a new one): a change made from a
        # version another change has overtaken (a retirement, say) is not written over it.
        unchanged = [] if read is None else [t.c.updated_at == to_db(read)]
        query = sa.update(t).where(t.c.tenant_id == record.tenant_id, t.c.name == record.name, *unchanged)
        async with self._engine.begin() as conn:
            if not (await conn.execute(query.values(values))).rowcount:
                raise KeyError(record.name)
            if audited is not None:
                await append_in(conn, audited(stored))  # a failing entry undoes the change
        return stored
