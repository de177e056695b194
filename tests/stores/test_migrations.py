"""Migrations: applied on open, a no-op the second time, safe when several open at once, and a
schema newer than this version is refused."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from switchboard.stores import StoreError, UsageRecord
from switchboard.stores.factory import open_at, open_database
from switchboard.stores.protocols import ApiRecord, AuditQuery, LogQuery, RequestBody, usage_row
from switchboard.stores.sql import tables
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.migrate import _config, head
from switchboard.stores.sql.urls import async_url, sqlite_path
from tests.servers import refused_port
from tests.services import Postgres

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def schema(url: str) -> tuple[list[str], list[str]]:
    engine, _ = await open_database(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sorted(sa.inspect(c).get_table_names()))
            if engine.dialect.name == "postgresql":  # the time partitions are not tables of their own
                query = sa.text("SELECT relname FROM pg_class WHERE relispartition")
                partitions = set((await conn.execute(query)).scalars())
                tables = [name for name in tables if name not in partitions]
            versions = [r[0] for r in await conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        await engine.dispose()
    return tables, versions


async def test_open_applies_migrations_and_again_is_a_no_op(fresh_url: str) -> None:
    first = await schema(fresh_url)
    # The migrations create exactly the tables the code's mirror of them (tables.py) declares.
    assert first == (sorted(["alembic_version", *tables.metadata.tables]), [head()])
    assert {"api_keys", "audit_log", "usage_records"} <= set(first[0])
    assert await schema(fresh_url) == first


# A process of its own: this one has imported Alembic already.
_OPEN_AND_REPORT = """
import asyncio, sys
from switchboard.stores.factory import open_database

async def main():
    engine, revision = await open_database(sys.argv[1])
    await engine.dispose()
    print(revision, "alembic" in sys.modules)

