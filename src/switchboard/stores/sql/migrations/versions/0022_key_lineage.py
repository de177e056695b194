"""A key's lineage: the id of the first key of its rotation chain. A rotated key's budgets, its
spend and its rate limits are held under this id, so rotating a key does not give it a fresh
budget (docs/budgets.md).

Existing keys become their own lineage: what they spent and the budgets and limits set on their
ids stay exactly as they were; keys rotated from now on join their predecessor's lineage.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("lineage_id", sa.String(64)))
    op.execute("UPDATE api_keys SET lineage_id = id")
    # A budget counter rebuilt from the ledger reads the ids of one lineage.
    op.create_index("ix_api_keys_tenant_lineage", "api_keys", ["tenant_id", "lineage_id"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_tenant_lineage", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("lineage_id")
