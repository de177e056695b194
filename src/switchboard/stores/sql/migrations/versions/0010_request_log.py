"""The request log: the gateway's own and the upstream's time on each usage record, and the
request and response bodies a logging policy selects (redacted before they are stored).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("overhead_ms", sa.Integer))
        batch.add_column(sa.Column("upstream_ms", sa.Integer))
    op.create_table(
        "request_bodies",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("request", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("request_headers", sa.JSON),
        sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("request_id", "created_at"),
    )
    op.create_index("ix_request_bodies_tenant_created", "request_bodies", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_table("request_bodies")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("upstream_ms")
        batch.drop_column("overhead_ms")
