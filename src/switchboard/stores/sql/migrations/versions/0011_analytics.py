"""Rollups of the usage ledger for analytics: hourly totals per tenant, team, key, user, model,
deployment and provider, and per tag, with latency and time-to-first-token histograms (one count
column per fixed bucket; stores/histogram.py). Existing records are counted by
``switchboard analytics rebuild`` (docs/observability.md, "Analytics").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MEASURES = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "cost_nano_usd", "latency_ms_sum", "ttft_ms_sum", "ttft_count",
    *(f"latency_h{i:02d}" for i in range(78)),
    *(f"ttft_h{i:02d}" for i in range(78)),
)


def _measures() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in MEASURES]


def _dimensions() -> list[sa.Column[Any]]:
    return [
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "analytics_hourly",
        *_dimensions(),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("bucket", "tenant_id", "team_id", "key_id", "user_id", "model", "deployment",
                                "provider", name="pk_analytics_hourly"),
    )
    op.create_index("ix_analytics_hourly_tenant_bucket", "analytics_hourly", ["tenant_id", "bucket"])
    op.create_table(
        "analytics_tags_hourly",
        *_dimensions(),
        sa.Column("tag", sa.String(256), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("bucket", "tenant_id", "team_id", "key_id", "user_id", "tag",
                                name="pk_analytics_tags_hourly"),
    )
    op.create_index("ix_analytics_tags_hourly_tenant_bucket", "analytics_tags_hourly",
                    ["tenant_id", "bucket"])


def downgrade() -> None:
    op.drop_table("analytics_tags_hourly")
    op.drop_table("analytics_hourly")
