"""The upstream client (mcp/upstream.py) and the toolbox against small in-process servers: SSE
answers, a session the server forgot, replies that are not JSON-RPC, per-user credentials that
need an authorization first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.config.schema import EgressConfig
from switchboard.context import Principal
from switchboard.errors import GatewayError
from switchboard.mcp.interfaces import AuthorizationRequired
from switchboard.mcp.registry import Registry
from switchboard.mcp.toolbox import McpToolbox
from switchboard.mcp.upstream import Upstream, identity
from switchboard.upstream.egress import EgressPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFIG = McpConfig()


class FakeServer:
    """A streamable-HTTP MCP server: answers as ``mode`` says, forgets sessions on demand."""

    def __init__(self) -> None:
        self.mode = "json"
        self.sessions: set[str] = set()
        self.seen: list[dict[str, Any]] = []  # (method, session id, authorization)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        message = await request.json()
        self.seen.append({"method": message.get("method"), "session": request.headers.get("mcp-session-id"),
                          "authorization": request.headers.get("authorization")})
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            sid = f"s{len(self.sessions) + 1}"
            self.sessions.add(sid)
            hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "f"}}
            body = {"jsonrpc": "2.0", "id": message["id"], "result": hello}
            return web.json_response(body, headers={"mcp-session-id": sid})
        if request.headers.get("mcp-session-id") not in self.sessions:
            return web.Response(status=404)
        if self.mode == "garbage":
            return web.json_response({"hello": "world"})
        if self.mode == "not-json":
            return web.Response(text="{oops", content_type="application/json")
        result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}},
                            {"name": "bad name!", "inputSchema": {}}]}
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        if self.mode == "sse":
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
            await response.write(b"event: message\ndata: " + json.dumps(progress).encode() + b"\n\n")
            await response.write(b"event: message\ndata: " + json.dumps(reply).encode() + b"\n\n")
            return response
        return web.json_response(reply)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeServer, str]]:
    server = FakeServer()
    app = web.Application()
    app.router.add_post("/mcp", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}/mcp"
    await runner.cleanup()


class PerUser:
    """Credentials of a per-user OAuth server: a token per user, none for ``nobody``."""

    async def headers(self, server: McpServerConfig, principal: Principal | None) -> dict[str, str]:
        if principal is None or principal.user_id == "nobody":
            raise AuthorizationRequired(server.name, f"https://gateway/mcp/oauth/{server.name}/start")
        return {"Authorization": f"Bearer token-of-{principal.user_id}"}


def user(name: str) -> Principal:
    return Principal(id=f"key-{name}", role="developer", tenant_id="t", user_id=name)


async def test_json_and_sse_answers_and_a_forgotten_session(fake: tuple[FakeServer, str]) -> None:
    server, url = fake
    upstream = Upstream(McpServerConfig(name="f", url=url, health_check_seconds=0), CONFIG, PerUser())
    try:
        result = await upstream.request("tools/list", None, user("ann"))
        assert [t["name"] for t in result["tools"]] == ["echo", "bad name!"]
        server.mode = "sse"  # notifications before the reply are skipped
        assert (await upstream.request("tools/list", None, user("ann")))["tools"][0]["name"] == "echo"
        server.sessions.clear()  # the server forgot the session: a new one, transparently
        assert (await upstream.request("tools/list", None, user("ann")))["tools"]
        methods = [s["method"] for s in server.seen]
        assert methods.count("initialize") == 2
        # Each user's operations carry their own token, in a session of their own.
        await upstream.request("tools/list", None, user("bob"))
        bob = [s for s in server.seen if s["authorization"] == "Bearer token-of-bob"]
        ann = [s for s in server.seen if s["authorization"] == "Bearer token-of-ann"]
        assert bob and ann and {s["session"] for s in bob}.isdisjoint({s["session"] for s in ann} - {None})
        assert identity({"Authorization": "a"}) != identity({"Authorization": "b"})
    finally:
        await upstream.close()


async def test_a_tenants_stored_server_reaches_public_addresses_only(fake: tuple[FakeServer, str]) -> None:
    """The default tenant's servers a platform admin registered (and the YAML's) are the
    operator's; another tenant's, and those a tenant admin of the default tenant registered, may
    not reach this machine, whether the URL names it (localhost) or its address (a stored literal)."""
    server, url = fake
    inward = url.replace("127.0.0.1", "localhost")
    registry = Registry([], CONFIG, PerUser(), EgressPolicy(EgressConfig()))
    own = McpServerConfig(name="own", url=url, tenant="default", health_check_seconds=0)
    delegated = McpServerConfig(name="delegated", url=inward, tenant="default", health_check_seconds=0)
    await registry.sync_stored({
        ("default", "own"): own,
        ("default", "delegated"): delegated,
        ("acme", "named"): McpServerConfig(name="named", url=inward, tenant="acme", health_check_seconds=0),
        ("acme", "literal"): McpServerConfig(name="literal", url=url, tenant="acme", health_check_seconds=0),
    }, {("default", "own"), ("acme", "named")})
    ann = Principal(id="key-ann", role="developer", tenant_id="acme", user_id="ann")
    mine = Principal(id="key-me", role="developer", tenant_id="default", user_id="me")
    try:
        found = registry.get("own", mine)
        assert found is not None and (await found.request("tools/list", None, mine))["tools"]
        seen = len(server.seen)
        for name, caller in (("named", ann), ("literal", ann), ("delegated", mine)):
            upstream = registry.get(name, caller)
            assert upstream is not None
            with pytest.raises(GatewayError) as refused:
                await upstream.request("tools/list", None, caller)
            assert (refused.value.status, refused.value.code) == (502, "upstream_address_refused")
            assert "egress.allowed_hosts" in refused.value.message
        assert len(server.seen) == seen  # nothing reached the server
        # The same rules for what is done on a server's behalf (its OAuth discovery and tokens).
        assert registry.egress_for(McpServerConfig(name="named", url=inward, tenant="acme")) is not None
        assert registry.egress_for(own) is None
        assert registry.egress_for(delegated) is not None
        # A platform admin points the delegated server elsewhere: from then on it is the operator's.
        await registry.sync_stored({("default", "delegated"): delegated}, {("default", "delegated")})
        moved = registry.get("delegated", mine)
        assert moved is not None and (await moved.request("tools/list", None, mine))["tools"]
        assert registry.egress_for(delegated) is None
    finally:
        await registry.close()
    yaml = McpServerConfig(name="yaml", url=url, tenant="acme", health_check_seconds=0)
    configured = Registry([yaml], CONFIG, PerUser(), EgressPolicy(EgressConfig()))
    assert configured.egress_for(yaml) is None  # the configuration file's: the operator's
    assert configured.egress_for(yaml.model_copy(update={"url": inward})) is not None  # not that one


@pytest.mark.parametrize("mode", ["garbage", "not-json"])
async def test_a_reply_that_is_not_json_rpc_is_a_clear_error(fake: tuple[FakeServer, str], mode: str) -> None:
    server, url = fake
    upstream = Upstream(McpServerConfig(name="f", url=url, health_check_seconds=0), CONFIG, PerUser())
    try:
        await upstream.request("ping", None, user("ann"))  # opens the session
        server.mode = mode
        with pytest.raises(GatewayError) as failed:
            await upstream.request("tools/list", None, user("ann"))
        assert failed.value.code == "mcp_malformed_reply" and failed.value.status == 502
    finally:
        await upstream.close()


async def test_a_user_without_authorization_is_told_where_to_start_it(fake: tuple[FakeServer, str]) -> None:
    _, url = fake
    servers = [McpServerConfig(name="f", url=url, health_check_seconds=0)]
    registry = Registry(servers, CONFIG, PerUser())
    toolbox = McpToolbox(CONFIG, registry)
    try:
        listed = await toolbox.list_tools(user("ann"))
        assert [t["name"] for t in listed.items] == ["f__echo"]  # a name outside the charset: left out
        nobody = await toolbox.list_tools(user("nobody"))
        assert nobody.items == [] and nobody.notices == [
            "f: needs your authorization: https://gateway/mcp/oauth/f/start"]
        with pytest.raises(GatewayError) as refused:
            await toolbox.call_tool(user("nobody"), "f__echo", {})
        assert refused.value.code == "mcp_authorization_required"
        assert refused.value.extra == {"authorize_url": "https://gateway/mcp/oauth/f/start"}  # type: ignore[attr-defined]
    finally:
        await registry.close()


async def test_the_gateways_own_tool_calls_run_the_stages(fake: tuple[FakeServer, str]) -> None:
    from switchboard.http.mcp.runner import ToolRunner
    from switchboard.mcp.stages import ToolCall, ToolCheckStage, ToolRecordStage, ToolStage
    from switchboard.pipeline.chain import build_chain

    server, url = fake
    config = McpConfig.model_validate({"permissions": {"roles": {"viewer": {"deny": ["*"]}}}})
    registry = Registry([McpServerConfig(name="f", url=url, health_check_seconds=0)], config, PerUser())
    toolbox = McpToolbox(config, registry)
    stages = [ToolStage(toolbox), ToolRecordStage(lambda: None), ToolCheckStage(toolbox)]
    toolbox.runner = ToolRunner(build_chain(stages, ToolCall(toolbox)), 30)
    try:
        result = await toolbox.call_tool(user("ann"), "f__echo", {})
        assert result["tools"][0]["name"] == "echo"  # the fake answers every request alike
        assert server.seen[-1]["method"] == "tools/call"
        viewer = Principal(id="k", role="viewer", tenant_id="t", user_id="ann")
        with pytest.raises(GatewayError) as denied:
            await toolbox.call_tool(viewer, "f__echo", {})
        assert denied.value.code == "mcp_tool_denied"
        with pytest.raises(GatewayError) as unknown:
            await toolbox.call_tool(user("ann"), "f__nope", {})
        assert unknown.value.code == "mcp_unknown_tool"
    finally:
        await registry.close()


class _Rows:
    """A ledger writer's spool: the rows the stage hands it."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def spool(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)


async def test_a_fault_in_a_tool_call_is_recorded_as_500_not_cancelled(fake: tuple[FakeServer, str]) -> None:
    from switchboard.http.mcp.runner import ToolRunner
    from switchboard.mcp.stages import ToolRecordStage, ToolStage
    from switchboard.pipeline.chain import build_chain

    async def broken(ctx: Any) -> Any:
        raise RuntimeError("a bug")

    _, url = fake
    config = McpConfig()
    registry = Registry([McpServerConfig(name="f", url=url, health_check_seconds=0)], config, PerUser())
    toolbox = McpToolbox(config, registry)
    spool = _Rows()
    toolbox.runner = ToolRunner(build_chain([ToolStage(toolbox), ToolRecordStage(lambda: spool)], broken), 30)
    try:
        with pytest.raises(RuntimeError):
            await toolbox.call_tool(user("ann"), "f__echo", {})
    finally:
        await registry.close()
    (row,) = spool.rows
    assert (row[7], row[21]) == (500, "internal_error")
