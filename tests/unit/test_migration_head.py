"""The migrator knows the newest revision without loading the migration scripts (``HEAD``): it
must be the head Alembic finds in them, so a new migration cannot ship with a stale constant."""

from __future__ import annotations

from switchboard.stores.sql.migrate import HEAD, head


def test_the_head_constant_is_alembics_head() -> None:
    assert head() == HEAD, "a migration was added: set HEAD in stores/sql/migrate.py to its revision"
