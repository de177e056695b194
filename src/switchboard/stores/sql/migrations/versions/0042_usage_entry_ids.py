"""The usage ledger is keyed by the record's own id, not the caller's request id.

The key was ``(request_id, created_at)`` (0010), ``ON CONFLICT DO NOTHING`` so a replayed record
is stored once. ``request_id`` is the caller's X-Request-Id when it sends one: two requests under
one id that started in the same microsecond (two instances, two worker processes) had one key,
and the second record was dropped as a replay. The key is now ``(entry_id, created_at)``:
``entry_id`` is made by the gateway once per request and spooled with the record, so a replay
still has the same key and distinct requests never do. PostgreSQL's partitioned table must keep
the partition column in its key, hence ``created_at`` in it still.

Rows stored before get ``entry_id = request_id``: they are unique by ``(request_id, created_at)``
already, and a record spooled by the previous version and replayed after the upgrade is read
with the same default (spend/ledger.py), so it meets its stored copy. ``request_id`` keeps an
index of its own, ``(request_id, created_at)`` as the old key was, for the lookups by request
id (the request log's ``request_id`` filter, the bodies' join).

Filling the column rewrites every row of the ledger, in the migration's transaction (PostgreSQL:
every partition, the primary key rebuilt on each): its time grows with the ledger's size.

Downgrade: rows sharing ``(request_id, created_at)`` cannot all stay under the old key; the one
with the smallest ``entry_id`` is kept.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-07
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None

_INDEX = "ix_usage_records_request_created"


def _set_key(postgresql: bool, columns: list[str]) -> None:
    if postgresql:
        op.execute("ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey")
        key = ", ".join(columns)
        op.execute(f"ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY ({key})")
        return
    # SQLite changes a key only by rebuilding the table (as 0010 did).
    with warnings.catch_warnings(), op.batch_alter_table("usage_records", recreate="always") as batch:
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_usage_records' specifies columns")
        if "entry_id" in columns:
            batch.alter_column("entry_id", existing_type=sa.String(128), nullable=False)
        batch.create_primary_key("pk_usage_records", columns)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.add_column("usage_records", sa.Column("entry_id", sa.String(128)))
    op.execute("UPDATE usage_records SET entry_id = request_id")
    if postgresql:
        op.execute("ALTER TABLE usage_records ALTER COLUMN entry_id SET NOT NULL")
    _set_key(postgresql, ["entry_id", "created_at"])
    op.create_index(_INDEX, "usage_records", ["request_id", "created_at"])


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DELETE FROM usage_records WHERE EXISTS (SELECT 1 FROM usage_records AS kept "
        "WHERE kept.request_id = usage_records.request_id AND kept.created_at = usage_records.created_at "
        "AND kept.entry_id < usage_records.entry_id)"
    )
    op.drop_index(_INDEX, table_name="usage_records")
    _set_key(postgresql, ["request_id", "created_at"])
    op.drop_column("usage_records", "entry_id")
