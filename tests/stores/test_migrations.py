"""Migrations: applied on open, a no-op the second time, safe when several open at once, and a
schema newer than this version is refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from switchboard.stores import StoreError
from switchboard.stores.factory import open_at, open_database
from switchboard.stores.sql import tables
from switchboard.stores.sql.migrate import _config, head
from switchboard.stores.sql.urls import async_url
from tests.servers import free_port
from tests.services import Postgres

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return async_url(None, tmp_path / "data")
    return async_url(request.getfixturevalue("fresh_database_url"), tmp_path)


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
    url = async_url(f"postgresql://sb:hunter2-secret@127.0.0.1:{free_port()}/sb", Path("/unused"))
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await open_database(url)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert message.startswith("cannot open the database postgresql://sb:***@127.0.0.1:")
    assert "hunter2" not in message and "\n" not in message


async def test_unreachable_redis_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        await open_at(async_url(None, tmp_path), f"redis://:pw-secret@127.0.0.1:{free_port()}/0")
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
