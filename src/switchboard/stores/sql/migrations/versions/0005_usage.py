"""Usage records: tokens split as providers bill them, cost, timings and tags.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COUNTS = ("cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for name in _COUNTS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("unpriced", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("ttft_ms", sa.Integer))
        batch.add_column(sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("error_code", sa.String(64)))
        batch.add_column(sa.Column("upstream_model", sa.String(256)))
        batch.add_column(sa.Column("tags", sa.JSON))
    op.create_index("ix_usage_records_created", "usage_records", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_created", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        for name in ("tags", "upstream_model", "error_code", "stream", "ttft_ms", "unpriced", *_COUNTS):
            batch.drop_column(name)
