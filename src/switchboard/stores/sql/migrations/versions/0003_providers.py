"""Providers, their encrypted credentials, and models managed at run time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("api_base", sa.String(2048)),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("timeouts", sa.JSON),
        sa.Column("max_connections", sa.Integer),
        sa.Column("allow_caller_credentials", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "provider_credentials",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.Text),
        sa.Column("ref", sa.String(1100)),
        sa.Column("mask", sa.String(1100), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_provider_credentials_provider", "provider_credentials", ["provider", "created_at"]
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("timeouts", sa.JSON),
        sa.Column("drop_params", sa.Boolean, nullable=False),
        sa.Column("info", sa.JSON),
        sa.Column("require_approval", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    op.drop_table("models")
    op.drop_index("ix_provider_credentials_provider", "provider_credentials")
    op.drop_table("provider_credentials")
    op.drop_table("providers")
