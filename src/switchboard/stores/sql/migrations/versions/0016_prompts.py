"""The prompt registry: immutable prompt versions and the labels pointing at them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per version; the primary key makes two concurrent saves of one name take
    # different numbers (the loser retries with the next).
    op.create_table(
        "prompt_versions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("output_schema", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("team_id", sa.String(64)),
        sa.Column("created_by", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", "version"),
    )
    op.create_table(
        "prompt_labels",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", "label"),
    )


def downgrade() -> None:
    op.drop_table("prompt_labels")
    op.drop_table("prompt_versions")
