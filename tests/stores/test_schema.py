"""The schema the migrations build is the one the code declares (tables.py), on both dialects, and
the admin lists on the big tables read a page through an index.

Drift is found with Alembic's own comparison (columns, types, nullability, server defaults on
PostgreSQL, indexes, unique constraints, foreign keys) plus what it does not compare: primary
keys and partial indexes' conditions. A migration that forgets an index, or a table declared
differently from what its migration made, fails here before it ships.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from switchboard.stores.factory import open_database
from switchboard.stores.protocols import AuditQuery, IncidentQuery, KeyQuery, UsageReportQuery
from switchboard.stores.sql import incidents, tables
from switchboard.stores.sql.audit import query_statement
from switchboard.stores.sql.files import list_statement
from switchboard.stores.sql.keys import page_statement
from switchboard.stores.sql.ledger import report_statement, total_statement
from tests.stores.plans import query_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _declared_here(dialect: str) -> Any:
    """Alembic's include_object: leaves out what tables.py declares for another dialect only
    (the PostgreSQL full-text index, ``ddl_if``)."""

    def include(obj: Any, _name: str | None, _kind: str, _reflected: bool, _other: Any) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        return ddl_if is None or ddl_if.dialect in (None, dialect)

    return include


def _partitions(conn: sa.Connection) -> set[str]:
    if conn.dialect.name != "postgresql":
        return set()
    return set(conn.execute(sa.text("SELECT relname FROM pg_class WHERE relispartition")).scalars())


def _normal(expression: str) -> str:
    """An index expression without what PostgreSQL adds when it prints one back (casts,
    parentheses, spacing, case), for comparing the declared text with the reflected one."""
    return re.sub(r"::\w+|[()\s]", "", expression.lower())


def _identity(index: Any) -> tuple[Any, ...]:
    return index.name, index.table.name, [_normal(str(e)) for e in index.expressions]


def _alembic_differences(conn: sa.Connection) -> list[Any]:
    partitions = _partitions(conn)
    postgresql = conn.dialect.name == "postgresql"
    context = MigrationContext.configure(conn, opts={
        "compare_type": True,
        # SQLite keeps a default's text as written; only PostgreSQL's are compared.
        "compare_server_default": postgresql,
        "include_name": lambda name, kind, _parent: kind != "table" or (
            name != "alembic_version" and name not in partitions),
        "include_object": _declared_here(conn.dialect.name),
    })
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; the one declared is PostgreSQL's anyway.
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        found = compare_metadata(context, tables.metadata)
    # An expression index reflects as PostgreSQL prints it: the same index, written differently,
    # shows as removed and added under one name.
    removed = {d[1].name: d[1] for d in found if isinstance(d, tuple) and d[0] == "remove_index"}
    added = {d[1].name: d[1] for d in found if isinstance(d, tuple) and d[0] == "add_index"}
    same = {name for name in removed.keys() & added.keys()
            if _identity(removed[name]) == _identity(added[name])}
    return [d for d in found if not (isinstance(d, tuple) and d[0] in ("remove_index", "add_index")
                                     and d[1].name in same)]


def _unseen_differences(conn: sa.Connection) -> list[tuple[str, ...]]:
    """What compare_metadata leaves out: primary keys, partial indexes' conditions."""
    inspector = sa.inspect(conn)
    dialect = conn.dialect.name
    found: list[tuple[str, ...]] = []
    for table in tables.metadata.sorted_tables:
        pk = inspector.get_pk_constraint(table.name)
        key = pk["constrained_columns"]
        if key != [c.name for c in table.primary_key.columns]:
            found.append(("primary key", table.name, ",".join(key)))
        # Named as a fresh database names it: a later migration drops or alters it by that name
        # (a table rebuilt under another name and renamed keeps its first key name).
        named = table.primary_key.name or f"{table.name}_pkey"
        if dialect == "postgresql" and pk.get("name") != named:
            found.append(("primary key name", table.name, str(pk.get("name"))))
        reflected = {ix["name"]: ix for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            where = index.dialect_options[dialect].get("where")
            got = reflected.get(index.name or "", {}).get("dialect_options", {}).get(f"{dialect}_where")
            if index.name in reflected and (where is None) != (got is None):
                found.append(("partial index condition", table.name, str(index.name), str(got)))
    return found


def _all_differences(conn: sa.Connection) -> list[Any]:
    return [*_alembic_differences(conn), *_unseen_differences(conn)]


async def test_the_migrated_schema_is_the_one_tables_py_declares(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)  # as the gateway does at start: upgrade to head
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_all_differences)
    finally:
        await engine.dispose()
    assert differences == []


