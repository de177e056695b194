"""The async engine for a database URL, tuned per dialect, and readable connection errors."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from switchboard.config.urls import redact

CONNECT_TIMEOUT = 10.0
# How long a SQLite statement waits for a write lock another connection or process holds. Below
# the background writers' 15 s bound (background.WRITE_SECONDS) so their writes end with SQLite's
# "database is locked" (kept and retried) rather than cut mid-statement by the bound; an admin
# write answers 503 store_unavailable after it.
SQLITE_BUSY_SECONDS = 10.0


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never wait for the writer; several processes can share the file.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
            # No ANALYZE and no PRAGMA optimize, on purpose (measured on 50k rows, SQLite 3.40):
            # before 3.46 optimize only looks at tables this connection's queries used, so at
            # start it does nothing; and statistics (ANALYZE, whether bounded by analysis_limit
            # or not) turn the audit log's "since a recent time" read from its (tenant_id, at)
            # range to the tenant's whole history (tests/stores/test_schema.py). The queries
            # that need it steer the planner themselves (ledger.py: likely(), unary plus).
            cursor.close()

        return engine
    return create_async_engine(
        _for_asyncpg(url),
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": CONNECT_TIMEOUT, "command_timeout": 60},
    )


def _for_asyncpg(url: str) -> sa.URL:
    """libpq's ``sslmode=...`` is asyncpg's ``ssl=...`` (same values); the URL shown in messages
    keeps the name the operator wrote."""
    parsed = sa.make_url(url)
    if "sslmode" not in parsed.query:
        return parsed
    return parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": parsed.query["sslmode"]})


async def ping(engine: AsyncEngine) -> None:
    """One trivial query (``SELECT 1``): raises when the database does not answer it."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


def describe(exc: BaseException) -> str:
    """One line for a connection failure, without the driver's stack of wrappers."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    if isinstance(orig, TimeoutError) and not str(orig).strip():
        return f"no answer within {CONNECT_TIMEOUT:.0f} s"
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def shown(url: str) -> str:
    return redact(url).replace("+asyncpg", "").replace("+aiosqlite", "")