asyncio.run(main())
"""


async def test_a_database_at_head_is_opened_without_loading_alembic(fresh_url: str) -> None:
    """Every start but the first after an upgrade: the stored revision is the head, so neither
    Alembic nor the migration scripts are loaded (most of the cost of opening the database)."""
    migrated = await schema(fresh_url)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OPEN_AND_REPORT, fresh_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == [head(), "False"]
    assert await schema(fresh_url) == migrated


async def test_several_instances_opening_a_fresh_database_at_once_all_succeed(fresh_url: str) -> None:
    opened = await asyncio.gather(*(open_at(fresh_url, None) for _ in range(4)))
    try:
        assert [s.revision for s in opened] == [head()] * 4
    finally:
        for s in opened:
            await s.close()
    assert (await schema(fresh_url))[1] == [head()]


async def test_a_schema_newer_than_this_version_is_refused(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    await engine.dispose()
    with pytest.raises(StoreError, match=r"9999_from_the_future.*newer Switchboard"):
        await open_database(fresh_url)


async def test_unreachable_postgresql_fails_fast_with_one_line() -> None:
    url = async_url(f"postgresql://sb:hunter2-secret@127.0.0.1:{refused_port()}/sb", Path("/unused"))
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await open_database(url)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert message.startswith("cannot open the database postgresql://sb:***@127.0.0.1:")
    assert "hunter2" not in message and "\n" not in message


async def test_unreachable_redis_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        await open_at(async_url(None, tmp_path), f"redis://:pw-secret@127.0.0.1:{refused_port()}/0")
    message = str(info.value)
    assert message.startswith("cannot reach redis at redis://:***@127.0.0.1:")
    assert "pw-secret" not in message and "\n" not in message


async def test_postgresql_url_options_reach_the_driver(postgres: Postgres, tmp_path: Path) -> None:
    # libpq's sslmode is accepted (as asyncpg's ssl); an option the driver does not know is one line.
    stores = await open_at(async_url(postgres.url + "?sslmode=disable", tmp_path), None)
    await stores.close()
    with pytest.raises(StoreError, match="unsupported URL option"):
        await open_database(async_url(postgres.url + "?frobnicate=1", tmp_path))


async def test_services_and_mcp_servers_stored_before_0025_stay_egress_exempt(fresh_url: str) -> None:
    """Revision 0025 marks who set each URL; records from before it count as the platform admin's
    (the default tenant's keep reaching what they reached: the documented upgrade note)."""
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0024"))
            # Written as the code of revision 0024 wrote them: no by_platform_admin column.
            now = datetime.now(UTC)
            await conn.execute(sa.insert(tables.services).values(
                tenant_id="default", name="old", spec={"url": "http://127.0.0.1:9/"}, headers={},
                created_at=now, updated_at=now))
            await conn.execute(sa.insert(tables.mcp_servers).values(
                id="mcp_old", tenant_id="default", name="old", config={"url": "http://127.0.0.1:9/"},
                header_names=[], created_at=now, updated_at=now))
    finally:
        await engine.dispose()
    engine, revision = await open_database(fresh_url)
    try:
        assert revision == head()
        async with engine.connect() as conn:
            flags = [(await conn.execute(sa.select(t.c.by_platform_admin))).scalars().all()
                     for t in (tables.services, tables.mcp_servers)]
    finally:
        await engine.dispose()
    assert flags == [[True], [True]]


# Rows of the main tables, as the newest code writes them; at an older revision only the columns
# that revision has are written (what the code of that time wrote).
_AT = datetime.now(UTC).replace(microsecond=0)
_LEDGER_AGES = (0, 10, 200)  # days: today's partition, a backfilled day, the DEFAULT partition
_OLD_ROWS: dict[str, list[dict[str, object]]] = {
    "tenants": [dict(id="acme", name="Acme", created_at=_AT, created_by="master", allowed_regions=["eu"])],
    "teams": [dict(id="team_a", tenant_id="acme", name="Team A", created_at=_AT)],
    "users": [dict(id="user_a", tenant_id="acme", kind="user", role="developer", team_id="team_a",
                   name="Ann", email="ann@example.com", created_at=_AT)],
    "api_keys": [dict(id="key_a", key_hash="h" * 64, prefix="sk-sb-abc", name="ci", tenant_id="acme",
                      team_id="team_a", user_id="user_a", role="developer", allowed_models=["gpt-4o"],
                      enabled=True, metadata={"owner": "ann"}, created_at=_AT, tags=["ci"], rpm_limit=10,
                      tpm_limit=1000, max_budget_nano_usd=5 * 10**9, budget_period="daily")],
    "providers": [dict(name="oai", type="openai", api_base="http://127.0.0.1:9/v1", options={}, headers={},
                       max_connections=5, allow_caller_credentials=False, created_at=_AT, updated_at=_AT,
                       rpm=7, tpm=700)],
    "usage_records": [dict(request_id=f"req_{days}", entry_id=f"req_{days}", tenant_id="acme",
                           key_id="key_a", team_id="team_a", user_id="user_a", model="gpt-4o", provider="oai",
                           status=200, prompt_tokens=3,
                           completion_tokens=4, cost_nano_usd=1234, latency_ms=9, metadata={},
                           created_at=_AT - timedelta(days=days, hours=1), tags=["ci"],
                           deployment="oai/gpt-4o")
                      for days in _LEDGER_AGES],
    "audit_log": [dict(tenant_id="acme", at=_AT, actor="master", actor_role="platform_admin",
                       action="key.create", resource_type="key", resource_id="key_a", after={"name": "ci"})],
    "request_bodies": [dict(request_id="req_0", created_at=_AT - timedelta(hours=1), tenant_id="acme",
                            request='{"q": "hello"}', response='{"a": "hi"}', request_headers={},
                            truncated=False)],
}


def _write_old_rows(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    schema.reflect(conn)
    for name, rows in _OLD_ROWS.items():
        if name in schema.tables:
            table = schema.tables[name]
            conn.execute(sa.insert(table), [{k: v for k, v in row.items() if k in table.c} for row in rows])


@pytest.mark.parametrize("revision", ["0009", "0010", "0018", "0024", "0027", "0041", "0042"])
async def test_a_database_of_an_older_revision_upgrades_with_its_rows(fresh_url: str, revision: str) -> None:
    """A database an older Switchboard made and filled (0009: before the ledger was partitioned)
    is brought to head at start, its rows kept and read by the stores as before."""
    if (db_file := sqlite_path(fresh_url)) is not None:
        db_file.parent.mkdir(parents=True)
    engine = create_engine(fresh_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), revision))
            await conn.run_sync(_write_old_rows)
    finally:
        await engine.dispose()
    stores = await open_at(fresh_url, None)  # as serve does: migrations applied, then the stores
    try:
        assert stores.revision == head()
        key = await stores.keys.get("acme", "key_a")
        assert key is not None and (key.name, key.team_id, key.tags, key.metadata, key.lineage) == (
            "ci", "team_a", ("ci",), {"owner": "ann"}, "key_a")
        assert (key.rpm_limit, key.tpm_limit, key.enabled, key.blocked) == (10, 1000, True, False)
        # Issued before keys had a check (0029): counted, so made-up keys are still looked up.
        assert not key.checked and await stores.keys.count_unchecked(datetime.now(UTC)) == 1
        tenant = await stores.tenancy.get_tenant("acme")
        team = await stores.tenancy.get_team("acme", "team_a")
        assert tenant is not None and (tenant.name, tenant.allowed_regions) == ("Acme", ["eu"])
        assert team is not None and team.name == "Team A"
        user = await stores.tenancy.get_user("acme", "user_a")
        assert user is not None and user.email == "ann@example.com"
        provider = await stores.providers.get_provider("oai")
        assert provider is not None and (provider.api_base, provider.rpm, provider.tpm) == (
            "http://127.0.0.1:9/v1", 7, 700)
        for days in _LEDGER_AGES:
            record = await stores.ledger.get("acme", f"req_{days}")
            assert record is not None, days
            assert (record.cost_usd, record.created_at, record.deployment) == (
                Decimal("0.000001234"), _AT - timedelta(days=days, hours=1), "oai/gpt-4o")
        newest_first = await stores.ledger.recent("acme")
        assert [r.request_id for r in newest_first] == [f"req_{days}" for days in _LEDGER_AGES]
        # Keyed by their request id as before (0042): a replay of one is stored once, and a
        # request sharing another's id and start is a record of its own.
        assert [r.entry_id for r in newest_first] == [f"req_{days}" for days in _LEDGER_AGES]
        for record in newest_first:
            await stores.ledger.append_rows([usage_row(replace(record, status=500))])
            await stores.ledger.append_rows([usage_row(replace(record, entry_id="other"))], fresh=True)
        again = await stores.ledger.recent("acme")
        assert len(again) == 2 * len(_LEDGER_AGES)
        assert sorted(r.status for r in again) == [200] * 2 * len(_LEDGER_AGES)
        entries = await stores.audit.query("acme", AuditQuery(resource_id="key_a"))
        assert [(e.action, e.after) for e in entries] == [("key.create", {"name": "ci"})]
        assert stores.request_log is not None
        body = await stores.request_log.get("acme", "req_0")
        if revision >= "0010":  # the request log's bodies exist from 0010 on
            assert body is not None and (body.request, body.response) == ('{"q": "hello"}', '{"a": "hi"}')
            # Keyed by its request id as its log id (0043): a replay is stored once, another
            # request's body under the same request id and time is kept, and the old records
            # (the one above sharing req_0's id and time too) show the old body only.
            assert body.log_id == "req_0"
            await stores.request_log.append([replace(body, request="again"), replace(body, log_id="new")])
            assert await stores.request_log.get("acme", "req_0") == body
            assert await stores.request_log.get("acme", "new") == replace(body, log_id="new")
            assert stores.log_search is not None
            page = await stores.log_search.search("acme", LogQuery(request_id="req_0", include_bodies=True))
            assert {e.body.request if e.body else None for e in page.entries} == {'{"q": "hello"}'}
    finally:
        await stores.close()


