"""A stored MCP server's URL is sealed at rest with its headers (its path or query may be its
credential): the database row holds its origin only, the server serves end to end, a row
stored in clear before still loads, and ``switchboard secrets rotate`` seals it and re-seals the
others under the new secret, every server still serving. On the embedded default and on
PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.tables import mcp_servers
from tests import ledger
from tests.e2e.tenancy_world import Admin
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import (
    MASTER_KEY,
    SECRET_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    openai_config,
    spawn,
    start_gateway,
)

SERVERS = "/admin/v1/mcp/servers"
NEW_SECRET = "the-next-server-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def math_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("math")
    yield server
    server.process.stop()


@pytest.fixture(params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    config = openai_config(mock_upstream)
    if request.param == "cluster":
        config["database"] = {"url": request.getfixturevalue("postgres").create_database(
            f"mcpurl_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    return config, tmp_path


async def _rows(database: str) -> dict[str, dict[str, Any]]:
    """Every stored MCP server's row, by name, as the database holds it."""
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(mcp_servers))).all()
        return {r.name: {"config": r.config, "sealed": r.sealed} for r in rows}
    finally:
        await engine.dispose()


async def _store_in_clear(database: str, name: str, url: str) -> None:
    """The row as servers were stored before URLs were sealed: the whole URL in the settings."""
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(mcp_servers).where(mcp_servers.c.name == name)
                               .values(config={"url": url}, sealed=None))
    finally:
        await engine.dispose()


def _adds(gateway: Gateway, *servers: str) -> None:
    """Each server's ``add`` tool answers through the gateway's /mcp."""
    async def scenario() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http,
            streamable_http_client(gateway.url + "/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as client,
        ):
            await client.initialize()
            for server in servers:
                added = await client.call_tool(f"{server}__add", {"a": 2, "b": 3})
                assert not added.is_error, added
                assert added.structured_content == {"result": 5}, server

    asyncio.run(scenario())


def test_a_servers_url_is_sealed_at_rest_and_old_clear_rows_load_and_get_sealed(
        world: tuple[dict[str, Any], Path], math_server: McpUpstream) -> None:
    config, tmp = world
    database = ledger.database_of(config, tmp)
    token = "url-token-" + uuid.uuid4().hex
    url = f"{math_server.url}?token={token}"  # the credential a hosted server takes in its URL
    origin = f"http://127.0.0.1:{math_server.port}/…"
    gateway = start_gateway(config, tmp)
    try:
        admin = Admin(gateway.url)
        created = admin.ok("POST", SERVERS, {"name": "calc", "url": url}, status=201)
        assert created["url"] == origin
        admin.ok("POST", SERVERS, {"name": "legacy", "url": url, "description": "to be cleared"}, status=201)
        rows = asyncio.run(_rows(database))
        for name in ("calc", "legacy"):
            text = str(rows[name])
            assert token not in text and "/mcp" not in text, text
            assert rows[name]["config"]["url"] == origin and rows[name]["sealed"], rows[name]
        _adds(gateway, "calc", "legacy")
    finally:
        gateway.process.stop()

    # A row stored before URLs were sealed: loaded as it is, shown by its origin.
    asyncio.run(_store_in_clear(database, "legacy", url))
    gateway = start_gateway(config, tmp)
    try:
        assert Admin(gateway.url).ok("GET", f"{SERVERS}/legacy")["url"] == origin
        _adds(gateway, "calc", "legacy")
    finally:
        gateway.process.stop()
    assert token in str(asyncio.run(_rows(database))["legacy"])

    # `secrets rotate` re-seals the sealed one under the new secret and seals the clear one.
    both = {"SWITCHBOARD_SECRET_KEY": NEW_SECRET, "SWITCHBOARD_PREVIOUS_SECRET_KEYS": SECRET_KEY}
    proc = spawn(["secrets", "rotate", "--config", str(gateway.config_path)], env={
        "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"), **both})
    assert proc.wait_exit(60) == 0, proc.output
    assert "2 MCP server secret(s)" in proc.output, proc.output
    rows = asyncio.run(_rows(database))
    for name in ("calc", "legacy"):
        text = str(rows[name])
        assert token not in text and "/mcp" not in text, text
        assert rows[name]["config"]["url"] == origin, rows[name]
    # The new secret alone opens everything: both servers serve.
    gateway = start_gateway(config, tmp, env={"SWITCHBOARD_SECRET_KEY": NEW_SECRET})
    try:
        _adds(gateway, "calc", "legacy")
        legacy = Admin(gateway.url).ok("GET", f"{SERVERS}/legacy")
        assert (legacy["url"], legacy["description"]) == (origin, None)  # as the clear row had it
    finally:
        gateway.process.stop()
    assert token not in gateway.process.output
