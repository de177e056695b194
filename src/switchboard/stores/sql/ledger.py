"""The usage ledger in SQL: idempotent appends (``ON CONFLICT (request_id) DO NOTHING``)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import UsageRecord
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import usage_records as t
from switchboard.stores.sql.times import from_db, to_db

# Rows per INSERT: well under SQLite's and asyncpg's bound-parameter limits.
BATCH = 500
NANO = Decimal(10**9)


def _row(r: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "tenant_id": r.tenant_id,
        "key_id": r.key_id,
        "team_id": r.team_id,
        "user_id": r.user_id,
        "model": r.model,
        "provider": r.provider,
        "status": r.status,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost_nano_usd": int((r.cost_usd * NANO).to_integral_value(ROUND_HALF_EVEN)),
        "latency_ms": r.latency_ms,
        "created_at": to_db(r.created_at),
        "metadata": dict(r.metadata),
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_5m_tokens": r.cache_write_5m_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "unpriced": r.unpriced,
        "ttft_ms": r.ttft_ms,
        "stream": r.stream,
        "error_code": r.error_code,
        "upstream_model": r.upstream_model,
        "tags": list(r.tags),
    }


def _record(row: sa.Row[Any]) -> UsageRecord:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    return UsageRecord(
        request_id=m["request_id"],
        tenant_id=m["tenant_id"],
        key_id=m["key_id"],
        team_id=m["team_id"],
        user_id=m["user_id"],
        model=m["model"],
        provider=m["provider"],
        status=m["status"],
        prompt_tokens=m["prompt_tokens"],
        completion_tokens=m["completion_tokens"],
        cost_usd=(Decimal(m["cost_nano_usd"]) / NANO).normalize(),
        latency_ms=m["latency_ms"],
        created_at=created,
        metadata=m["metadata"] or {},
        cache_read_tokens=m["cache_read_tokens"],
        cache_write_5m_tokens=m["cache_write_5m_tokens"],
        cache_write_1h_tokens=m["cache_write_1h_tokens"],
        reasoning_tokens=m["reasoning_tokens"],
        unpriced=bool(m["unpriced"]),
        ttft_ms=m["ttft_ms"],
        stream=bool(m["stream"]),
        error_code=m["error_code"],
        upstream_model=m["upstream_model"],
        tags=tuple(m["tags"] or ()),
    )


class SqlUsageLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, records: Sequence[UsageRecord]) -> int:
        inserted = 0
        async with self._engine.begin() as conn:
            stmt = (
                insert(self._engine, t)
                .on_conflict_do_nothing(index_elements=[t.c.request_id])
                .returning(t.c.request_id)
            )
            for start in range(0, len(records), BATCH):
                # executemany: the dialect batches the rows into multi-row INSERTs itself, and
                # the statement is compiled once rather than once per batch.
                rows = [_row(r) for r in records[start : start + BATCH]]
                inserted += len((await conn.execute(stmt, rows)).all())
        return inserted

    async def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.request_id == request_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def recent(self, tenant_id: str, limit: int = 100) -> list[UsageRecord]:
        query = (
            sa.select(t)
            .where(t.c.tenant_id == tenant_id)
            .order_by(t.c.created_at.desc(), t.c.request_id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]
