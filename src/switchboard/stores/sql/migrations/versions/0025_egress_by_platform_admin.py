"""Who set a stored service's or MCP server's URL: ``by_platform_admin`` is true when a platform
admin (the master key, a ``platform_admin`` key or token) registered the record or last changed its
URL. Only such records of the ``default`` tenant may reach addresses that are not public
(docs/access.md, "Egress"); a tenant or team admin of the ``default`` tenant is not the operator.

Existing records keep the behaviour they had: marked as the platform admin's (the flag changes
nothing for a tenant other than ``default``, whose records are held to public addresses anyway).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_TABLES = ("services", "mcp_servers")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("by_platform_admin", sa.Boolean, nullable=False,
                                       server_default=sa.true()))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("by_platform_admin")
