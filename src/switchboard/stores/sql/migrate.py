"""Applies the Alembic migrations shipped in the package, one migrator at a time.

PostgreSQL: a transaction-scoped advisory lock, so instances starting together queue up and all
but the first find nothing to do (DDL is transactional there: a failed migration leaves nothing
behind). SQLite: an exclusive ``fcntl`` lock on a file beside the database, taken off the loop.
A database at a revision this version does not know is refused: a newer Switchboard migrated it.

A database already at ``HEAD`` (every start but the first after an upgrade) is recognised from its
``alembic_version`` row alone: Alembic, its templates and the migration scripts are not loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.errors import StoreError
from switchboard.stores.sql.urls import sqlite_path

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: "switchboard migrations", any fixed 64-bit number works.
PG_LOCK_ID = 0x5377_4D69_6772_6174
LOCK_TIMEOUT = 120.0
# The newest revision in migrations/versions/, known without reading the scripts: importing Alembic
# (Mako, Pygments) and loading every script costs more than the rest of opening the database.
# A new migration updates it; tests/unit/test_migration_head.py checks it is Alembic's head.
HEAD = "0043"


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """Alembic's head, from the scripts (``HEAD`` is the constant the migrator uses)."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def _current(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stored(connection: sa.Connection) -> list[str]:
    """The revisions recorded in the database, read as Alembic reads them; none when it is new."""
    if not sa.inspect(connection).has_table("alembic_version"):  # Alembic's default version table
        return []
    return list(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _upgrade(connection: sa.Connection) -> str:
    if _stored(connection) == [HEAD]:
        return HEAD  # up to date: nothing for Alembic to do, so it is not loaded
    return _alembic_upgrade(connection)


def _alembic_upgrade(connection: sa.Connection) -> str:
    from alembic import command
    from alembic.script import ScriptDirectory

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
