"""Indexes for searching the request log: usage records by key, team, user, model, deployment
and error code over time, and (PostgreSQL) a full-text index on the stored bodies.

Plain CREATE INDEX on the parent tables: once usage_records and request_bodies are partitioned
by time, PostgreSQL creates each index on every partition, present and future (CREATE INDEX
CONCURRENTLY is not allowed on a partitioned parent).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The search repeated this expression to use the index (revision 0039 replaced it).
BODY_TEXT_SQL = "to_tsvector('simple', coalesce(request, '') || ' ' || coalesce(response, ''))"
INDEXES = (
    ("ix_usage_records_key_created", ["key_id", "created_at"]),
    ("ix_usage_records_team_created", ["team_id", "created_at"]),
    ("ix_usage_records_user_created", ["user_id", "created_at"]),
    ("ix_usage_records_tenant_model_created", ["tenant_id", "model", "created_at"]),
    ("ix_usage_records_tenant_deployment_created", ["tenant_id", "deployment", "created_at"]),
)


def upgrade() -> None:
    for name, columns in INDEXES:
        op.create_index(name, "usage_records", columns)
    # Errors are a small share of the records: only they are indexed.
    has_error = sa.text("error_code IS NOT NULL")
    op.create_index("ix_usage_records_tenant_error_created", "usage_records",
                    ["tenant_id", "error_code", "created_at"], postgresql_where=has_error,
                    sqlite_where=has_error)
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_request_bodies_text", "request_bodies", [sa.text(BODY_TEXT_SQL)],
                        postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_request_bodies_text", table_name="request_bodies")
    op.drop_index("ix_usage_records_tenant_error_created", table_name="usage_records")
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="usage_records")
