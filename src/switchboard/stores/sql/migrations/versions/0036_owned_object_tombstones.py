"""Deleted files and batches kept a while as list cursors.

The files, batches and message batches lists page by an object's id (``after``, ``after_id``,
``before_id``). The SDKs' walk that deletes every object it lists asks for the next page after
the last id of a page it has just deleted; with the row gone that id is unknown (a 400). A
deleted object's row now stays with ``deleted_at`` set: found by the cursor lookup of its
owner's list and by nothing else, and purged a day later (stores/sql/files.py).
``ix_owned_objects_deleted`` holds the tombstones alone (a partial index), for the purge.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("owned_objects") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))
    deleted = sa.column("deleted_at").isnot(None)
    op.create_index("ix_owned_objects_deleted", "owned_objects", ["kind", "deleted_at"],
                    postgresql_where=deleted, sqlite_where=deleted)


def downgrade() -> None:
    op.drop_index("ix_owned_objects_deleted", table_name="owned_objects")
    # The tombstones are deleted objects: without the column they would be live again.
    op.execute(sa.text("DELETE FROM owned_objects WHERE deleted_at IS NOT NULL"))
    with op.batch_alter_table("owned_objects") as batch:
        batch.drop_column("deleted_at")
