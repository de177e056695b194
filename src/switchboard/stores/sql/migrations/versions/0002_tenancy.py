"""Tenants, teams, users and service accounts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
    )
    # Keys issued with the master key have always belonged to the default tenant.
    op.bulk_insert(tenants, [{"id": "default", "name": "Default", "created_at": datetime.now(UTC),
                              "created_by": None}])
    op.create_table(
        "teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
    )
    op.create_index("ix_teams_tenant_id", "teams", ["tenant_id", "id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(64)),
        sa.Column("name", sa.String(200)),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
    )
    op.create_index("ix_users_tenant_id", "users", ["tenant_id", "id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tags", sa.JSON))
        batch.add_column(sa.Column("service_account_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("service_account_id")
        batch.drop_column("tags")
    op.drop_table("users")
    op.drop_table("teams")
    op.drop_table("tenants")
