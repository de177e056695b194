"""Token revocations in SQL: one row per (tenant, user). The request path never reads this
table: ``access/revocations.py`` keeps every row that applies in memory, reloaded when the change
feed says so and periodically."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, RevocationOutranked, TokenRevocation, TooManyRevocations
from switchboard.stores.protocols.revocations import RevocationAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import token_revocations as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> TokenRevocation:
    m = row._mapping
    not_before, created = from_db(m["not_before"]), from_db(m["created_at"])
    assert not_before is not None and created is not None
    return TokenRevocation(
        id=m["id"], tenant_id=m["tenant_id"], user_id=m["user_id"], not_before=not_before,
        block=bool(m["block"]), reason=m["reason"], expires_at=from_db(m["expires_at"]),
        created_at=created, created_by=m["created_by"], created_by_role=m["created_by_role"],
    )


def _settings(record: TokenRevocation) -> tuple[Any, ...]:
    """What a revocation does: which tokens it refuses and whose (a token's role up to
    ``created_by_role``). Who asked for it (``created_by``) and when are not part of it: the same
    revocation asked for again by another admin of the same role changes nothing."""
    return record.not_before, record.block, record.reason, record.expires_at, record.created_by_role


# pg_advisory_xact_lock's first key (the second: the tenant's hash): "token revocations".
PG_LOCK_SPACE = 0x7472_7600


async def _insert(conn: AsyncConnection, values: dict[str, Any], cap: int | None) -> None:
    """The row, unless its tenant has ``cap`` rows already (TooManyRevocations): one statement,
    ``INSERT ... SELECT ... WHERE (SELECT count(*) ...) < cap``, so the count is the one the
    insert sees."""
    if cap is None:
        await conn.execute(sa.insert(t).values(**values))
        return
    held = sa.select(sa.func.count()).select_from(t).where(t.c.tenant_id == values["tenant_id"])
    row = sa.select(*(sa.literal(v, t.c[k].type).label(k) for k, v in values.items())).where(
        held.scalar_subquery() < cap)
    result = await conn.execute(sa.insert(t).from_select(list(values), row))
    if not result.rowcount:
        raise TooManyRevocations(values["tenant_id"])


class _Raced(Exception):
    """The record was created by another writer between the read and the insert."""


async def _append(conn: AsyncConnection, audited: RevocationAudited | None, stored: TokenRevocation,
                  before: TokenRevocation | None) -> None:
    """The put's audit entry, in its transaction: a failing entry undoes the put."""
    if audited is not None:
        await append_in(conn, audited(stored, before))


class SqlTokenRevocationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: TokenRevocation, *, cap: int | None = None,
                  overrides: Collection[str] | None = None, audited: RevocationAudited | None = None
                  ) -> tuple[TokenRevocation, TokenRevocation | None]:
        try:
            return await self._put(record, cap, overrides, audited)
        except _Raced:  # created by someone else meanwhile: now it is a replacement
            return await self._put(record, cap, overrides, audited)

    async def _put(self, record: TokenRevocation, cap: int | None, overrides: Collection[str] | None,
                   audited: RevocationAudited | None) -> tuple[TokenRevocation, TokenRevocation | None]:
        values = {
            "not_before": to_db(record.not_before), "block": record.block, "reason": record.reason,
            "expires_at": to_db(record.expires_at), "created_at": to_db(record.created_at),
            "created_by": record.created_by, "created_by_role": record.created_by_role,
        }
        where = (t.c.tenant_id == record.tenant_id, t.c.user_id == record.user_id)
        async with self._engine.begin() as conn:
            if cap is not None and conn.dialect.name == "postgresql":
                # Creations in one tenant queue up here, so each counts the others' rows (under
                # READ COMMITTED two would each count the same and both insert). SQLite needs no
                # lock: its writers take turns, and the insert below counts within its statement.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
                    PG_LOCK_SPACE, sa.func.hashtext(record.tenant_id))))
            row = (await conn.execute(sa.select(t).where(*where).with_for_update())).first()
            before = None if row is None else _record(row)
            if before is None:
                try:
                    await _insert(conn, {"id": record.id, "tenant_id": record.tenant_id,
                                         "user_id": record.user_id, **values}, cap)
                except IntegrityError:
                    raise _Raced from None  # only the insert's: a refused audit entry is not a race
                await _append(conn, audited, record, None)
                return record, None
            if overrides is not None and before.created_by_role not in overrides:
                # Made by a role above the caller's: replacing it would narrow whose tokens it
                # covers or lift its block, so it stays (checked on the locked row).
                raise RevocationOutranked(before)
            if _settings(before) == _settings(record):
                return before, before  # the revocation as it is already: nothing written (nor audited)
            # A replacement: the record (its id, when it was created) stays, as a budget's does.
            del values["created_at"]
            await conn.execute(sa.update(t).where(t.c.id == before.id).values(**values))
            stored = replace(record, id=before.id, created_at=before.created_at)
            await _append(conn, audited, stored, before)
        return stored, before

    async def get(self, tenant_id: str, revocation_id: str) -> TokenRevocation | None:
        return await self._one(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == revocation_id))

    async def find(self, revocation_id: str) -> TokenRevocation | None:
        return await self._one(sa.select(t).where(t.c.id == revocation_id))

    async def _one(self, query: sa.Select[Any]) -> TokenRevocation | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list_revocations(self, tenant_id: str, *, user_id: str | None = None, after: str | None = None,
                               limit: int = 100) -> list[TokenRevocation]:
        query = sa.select(t).where(t.c.tenant_id == tenant_id)
        if user_id is not None:
            query = query.where(t.c.user_id == user_id)
        if after is not None:
            query = query.where(t.c.id > after)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query.order_by(t.c.id).limit(limit))]

    async def count(self, tenant_id: str) -> int:
        query = sa.select(sa.func.count()).select_from(t).where(t.c.tenant_id == tenant_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def active(self, now: datetime) -> list[TokenRevocation]:
        query = sa.select(t).where(sa.or_(t.c.expires_at.is_(None), t.c.expires_at > to_db(now)))
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def purge_expired(self, now: datetime) -> int:
        stmt = sa.delete(t).where(t.c.expires_at.is_not(None), t.c.expires_at <= to_db(now))
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount or 0)

    async def delete(self, tenant_id: str, revocation_id: str, *, overrides: Collection[str] | None = None,
                     audited: AuditEntry | None = None) -> bool:
        where = (t.c.tenant_id == tenant_id, t.c.id == revocation_id)
        stmt = sa.delete(t).where(*where)
        if overrides is not None:
            # The role is checked by the delete itself: a record a higher role replaced after the
            # caller read it is never deleted.
            stmt = stmt.where(t.c.created_by_role.in_(list(overrides)))
        for _ in range(3):  # a record replaced by a role within reach meanwhile: delete it again
            async with self._engine.begin() as conn:
                if (await conn.execute(stmt)).rowcount:
                    if audited is not None:
                        await append_in(conn, audited)  # a failing entry undoes the delete
                    return True
                if overrides is None:
                    return False
                row = (await conn.execute(sa.select(t).where(*where))).first()
            if row is None:
                return False
            kept = _record(row)
            if kept.created_by_role not in overrides:
                raise RevocationOutranked(kept)
        raise RevocationOutranked(kept)