# -- the admin lists on the big tables: a page through an index --------------------------------

_NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
# A sort of every row found (an incremental sort, or SQLite's "RIGHT PART OF", is not one).
_FULL_SORT = re.compile(r"(^|->\s+)Sort\s+\(|USE TEMP B-TREE FOR ORDER BY", re.MULTILINE)
_FULL_SCAN = re.compile(r"Seq Scan on|^SCAN \w+$", re.MULTILINE)


def _lists() -> dict[str, tuple[sa.Select[Any], str]]:
    """Each list as its store builds it, and the index that must serve it."""
    return {
        "a tenant's keys, first page": (
            page_statement("acme", KeyQuery(), None).limit(100), "ix_api_keys_tenant_created"),
        "a tenant's keys, a later page": (
            page_statement("acme", KeyQuery(after="key_x"), _NOW).limit(100), "ix_api_keys_tenant_created"),
        "a tenant's audit log": (query_statement("acme", AuditQuery()), "ix_audit_log_tenant_id"),
        "one resource's audit entries": (
            query_statement("acme", AuditQuery(resource_id="key_x")), "ix_audit_log_tenant_resource"),
        "one actor's audit entries": (
            query_statement("acme", AuditQuery(actor="alice")), "ix_audit_log_tenant_actor"),
        "a tenant's incidents, a later page": (
            incidents.query_statement(IncidentQuery(tenant_id="acme", before_id="inc_x")),
            "ix_alert_incidents_tenant_started"),
        "an owner's files, a later page": (
            list_statement("file", "acme", "key_a", None, True, "file_x", _NOW).limit(20),
            "ix_owned_objects_owner"),
        "an owner's batches oldest first, a later page": (
            list_statement("batch", "acme", "key_a", None, False, "batch_x", _NOW).limit(20),
            "ix_owned_objects_owner"),
    }


# A later page's index scan starts at its cursor: the plain bound on the time is an index
# condition (PostgreSQL: "Index Cond: ... <=", SQLite: the column's range in the SEARCH).
_LATER_PAGES = {
    "a tenant's keys, a later page": r"Index Cond: .*created_at >=|created_at>\?",
    "a tenant's incidents, a later page": r"Index Cond: .*started_at <=|started_at<\?",
    "an owner's files, a later page": r"Index Cond: .*created_at <=|created_at<\?",
    "an owner's batches oldest first, a later page": r"Index Cond: .*created_at >=|created_at>\?",
}


