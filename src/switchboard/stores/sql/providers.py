"""Providers, their credentials, models managed at run time and the server secrets, in SQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import (
    AuditEntry,
    CredentialRecord,
    ModelRecord,
    ProviderRecord,
    RoutingState,
    SubscriptionRecord,
    utcnow,
)
from switchboard.stores.protocols.access import RevokeAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.routing import OVERRIDES, SPLITS, override_of, split_of
from switchboard.stores.sql.subscriptions import revoke_approved
from switchboard.stores.sql.tables import models as mt
from switchboard.stores.sql.tables import provider_credentials as ct
from switchboard.stores.sql.tables import providers as pt
from switchboard.stores.sql.tables import server_secrets as st
from switchboard.stores.sql.times import from_db, to_db


def _credential_insert(record: CredentialRecord) -> sa.Insert:
    return sa.insert(ct).values(id=record.id, provider=record.provider, ciphertext=record.ciphertext,
                                ref=record.ref, mask=record.mask, label=record.label,
                                created_at=to_db(record.created_at))


def _provider_row(r: ProviderRecord) -> dict[str, Any]:
    return {
        "name": r.name,
        "type": r.type,
        "api_base": r.api_base,
        "options": dict(r.options),
        "headers": dict(r.headers),
        "timeouts": None if r.timeouts is None else dict(r.timeouts),
        "max_connections": r.max_connections,
        "allow_caller_credentials": r.allow_caller_credentials,
        "rpm": r.rpm,
        "tpm": r.tpm,
        "created_at": to_db(r.created_at),
        "updated_at": to_db(r.updated_at),
    }


def _provider(row: sa.Row[Any]) -> ProviderRecord:
    m = row._mapping
    return ProviderRecord(
        name=m["name"],
        type=m["type"],
        api_base=m["api_base"],
        options=m["options"] or {},
        headers=m["headers"] or {},
        timeouts=m["timeouts"],
        max_connections=m["max_connections"],
        allow_caller_credentials=bool(m["allow_caller_credentials"]),
        rpm=m["rpm"],
        tpm=m["tpm"],
        created_at=from_db(m["created_at"]) or utcnow(),
        updated_at=from_db(m["updated_at"]) or utcnow(),
    )


def _credential(row: sa.Row[Any]) -> CredentialRecord:
    m = row._mapping
    return CredentialRecord(
        id=m["id"],
        provider=m["provider"],
        mask=m["mask"],
        ciphertext=m["ciphertext"],
        ref=m["ref"],
        label=m["label"],
        created_at=from_db(m["created_at"]) or utcnow(),
    )


def _model_row(r: ModelRecord) -> dict[str, Any]:
    return {
        "name": r.name,
        "provider": r.provider,
        "model": r.model,
        "timeouts": None if r.timeouts is None else dict(r.timeouts),
        "drop_params": r.drop_params,
        "info": None if r.info is None else dict(r.info),
        "require_approval": r.require_approval,
        "created_at": to_db(r.created_at),
        "updated_at": to_db(r.updated_at),
    }


def _model(row: sa.Row[Any]) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        name=m["name"],
        provider=m["provider"],
        model=m["model"],
        timeouts=m["timeouts"],
        drop_params=bool(m["drop_params"]),
        info=m["info"],
        require_approval=bool(m["require_approval"]),
        created_at=from_db(m["created_at"]) or utcnow(),
        updated_at=from_db(m["updated_at"]) or utcnow(),
    )


def _unchanged(table: sa.Table, read: datetime | None) -> list[sa.ColumnElement[bool]]:
    """Compare-and-set on ``updated_at``: the row is written only while it is still the version
    read (every write sets a new ``updated_at``), so a PATCH never writes back a copy of the row
    that another change has overtaken (PostgreSQL re-checks the WHERE once the row is free)."""
    return [] if read is None else [table.c.updated_at == to_db(read)]


class _Taken(Exception):
    """Rolls back a provider created under a name that is taken."""


class _ProviderGone(Exception):
    """Rolls back a row written for a provider that was deleted meanwhile."""


async def _append(conn: AsyncConnection, audited: AuditEntry | None) -> None:
    """The change's audit entry, in its transaction: a failing entry undoes the change."""
    if audited is not None:
        await append_in(conn, audited)


