"""Indexes for the audit log read by actor and by time.

``GET /admin/v1/audit?actor=`` (what one admin did) read every entry of the tenant newest first
to find that actor's: ``ix_audit_log_tenant_actor`` returns them in order, a page at a time.

``GET /admin/v1/audit?since=`` read the tenant's whole history whenever fewer entries than a page
were that recent (newest first by id, a scan cannot know that no older entry is that recent):
``ix_audit_log_tenant_at`` finds the period's entries; PostgreSQL takes it when few entries are
that recent, and the newest-first scan, which then fills a page at once, when many are.

Plain CREATE INDEX inside the migration's transaction, as 0027: admin changes (which write the
audit log) wait while the indexes are built, which takes seconds even for a million entries.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_tenant_actor", "audit_log", ["tenant_id", "actor", "id"])
    op.create_index("ix_audit_log_tenant_at", "audit_log", ["tenant_id", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_tenant_at", table_name="audit_log")
    op.drop_index("ix_audit_log_tenant_actor", table_name="audit_log")
