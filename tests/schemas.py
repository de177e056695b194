"""Databases at the newest schema revision, made by copying one migrated before.

Running the 30-odd migrations takes most of a second per database (more on a loaded runner);
copying a migrated database takes a small fraction of that: a file copy for SQLite, ``CREATE
DATABASE ... TEMPLATE`` for PostgreSQL (tests/conftest.py: ``schema_template``,
``migrated_database_url``, ``sqlite_schema``). Opening a copy still runs the migrator, which finds
nothing to do, as on any later start.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

from switchboard.stores.factory import open_database
from switchboard.stores.sql.urls import DB_FILE, async_url


def migrate(url: str) -> None:
    """Bring the database at ``url`` (as ``async_url`` returns it) to the newest revision. In a
    thread of its own: a fixture may be set up while the session's event loop runs."""

    async def upgrade() -> None:
        engine, _ = await open_database(url)
        await engine.dispose()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(upgrade())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def migrated_sqlite(directory: Path) -> Path:
    """A SQLite database at the newest revision in ``directory``; its file."""
    migrate(async_url(None, directory))
    database = directory / DB_FILE
    # Closing the last connection folded the write-ahead log into the file: the file is all.
    assert not database.with_name(DB_FILE + "-wal").exists()
    return database


def copy_sqlite(schema: Path, data_dir: Path) -> str:
    """A copy of the database file ``schema`` as the SQLite database of ``data_dir``; its URL
    (``async_url`` form). The copy keeps the owner-only mode the stores give a file they create."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copy2(schema, data_dir / DB_FILE)
    return async_url(None, data_dir)
