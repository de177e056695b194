"""Usage records gain image and audio units and the attempts of routed calls; run-time
routing overrides (a deployment's weight changed through the admin API); the regions a
tenant, team or key may be served in (data residency).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        # Image and audio units, priced apart where the catalog has their prices; they are
        # also counted in prompt_tokens / completion_tokens, as providers report them.
        batch.add_column(sa.Column("image_input_tokens", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("audio_input_tokens", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("image_output_tokens", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("audio_output_tokens", sa.Integer, nullable=False, server_default="0"))
        # The deployment that answered, and every attempt made (deployment, status, error code,
        # milliseconds), in order.
        batch.add_column(sa.Column("deployment", sa.String(256)))
        batch.add_column(sa.Column("attempts", sa.JSON))
    # Data residency: the regions a tenant's, team's or key's requests may be served in
    # (a JSON list; NULL: anywhere).
    for table in ("tenants", "teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("allowed_regions", sa.JSON))
    # A split's arms' percents changed at run time: {arm: percent}.
    op.create_table(
        "routing_splits",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("percents", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "routing_overrides",
        sa.Column("group_name", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("weight", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "deployment"),
    )


def downgrade() -> None:
    op.drop_table("routing_overrides")
    op.drop_table("routing_splits")
    for table in ("api_keys", "teams", "tenants"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("allowed_regions")
    with op.batch_alter_table("usage_records") as batch:
        for column in ("attempts", "deployment", "audio_output_tokens", "image_output_tokens",
                       "audio_input_tokens", "image_input_tokens"):
            batch.drop_column(column)
