"""From the configured database URL to the one SQLAlchemy opens, with its async driver."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from switchboard.config.urls import POSTGRES_SCHEMES, SQLITE_SCHEMES, database_url_problem
from switchboard.stores.errors import StoreError

DB_FILE = "switchboard.db"


def async_url(configured: str | None, data_dir: Path) -> str:
    """``None`` is the SQLite file in the data dir; ``postgresql://`` maps to asyncpg and
    ``sqlite:///`` to aiosqlite."""
    if configured is None:
        return f"sqlite+aiosqlite:///{data_dir / DB_FILE}"
    if problem := database_url_problem(configured):
        raise StoreError(f"database.url: {problem}")
    scheme, rest = configured.split("://", 1)
    if scheme.lower() in POSTGRES_SCHEMES:
        # libpq's sslmode=... is asyncpg's ssl=... (same values).
        base, _, query = rest.partition("?")
        if query:
            pairs = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(query, keep_blank_values=True)]
            rest = base + "?" + urlencode(pairs)
        return f"postgresql+asyncpg://{rest}"
    assert scheme.lower() in SQLITE_SCHEMES
    return f"sqlite+aiosqlite://{rest}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (as returned by ``async_url``), else None."""
    if not url.startswith("sqlite+aiosqlite:///"):
        return None
    return Path(url.removeprefix("sqlite+aiosqlite:///").split("?", 1)[0])
