"""The MCP gateway end to end, with the official ``mcp`` SDK as the client and test servers written
with it (tests/mcp_servers.py): tools, resources and prompts of two servers through ``/mcp`` with
a virtual key; permissions; a down, a hanging and a malformed server; rate limits, budgets, the
request log and metrics; bad input from the client. Every test runs on the embedded default and
on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from switchboard.mcp.upstream import MAX_BACKOFF
from tests.e2e.test_metrics import parse, total
from tests.mcp_servers import McpUpstream, start_mcp_server, start_mcp_servers
from tests.otlp_receiver import OtlpReceiver
from tests.servers import MASTER_KEY, Gateway, ReservedPort, refused_port, reserve_port, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
RESTRICTED_TEAM = "mcp-restricted"
CUTTING_SECRET = "mcp-cutting-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, McpUpstream]]:
    started = start_mcp_servers({"notes": ("notes", "streamable-http"), "math": ("math", "streamable-http"),
                                 "malformed": ("malformed", "streamable-http"), "legacy": ("notes", "sse"),
                                 "cutting": ("cutting", "streamable-http"), "stray": ("stray", "sse"),
                                 "sse-errors": ("sse-errors", "sse"), "sse-cr": ("sse-cr", "sse"),
                                 "truthy": ("truthy", "streamable-http"), "truthy-json": ("truthy", "json")})
    yield started
    for server in started.values():
        server.process.stop()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def mcp_config(upstreams: dict[str, McpUpstream], phoenix: int, otlp: OtlpReceiver) -> dict[str, Any]:
    return {
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "mcp_servers": [
            {"name": "notes", "url": upstreams["notes"].url},
            # The same server with a short timeout, for a tool that hangs.
            {"name": "sluggish", "url": upstreams["notes"].url, "timeout_seconds": 2},
            {"name": "math", "url": upstreams["math"].url},
            {"name": "paid", "url": upstreams["math"].url, "price_per_call": 0.01,
             "tool_prices": {"multiply": 0.5}},
            {"name": "down", "url": f"http://127.0.0.1:{refused_port()}/mcp", "connect_timeout_seconds": 1},
            {"name": "bad", "url": upstreams["malformed"].url},
            {"name": "cutting", "url": upstreams["cutting"].url,
             "headers": {"Authorization": f"Bearer {CUTTING_SECRET}"}},
            {"name": "legacy", "url": upstreams["legacy"].url, "transport": "sse"},
            {"name": "stray", "url": upstreams["stray"].url, "transport": "sse"},
            {"name": "handmade", "url": upstreams["sse-errors"].url, "transport": "sse",
             "timeout_seconds": 5},
            {"name": "carriage", "url": upstreams["sse-cr"].url, "transport": "sse", "timeout_seconds": 5},
            {"name": "truthy", "url": upstreams["truthy"].url},
            {"name": "truthyjson", "url": upstreams["truthy-json"].url},
            {"name": "secret", "url": upstreams["math"].url, "tenant": "tenant-b"},
            {"name": "narrow", "url": upstreams["notes"].url, "max_concurrency": 1, "timeout_seconds": 2},
            # Nothing listens here until a test starts a server: down, then back.
            {"name": "phoenix", "url": f"http://127.0.0.1:{phoenix}/mcp", "health_check_seconds": 1},
        ],
        "mcp": {
            "list_timeout_seconds": 3,
            "max_argument_bytes": 2048,
            "max_result_bytes": 65536,
            "max_description_chars": 100,
            "permissions": {"teams": {RESTRICTED_TEAM: {"deny": ["notes__delete_*"]}},
                            "roles": {"viewer": {"allow": ["*__read_note"]}}},
        },
        "limits": {"models": {"math__multiply": {"rpm": 3}}},
        # The tenants' own servers (registered in a test) run on this host too.
        "egress": {"allow_tenant_private_networks": True},
        "spend": {"flush_seconds": 0.1},
        "request_log": {"bodies": [{"model": "notes__*"}, {"model": "cutting__leaky_result"}]},
        "metrics": {},
        "tracing": {"enabled": True, "endpoint": otlp.url, "export_interval_seconds": 0.1},
    }


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    # The port of the server that is down until a test starts it: held (connections refused,
    # nobody else binds it) until then.
    phoenix: ReservedPort

    @property
    def url(self) -> str:
        return self.gateway.url + "/mcp"

    def key(self, **body: Any) -> tuple[str, str]:
        """A new virtual key (its secret and id)."""
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": ["*"], **body}, headers=ADMIN,
                          timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"]), str(resp.json()["id"])

    def records(self, key_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The key's request-log records, once ``count`` of them are written."""
        deadline = time.monotonic() + timeout
        while True:
            resp = httpx.get(f"{self.gateway.url}/admin/v1/logs", params={"key": key_id, "limit": 100},
                             headers=ADMIN, timeout=10)
            assert resp.status_code == 200, resp.text
            data: list[dict[str, Any]] = resp.json()["data"]
            if len(data) >= count:
                return data
            assert time.monotonic() < deadline, f"only {len(data)} records of {count}"
            time.sleep(0.1)

    def bodies(self, key_id: str, timeout: float = 20) -> list[dict[str, Any]]:
        """The key's request-log records with their bodies, once one of them has its response."""
        deadline = time.monotonic() + timeout
        while True:
            resp = httpx.get(f"{self.gateway.url}/admin/v1/logs", headers=ADMIN, timeout=10,
                             params={"key": key_id, "limit": 100, "include_bodies": "true"})
            assert resp.status_code == 200, resp.text
            data: list[dict[str, Any]] = resp.json()["data"]
            if any(record.get("response") for record in data):
                return data
            assert time.monotonic() < deadline, "no body recorded"
            time.sleep(0.1)

    def post(self, body: Any, key: str = MASTER_KEY, raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.post(self.url, headers=headers, content=content, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, upstreams: dict[str, McpUpstream], otlp: OtlpReceiver,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    phoenix = reserve_port()
    config = mcp_config(upstreams, phoenix.port, otlp)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"mcp_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"mcp-{request.param}"))
    yield Deployment(request.param, gw, phoenix)
    gw.process.stop()
    phoenix.release()


@asynccontextmanager
async def session(deployment: Deployment, key: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(deployment.url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as client,
    ):
        await client.initialize()
        yield client


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def refusal(client: ClientSession, name: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as refused:
        await client.call_tool(name, arguments)
    return refused.value


async def refusal_of(call: asyncio.Task[Any]) -> MCPError:
    with pytest.raises(MCPError) as refused:
        await call
    return refused.value


async def holding_the_slot(client: ClientSession, tool: str, arguments: dict[str, Any],
                           probe: str) -> asyncio.Task[Any]:
    """A call of ``tool`` (its task) once it holds its server's only slot (``max_concurrency``
    1): a call of ``probe`` is then refused busy. Started again when the probe took the slot
    first (the call was refused busy itself)."""
    call: asyncio.Task[Any] | None = None
    deadline = time.monotonic() + 10
    while True:
        if call is None or call.done():
            if call is not None:
                assert (await refusal_of(call)).error.data["code"] == "mcp_server_busy"  # type: ignore[index]
            call = asyncio.create_task(client.call_tool(tool, arguments))
            await asyncio.sleep(0.05)
        try:
            await client.call_tool(probe, {"title": "welcome"})
        except MCPError as busy:
            assert busy.error.data["code"] == "mcp_server_busy"  # type: ignore[index]
            return call
        assert time.monotonic() < deadline, "the server never became busy"


# -- listing and calling ---------------------------------------------------------------------------


def test_a_virtual_key_lists_and_calls_tools_of_two_servers(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            listed = await client.list_tools()
            names = {t.name for t in listed.tools}
            assert {"notes__add_note", "notes__read_note", "math__add", "math__multiply"} <= names
            # Another tenant's server is not listed; a down and a malformed server are left out
            # with a notice, never failing the list.
            assert not any(n.startswith(("secret__", "down__", "bad__")) for n in names)
            notices = (listed.meta or {}).get("switchboard/notices", [])
            assert any(n.startswith("down:") for n in notices), notices
            assert any(n.startswith("bad:") for n in notices), notices
            # Descriptions are untrusted text, cut to mcp.max_description_chars.
            add_note = next(t for t in listed.tools if t.name == "notes__add_note")
            assert add_note.description is not None and len(add_note.description) <= 101
            added = await client.call_tool("math__add", {"a": 2, "b": 40})
            assert added.structured_content == {"result": 42}
            saved = await client.call_tool("notes__add_note", {"title": "t1", "text": "from the gateway"})
            assert text_of(saved) == "saved t1"
            read = await client.call_tool("notes__read_note", {"title": "t1"})
            assert text_of(read) == "from the gateway"
            # A server on the older HTTP+SSE transport.
            assert "legacy__read_note" in names
            legacy = await client.call_tool("legacy__read_note", {"title": "welcome"})
            assert text_of(legacy) == "hello from notes"
            # A tool that fails upstream is the tool's own error result.
            broken = await client.call_tool("notes__broken", {})
            assert broken.is_error and "broken" in text_of(broken)

    run(scenario())


def test_resources_and_prompts_are_listed_read_and_got(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            resources = await client.list_resources()
            uris = {r.uri for r in resources.resources}
            assert "mcp://gateway/notes/note://welcome" in uris
            read = await client.read_resource("mcp://gateway/notes/note://welcome")
            assert read.contents[0].text == "hello from notes"  # type: ignore[union-attr]
            assert read.contents[0].uri == "mcp://gateway/notes/note://welcome"
            templates = await client.list_resource_templates()
            assert "mcp://gateway/notes/note://by-title/{title}" in {
                t.uri_template for t in templates.resource_templates}
            prompts = await client.list_prompts()
            assert "notes__summarize" in {p.name for p in prompts.prompts}
            got = await client.get_prompt("notes__summarize", {"title": "t9"})
            assert "t9" in got.messages[0].content.text  # type: ignore[union-attr]
            with pytest.raises(MCPError):
                await client.read_resource("mcp://gateway/secret/anything")
            with pytest.raises(MCPError):
                await client.get_prompt("secret__summarize", {})

    run(scenario())


def test_resources_a_tool_links_or_embeds_are_named_as_the_gateway_serves_them(
        deployment: Deployment) -> None:
    # A tool's resource_link (and embedded resource) names the server's resource: the client reads
    # it through the gateway, so its URI is the gateway's, as in resources/list.
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            result = await client.call_tool("notes__link", {})
            linked, embedded = result.content
            assert linked.uri == "mcp://gateway/notes/note://welcome"  # type: ignore[union-attr]
            assert embedded.resource.uri == "mcp://gateway/notes/note://welcome"  # type: ignore[union-attr]
            read = await client.read_resource(linked.uri)  # type: ignore[union-attr]
            assert read.contents[0].text == "hello from notes"  # type: ignore[union-attr]

    run(scenario())


def test_a_denied_tool_is_neither_listed_nor_callable(deployment: Deployment) -> None:
    # A team rule (config), a key's own lists and a team's (admin API), a role's (config).
    team_key, _ = deployment.key(team=RESTRICTED_TEAM)
    own_key, _ = deployment.key(mcp_tools={"allow": ["math__*"], "deny": ["math__multiply"]})
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/teams",
                      json={"name": "support", "mcp_tools": {"deny": ["math__*"]}}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    team = resp.json()
    assert team["mcp_tools"] == {"allow": None, "deny": ["math__*"]}
    support_key, _ = deployment.key(team=team["id"])
    viewer_key, _ = deployment.key(role="viewer")
    # Bad rules are refused (400): not lists, unknown fields, empty or overlong patterns.
    for bad in ({"allow": "math__*"}, {"deny": ["x"], "also": []}, {"deny": [""]}, {"allow": ["x" * 201]}):
        resp = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", json={"models": ["*"], "mcp_tools": bad},
                          headers=ADMIN, timeout=10)
        assert resp.status_code == 400, (bad, resp.text)
        resp = httpx.patch(f"{deployment.gateway.url}/admin/v1/teams/{team['id']}", json={"mcp_tools": bad},
                           headers=ADMIN, timeout=10)
        assert resp.status_code == 400, (bad, resp.text)

    async def scenario() -> None:
        async with session(deployment, team_key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "notes__delete_note" not in names and "notes__read_note" in names
            denied = await refusal(client, "notes__delete_note", {"title": "welcome"})
            assert denied.error.data["code"] == "mcp_tool_denied"  # type: ignore[index]
        async with session(deployment, own_key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"math__add"}
            for name in ("math__multiply", "notes__read_note"):
                denied = await refusal(client, name, {"a": 1, "b": 2})
                assert denied.error.data["code"] == "mcp_tool_denied"  # type: ignore[index]
            assert (await client.call_tool("math__add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        async with session(deployment, support_key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "notes__read_note" in names and not any(n.startswith("math__") for n in names)
            denied = await refusal(client, "math__add", {"a": 1, "b": 1})
            assert denied.error.data["code"] == "mcp_tool_denied"  # type: ignore[index]
        # The team's rule changes through the admin API: its keys follow.
        resp = httpx.patch(f"{deployment.gateway.url}/admin/v1/teams/{team['id']}",
                           json={"mcp_tools": {"deny": ["notes__*"]}}, headers=ADMIN, timeout=10)
        assert resp.status_code == 200, resp.text
        deadline = time.monotonic() + 10
        async with session(deployment, support_key) as client:
            while "math__add" not in {t.name for t in (await client.list_tools()).tools}:
                assert time.monotonic() < deadline, "the team's new rule never applied"
                await asyncio.sleep(0.1)
            assert (await client.call_tool("math__add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        async with session(deployment, viewer_key) as client:  # mcp.permissions.roles.viewer
            names = {t.name for t in (await client.list_tools()).tools}
            assert names and all(n.endswith("read_note") for n in names), names

    run(scenario())


def test_down_hanging_and_malformed_servers_fail_fast_and_alone(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            started = time.monotonic()
            down = await refusal(client, "down__anything", {})
            assert down.error.data["status"] in (502, 503)  # type: ignore[index]
            assert time.monotonic() - started < 10  # refused at once, not its 60 s call timeout
            bad = await refusal(client, "bad__anything", {})
            assert bad.error.data["code"] == "mcp_malformed_reply"  # type: ignore[index]
            # A hanging tool is bounded by its server's timeout (2 s); others answer meanwhile.
            hang = asyncio.create_task(refusal(client, "sluggish__hang", {}))
            await asyncio.sleep(0)
            assert (await client.call_tool("math__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            started = time.monotonic()
            hung = await hang
            assert hung.error.data["code"] == "upstream_timeout"  # type: ignore[index]
            assert time.monotonic() - started < 8
            assert (await client.call_tool("notes__read_note", {"title": "welcome"})).content

    run(scenario())


def test_a_tool_whose_reply_breaks_off_fails_alone(deployment: Deployment) -> None:
    """A reply cut mid-stream fails that call (``mcp_malformed_reply``, a documented code); it
    does not make the server down for everyone: its other tools still answer, its tools are
    still listed, however often a caller repeats the broken call."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for _ in range(3):
                cut = await refusal(client, "cutting__midclose", {})
                assert cut.error.code == -32002
                assert cut.error.data["code"] == "mcp_malformed_reply", cut.error  # type: ignore[index]
                assert "'cutting'" in cut.error.message
            assert text_of(await client.call_tool("cutting__echo", {})) == "echoed"
            listed = await client.list_tools()
            assert "cutting__echo" in {t.name for t in listed.tools}
            notices = (listed.meta or {}).get("switchboard/notices", [])
            assert not any(n.startswith("cutting:") for n in notices), notices

    run(scenario())


def test_requests_name_the_protocol_revision_the_server_negotiated(deployment: Deployment) -> None:
    """``cutting`` answers initialize with 2025-03-26: the requests after it name that revision in
    MCP-Protocol-Version, not the one the gateway asked for."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            assert text_of(await client.call_tool("cutting__protocol", {})) == "2025-03-26"

    run(scenario())


def test_a_servers_error_is_passed_on_alike_in_a_stream_and_as_json(deployment: Deployment) -> None:
    """A server's JSON-RPC error of id null (one it could not tie to a request) in an SSE answer
    is its error, passed on as the same error in a JSON answer is."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            refused = await refusal(client, "cutting__null_error", {})
            assert refused.error.code == -32003, refused.error
            assert "refused on the stream" in refused.error.message
            assert refused.error.data["code"] == "mcp_server_error"  # type: ignore[index]

    run(scenario())


def test_a_servers_error_whose_code_is_a_boolean_is_malformed(deployment: Deployment) -> None:
    """A JSON-RPC error's code is an integer: ``true`` (an int to Python) makes the reply
    malformed, not relayed as the caller's error code true."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            odd = await refusal(client, "cutting__bool_code", {})
            assert odd.error.data["code"] == "mcp_malformed_reply", odd.error  # type: ignore[index]
            assert odd.error.code != 1

    run(scenario())


def test_a_tool_result_whose_is_error_is_not_a_boolean_is_malformed(deployment: Deployment) -> None:
    """MCP's ``isError`` is a boolean: ``1`` is neither taken for a failure nor for a success."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            odd = await refusal(client, "cutting__odd_error", {})
            assert odd.error.data["code"] == "mcp_malformed_reply", odd.error  # type: ignore[index]
            assert "isError" in odd.error.message

    run(scenario())


def test_an_http_sse_servers_replies_to_no_request_are_ignored(deployment: Deployment) -> None:
    """``stray``'s event stream carries replies whose ids (an array, an object) name no request
    of the gateway's: they are ignored, the stream stays open and the calls get their answers."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            added = await client.call_tool("stray__add", {"a": 2, "b": 3})
            assert added.structured_content == {"result": 5}, added
            multiplied = await client.call_tool("stray__multiply", {"a": 2, "b": 3})
            assert multiplied.structured_content == {"result": 6}, multiplied

    run(scenario())


def test_an_http_sse_servers_error_of_id_null_fails_the_calls_waiting_on_it(deployment: Deployment) -> None:
    """A JSON-RPC error of id null on an HTTP+SSE server's event stream (one the server could not
    tie to a request) is the server's error for the call waiting on it, and for every call
    waiting when several do, rather than each waiting out timeout_seconds."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            refused = await refusal(client, "handmade__null_error", {})
            assert refused.error.code == -32003, refused.error
            assert "refused on the event stream" in refused.error.message
            assert refused.error.data["code"] == "mcp_server_error"  # type: ignore[index]
            waiting = asyncio.create_task(client.call_tool("handmade__wait", {}))
            both = await refusal(client, "handmade__null_error_all", {})
            assert both.error.code == -32003, both.error
            assert (await refusal_of(waiting)).error.code == -32003
            assert text_of(await client.call_tool("handmade__echo", {})) == "echoed"

    run(scenario())


def test_an_event_stream_whose_lines_end_in_a_bare_cr_is_read(deployment: Deployment) -> None:
    """The event-stream format ends a line in CRLF, LF or a bare CR: ``carriage``'s stream, all
    bare CRs, names its endpoint and carries its replies, as any other server's."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            assert text_of(await client.call_tool("carriage__echo", {})) == "echoed"
            assert (await refusal(client, "carriage__null_error", {})).error.code == -32003

    run(scenario())


def test_an_http_sse_server_naming_no_endpoint_times_out_on_connect_timeout_seconds(
        deployment: Deployment, upstreams: dict[str, McpUpstream]) -> None:
    """``silent``'s event stream never names its message endpoint: the call fails upstream_timeout
    after connect_timeout_seconds (1 s), the bound the message names, not timeout_seconds (60).
    A tenant's own server, so no other test's listing has put it down first."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 201, resp.text
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/mcp/servers", headers=ADMIN, timeout=10, json={
        "name": "silent", "url": upstreams["sse-errors"].url.replace("/sse", "/silent"), "transport": "sse",
        "tenant": tenant, "connect_timeout_seconds": 1, "timeout_seconds": 60, "health_check_seconds": 0})
    assert resp.status_code == 201, resp.text
    key, _ = deployment.key(tenant=tenant)

    async def scenario() -> None:
        async with session(deployment, key) as client:
            started = time.monotonic()
            late = await refusal(client, "silent__echo", {})
            assert late.error.data["code"] == "upstream_timeout", late.error  # type: ignore[index]
            assert "connect_timeout_seconds (1 s)" in late.error.message, late.error
            assert "60" not in late.error.message
            assert time.monotonic() - started < 30

    run(scenario())


def test_a_reply_of_id_true_answers_no_request(deployment: Deployment) -> None:
    """``true`` equals 1 to Python, yet is no id of the gateway's (integers): in an SSE answer, a
    stray reply of id true to initialize (request 1) is skipped for the real one, whose revision
    the later requests name; as the only (JSON) answer it is a malformed reply."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            assert text_of(await client.call_tool("truthy__protocol", {})) == "2025-03-26"
            odd = await refusal(client, "truthyjson__protocol", {})
            assert odd.error.data["code"] == "mcp_malformed_reply", odd.error  # type: ignore[index]

    run(scenario())


def test_a_server_error_echoing_its_credential_reaches_nobody(deployment: Deployment) -> None:
    """A server refusing a call with the credential it was sent (message and data) has it
    replaced by [redacted] before the error reaches the caller, the request log or a log line."""
    key, key_id = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            refused = await refusal(client, "cutting__leaky", {})
            assert refused.error.code == -32001
            assert "Incorrect credentials provided: Bearer [redacted]" in refused.error.message
            assert refused.error.data["upstream"] == {  # type: ignore[index]
                "received": "Bearer [redacted]", "tail": "[redacted]"}

    run(scenario())
    records = deployment.records(key_id, 1)
    assert CUTTING_SECRET[-14:] not in json.dumps(records) and "cutting__leaky" in json.dumps(records)
    assert CUTTING_SECRET[:14] not in deployment.gateway.process.output


def test_a_tool_error_result_echoing_its_credential_reaches_nobody(deployment: Deployment) -> None:
    """A tool reporting its failure as MCP does, in a result with ``isError`` (not a JSON-RPC
    error), quoting the credential it was sent: the credential is [redacted] there too, in the
    text and the structured content, before the result reaches the caller or the request log."""
    key, key_id = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            result = await client.call_tool("cutting__leaky_result", {})
            assert result.is_error
            assert text_of(result) == "the API refused Bearer [redacted]"
            assert result.structured_content == {"received": "Bearer [redacted]", "tail": "[redacted]"}

    run(scenario())
    records = deployment.bodies(key_id)
    assert "refused Bearer [redacted]" in json.dumps(records)
    assert CUTTING_SECRET[-14:] not in json.dumps(records)


def test_a_busy_server_fails_fast(deployment: Deployment) -> None:
    # narrow: max_concurrency 1; a second call while one is under way is refused at once.
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            assert (await client.call_tool("narrow__read_note", {"title": "welcome"})).content
            hang = await holding_the_slot(client, "narrow__hang", {}, "narrow__read_note")
            assert (await refusal_of(hang)).error.data["code"] == "upstream_timeout"  # type: ignore[index]
            assert (await client.call_tool("narrow__read_note", {"title": "welcome"})).content

    run(scenario())


def test_a_down_server_comes_back_after_a_success(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def names(client: ClientSession) -> tuple[set[str], list[str]]:
        listed = await client.list_tools()
        return {t.name for t in listed.tools}, list((listed.meta or {}).get("switchboard/notices", []))

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for _ in range(3):  # down after failures: left out, the others listed
                tools, notices = await names(client)
                assert "math__add" in tools and not any(t.startswith("phoenix__") for t in tools)
                assert any(n.startswith("phoenix:") for n in notices)
            server = start_mcp_server("math", port=deployment.phoenix.release())
            try:
                # The next retry of a down server comes after its backoff, which doubles up to
                # MAX_BACKOFF while it stays down: how long depends on how long this module's
                # gateway has been running, so wait for up to one whole backoff and some.
                deadline = time.monotonic() + MAX_BACKOFF + 30
                while "phoenix__add" not in (await names(client))[0]:
                    assert time.monotonic() < deadline, "the server never came back"
                    await asyncio.sleep(0.2)
                added = await client.call_tool("phoenix__add", {"a": 20, "b": 22})
                assert added.structured_content == {"result": 42}
            finally:
                server.process.stop()

    run(scenario())


def test_a_server_whose_connection_is_never_accepted_is_unreachable_and_goes_down(
        deployment: Deployment) -> None:
    """A server whose port takes no connection (its listen queue full: the connect hangs) fails
    after its connect_timeout_seconds as unreachable, naming the connect timeout, not as a slow
    answer; counted as any failure to reach it, so it is soon down and refused at once."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 201, resp.text
    with socket.socket() as mute, socket.socket() as filler:
        mute.bind(("127.0.0.1", 0))
        mute.listen(0)  # never accepted: once the queue holds one connection, connects hang
        filler.connect(mute.getsockname())
        resp = httpx.post(f"{deployment.gateway.url}/admin/v1/mcp/servers", headers=ADMIN, timeout=10, json={
            "name": "mute", "url": f"http://127.0.0.1:{mute.getsockname()[1]}/mcp", "tenant": tenant,
            "connect_timeout_seconds": 1, "health_check_seconds": 0})
        assert resp.status_code == 201, resp.text
        key, _ = deployment.key(tenant=tenant)

        async def scenario() -> None:
            async with session(deployment, key) as client:
                for _ in range(2):
                    failed = await refusal(client, "mute__anything", {})
                    assert failed.error.data["code"] == "upstream_unreachable", failed.error  # type: ignore[index]
                    assert "connect_timeout_seconds" in failed.error.message, failed.error
                started = time.monotonic()
                down = await refusal(client, "mute__anything", {})
                assert down.error.data["code"] == "mcp_server_unavailable", down.error  # type: ignore[index]
                assert time.monotonic() - started < 0.9  # refused at once, no connect attempted

        run(scenario())


def test_a_tenants_own_server_serves_that_tenant_only(deployment: Deployment) -> None:
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": "tenant-b"}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code in (201, 409), resp.text
    key, _ = deployment.key(tenant="tenant-b")

    async def scenario() -> None:
        async with session(deployment, key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"secret__add", "math__add"} <= names  # its own server and the global ones
            added = await client.call_tool("secret__add", {"a": 1, "b": 2})
            assert added.structured_content == {"result": 3}

    run(scenario())


def test_two_tenants_servers_of_one_name_keep_their_own_tools(deployment: Deployment,
                                                                upstreams: dict[str, McpUpstream]) -> None:
    """Each tenant registers a server named ``srv`` (notes for one, math for the other): each
    lists and calls its own server's tools, whichever listed first (the tool lists are cached)."""
    first, second = (f"t-{uuid.uuid4().hex[:8]}" for _ in range(2))
    keys = {}
    for tenant, server in ((first, "notes"), (second, "math")):
        resp = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN,
                          timeout=10)
        assert resp.status_code == 201, resp.text
        resp = httpx.post(f"{deployment.gateway.url}/admin/v1/mcp/servers", headers=ADMIN, timeout=10,
                          json={"name": "srv", "url": upstreams[server].url, "tenant": tenant})
        assert resp.status_code == 201, resp.text
        keys[tenant], _ = deployment.key(tenant=tenant)

    async def listed(tenant: str) -> set[str]:
        async with session(deployment, keys[tenant]) as client:
            return {t.name for t in (await client.list_tools()).tools if t.name.startswith("srv__")}

    async def scenario() -> None:
        assert "srv__add_note" in await listed(first)
        assert await listed(second) == {"srv__add", "srv__multiply"}
        assert "srv__multiply" not in await listed(first)
        async with session(deployment, keys[second]) as client:
            added = await client.call_tool("srv__add", {"a": 1, "b": 2})
            assert added.structured_content == {"result": 3}
            refused = await refusal(client, "srv__read_note", {"title": "welcome"})
            assert "no such tool" in refused.error.message

    run(scenario())


def test_a_call_under_way_finishes_when_its_stored_server_is_changed(
        deployment: Deployment, upstreams: dict[str, McpUpstream]) -> None:
    """A stored server changed (here its description) while one of its tools runs: the instance
    takes the new settings for the calls after it, and the call under way gets its answer, as a
    request under way keeps its provider's client when the provider changes."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 201, resp.text
    servers = f"{deployment.gateway.url}/admin/v1/mcp/servers"
    resp = httpx.post(servers, headers=ADMIN, timeout=10, json={
        "name": "srv", "url": upstreams["notes"].url, "tenant": tenant, "max_concurrency": 1})
    assert resp.status_code == 201, resp.text
    key, _ = deployment.key(tenant=tenant)

    async def scenario() -> None:
        async with session(deployment, key) as client:
            hang = await holding_the_slot(client, "srv__hang", {"seconds": 3}, "srv__read_note")
            changed = await asyncio.to_thread(
                httpx.patch, f"{servers}/srv", params={"tenant": tenant}, headers=ADMIN, timeout=10,
                json={"description": "changed while a call runs"})
            assert changed.status_code == 200, changed.text
            assert text_of(await hang) == "late"
            assert text_of(await client.call_tool("srv__read_note", {"title": "welcome"}))

    run(scenario())


# -- bad input -------------------------------------------------------------------------------------


def test_bad_tool_calls_get_clear_mcp_errors(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            unknown = await refusal(client, "math__subtract", {"a": 1})
            assert unknown.error.code == -32602
            assert unknown.error.data["code"] == "mcp_unknown_tool"  # type: ignore[index]
            nameless = await refusal(client, "no_separator", {})
            assert nameless.error.data["code"] == "mcp_unknown_tool"  # type: ignore[index]
            # Another tenant's server is indistinguishable from no server at all.
            other = await refusal(client, "secret__add", {"a": 1, "b": 2})
            assert other.error.data["code"] == "mcp_unknown_tool"  # type: ignore[index]
            invalid = await refusal(client, "math__add", {"a": "one", "b": 2})
            assert invalid.error.code == -32602
            assert invalid.error.data["code"] == "mcp_invalid_arguments"  # type: ignore[index]
            assert "a" in invalid.error.message
            big = await refusal(client, "notes__add_note", {"title": "x", "text": "y" * 5000})
            assert big.error.data["code"] == "mcp_arguments_too_large"  # type: ignore[index]
            huge = await refusal(client, "notes__big", {"size": 200_000})
            assert huge.error.data["code"] == "mcp_result_too_large"  # type: ignore[index]
            # The server's configured name (never its host) and the configured bound.
            assert huge.error.message == (
                "the MCP server 'notes' sent a reply larger than 65536 bytes (mcp.max_result_bytes)")
            assert (await client.call_tool("notes__big", {"size": 100})).content

    run(scenario())


def test_malformed_json_rpc_from_the_client(deployment: Deployment) -> None:
    parse_error = deployment.post(None, raw=b"{not json")
    assert parse_error.status_code == 400 and parse_error.json()["error"]["code"] == -32700
    batch = deployment.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
    no_version = deployment.post({"id": 1, "method": "ping"})
    assert (no_version.json()["id"], no_version.json()["error"]["code"]) == (1, -32600)
    old_version = deployment.post({"jsonrpc": "1.0", "id": "v", "method": "ping"})
    assert (old_version.status_code, old_version.json()["id"], old_version.json()["error"]["code"]) == (
        400, "v", -32600)
    bad_id = deployment.post({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"})
    assert bad_id.json()["error"]["code"] == -32600
    bad_params = deployment.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]})
    assert bad_params.json()["error"]["code"] == -32602
    # An error in a message whose id could be read answers that id (null only when it cannot).
    known = deployment.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": [1]})
    assert (known.status_code, known.json()["id"], known.json()["error"]["code"]) == (400, 7, -32602)
    no_method = deployment.post({"jsonrpc": "2.0", "id": "m", "method": ""})
    assert (no_method.json()["id"], no_method.json()["error"]["code"]) == ("m", -32600)
    assert deployment.post({"jsonrpc": "2.0", "id": 5}).json()["id"] == 5
    assert bad_id.json()["id"] is None
    # Integer ids of any size (JSON-RPC allows any number) are answered exactly as written.
    for wide in (b"123456789012345678901234567890", b"-9223372036854775809", b"18446744073709551615"):
        answered = deployment.post(None, raw=b'{"jsonrpc": "2.0", "id": ' + wide + b', "method": "ping"}')
        assert answered.status_code == 200
        assert answered.content == b'{"jsonrpc":"2.0","id":' + wide + b',"result":{}}'
    call = (b'{"jsonrpc":"2.0","id":99999999999999999999999,"method":"tools/call",'
            b'"params":{"name":"math__add","arguments":{"a":1,"b":2}}}')
    added = deployment.post(None, raw=call)
    assert b'"id":99999999999999999999999,' in added.content
    assert added.json()["result"]["structuredContent"] == {"result": 3}
    fraction = deployment.post(None, raw=b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}')
    assert fraction.json()["error"]["code"] == -32600
    unknown = deployment.post({"jsonrpc": "2.0", "id": 7, "method": "no/such"})
    assert unknown.status_code == 200
    assert unknown.json() == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32601, "message": "method not found: no/such",
        "data": {"status": 404, "type": "not_found_error", "code": "method_not_found"}}}
    # A progress token neither a string nor an integer is the client's error, never sent on (the
    # server's refusal would be recorded as a 502 of the server).
    for token in ([1], {"t": 1}, True, 1.5, 2**64, -(2**63) - 1):
        tokened = deployment.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "math__add", "arguments": {"a": 1, "b": 2}, "_meta": {"progressToken": token}}})
        assert tokened.json()["id"] == 9 and tokened.json()["error"]["code"] == -32602, tokened.text
        assert tokened.json()["error"]["data"] == {"status": 400, "type": "invalid_request_error",
                                                  "code": "invalid_params"}, tokened.text
    nameless = deployment.post({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {}})
    assert nameless.json()["error"]["code"] == -32602
    assert nameless.json()["error"]["data"]["code"] == "invalid_params"  # data carries the gateway's code
    ping = deployment.post({"jsonrpc": "2.0", "id": "p", "method": "ping"})
    assert ping.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}
    note = deployment.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note.status_code == 202 and note.content == b""
    # Unauthenticated: 401 with a JSON-RPC-shaped body; GET (no server stream) 405.
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    anonymous = httpx.post(deployment.url, json=listing, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["jsonrpc"] == "2.0" and anonymous.json()["error"]["code"] == -32001
    wrong = deployment.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key="sk-not-a-key")
    assert wrong.status_code == 401
    assert httpx.get(deployment.url, headers=ADMIN, timeout=10).status_code == 405


# -- control and records -------------------------------------------------------------------------------


def test_each_call_is_logged_metered_and_rate_limited(deployment: Deployment) -> None:
    # 5 a minute: the SDK lists the tools once (to check a result against its output schema),
    # which counts as the tool calls do.
    key, key_id = deployment.key(rpm_limit=5)
    before = parse(httpx.get(f"{deployment.gateway.url}/metrics", headers=ADMIN, timeout=10).text)

    async def scenario() -> MCPError:
        async with session(deployment, key) as client:
            await client.call_tool("notes__read_note", {"title": "welcome"})
            await client.call_tool("math__add", {"a": 1, "b": 2})
            await client.call_tool("math__add", {"a": 3, "b": 4})
            await client.call_tool("math__add", {"a": 5, "b": 6})
            return await refusal(client, "math__add", {"a": 7, "b": 8})

    limited = run(scenario())
    assert limited.error.code == -32029
    data = limited.error.data
    assert data["status"] == 429 and data["code"] == "rate_limit_exceeded"  # type: ignore[index]
    records = deployment.records(key_id, 5)
    by_model = sorted((r["model"], r["status"]) for r in records)
    assert by_model == [("math__add", 200)] * 3 + [("math__add", 429), ("notes__read_note", 200)]
    note = next(r for r in records if r["model"] == "notes__read_note")
    assert note["provider"] == "mcp" and note["metadata"]["operation"] == "mcp"
    assert isinstance(note["latency_ms"], int)
    # Arguments and results are kept as request-log bodies (request_log.bodies: notes__*).
    deadline = time.monotonic() + 10
    while True:  # the bodies are written behind the record
        found = httpx.get(f"{deployment.gateway.url}/admin/v1/logs",
                          params={"request_id": note["request_id"]}, headers=ADMIN, timeout=10)
        logged = found.json()["data"][0]
        if logged.get("request") is not None:
            break
        assert time.monotonic() < deadline, "the bodies never reached the request log"
        time.sleep(0.1)
    assert "welcome" in logged["request"] and "hello from notes" in logged["response"]

    def counted() -> bool:
        after = parse(httpx.get(f"{deployment.gateway.url}/metrics", headers=ADMIN, timeout=10).text)
        calls = total(after, "switchboard_requests_total", operation="mcp") - total(
            before, "switchboard_requests_total", operation="mcp")
        limited = total(after, "switchboard_requests_total", operation="mcp", status="429") - total(
            before, "switchboard_requests_total", operation="mcp", status="429")
        return calls >= 5 and limited >= 1

    deadline = time.monotonic() + 10
    while not counted():
        assert time.monotonic() < deadline, "tool calls never reached the metrics"
        time.sleep(0.1)


def test_every_method_that_reaches_the_servers_counts_against_the_rate_limit(deployment: Deployment) -> None:
    """Lists, resources/read and prompts/get are one request each against the key's rpm, as a tool
    call is; initialize, ping and a malformed request (refused before any server) are not."""
    key, _ = deployment.key(rpm_limit=3)
    counted = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "mcp://gateway/notes/note://welcome"}},
        {"jsonrpc": "2.0", "id": 3, "method": "prompts/get",
         "params": {"name": "notes__summarize", "arguments": {"title": "welcome"}}},
    ]
    for message in counted:
        resp = deployment.post(message, key=key)
        assert resp.status_code == 200 and "result" in resp.json(), resp.text
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    free = [{"jsonrpc": "2.0", "id": "i", "method": "initialize", "params": hello},
            {"jsonrpc": "2.0", "id": "p", "method": "ping"},
            {"jsonrpc": "2.0", "id": "bad", "method": "prompts/get", "params": {}}]
    methods = [("tools/list", {}), ("resources/list", {}), ("resources/templates/list", {}),
               ("prompts/list", {}), ("resources/read", {"uri": "mcp://gateway/notes/note://welcome"}),
               ("prompts/get", {"name": "notes__summarize", "arguments": {"title": "welcome"}}),
               ("tools/call", {"name": "math__add", "arguments": {"a": 1, "b": 2}})]
    refused = [{"jsonrpc": "2.0", "id": n, "method": method, "params": params}
               for n, (method, params) in enumerate(methods, start=10)]
    for message in [*free, *refused]:
        answer = deployment.post(message, key=key).json()
        assert answer["id"] == message["id"], answer
        if message in refused:
            assert answer["error"]["code"] == -32029, answer
            assert answer["error"]["data"]["code"] == "rate_limit_exceeded"
        elif message["id"] == "bad":
            assert answer["error"]["data"]["code"] == "invalid_params"
        else:
            assert "result" in answer, answer


def test_a_per_tool_rate_limit(deployment: Deployment) -> None:
    # limits.models["math__multiply"]: 3 per minute for everyone, whatever the key.
    key, _ = deployment.key()

    async def scenario() -> list[bool]:
        out = []
        async with session(deployment, key) as client:
            for _ in range(5):
                try:
                    await client.call_tool("math__multiply", {"a": 2, "b": 3})
                    out.append(True)
                except MCPError as refused:
                    assert refused.error.data["code"] == "rate_limit_exceeded"  # type: ignore[index]
                    out.append(False)
            assert (await client.call_tool("math__add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        return out

    answered = run(scenario())
    assert answered.count(True) <= 3 and answered[-1] is False


def test_a_budget_with_a_per_call_price_stops_calls_when_spent(deployment: Deployment) -> None:
    key, key_id = deployment.key(max_budget_usd="0.03")

    async def scenario() -> MCPError:
        async with session(deployment, key) as client:
            for a in range(3):
                paid = await client.call_tool("paid__add", {"a": a, "b": 1})
                assert paid.structured_content == {"result": a + 1}
            return await refusal(client, "paid__add", {"a": 9, "b": 9})

    spent = run(scenario())
    assert spent.error.data["code"] == "budget_exceeded"  # type: ignore[index]
    records = deployment.records(key_id, 4)
    paid = [r for r in records if r["status"] == 200]
    assert len(paid) == 3 and all(Decimal(r["cost_usd"]) == Decimal("0.01") for r in paid)



def test_a_tool_calls_price_is_counted_in_the_cost_metric(deployment: Deployment) -> None:
    """The cost counter adds up to the ledger: a priced tool call's cost is in it."""
    key, key_id = deployment.key()

    def cost() -> float:
        scraped = parse(httpx.get(f"{deployment.gateway.url}/metrics", headers=ADMIN, timeout=10).text)
        return total(scraped, "switchboard_cost_usd_total", operation="mcp")

    before = cost()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for a in range(2):
                answer = await client.call_tool("paid__add", {"a": a, "b": 1})
                assert answer.structured_content == {"result": a + 1}

    run(scenario())
    records = deployment.records(key_id, 2)
    assert sum(Decimal(r["cost_usd"]) for r in records) == Decimal("0.02")
    deadline = time.monotonic() + 10
    while (counted := cost() - before) < 0.02 - 1e-9:  # counted once each response is written
        assert time.monotonic() < deadline, f"the tool calls' cost never reached the metrics ({counted})"
        time.sleep(0.1)
    assert counted == pytest.approx(0.02)


def test_a_tool_call_is_traced_like_a_model_call(deployment: Deployment, otlp: OtlpReceiver) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "paid__multiply", "arguments": {"a": 6, "b": 7}}}
    headers = {**ADMIN, "traceparent": f"00-{trace_id}-{parent}-01",
               "Accept": "application/json, text/event-stream"}
    resp = httpx.post(deployment.url, json=call, timeout=30, headers=headers)
    assert resp.status_code == 200 and resp.json()["result"]["structuredContent"] == {"result": 42}
    spans = otlp.trace(trace_id, count=1)
    assert len(spans) == 1, spans
    span = spans[0]
    # The MCP conventions' server span of a tools/call: named by the method and the tool.
    assert (span.name, span.kind, span.parent_span_id) == ("tools/call paid__multiply", "server", parent)
    assert span.attributes["mcp.method.name"] == "tools/call"
    assert span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert span.attributes["gen_ai.tool.name"] == "paid__multiply"
    assert span.attributes["jsonrpc.request.id"] == "3"
    assert "gen_ai.request.model" not in span.attributes
    assert span.attributes["switchboard.cost_usd"] == 0.5  # tool_prices.multiply

