"""Retired tenant ids: a deleted tenant's id is kept here and never given to a new tenant, so a
tenant created later cannot inherit the data still filed under it (limits, prompts, budgets,
audit entries, the ledger, revoked keys).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retired_tenants")
