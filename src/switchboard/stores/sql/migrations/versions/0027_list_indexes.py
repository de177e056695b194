"""Indexes for two admin lists that read more than a page.

``GET /admin/v1/keys`` lists a tenant's keys oldest first by ``(created_at, id)``, a page at a
time: with only ``tenant_id`` indexed, every page read and sorted all of the tenant's keys (on
PostgreSQL a sequential scan once a tenant has many). ``ix_api_keys_tenant_created`` returns the
page in order from the cursor on; it replaces ``ix_api_keys_tenant_id``, which is its prefix.

``GET /admin/v1/audit?resource_id=`` (the history of one key, team, user...) read every entry of
the tenant newest first to find that resource's; ``ix_audit_log_tenant_resource`` finds them.

Plain CREATE INDEX inside the migration's transaction: writes to these two tables (key creation,
admin changes) wait while the indexes are built, which takes seconds even for a million rows.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_api_keys_tenant_created", "api_keys", ["tenant_id", "created_at", "id"])
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.create_index("ix_audit_log_tenant_resource", "audit_log", ["tenant_id", "resource_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_tenant_resource", table_name="audit_log")
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.drop_index("ix_api_keys_tenant_created", table_name="api_keys")
