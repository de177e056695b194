"""MCP servers whose replies start with a UTF-8 byte order mark (servers writing through a
BOM-emitting encoder) serve through the gateway's /mcp as any other, with the official ``mcp``
SDK as the client: the HTTP+SSE transport (whose event stream names the message endpoint in its
first event, after the mark), and the streamable-HTTP transport answering JSON or an event
stream. The mark is ignored as the providers' replies' is (RFC 8259, WHATWG)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_servers import McpUpstream, start_mcp_servers
from tests.servers import MASTER_KEY, Gateway, start_gateway

SERVERS = {"bomsse": "sse", "bomjson": "json", "bomstream": "streamable-http"}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, McpUpstream]]:
    started = start_mcp_servers({name: ("bom", transport) for name, transport in SERVERS.items()})
    yield started
    for server in started.values():
        server.process.stop()


@pytest.fixture(scope="module")
def gateway(upstreams: dict[str, McpUpstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    servers = [{"name": name, "url": upstreams[name].url, "connect_timeout_seconds": 5,
                **({"transport": "sse"} if transport == "sse" else {})}
               for name, transport in SERVERS.items()]
    config = {"auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"}, "mcp_servers": servers}
    tmp: Path = tmp_path_factory.mktemp("mcp-bom")
    gw = start_gateway(config, tmp)
    yield gw
    gw.process.stop()


def test_the_servers_really_send_a_byte_order_mark(upstreams: dict[str, McpUpstream]) -> None:
    with httpx.stream("GET", upstreams["bomsse"].url, timeout=10) as stream:
        first = next(stream.iter_raw())
    assert first.startswith(b"\xef\xbb\xbfevent: endpoint"), first


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_server_whose_replies_start_with_a_bom_serves(gateway: Gateway, server: str) -> None:
    async def scenario() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http,
            streamable_http_client(gateway.url + "/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as client,
        ):
            await client.initialize()
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {f"{server}__add", f"{server}__multiply"} <= tools, tools
            added = await client.call_tool(f"{server}__add", {"a": 2, "b": 3})
            assert not added.is_error, added
            assert added.structured_content == {"result": 5}

    asyncio.run(scenario())
