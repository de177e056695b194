"""Subscriptions in SQL: one row per (tenant, team, model), moved between states by
compare-and-set updates so two admins deciding at once cannot both win."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import (
    AuditEntry,
    SubscriptionExists,
    SubscriptionQuery,
    SubscriptionRecord,
    utcnow,
)
from switchboard.stores.protocols.access import RequestAudited, RevokeAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import subscriptions as t
from switchboard.stores.sql.times import from_db, to_db

# States from which a team may ask again; the others make a new request a duplicate.
REOPENABLE = ("rejected", "revoked", "withdrawn")


def _row(record: SubscriptionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "tenant_id": record.tenant_id,
        "team_id": record.team_id,
        "model": record.model,
        "status": record.status,
        "requested_by": record.requested_by,
        "decided_by": record.decided_by,
        "reason": record.reason,
        "created_at": to_db(record.created_at),
        "decided_at": to_db(record.decided_at),
    }


def _record(row: sa.Row[Any]) -> SubscriptionRecord:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    return SubscriptionRecord(
        id=m["id"],
        tenant_id=m["tenant_id"],
        team_id=m["team_id"],
        model=m["model"],
        status=m["status"],
        requested_by=m["requested_by"],
        decided_by=m["decided_by"],
        reason=m["reason"],
        created_at=created,
        decided_at=from_db(m["decided_at"]),
    )


async def revoke_approved(
    conn: AsyncConnection, tenant_id: str | None, model: str, decided_by: str | None, reason: str,
    audited: RevokeAudited | None = None,
) -> list[tuple[SubscriptionRecord, SubscriptionRecord]]:
    """Revoke, within the caller's transaction, every approved subscription to ``model`` of the
    tenant (None: of every tenant, for a deployment's model) when it is deleted: an approval
    kept would open whatever is registered again under the name. Each with ``audited``'s entry,
    in the same transaction (a failing entry undoes the whole removal). (before, after) of each."""
    tenant = [] if tenant_id is None else [t.c.tenant_id == tenant_id]
    query = sa.select(t).where(*tenant, t.c.model == model, t.c.status == "approved")
    before = [_record(row) for row in await conn.execute(query)]
    if not before:
        return []
    now = utcnow()
    await conn.execute(
        sa.update(t)
        .where(*tenant, t.c.model == model, t.c.id.in_([r.id for r in before]), t.c.status == "approved")
        .values(status="revoked", decided_by=decided_by, reason=reason, decided_at=to_db(now))
    )
    revoked = [(r, replace(r, status="revoked", decided_by=decided_by, reason=reason, decided_at=now))
               for r in before]
    if audited is not None:
        for was, now_revoked in revoked:
            await append_in(conn, audited(was, now_revoked))
    return revoked


class _Raced(Exception):
    """Rolls back a new subscription whose team and model another request took meanwhile."""


class SqlSubscriptionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _find(
        self, conn: AsyncConnection, tenant_id: str, team_id: str, model: str
    ) -> SubscriptionRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.team_id == team_id, t.c.model == model)
        row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def request(self, record: SubscriptionRecord) -> SubscriptionRecord:
        return (await self.request_over(record))[0]

    async def request_over(self, record: SubscriptionRecord, *, audited: RequestAudited | None = None
                           ) -> tuple[SubscriptionRecord, SubscriptionRecord | None]:
        fresh = SubscriptionRecord(
            id=record.id, tenant_id=record.tenant_id, team_id=record.team_id, model=record.model,
            status="pending", requested_by=record.requested_by, reason=record.reason,
            created_at=record.created_at,
        )
        async with self._engine.connect() as conn:
            existing = await self._find(conn, record.tenant_id, record.team_id, record.model)
        if existing is None:
            try:
                async with self._engine.begin() as conn:
                    try:
                        await conn.execute(sa.insert(t).values(_row(fresh)))
                    except IntegrityError:
                        raise _Raced from None
                    if audited is not None:
                        await append_in(conn, audited(fresh, None))  # a failing entry undoes the request
                return fresh, None
            except _Raced:  # another request for the same team and model won the race
                async with self._engine.connect() as conn:
                    existing = await self._find(conn, record.tenant_id, record.team_id, record.model)
                if existing is None:
                    raise
        if existing.status not in REOPENABLE:
            raise SubscriptionExists(existing)
        reopened = replace(fresh, id=existing.id)
        values = {k: v for k, v in _row(reopened).items() if k not in ("id", "tenant_id", "team_id", "model")}
        stmt = (
            sa.update(t)
            .where(t.c.tenant_id == existing.tenant_id, t.c.id == existing.id, t.c.status == existing.status)
            .values(values)
        )
        async with self._engine.begin() as conn:
            written = bool((await conn.execute(stmt)).rowcount)
            if written and audited is not None:
                await append_in(conn, audited(reopened, existing))
        if not written:  # decided or re-requested meanwhile
            current = await self.get(existing.tenant_id, existing.id)
            raise SubscriptionExists(current or existing)
        return reopened, existing

    async def get(self, tenant_id: str, subscription_id: str) -> SubscriptionRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == subscription_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def find(self, tenant_id: str, team_id: str, model: str) -> SubscriptionRecord | None:
        async with self._engine.connect() as conn:
            return await self._find(conn, tenant_id, team_id, model)

    async def list_subscriptions(self, tenant_id: str, query: SubscriptionQuery) -> list[SubscriptionRecord]:
        stmt = sa.select(t).where(t.c.tenant_id == tenant_id)
        if query.status is not None:
            stmt = stmt.where(t.c.status == query.status)
        if query.team_id is not None:
            stmt = stmt.where(t.c.team_id == query.team_id)
        if query.model is not None:
            stmt = stmt.where(t.c.model == query.model)
        if query.after_id is not None:
            stmt = stmt.where(t.c.id > query.after_id)
        stmt = stmt.order_by(t.c.id).limit(query.limit)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(stmt)]

    async def decide(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        expect: tuple[str, ...],
        status: str,
        decided_by: str,
        reason: str | None,
        audited: Callable[[SubscriptionRecord], AuditEntry] | None = None,
    ) -> SubscriptionRecord | None:
        values: dict[str, Any] = {"status": status, "decided_by": decided_by, "decided_at": to_db(utcnow())}
        if reason is not None:  # a decision without comment keeps the reason the team gave
            values["reason"] = reason
        stmt = (
            sa.update(t)
            .where(t.c.tenant_id == tenant_id, t.c.id == subscription_id, t.c.status.in_(expect))
            .values(**values)
            .returning(*t.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            after = _record(row)
            if audited is not None:
                await append_in(conn, audited(after))  # a failing entry undoes the decision
        return after
