"""The request log's full-text index reads the words after a JSON escape (PostgreSQL only).

A stored body is JSON text, where a prompt's line break or tab is the escape ``\\n`` or ``\\t``:
the text search parser took ``\\nhello`` for the word ``nhello``, so a word at the start of a
line (or after a tab) was never found by ``q``. The index's expression now makes each escape a
space first (tables.BODY_TEXT_SQL, which the search repeats to use it). The index is made again
over every partition of ``request_bodies`` (a plain CREATE INDEX: CONCURRENTLY is not allowed on a
partitioned parent): on a large log, plan for one GIN index build over the stored bodies.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

# Kept equal to tables.BODY_TEXT_SQL: the search repeats this expression to use the index.
BODY_TEXT_SQL = (r"to_tsvector('simple', regexp_replace("
                 r"coalesce(request, '') || ' ' || coalesce(response, ''), "
                 r"'\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'))")
# Revision 0013's.
BEFORE = "to_tsvector('simple', coalesce(request, '') || ' ' || coalesce(response, ''))"


def _index(expression: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with LIKE: no such index
    op.drop_index("ix_request_bodies_text", table_name="request_bodies")
    op.create_index("ix_request_bodies_text", "request_bodies", [sa.text(expression)], postgresql_using="gin")


def upgrade() -> None:
    _index(BODY_TEXT_SQL)


def downgrade() -> None:
    _index(BEFORE)
