"""A budget's threshold alert is claimed for the budget's amount too.

A claim was (budget, period, threshold): a budget raised mid-period (its 50 % alert sent at the
old amount) then never alerted at 50 % of the new amount, and one lowered past a threshold of
its new amount was taken as alerted already. The claim now also holds the amount it was made
for (``max_units``: whole nano-USD, or tokens, as the budget counts it).

The table is made again with the column in its primary key (SQLite cannot change a primary key
in place); each claim made before is kept with the amount its budget has now (a key's own budget:
its ``max_budget_nano_usd``), so no alert already sent is sent again.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def _table(name: str, *, amount: bool) -> None:
    columns: list[sa.Column[object]] = [
        sa.Column("budget_id", sa.String(64), primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("threshold", sa.Integer, primary_key=True),
    ]
    if amount:
        columns.append(sa.Column("max_units", sa.BigInteger, primary_key=True))
    op.create_table(name, *columns, sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False))


def _renamed(built: str) -> None:
    """The rebuilt table takes the name of the one it replaces, and on PostgreSQL its primary
    key too (it keeps the name it was made with: a later migration would not find it)."""
    op.rename_table(built, "budget_alerts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE budget_alerts RENAME CONSTRAINT {built}_pkey TO budget_alerts_pkey")


def upgrade() -> None:
    _table("budget_alerts_new", amount=True)
    op.execute(
        "INSERT INTO budget_alerts_new (budget_id, period_start, threshold, max_units, fired_at) "
        "SELECT a.budget_id, a.period_start, a.threshold, COALESCE("
        "(SELECT b.max_units FROM budgets b WHERE b.id = a.budget_id), "
        "(SELECT MAX(k.max_budget_nano_usd) FROM api_keys k WHERE 'key:' || k.lineage_id = a.budget_id), "
        "0), a.fired_at FROM budget_alerts a"
    )
    op.drop_table("budget_alerts")
    _renamed("budget_alerts_new")


def downgrade() -> None:
    _table("budget_alerts_old", amount=False)
    op.execute(
        "INSERT INTO budget_alerts_old (budget_id, period_start, threshold, fired_at) "
        "SELECT budget_id, period_start, threshold, MIN(fired_at) FROM budget_alerts "
        "GROUP BY budget_id, period_start, threshold"
    )
    op.drop_table("budget_alerts")
    _renamed("budget_alerts_old")
