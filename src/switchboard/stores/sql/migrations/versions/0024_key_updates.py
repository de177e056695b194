"""Keys changed in place (``PATCH /admin/v1/keys/{id}``): a reversible block next to the final
revoke, and a revision for compare-and-set.

``blocked_by_role``: NULL while the key is not blocked, else the role of whoever blocked it (only
that role or a higher one may unblock it). ``enabled`` keeps meaning "not revoked": a revoke is
final, nothing sets it back. ``revision`` counts the writes to a key's settings, so a change
made from a stale read (an update, a rotation) is refused instead of undoing another one;
``updated_at`` is when the last such write happened (NULL: never since the key was issued).

Existing keys are not blocked: every key disabled so far was revoked.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("blocked_by_role", sa.String(32)))
        batch.add_column(sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("revision")
        batch.drop_column("blocked_by_role")
