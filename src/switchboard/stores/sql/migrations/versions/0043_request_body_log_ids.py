"""The request log's bodies are keyed by their record's log id, not the caller's request id.

The key was ``(request_id, created_at)`` (0010), ``ON CONFLICT DO NOTHING`` so a body written
twice is stored once. ``request_id`` is the caller's X-Request-Id when it sends one: two requests
under one id that started in the same microsecond (two instances, two worker processes) had one
key, and the second body was dropped. The key is now ``(log_id, created_at)``: ``log_id`` is made
by the gateway once per request (RequestContext.log_id, 0037) and is what the body joins its
usage record on. PostgreSQL's partitioned table must keep the partition column in its key, hence
``created_at`` in it still.

Bodies stored before 0037 have no log id and get ``log_id = request_id``: they are unique by
``(request_id, created_at)`` already. The column widens from 32 characters to the request id's
128 to hold them. Nothing looks bodies up by request id any more (the search joins on the log
id), so ``request_id`` gets no index of its own.

Filling the column rewrites the bodies written before 0037, in the migration's transaction
(PostgreSQL: the primary key rebuilt on every partition): its time grows with their size.

Downgrade: bodies sharing ``(request_id, created_at)`` cannot all stay under the old key; the one
with the smallest ``log_id`` is kept. The filled log ids are cleared again, as 0042 expects of
bodies older than 0037.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-07
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def _set_key(postgresql: bool, columns: list[str], log_id: sa.String, nullable: bool) -> None:
    """The key made of ``columns``, ``log_id`` of that type and nullability."""
    if postgresql:
        op.execute("ALTER TABLE request_bodies DROP CONSTRAINT request_bodies_pkey")
        op.alter_column("request_bodies", "log_id", type_=log_id, nullable=nullable)
        key = ", ".join(columns)
        op.execute(f"ALTER TABLE request_bodies ADD CONSTRAINT request_bodies_pkey PRIMARY KEY ({key})")
        return
    # SQLite changes a key only by rebuilding the table (as 0010 did).
    with warnings.catch_warnings(), op.batch_alter_table("request_bodies", recreate="always") as batch:
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_request_bodies' specifies columns")
        batch.alter_column("log_id", type_=log_id, nullable=nullable)
        batch.create_primary_key("pk_request_bodies", columns)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:  # room for a request id before one is copied in
        op.alter_column("request_bodies", "log_id", type_=sa.String(128), existing_type=sa.String(32))
    op.execute("UPDATE request_bodies SET log_id = request_id WHERE log_id IS NULL")
    _set_key(postgresql, ["log_id", "created_at"], sa.String(128), nullable=False)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DELETE FROM request_bodies WHERE EXISTS (SELECT 1 FROM request_bodies AS kept "
        "WHERE kept.request_id = request_bodies.request_id AND kept.created_at = request_bodies.created_at "
        "AND kept.log_id < request_bodies.log_id)"
    )
    _set_key(postgresql, ["request_id", "created_at"], sa.String(128), nullable=True)
    op.execute("UPDATE request_bodies SET log_id = NULL WHERE log_id = request_id")
    if postgresql:  # 0042's width, once the request ids copied in are gone (SQLite keeps no width)
        op.alter_column("request_bodies", "log_id", type_=sa.String(32), existing_type=sa.String(128))
