"""From the configured database URL to the one SQLAlchemy opens, with its async driver."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sqlalchemy import URL, make_url

from switchboard.config.urls import POSTGRES_SCHEMES, SQLITE_SCHEMES, database_url_problem
from switchboard.stores.errors import StoreError

DB_FILE = "switchboard.db"


def async_url(configured: str | None, data_dir: Path) -> str:
    """``None`` is the SQLite file in the data dir; ``postgresql://`` maps to asyncpg and
    ``sqlite:///`` to aiosqlite."""
    if configured is None:
        # Quoted: a data dir may hold characters a URL gives a meaning to (?, #, %, @).
        return f"sqlite+aiosqlite:///{quote(str(data_dir / DB_FILE), safe='/')}"
    if problem := database_url_problem(configured):
        raise StoreError(f"database.url: {problem}")
    scheme, rest = configured.split("://", 1)
    if scheme.lower() in POSTGRES_SCHEMES:
        # The query as written: libpq's sslmode is renamed for the driver where it is called
        # (engine.create_engine), so that every message shows the operator's own URL.
        return f"postgresql+asyncpg://{rest}"
    assert scheme.lower() in SQLITE_SCHEMES
    return f"sqlite+aiosqlite://{rest}"


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (as returned by ``async_url``, or an engine's), as
    SQLAlchemy reads it (percent-escapes decoded, the query string apart), else None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)
