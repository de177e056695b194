"""Keys with a check (access/keys.py): whether a key was issued with one.

A key issued from this version on ends in a MAC of the rest, so the gateway refuses a made-up key
without a database query; a key issued before has none and is looked up as before while any such
key is live (access/unchecked.py). ``checked`` says which a key is: every existing key is one from
before (false), and so is a key inserted by an instance not yet upgraded (the column's default),
so it keeps working during a rolling upgrade. The index finds the unchecked keys (the start-up
and periodic count) without reading the others.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("checked", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_api_keys_checked", "api_keys", ["checked"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_checked", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("checked")
