"""Rate limits set through the admin API.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A key's own limits (POST /admin/v1/keys rpm_limit, tpm_limit); NULL: none.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rpm_limit", sa.BigInteger))
        batch.add_column(sa.Column("tpm_limit", sa.BigInteger))
    # Limits set through /admin/v1/limits: one per (tenant, scope, subject).
    op.create_table(
        "rate_limits",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("rpm", sa.BigInteger),
        sa.Column("tpm", sa.BigInteger),
        sa.Column("tpd", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.UniqueConstraint("tenant_id", "scope", "subject", name="uq_rate_limits_tenant_scope_subject"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tpm_limit")
        batch.drop_column("rpm_limit")
