"""Token revocations: an admin cuts off a JWT caller (a tenant's user) before its tokens expire.
One row per (tenant, user); every instance keeps them all in memory (access/revocations.py).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_revocations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("block", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("created_by_role", sa.String(32), nullable=False),
        sa.UniqueConstraint("tenant_id", "user_id", name="uq_token_revocations_tenant_user"),
    )


def downgrade() -> None:
    op.drop_table("token_revocations")