async def test_admin_lists_read_a_page_through_an_index(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            lists = _lists()
            plans = {name: (await query_plan(conn, stmt), index) for name, (stmt, index) in lists.items()}
    finally:
        await engine.dispose()
    for name, (plan, index) in plans.items():
        assert index in plan, f"{name}: {plan}"
        assert not _FULL_SORT.search(plan) and not _FULL_SCAN.search(plan), f"{name}: {plan}"
    # A later page starts the index scan at the cursor, not at the first row of the list.
    for name, bound in _LATER_PAGES.items():
        assert re.search(bound, plans[name][0]), f"{name}: {plans[name][0]}"


# -- big tables, as the planner sees them once they hold rows ------------------------------------

_ROWS = 50_000


def _dialect(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


async def _seeded_plan(fresh_url: str, rows: dict[sa.Table, list[dict[str, Any]]],
                       stmt: sa.Select[Any]) -> tuple[str, Any]:
    """The plan of ``stmt`` (for its values, as a custom plan) once ``rows`` are stored and, on
    PostgreSQL, analysed as autovacuum does; and its result."""
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            for table, values in rows.items():
                await conn.execute(sa.insert(table), values)
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("ANALYZE")
        async with engine.connect() as conn:
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            if conn.dialect.name == "postgresql":
                plan = "\n".join(row[0] for row in await conn.exec_driver_sql("EXPLAIN " + sql))
            else:
                plan = "\n".join(row[3] for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            result = (await conn.execute(stmt)).all()
    finally:
        await engine.dispose()
    return plan, result


async def test_a_keys_spend_across_its_lineage_reads_only_its_keys_records(fresh_url: str) -> None:
    """A key budget rebuilt from the ledger (a rotated key's lineage: three keys among 200) reads
    those keys' records through the (key_id, created_at) index, not every record of the tenant
    since the period's start, and counts exactly theirs."""
    keys = [{"id": f"key_{i}", "key_hash": f"hash_{i}", "prefix": "sk-sb-", "tenant_id": "acme",
             "role": "member", "enabled": True, "metadata": {}, "created_at": _NOW, "revision": 0,
             "lineage_id": "key_0" if i < 3 else f"key_{i}"} for i in range(200)]
    records = [{"request_id": f"req_{i}", "entry_id": f"req_{i}", "tenant_id": "acme",
                "key_id": f"key_{i % 200}", "model": "m", "status": 200, "prompt_tokens": 1,
                "completion_tokens": 2, "cost_nano_usd": i,
                "latency_ms": 5, "created_at": _NOW - timedelta(seconds=30 * i), "metadata": {}}
               for i in range(_ROWS)]
    since = _NOW - timedelta(days=30)  # every record is in the period
    stmt = total_statement(_dialect(fresh_url), "acme", "key", "key_0", since, "usd")
    plan, result = await _seeded_plan(fresh_url, {tables.api_keys: keys, tables.usage_records: records}, stmt)
    assert re.search(r"key_id_created_at_idx|USING INDEX ix_usage_records_key_created", plan), plan
    # Not the tenant's records filtered one by one (on PostgreSQL the rows are in the DEFAULT
    # partition: the day partitions made at migration are empty).
    assert not re.search(r"Seq Scan on usage_records_default|^SCAN usage_records", plan, re.MULTILINE), plan
    spent = sum(i for i in range(_ROWS) if i % 200 < 3)
    assert Decimal(result[0][0]) == spent


async def test_the_audit_log_since_a_recent_time_reads_only_that_period(fresh_url: str) -> None:
    """?since= a few minutes ago, with fewer entries than a page that recent: they are found
    through (tenant_id, at, id), not by reading the tenant's whole history newest first."""
    entries = [{"tenant_id": "acme" if i % 10 else "other", "at": _NOW - timedelta(minutes=_ROWS - i),
                "actor": f"actor_{i % 50}", "actor_role": "admin", "action": "key.create",
                "resource_type": "key", "resource_id": f"key_{i}"} for i in range(_ROWS)]
    stmt = query_statement("acme", AuditQuery(since=_NOW - timedelta(minutes=30)))
    plan, result = await _seeded_plan(fresh_url, {tables.audit_log: entries}, stmt)
    assert "ix_audit_log_tenant_at" in plan, plan
    assert not _FULL_SCAN.search(plan), plan
    recent = [i for i in range(_ROWS - 30, _ROWS) if i % 10]
    assert [row.resource_id for row in result] == [f"key_{i}" for i in reversed(recent)]


async def test_what_a_developer_owns_is_read_through_the_key_and_user_indexes(fresh_url: str) -> None:
    """A developer's usage report (its user, its key and the keys of its key's rotation chain:
    three keys among 200, one user among 100) reads those keys' and that user's records through
    the (key_id, created_at) and (user_id, created_at) indexes, not every record of the tenant
    in the period filtered one by one, and counts exactly theirs."""
    keys = [{"id": f"key_{i}", "key_hash": f"hash_{i}", "prefix": "sk-sb-", "tenant_id": "acme",
             "role": "member", "enabled": True, "metadata": {}, "created_at": _NOW, "revision": 0,
             "lineage_id": "key_0" if i < 3 else f"key_{i}"} for i in range(200)]
    records = [{"request_id": f"req_{i}", "entry_id": f"req_{i}", "tenant_id": "acme",
                "key_id": f"key_{i % 200}",
                "user_id": f"user_{i % 101}", "model": "m", "status": 200, "prompt_tokens": 1,
                "completion_tokens": 2, "cost_nano_usd": i, "latency_ms": 5,
                "created_at": _NOW - timedelta(seconds=30 * i), "metadata": {}}
               for i in range(_ROWS)]
    query = UsageReportQuery(since=_NOW - timedelta(days=30), until=_NOW + timedelta(days=1),
                             owners=("user_7", "key_2"), owner_lineage="key_0")
    stmt = report_statement(_dialect(fresh_url), "acme", query)
    plan, result = await _seeded_plan(fresh_url, {tables.api_keys: keys, tables.usage_records: records}, stmt)
    assert re.search(r"key_id_created_at_idx|ix_usage_records_key_created", plan), plan
    assert re.search(r"user_id_created_at_idx|ix_usage_records_user_created", plan), plan
    assert not re.search(r"Seq Scan on usage_records_default|^SCAN usage_records", plan, re.MULTILINE), plan
    mine = [i for i in range(_ROWS) if i % 200 < 3 or i % 101 == 7]
    assert result[0].requests == len(mine)
    assert result[0].cost_nano_usd == sum(mine)
