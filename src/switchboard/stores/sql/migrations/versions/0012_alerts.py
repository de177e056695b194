"""Alert incidents.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every incident, open and resolved (docs/observability.md, "Alerts").
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("tenant_id", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("details", sa.JSON),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolves_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_value", sa.Float),
    )
    op.create_index("ix_alert_incidents_started", "alert_incidents", ["started_at"])
    op.create_index("ix_alert_incidents_tenant_started", "alert_incidents", ["tenant_id", "started_at"])
    # The one open incident per (rule, subject), whichever instance opened it.
    op.create_table(
        "alert_open",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("incident_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("rule", "subject"),
    )


def downgrade() -> None:
    op.drop_table("alert_open")
    op.drop_index("ix_alert_incidents_tenant_started", table_name="alert_incidents")
    op.drop_index("ix_alert_incidents_started", table_name="alert_incidents")
    op.drop_table("alert_incidents")
