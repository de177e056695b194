"""The request log joins a stored body to its usage record by the gateway's own id.

A body used to join its record on request id, tenant and the nearest time; the request id is the
caller's X-Request-Id when it sends one, so a colleague sending the same id could have a record
of theirs show another user's body. Both tables now carry ``log_id``, made by the gateway per
request (RequestContext.log_id) and written with the record and with its bodies; the search
joins on it (stores/sql/log_search.py). Rows written before this revision have none: such a
body joins a record without one only when no other record has its request id.

Adding a nullable column with no default changes no row (PostgreSQL: the partitions get it
from their partitioned table).

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

_TABLES = ("usage_records", "request_bodies")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("log_id", sa.String(32)))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "log_id")
