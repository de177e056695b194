"""A provider's own request and token limits, for providers added through the admin API.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What the provider deployment accepts (requests and tokens per minute); NULL: not limited.
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("rpm", sa.BigInteger))
        batch.add_column(sa.Column("tpm", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("tpm")
        batch.drop_column("rpm")
