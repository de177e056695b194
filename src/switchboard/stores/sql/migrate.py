"""Applies the Alembic migrations shipped in the package, one migrator at a time.

PostgreSQL: a transaction-scoped advisory lock, so instances starting together queue up and all
but the first find nothing to do (DDL is transactional there: a failed migration leaves nothing
behind). SQLite: an exclusive ``fcntl`` lock on a file beside the database, taken off the loop.
A database at a revision this version does not know is refused: a newer Switchboard migrated it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.errors import StoreError
from switchboard.stores.sql.urls import sqlite_path

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: "switchboard migrations", any fixed 64-bit number works.
PG_LOCK_ID = 0x5377_4D69_6772_6174
LOCK_TIMEOUT = 120.0


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def _current(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: sa.Connection) -> str:
    cfg = _config(connection)
    current = _current(connection)
    script = ScriptDirectory.from_config(cfg)
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise StoreError(
            f"the database schema is at revision {current}, which this version of Switchboard does not "
            f"know (its newest is {script.get_current_head()}): a newer Switchboard migrated it"
        )
    command.upgrade(cfg, "head")
    return _current(connection) or "none"


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire() -> None:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"another process has held {path} for {LOCK_TIMEOUT:.0f}s") from None
                time.sleep(0.05)

    try:
        await asyncio.to_thread(acquire)
        yield
    finally:
        os.close(fd)  # releases the lock


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the schema to the newest revision; returns the revision the database is at."""
    db_file = sqlite_path(engine.url)
    if db_file is not None:
        async with _file_lock(db_file.with_name(db_file.name + ".lock")), engine.connect() as conn:
            revision = await conn.run_sync(_upgrade)
            await conn.commit()
            return revision
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})
        revision = await conn.run_sync(_upgrade)
        await conn.commit()
        return revision
