"""The request log: the gateway's own and the upstream's time on each usage record, and the
request and response bodies a logging policy selects (redacted before they are stored).

Both tables' primary key is ``(request_id, created_at)``: on PostgreSQL they are partitioned by
day on ``created_at`` (range partitions, one DEFAULT partition for rows outside them), so
retention drops whole partitions; a partitioned table's unique keys must hold the partition key.
SQLite keeps plain tables with the same key (retention deletes by ``created_at`` there).

PostgreSQL: ``usage_records`` already holds the ledger. It is renamed, a partitioned table is
created in its place with a partition for every day of the last 120 it has rows for (and today
and the next two days; older rows go to the DEFAULT partition), the rows are copied over, and
the old table is dropped, all in the migration's transaction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Partitions made ahead of time; the request log's maintenance keeps this many (request_log.py).
DAYS_AHEAD = 2
# Existing usage records this recent get day partitions; older ones the DEFAULT partition.
BACKFILL_DAYS = 120
_USAGE_INDEXES = {
    "ix_usage_records_tenant_created": "tenant_id, created_at",
    "ix_usage_records_created": "created_at",
}


def _partition(table: str, day: date) -> None:
    """The day partition of ``table`` (UTC day), named ``<table>_pYYYYMMDD``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {table}_p{day:%Y%m%d} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def _partitions_ahead(table: str) -> None:
    today = datetime.now(UTC).date()
    for ahead in range(DAYS_AHEAD + 1):
        _partition(table, today + timedelta(days=ahead))


def _partition_usage_records() -> None:
    op.execute("ALTER TABLE usage_records RENAME TO usage_records_unpartitioned")
    op.execute("ALTER TABLE usage_records_unpartitioned RENAME CONSTRAINT usage_records_pkey "
               "TO usage_records_unpartitioned_pkey")
    for name in _USAGE_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("CREATE TABLE usage_records (LIKE usage_records_unpartitioned INCLUDING DEFAULTS) "
               "PARTITION BY RANGE (created_at)")
    op.execute("ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey "
               "PRIMARY KEY (request_id, created_at)")
    op.execute("CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT")
    # Day partitions for the recent rows; older ones go to the DEFAULT partition (thousands of
    # partitions made in one transaction would exhaust PostgreSQL's lock table).
    days = op.get_bind().execute(sa.text(
        "SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM usage_records_unpartitioned "
        "WHERE created_at >= now() - make_interval(days => :days)"
    ), {"days": BACKFILL_DAYS}).scalars().all()
    for day in days:
        _partition("usage_records", day)
    _partitions_ahead("usage_records")
    op.execute("INSERT INTO usage_records SELECT * FROM usage_records_unpartitioned")
    op.execute("DROP TABLE usage_records_unpartitioned")
    for name, columns in _USAGE_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_records ({columns})")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with warnings.catch_warnings(), op.batch_alter_table(
        "usage_records", recreate="never" if postgresql else "always"
    ) as batch:
        # SQLite rebuilds the table; SQLAlchemy notes that the reflected request_id column was
        # the key on its own, which is the point.
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_usage_records' specifies columns")
        batch.add_column(sa.Column("overhead_ms", sa.Integer))
        batch.add_column(sa.Column("upstream_ms", sa.Integer))
        if not postgresql:  # SQLite: the table is rebuilt with the new key
            batch.create_primary_key("pk_usage_records", ["request_id", "created_at"])
    if postgresql:
        _partition_usage_records()
    op.create_table(
        "request_bodies",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("request", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("request_headers", sa.JSON),
        sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("request_id", "created_at"),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index("ix_request_bodies_tenant_created", "request_bodies", ["tenant_id", "created_at"])
    # Retention on SQLite deletes by created_at range through this index.
    op.create_index("ix_request_bodies_created", "request_bodies", ["created_at"])
    if postgresql:
        op.execute("CREATE TABLE request_bodies_default PARTITION OF request_bodies DEFAULT")
        _partitions_ahead("request_bodies")


def _unpartition_usage_records() -> None:
    op.execute("ALTER TABLE usage_records RENAME TO usage_records_partitioned")
    op.execute("ALTER TABLE usage_records_partitioned RENAME CONSTRAINT usage_records_pkey "
               "TO usage_records_partitioned_pkey")
    for name in _USAGE_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("CREATE TABLE usage_records (LIKE usage_records_partitioned INCLUDING DEFAULTS)")
    # Rows sharing a request id (possible only with different times) keep the oldest.
    op.execute("INSERT INTO usage_records SELECT DISTINCT ON (request_id) * FROM usage_records_partitioned "
               "ORDER BY request_id, created_at")
    op.execute("DROP TABLE usage_records_partitioned")
    op.execute("ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY (request_id)")
    for name, columns in _USAGE_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_records ({columns})")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_table("request_bodies")  # its partitions go with it
    if postgresql:
        _unpartition_usage_records()
    with warnings.catch_warnings(), op.batch_alter_table(
        "usage_records", recreate="never" if postgresql else "always"
    ) as batch:
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_usage_records' specifies columns")
        if not postgresql:
            batch.create_primary_key("pk_usage_records", ["request_id"])
        batch.drop_column("upstream_ms")
        batch.drop_column("overhead_ms")