def _drop_apis_deprecated_at(conn: sa.Connection) -> None:
    """The ``apis`` table as the first release of 0017 made it: without ``deprecated_at``."""
    with Operations.context(MigrationContext.configure(conn)) as ops, ops.batch_alter_table("apis") as batch:
        batch.drop_column("deprecated_at")


async def test_a_database_upgraded_with_the_first_0017_gets_apis_deprecated_at(fresh_url: str) -> None:
    """0017 gained ``deprecated_at`` after it shipped; the upgrade adds it where it is missing
    (0035), keeps the APIs stored, and the published-API store reads and writes them again."""
    if (db_file := sqlite_path(fresh_url)) is not None:
        db_file.parent.mkdir(parents=True)
    engine = create_engine(fresh_url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0017"))
            await conn.run_sync(_drop_apis_deprecated_at)
            await conn.execute(sa.text(
                "INSERT INTO apis (tenant_id, name, prompt, status, require_approval, created_at, updated_at)"
                " VALUES ('default', 'old', 'greeter', 'deprecated', false, :at, :at)"), {"at": now})
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0029"))
            columns = await conn.run_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("apis")})
            assert "deprecated_at" not in columns  # the state the repair is for
    finally:
        await engine.dispose()
    stores = await open_at(fresh_url, None)  # as serve does: migrations applied, then the stores
    try:
        assert stores.revision == head()
        assert stores.apis is not None
        old = await stores.apis.get("default", "old")
        assert old is not None
        assert (old.status, old.deprecated_at, old.updated_at) == ("deprecated", None, now)
        await stores.apis.update(replace(old, deprecated_at=now))
        await stores.apis.create(ApiRecord(tenant_id="default", name="new", prompt="g", deprecated_at=now))
        listed = await stores.apis.list_apis("default")
        assert [(a.name, a.deprecated_at) for a in listed] == [("new", now), ("old", now)]
    finally:
        await stores.close()
    # Opening again is a no-op: the column is there, so 0035 leaves it be.
    assert (await schema(fresh_url))[1] == [head()]


