"""Budgets set through the admin API, the threshold alerts already fired, a key's own budget.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A key's own budget (POST /admin/v1/keys max_budget_usd, budget_period); NULL: none.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_budget_nano_usd", sa.BigInteger))
        batch.add_column(sa.Column("budget_period", sa.String(16)))
    # Budgets set through /admin/v1/budgets: one per (tenant, scope, subject, unit, period).
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("max_units", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64)),
        sa.Column("thresholds", sa.String(64)),
        sa.Column("downgrade_model", sa.String(256)),
        sa.Column("downgrade_at", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.UniqueConstraint("tenant_id", "scope", "subject", "unit", "period",
                            name="uq_budgets_tenant_scope_subject_unit_period"),
    )
    # A threshold's webhook fires once per crossing per period: the row is the claim.
    op.create_table(
        "budget_alerts",
        sa.Column("budget_id", sa.String(64), primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("threshold", sa.Integer, primary_key=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
    op.drop_table("budgets")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("budget_period")
        batch.drop_column("max_budget_nano_usd")
