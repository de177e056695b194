"""MCP tool permissions on teams and keys: {"allow": [...], "deny": [...]} patterns on the
exposed tool names (docs/mcp.md, "Permissions").

Revision ID: 0021
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("mcp_tools", sa.JSON))


def downgrade() -> None:
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mcp_tools")
