"""Stored Responses API responses in SQL (revision 0014), shared by every instance.

One row per response, its JSON as text: the Response object, this turn's input items, and the
conversation (canonical messages) through its output, so continuing a response is one primary
key read. Expired rows are invisible to ``get`` and deleted in batches by ``purge``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import StoredResponse, utcnow
from switchboard.stores.sql.tables import responses as t
from switchboard.stores.sql.times import from_db, to_db


def _record(row: sa.Row[Any]) -> StoredResponse:
    m = row._mapping
    created, expires = from_db(m["created_at"]), from_db(m["expires_at"])
    assert created is not None and expires is not None
    return StoredResponse(
        id=m["id"],
        tenant_id=m["tenant_id"],
        owner=m["owner"],
        created_at=created,
        expires_at=expires,
        response=orjson.loads(m["response"]),
        input_items=orjson.loads(m["input_items"]),
        conversation=orjson.loads(m["conversation"]),
    )


class SqlResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: StoredResponse) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(t).values(
                    id=record.id,
                    tenant_id=record.tenant_id,
                    owner=record.owner,
                    created_at=to_db(record.created_at),
                    expires_at=to_db(record.expires_at),
                    response=orjson.dumps(record.response).decode(),
                    input_items=orjson.dumps(list(record.input_items)).decode(),
                    conversation=orjson.dumps(list(record.conversation)).decode(),
                )
            )

    async def get(self, response_id: str, now: datetime | None = None) -> StoredResponse | None:
        query = sa.select(t).where(t.c.id == response_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        record = _record(row)
        return None if record.expires_at <= (now or utcnow()) else record

    async def delete(self, response_id: str) -> bool:
        async with self._engine.begin() as conn:
            return bool((await conn.execute(sa.delete(t).where(t.c.id == response_id))).rowcount)

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        expired = sa.select(t.c.id).where(t.c.expires_at <= to_db(now)).limit(limit).scalar_subquery()
        async with self._engine.begin() as conn:
            return int((await conn.execute(sa.delete(t).where(t.c.id.in_(expired)))).rowcount or 0)
