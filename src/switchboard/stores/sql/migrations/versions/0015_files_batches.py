"""Files and batches created through the gateway: their owners and the upstream's objects.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owned_objects",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("team_id", sa.String(64)),
        sa.Column("user_id", sa.String(64)),
        sa.Column("purpose", sa.String(64)),
        sa.Column("status", sa.String(32)),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("costed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("kind", "id"),
    )
    op.create_index("ix_owned_objects_owner", "owned_objects", ["kind", "tenant_id", "owner", "created_at"])
    op.create_index("ix_owned_objects_open", "owned_objects", ["kind", "costed", "seen_at"])


def downgrade() -> None:
    op.drop_index("ix_owned_objects_open", table_name="owned_objects")
    op.drop_index("ix_owned_objects_owner", table_name="owned_objects")
    op.drop_table("owned_objects")
