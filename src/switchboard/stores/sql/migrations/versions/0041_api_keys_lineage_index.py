"""An index on the keys' lineage alone.

A key's own budget is known by its chain's lineage only (its id ``key:<lineage>``, no tenant), so
the hourly purge of threshold claims of ended periods and the search for expired key chains whose
own budget holds claims (``stores/sql/budgets.py``) look keys up by ``lineage_id`` alone; the only
index on it (``ix_api_keys_tenant_lineage``) leads with the tenant, so each of them read the whole
``api_keys`` table. ``ix_api_keys_lineage`` gives them the keys of one chain.

Plain CREATE INDEX inside the migration's transaction, as for the other api_keys indexes (0027,
0029): one short string per key, built in moments for a table of keys.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_api_keys_lineage", "api_keys", ["lineage_id"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_lineage", table_name="api_keys")