async def _under_provider(engine: AsyncEngine, write: sa.Insert | sa.Update, provider: str,
                          audited: AuditEntry | None = None) -> bool:
    """Write a row that belongs to a stored provider (a credential, a model, a model re-pointed
    at it) only while the provider exists; False (nothing written) when it does not, or when the
    write changed no row (an update's compare-and-set lost). The row is written first, then
    the provider's row is read (a shared lock on PostgreSQL): a delete of the provider that is
    under way (it locks the row for update, delete_provider) is waited for and then seen, and one
    that comes after waits for this transaction and then sees the row (a model keeps the
    provider; a credential goes with it). SQLite runs one writer at a time: holding the write
    lock, the read sees every delete committed before. Either way no row is left behind for a
    deleted provider, to come back with a new provider of the same name. ``audited`` is appended
    in the same transaction. False too when the write breaks a constraint (a name taken)."""
    held = sa.select(pt.c.name).where(pt.c.name == provider).with_for_update(read=True)
    try:
        async with engine.begin() as conn:
            if not await _row_written(conn, write):
                return False
            if (await conn.execute(held)).first() is None:
                raise _ProviderGone
            await _append(conn, audited)
    except (_Taken, _ProviderGone):
        return False
    return True


async def _row_written(conn: AsyncConnection, write: sa.Insert | sa.Update) -> bool:
    """Whether the write changed a row; a constraint it breaks raises _Taken, which rolls the
    transaction back (raised here, so an audit entry refused later is no name taken)."""
    try:
        return bool((await conn.execute(write)).rowcount)
    except IntegrityError:
        raise _Taken from None


async def _written(engine: AsyncEngine, write: sa.Insert | sa.Update, audited: AuditEntry | None) -> bool:
    """Write a row with its audit entry; False (nothing written) when the write changed no row
    (an update's compare-and-set lost) or broke a constraint (a name taken, a row refused)."""
    try:
        async with engine.begin() as conn:
            if not await _row_written(conn, write):
                return False
            await _append(conn, audited)
    except _Taken:
        return False
    return True


class SqlProviderStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self, routing: bool = False) -> RoutingState:
        async with self._engine.begin() as conn:
            providers = [_provider(r) for r in await conn.execute(sa.select(pt).order_by(pt.c.name))]
            creds = [
                _credential(r)
                for r in await conn.execute(sa.select(ct).order_by(ct.c.provider, ct.c.created_at, ct.c.id))
            ]
            models = [_model(r) for r in await conn.execute(sa.select(mt).order_by(mt.c.name))]
            if not routing:
                return RoutingState(providers, creds, models)
            # The routing store's tables, in the same database: read on this connection too.
            overrides = [override_of(r) for r in await conn.execute(OVERRIDES)]
            split_list = [split_of(r) for r in await conn.execute(SPLITS)]
        return RoutingState(providers, creds, models, overrides, split_list)

    async def get_provider(self, name: str) -> ProviderRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(pt).where(pt.c.name == name))).first()
        return None if row is None else _provider(row)

    async def create_provider(self, record: ProviderRecord, credential: CredentialRecord | None = None,
                              *, audited: AuditEntry | None = None) -> bool:
        try:
            async with self._engine.begin() as conn:
                try:
                    await conn.execute(sa.insert(pt).values(_provider_row(record)))
                except IntegrityError:
                    raise _Taken from None  # rolls back; an audit entry refused is no name taken
                if credential is not None:
                    await conn.execute(_credential_insert(credential))
                await _append(conn, audited)
        except _Taken:
            return False
        return True

    async def update_provider(self, record: ProviderRecord, read: datetime | None = None, *,
                              audited: AuditEntry | None = None) -> bool:
        row = _provider_row(record)
        del row["created_at"]
        stmt = sa.update(pt).where(pt.c.name == record.name, *_unchanged(pt, read)).values(row)
        return await _written(self._engine, stmt, audited)

    async def delete_provider(self, name: str, *, audited: AuditEntry | None = None) -> str:
        async with self._engine.begin() as conn:
            if dialect_is_pg(conn.dialect.name):
                # Serialise with a model being added for this provider meanwhile.
                await conn.execute(sa.select(pt.c.name).where(pt.c.name == name).with_for_update())
            # Unused is checked by the delete itself: on SQLite a SELECT before it would run
            # outside the write transaction (the driver begins one at the first write), and a
            # model added in between would be left pointing at no provider.
            unused = ~sa.exists().where(mt.c.provider == name)
            result = await conn.execute(sa.delete(pt).where(pt.c.name == name, unused))
            if not result.rowcount:
                found = await conn.execute(sa.select(pt.c.name).where(pt.c.name == name))
                return "missing" if found.first() is None else "in_use"
            await conn.execute(sa.delete(ct).where(ct.c.provider == name))
            await _append(conn, audited)
        return "deleted"

    async def credentials(self, provider: str) -> list[CredentialRecord]:
        stmt = sa.select(ct).where(ct.c.provider == provider).order_by(ct.c.created_at, ct.c.id)
        async with self._engine.connect() as conn:
            return [_credential(r) for r in await conn.execute(stmt)]

    async def add_credential(self, record: CredentialRecord, *, audited: AuditEntry | None = None) -> bool:
        return await _under_provider(self._engine, _credential_insert(record), record.provider, audited)

    async def delete_credential(self, provider: str, credential_id: str, *,
                                audited: AuditEntry | None = None) -> bool:
        stmt = sa.delete(ct).where(ct.c.provider == provider, ct.c.id == credential_id)
        async with self._engine.begin() as conn:
            if not (await conn.execute(stmt)).rowcount:
                return False
            await _append(conn, audited)
        return True

    async def get_model(self, name: str) -> ModelRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(mt).where(mt.c.name == name))).first()
        return None if row is None else _model(row)

    async def create_model(self, record: ModelRecord, *, provider_stored: bool = False,
                           audited: AuditEntry | None = None) -> bool:
        insert = sa.insert(mt).values(_model_row(record))
        if provider_stored:
            return await _under_provider(self._engine, insert, record.provider, audited)
        return await _written(self._engine, insert, audited)

    async def update_model(self, record: ModelRecord, read: datetime | None = None, *,
                           provider_stored: bool = False, audited: AuditEntry | None = None) -> bool:
        row = _model_row(record)
        del row["created_at"]
        stmt = sa.update(mt).where(mt.c.name == record.name, *_unchanged(mt, read)).values(row)
        if provider_stored:  # re-pointed at a stored provider: only while it is there, as a new model
            return await _under_provider(self._engine, stmt, record.provider, audited)
        return await _written(self._engine, stmt, audited)

    async def delete_model(self, name: str, deleted_by: str | None = None, *,
                           audited: AuditEntry | None = None, revoke_audited: RevokeAudited | None = None
                           ) -> list[tuple[SubscriptionRecord, SubscriptionRecord]] | None:
        async with self._engine.begin() as conn:
            if not (await conn.execute(sa.delete(mt).where(mt.c.name == name))).rowcount:
                return None
            await _append(conn, audited)
            return await revoke_approved(conn, None, name, deleted_by, "the model was removed",
                                         revoke_audited)

    async def server_secret(self, name: str) -> str | None:
        async with self._engine.connect() as conn:
            value = (await conn.execute(sa.select(st.c.ciphertext).where(st.c.name == name))).scalar()
        return None if value is None else str(value)

    async def init_server_secret(self, name: str, sealed: str) -> str:
        now = to_db(utcnow())
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.insert(st).values(name=name, ciphertext=sealed, created_at=now, updated_at=now)
                )
        except IntegrityError:
            pass  # another instance stored it first: use theirs
        stored = await self.server_secret(name)
        assert stored is not None
        return stored

    async def reseal(
        self,
        credential: Callable[[CredentialRecord], str],
        secret: Callable[[str, str], str],
        audited: Callable[[int, int], AuditEntry | None] | None = None,
    ) -> tuple[int, int]:
        creds = secrets = 0
        now = to_db(utcnow())
        async with self._engine.begin() as conn:
            for row in (await conn.execute(sa.select(ct).where(ct.c.ciphertext.is_not(None)))).all():
                record = _credential(row)
                sealed = credential(record)
                if sealed != record.ciphertext:
                    await conn.execute(sa.update(ct).where(ct.c.id == record.id).values(ciphertext=sealed))
                    creds += 1
            for name, value in (await conn.execute(sa.select(st.c.name, st.c.ciphertext))).all():
                sealed = secret(name, value)
                if sealed != value:
                    await conn.execute(
                        sa.update(st).where(st.c.name == name).values(ciphertext=sealed, updated_at=now)
                    )
                    secrets += 1
            await _append(conn, None if audited is None else audited(creds, secrets))
        return creds, secrets


def dialect_is_pg(name: str) -> bool:
    return name == "postgresql"
