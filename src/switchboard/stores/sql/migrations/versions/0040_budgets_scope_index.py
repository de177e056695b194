"""An index on budgets leading with their scope.

The search for key chains whose keys all expired (``BudgetStore.ended_key_chains``, run by every
instance every ``budgets.expired_keys_seconds``) asks for the budgets of ``scope`` key; no index
led with ``scope``, so each search read the whole table. ``ix_budgets_scope`` (scope, tenant_id,
subject) gives it the key budgets alone, in (tenant, subject) order, without reading the rows.

Plain CREATE INDEX inside the migration's transaction: a table of one small row per budget.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_budgets_scope", "budgets", ["scope", "tenant_id", "subject"])


def downgrade() -> None:
    op.drop_index("ix_budgets_scope", table_name="budgets")
