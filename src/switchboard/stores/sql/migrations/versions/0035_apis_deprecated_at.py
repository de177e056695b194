"""Published APIs' ``deprecated_at`` on databases that missed it.

Revision 0017 gained the column after it had shipped, so a database upgraded with the first
0017 has the ``apis`` table without it, and every read or write of an API then fails. This adds
the column where it is missing and leaves a database that has it alone; an API deprecated before
has no recorded time, and its last update is announced as the deprecation time.

Revision ID: 0035
Revises: 0029
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0029"
branch_labels = None
depends_on = None


def _has_column() -> bool:
    columns = sa.inspect(op.get_bind()).get_columns("apis")
    return any(column["name"] == "deprecated_at" for column in columns)


def upgrade() -> None:
    if not _has_column():
        with op.batch_alter_table("apis") as batch:
            batch.add_column(sa.Column("deprecated_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # The column belongs to 0017 as it is now: a database upgraded through the first 0017 gets
    # to keep it on the way down, which every later revision's code expects.
    pass
