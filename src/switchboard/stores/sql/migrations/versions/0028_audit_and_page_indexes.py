"""Indexes for the audit log read by actor and by time, and for the incident and file lists.

``GET /admin/v1/audit?actor=`` (what one admin did) read every entry of the tenant newest first
to find that actor's: ``ix_audit_log_tenant_actor`` returns them in order, a page at a time.

``GET /admin/v1/audit?since=`` read the tenant's whole history whenever fewer entries than a page
were that recent (newest first by id, a scan cannot know that no older entry is that recent):
``ix_audit_log_tenant_at`` finds the period's entries; PostgreSQL takes it when few entries are
that recent, and the newest-first scan, which then fills a page at once, when many are.

The alert incidents and the files and batches are listed newest (or oldest) first by their time
and id: ``ix_alert_incidents_tenant_started`` and ``ix_owned_objects_owner`` gain ``id`` as their
last column, so a page comes in that order from the index, the cursor bound being an index
condition (a page no longer sorts every row after the cursor).

Plain CREATE INDEX inside the migration's transaction, as 0027: writes to these tables (admin
changes, incidents, file and batch creation) wait while the indexes are built, which takes
seconds even for a million rows.

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
    op.drop_index("ix_alert_incidents_tenant_started", table_name="alert_incidents")
    op.create_index("ix_alert_incidents_tenant_started", "alert_incidents", ["tenant_id", "started_at", "id"])
    op.drop_index("ix_owned_objects_owner", table_name="owned_objects")
    op.create_index("ix_owned_objects_owner", "owned_objects",
                    ["kind", "tenant_id", "owner", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_owned_objects_owner", table_name="owned_objects")
    op.create_index("ix_owned_objects_owner", "owned_objects", ["kind", "tenant_id", "owner", "created_at"])
    op.drop_index("ix_alert_incidents_tenant_started", table_name="alert_incidents")
    op.create_index("ix_alert_incidents_tenant_started", "alert_incidents", ["tenant_id", "started_at"])
    op.drop_index("ix_audit_log_tenant_at", table_name="audit_log")
    op.drop_index("ix_audit_log_tenant_actor", table_name="audit_log")
