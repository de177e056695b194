"""MCP servers managed at run time and per-user OAuth tokens for them, in SQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, McpServerRecord, McpTokenRecord, utcnow
from switchboard.stores.protocols.mcp import TokensAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import mcp_oauth_tokens as tt
from switchboard.stores.sql.tables import mcp_servers as st
from switchboard.stores.sql.times import from_db, to_db

GLOBAL = "*"  # the tenant_id column of a server every tenant sees


def _scope(tenant_id: str | None) -> str:
    return GLOBAL if tenant_id is None else tenant_id


def _server_row(r: McpServerRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "tenant_id": _scope(r.tenant_id),
        "name": r.name,
        "config": dict(r.config),
        "sealed": r.sealed,
        "header_names": list(r.header_names),
        "created_by": r.created_by,
        "created_at": to_db(r.created_at),
        "updated_at": to_db(r.updated_at),
        "by_platform_admin": r.by_platform_admin,
    }


def _server(row: sa.Row[Any]) -> McpServerRecord:
    m = row._mapping
    return McpServerRecord(
        id=m["id"],
        name=m["name"],
        tenant_id=None if m["tenant_id"] == GLOBAL else m["tenant_id"],
        config=m["config"] or {},
        sealed=m["sealed"],
        header_names=tuple(m["header_names"] or ()),
        created_by=m["created_by"],
        created_at=from_db(m["created_at"]) or utcnow(),
        updated_at=from_db(m["updated_at"]) or utcnow(),
        by_platform_admin=bool(m["by_platform_admin"]),
    )


def _token(row: sa.Row[Any]) -> McpTokenRecord:
    m = row._mapping
    return McpTokenRecord(
        tenant_id=m["tenant_id"], user_id=m["user_id"], server=m["server"], sealed=m["sealed"],
        expires_at=from_db(m["expires_at"]), updated_at=from_db(m["updated_at"]) or utcnow(),
    )


def _token_key(tenant_id: str, user_id: str, server: str) -> tuple[Any, ...]:
    return (tt.c.tenant_id == tenant_id, tt.c.user_id == user_id, tt.c.server == server)


async def _update_server(conn: AsyncConnection, record: McpServerRecord, read: datetime | None) -> bool:
    row = _server_row(record)
    for fixed in ("id", "tenant_id", "name", "created_at", "created_by"):
        del row[fixed]
    # Compare-and-set on updated_at (every write sets a new one): a change made from a
    # version another change has overtaken is not written over it.
    unchanged = [] if read is None else [st.c.updated_at == to_db(read)]
    result = await conn.execute(sa.update(st).where(st.c.id == record.id, *unchanged).values(row))
    return bool(result.rowcount)


async def _append(conn: AsyncConnection, audited: AuditEntry | None) -> None:
    """The change's audit entry, in its transaction: a failing entry undoes the change."""
    if audited is not None:
        await append_in(conn, audited)


async def _deleted_tokens(conn: AsyncConnection, tenant_id: str | None, server: str,
                          audited: TokensAudited | None) -> list[McpTokenRecord]:
    """Delete the users' tokens of a server (:func:`_tokens_of`) in ``conn``'s transaction, with
    ``audited``'s entry when there were some; those deleted."""
    # RETURNING (PostgreSQL, SQLite 3.35+): what was deleted, in the same statement, so the
    # caller can revoke exactly those at the authorization server.
    deleted = [_token(row) for row in await conn.execute(_tokens_of(tenant_id, server).returning(tt))]
    if deleted and audited is not None:
        await append_in(conn, audited(len(deleted)))
    return deleted


def _tokens_of(tenant_id: str | None, server: str) -> sa.Delete:
    """Deletes the users' tokens of a server: a tenant's own, or a global one's (every tenant's,
    except those of tenants with a server of their own of that name)."""
    tokens = sa.delete(tt).where(tt.c.server == server)
    if tenant_id is not None:
        return tokens.where(tt.c.tenant_id == tenant_id)
    owned = sa.select(st.c.tenant_id).where(st.c.name == server, st.c.tenant_id != GLOBAL)
    return tokens.where(tt.c.tenant_id.not_in(owned))


class _Taken(Exception):
    """Rolls back a server whose name is taken in its scope."""


class SqlMcpStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_server(self, record: McpServerRecord, *, audited: AuditEntry | None = None) -> bool:
        try:
            async with self._engine.begin() as conn:
                try:
                    await conn.execute(sa.insert(st).values(_server_row(record)))
                except IntegrityError:
                    raise _Taken from None  # rolls back; a refused entry is no name taken
                await _append(conn, audited)
        except _Taken:
            return False
        return True

    async def get_server(self, server_id: str) -> McpServerRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(st).where(st.c.id == server_id))).first()
        return None if row is None else _server(row)

    async def find_server(self, tenant_id: str | None, name: str) -> McpServerRecord | None:
        stmt = sa.select(st).where(st.c.tenant_id == _scope(tenant_id), st.c.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _server(row)

    async def list_servers(self, tenant_id: str | None, *, with_global: bool = True,
                           every_tenant: bool = False) -> list[McpServerRecord]:
        stmt = sa.select(st).order_by(st.c.name, st.c.id)
        if not every_tenant:
            scopes = {_scope(tenant_id)} | ({GLOBAL} if with_global else set())
            stmt = stmt.where(st.c.tenant_id.in_(sorted(scopes)))
        async with self._engine.connect() as conn:
            return [_server(r) for r in await conn.execute(stmt)]

    async def update_server(self, record: McpServerRecord, read: datetime | None = None, *,
                            audited: AuditEntry | None = None) -> bool:
        async with self._engine.begin() as conn:
            if not await _update_server(conn, record, read):
                return False
            await _append(conn, audited)
        return True

    async def move_server(self, record: McpServerRecord, read: datetime | None = None, *,
                          audited: AuditEntry | None = None, tokens_audited: TokensAudited | None = None
                          ) -> list[McpTokenRecord] | None:
        # One transaction: a change cut off midway leaves the server where its tokens were
        # issued (the retry then moves it and deletes them), never moved with them kept.
        async with self._engine.begin() as conn:
            if not await _update_server(conn, record, read):
                return None
            await _append(conn, audited)
            return await _deleted_tokens(conn, record.tenant_id, record.name, tokens_audited)

    async def delete_server(self, server_id: str, *, audited: AuditEntry | None = None,
                            tokens_audited: TokensAudited | None = None
                            ) -> tuple[McpServerRecord, list[McpTokenRecord]] | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(st).where(st.c.id == server_id))).first()
            if row is None:
                return None
            record = _server(row)
            await conn.execute(sa.delete(st).where(st.c.id == server_id))
            await _append(conn, audited)
            return record, await _deleted_tokens(conn, record.tenant_id, record.name, tokens_audited)

    async def get_token(self, tenant_id: str, user_id: str, server: str) -> McpTokenRecord | None:
        stmt = sa.select(tt).where(*_token_key(tenant_id, user_id, server))
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _token(row)

    async def put_token(self, record: McpTokenRecord) -> None:
        key = _token_key(record.tenant_id, record.user_id, record.server)
        values = {"sealed": record.sealed, "expires_at": to_db(record.expires_at),
                  "updated_at": to_db(record.updated_at)}
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.update(tt).where(*key).values(values))
            if result.rowcount:
                return
            try:
                async with conn.begin_nested():
                    await conn.execute(sa.insert(tt).values(
                        tenant_id=record.tenant_id, user_id=record.user_id, server=record.server, **values))
            except IntegrityError:  # inserted meanwhile by another instance: the newer wins
                await conn.execute(sa.update(tt).where(*key).values(values))

    async def delete_token(self, tenant_id: str, user_id: str, server: str) -> bool:
        stmt = sa.delete(tt).where(*_token_key(tenant_id, user_id, server))
        async with self._engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def reseal(self, server: Callable[[McpServerRecord], McpServerRecord],
                     token: Callable[[McpTokenRecord], str]) -> tuple[int, int]:
        servers = tokens = 0
        async with self._engine.begin() as conn:
            # Every server, those with nothing sealed too: a URL stored in clear gets sealed.
            for row in (await conn.execute(sa.select(st))).all():
                record = _server(row)
                new = server(record)
                if (new.sealed, dict(new.config)) != (record.sealed, dict(record.config)):
                    values = {"sealed": new.sealed, "config": dict(new.config)}
                    await conn.execute(sa.update(st).where(st.c.id == record.id).values(values))
                    servers += 1
            for row in (await conn.execute(sa.select(tt))).all():
                found = _token(row)
                sealed = token(found)
                if sealed != found.sealed:
                    key = _token_key(found.tenant_id, found.user_id, found.server)
                    await conn.execute(sa.update(tt).where(*key).values(sealed=sealed))
                    tokens += 1
        return servers, tokens
