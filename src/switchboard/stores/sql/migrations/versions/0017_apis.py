"""Prompts published as REST APIs.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # POST /apis/{name} (docs/prompt-apis.md): a prompt version or label published under a name,
    # its lifecycle, successor, A/B split and approval flag.
    op.create_table(
        "apis",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prompt", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("label", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("team_id", sa.String(64)),
        sa.Column("require_approval", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("successor", sa.String(128)),
        sa.Column("sunset_at", sa.DateTime(timezone=True)),
        sa.Column("split", sa.JSON),
        sa.Column("sessions", sa.JSON),
        sa.Column("created_by", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("apis")