async def test_a_downgrade_past_0042_keeps_one_of_the_records_sharing_a_key_of_0041(fresh_url: str) -> None:
    """At head two records may share a request id and time (their entry ids differ); going back
    to 0041, whose key is (request_id, created_at), keeps one of them (the smallest entry id),
    and upgrading again works."""
    stores = await open_at(fresh_url, None)
    try:
        at = datetime(2026, 6, 1, 12, 0, 0, 250000, UTC)
        await stores.ledger.append([UsageRecord(request_id="shared", tenant_id="acme", model=f"m{n}",
                                                created_at=at, entry_id=f"e-{n}") for n in (2, 1)])
        assert len(await stores.ledger.recent("acme")) == 2
    finally:
        await stores.close()
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0041"))
            kept = (await conn.execute(sa.text("SELECT request_id, model FROM usage_records"))).all()
            assert [tuple(row) for row in kept] == [("shared", "m1")]
    finally:
        await engine.dispose()
    stores = await open_at(fresh_url, None)
    try:
        assert [r.entry_id for r in await stores.ledger.recent("acme")] == ["shared"]
    finally:
        await stores.close()


async def test_a_downgrade_past_0043_keeps_one_of_the_bodies_sharing_a_key_of_0042(fresh_url: str) -> None:
    """At head two bodies may share a request id and time (their log ids differ); going back to
    0042, whose key is (request_id, created_at), keeps one of them (the smallest log id) and
    clears a log id that is only the request id again, and upgrading again works."""
    at = datetime(2026, 6, 1, 12, 0, 0, 250000, UTC)
    stores = await open_at(fresh_url, None)
    try:
        assert stores.request_log is not None
        await stores.request_log.append([RequestBody(request_id="shared", tenant_id="acme", created_at=at,
                                                     request=f"b{n}", log_id=f"log-{n}") for n in (2, 1)]
                                        + [RequestBody(request_id="old", tenant_id="acme", created_at=at)])
    finally:
        await stores.close()
    engine, _ = await open_database(fresh_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0042"))
            kept = (await conn.execute(sa.text(
                "SELECT request_id, request, log_id FROM request_bodies ORDER BY request_id"))).all()
            assert [tuple(row) for row in kept] == [("old", None, None), ("shared", "b1", "log-1")]
    finally:
        await engine.dispose()
    stores = await open_at(fresh_url, None)
    try:
        assert stores.request_log is not None
        found = [await stores.request_log.get("acme", log_id) for log_id in ("log-1", "log-2", "old")]
        assert [b.request if b else "missing" for b in found] == ["b1", "missing", None]
    finally:
        await stores.close()
