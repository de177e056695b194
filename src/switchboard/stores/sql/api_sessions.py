"""Sessions of multi-turn prompt APIs in SQL (revision 0018), shared by every instance.

One row per (tenant, owner, api, session id), its turns as JSON text, so loading a session is
one primary-key read. A save is a compare-and-set on ``version``: two requests of one session
at once cannot lose a turn silently (the loser reloads and retries). Expired rows are
invisible to ``get`` and deleted in batches by ``purge``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import ApiSession, utcnow
from switchboard.stores.sql.tables import api_sessions as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> ApiSession:
    m = row._mapping
    created, updated, expires = from_db(m["created_at"]), from_db(m["updated_at"]), from_db(m["expires_at"])
    assert created is not None and updated is not None and expires is not None
    return ApiSession(
        tenant_id=m["tenant_id"], owner=m["owner"], api=m["api"], session_id=m["session_id"],
        turns=orjson.loads(m["turns"]), expires_at=expires, version=m["version"],
        created_at=created, updated_at=updated,
    )


def _key(tenant_id: str, owner: str, api: str, session_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.tenant_id == tenant_id, t.c.owner == owner, t.c.api == api,
                   t.c.session_id == session_id)


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, tenant_id: str, owner: str, api: str, session_id: str,
                  now: datetime | None = None) -> ApiSession | None:
        query = sa.select(t).where(_key(tenant_id, owner, api, session_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        record = _record(row)
        return None if record.expires_at <= (now or utcnow()) else record

    async def save(self, session: ApiSession, expected_version: int | None) -> bool:
        values = {
            "version": session.version,
            "turns": orjson.dumps([list(turn) for turn in session.turns]).decode(),
            "updated_at": to_db(session.updated_at),
            "expires_at": to_db(session.expires_at),
        }
        key = _key(session.tenant_id, session.owner, session.api, session.session_id)
        if expected_version is None:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(sa.insert(t).values(
                        tenant_id=session.tenant_id, owner=session.owner, api=session.api,
                        session_id=session.session_id, created_at=to_db(session.created_at), **values,
                    ))
            except IntegrityError:
                return False
            return True
        async with self._engine.begin() as conn:
            update = sa.update(t).where(key, t.c.version == expected_version).values(**values)
            result = await conn.execute(update)
            return bool(result.rowcount)

    async def delete(self, tenant_id: str, owner: str, api: str, session_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(t).where(_key(tenant_id, owner, api, session_id)))
            return bool(result.rowcount)

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        columns = (t.c.tenant_id, t.c.owner, t.c.api, t.c.session_id)
        expired = sa.select(*columns).where(t.c.expires_at <= to_db(now)).limit(limit)
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(t).where(sa.tuple_(*columns).in_(expired)))
            return int(result.rowcount or 0)
