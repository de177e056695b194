"""Alembic environment: always run programmatically by ``stores.sql.migrate`` on a connection it
holds (under the migration lock), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from switchboard.stores.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'switchboard db upgrade', not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later migrations rebuild tables in batch mode.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
