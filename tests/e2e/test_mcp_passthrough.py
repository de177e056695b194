"""Server-initiated requests (elicitation, sampling, roots) passed through ``/mcp`` to the client
that declared the capability on its session (docs/mcp.md, "Server-initiated requests"), with the
official ``mcp`` SDK as the client and a test server written with it (tests/mcp_servers.py
``asker``). Runs on the embedded default and on PostgreSQL + Redis with two gateway instances
(an answer POSTed to the other instance reaches the waiting server)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, Gateway, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
TIMEOUT = 3  # mcp.client_request_timeout_seconds of the test gateways
ASKER_SECRET = "mcp-asker-secret-0123456789abcdef"  # the header the gateway sends the server


@pytest.fixture(scope="module")
def asker() -> Iterator[McpUpstream]:
    server = start_mcp_server("asker")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def sse_asker() -> Iterator[McpUpstream]:
    """The same server over the older HTTP+SSE transport (its requests come on its event stream)."""
    server = start_mcp_server("asker", "sse")
    yield server
    server.process.stop()


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    other: Gateway  # another instance (cluster), else the same one
    redis_url: str | None = None  # the cluster's Redis

    def key(self) -> str:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                          timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, asker: McpUpstream, sse_asker: McpUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config: dict[str, Any] = {
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "mcp_servers": [{"name": "asker", "url": asker.url, "timeout_seconds": 30,
                         "headers": {"Authorization": f"Bearer {ASKER_SECRET}"}},
                        {"name": "old", "url": sse_asker.url, "transport": "sse", "timeout_seconds": 30}],
        "mcp": {"client_request_timeout_seconds": TIMEOUT, "max_client_answer_bytes": 2048,
                "max_pending_client_requests": 2},
    }
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"mcpask_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        first = start_gateway(config, tmp_path_factory.mktemp("mcpask-a"))
        second = start_gateway(config, tmp_path_factory.mktemp("mcpask-b"))
        yield Deployment(request.param, first, second, redis.url)
        second.process.stop()
        first.process.stop()
        return
    gw = start_gateway(config, tmp_path_factory.mktemp("mcpask"))
    yield Deployment(request.param, gw, gw)
    gw.process.stop()


@asynccontextmanager
async def session(deployment: Deployment, key: str, **callbacks: Any) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(deployment.gateway.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1], **callbacks) as client,
    ):
        await client.initialize()
        yield client


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def headers(key: str, session: str | None = None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream",
           "Content-Type": "application/json"}
    if session is not None:
        out["Mcp-Session-Id"] = session
    return out


def initialize(url: str, key: str, capabilities: dict[str, Any]) -> str:
    """A session opened over plain HTTP: its Mcp-Session-Id."""
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": capabilities,
                       "clientInfo": {"name": "t", "version": "1"}}}
    resp = httpx.post(url + "/mcp", headers=headers(key), json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.headers["mcp-session-id"]


def call(name: str, rid: int = 1, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}}}


def events(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in resp.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def tool_text(message: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in message["result"]["content"])


def refused(message: dict[str, Any]) -> str:
    """What the client sees of a tool whose request to the client failed: the server reports it
    (the SDK's server as the call's JSON-RPC error, relayed)."""
    if "error" in message:
        return str(message["error"]["message"])
    assert message["result"]["isError"], message
    return tool_text(message)


async def refusal(client: ClientSession, name: str, arguments: dict[str, Any]) -> str:
    with pytest.raises(MCPError) as failed:
        await client.call_tool(name, arguments)
    return str(failed.value)


# -- through the SDK -------------------------------------------------------------------------


@pytest.mark.parametrize(("tool", "message"), [
    ("asker__greet", "What is your name?"),
    # A server's request quoting the credential the gateway sent it: [redacted] there, as in
    # the server's answers.
    ("asker__greet_leaky", "What is your name? (sent: Bearer [redacted])"),
])
def test_elicitation_answered_by_the_client_reaches_the_server(deployment: Deployment, tool: str,
                                                               message: str) -> None:
    key = deployment.key()
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def scenario() -> None:
        async with session(deployment, key, elicitation_callback=elicit) as client:
            result = await client.call_tool(tool, {})
            assert not result.is_error, text_of(result)
            assert text_of(result) == "hello Ada"

    asyncio.run(scenario())
    assert asked == [message]


def test_sampling_and_roots_answered_by_the_client_reach_the_server(deployment: Deployment) -> None:
    key = deployment.key()

    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        question = params.messages[0].content.text  # type: ignore[union-attr]
        return types.CreateMessageResult(role="assistant", model="client-model",
                                         content=types.TextContent(type="text", text=f"42 ({question})"))

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project")])  # type: ignore[arg-type]

    async def scenario() -> None:
        async with session(deployment, key, sampling_callback=sample, list_roots_callback=roots) as client:
            result = await client.call_tool("asker__think", {"question": "the answer?"})
            assert text_of(result) == "the model said: 42 (the answer?)"
            listed = await client.call_tool("asker__roots", {})
            assert text_of(listed) == "file:///work/project"
            # This session did not declare elicitation: refused to the server.
            assert "elicitation/create is not passed through" in await refusal(client, "asker__greet", {})

    asyncio.run(scenario())


def test_a_client_without_the_capability_is_refused_to_the_server(deployment: Deployment) -> None:
    key = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            assert "elicitation/create is not passed through" in await refusal(client, "asker__greet", {})
            assert "sampling/createMessage is not passed through" in await refusal(
                client, "asker__think", {"question": "q"})
            assert "roots/list is not passed through" in await refusal(client, "asker__roots", {})

    asyncio.run(scenario())
    # Stateless clients (no session id) are served as before: refused to the server, a plain answer.
    resp = httpx.post(deployment.gateway.url + "/mcp", headers=headers(key), json=call("asker__greet"),
                      timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    message = resp.json()
    assert "not passed through" in refused(message)


def test_an_http_sse_servers_requests_are_refused_at_once(deployment: Deployment) -> None:
    """An HTTP+SSE server's requests (its event stream) are not passed through: refused to the
    server at once, as the others are, so its tool does not wait out the call's timeout."""
    key = deployment.key()
    for name, arguments in (("old__greet", {}), ("old__think", {"question": "q"})):
        started = time.monotonic()
        resp = httpx.post(deployment.gateway.url + "/mcp", headers=headers(key),
                          json=call(name, 1, arguments), timeout=60)
        assert resp.status_code == 200, resp.text
        assert "not passed through" in refused(resp.json()), resp.json()
        assert time.monotonic() - started < 10


# -- over plain HTTP: sessions, another instance, bounds ------------------------------------


def not_found(resp: httpx.Response, rid: Any = None) -> None:
    """The transport's answer to a session id the server does not know: HTTP 404 (the client
    initializes again), a JSON-RPC error body."""
    assert resp.status_code == 404, resp.text
    assert resp.json()["jsonrpc"] == "2.0" and resp.json()["id"] == rid
    assert resp.json()["error"]["code"] == -32001
    assert resp.json()["error"]["data"]["code"] == "mcp_session_not_found"


def test_an_unknown_or_another_keys_session_is_answered_404(deployment: Deployment) -> None:
    owner, intruder = deployment.key(), deployment.key()
    sid = initialize(deployment.gateway.url, owner, {"elicitation": {}})
    url = deployment.gateway.url + "/mcp"
    # Another key presenting the id: not a session it knows, whichever instance it asks.
    not_found(httpx.post(url, headers=headers(intruder, sid), json=call("asker__greet"), timeout=30), 1)
    not_found(httpx.post(deployment.other.url + "/mcp", headers=headers(intruder, sid), timeout=30,
                         json={"jsonrpc": "2.0", "id": "q", "method": "tools/list"}), "q")
    # An unknown (or expired) id: a request, a notification, an answer, GET and DELETE alike.
    for other in (deployment.gateway, deployment.other):
        gone = headers(owner, "no-such-session")
        not_found(httpx.post(other.url + "/mcp", headers=gone, json=call("asker__greet", 3), timeout=30), 3)
        not_found(httpx.post(other.url + "/mcp", headers=gone, timeout=30,
                             json={"jsonrpc": "2.0", "method": "notifications/initialized"}))
        not_found(httpx.post(other.url + "/mcp", headers=gone, timeout=30,
                             json={"jsonrpc": "2.0", "id": "sb-x", "result": {}}))
        not_found(httpx.get(other.url + "/mcp", headers=gone, timeout=30))
        not_found(httpx.delete(other.url + "/mcp", headers=gone, timeout=30))
    # The owner's session is served; without a session id, every key is served statelessly.
    resp = httpx.post(url, headers=headers(owner, sid), timeout=30,
                      json={"jsonrpc": "2.0", "id": 4, "method": "ping"})
    assert resp.status_code == 200 and resp.json() == {"jsonrpc": "2.0", "id": 4, "result": {}}
    resp = httpx.post(url, headers=headers(intruder), json=call("asker__greet"), timeout=30)
    assert resp.status_code == 200 and "not passed through" in refused(resp.json())
    assert httpx.get(url, headers=headers(intruder), timeout=30).status_code == 405
    assert httpx.delete(url, headers=headers(intruder), timeout=30).status_code == 405
    # initialize itself never refers to a session: a client starting over is answered a new one.
    assert initialize(deployment.gateway.url, owner, {"elicitation": {}}) != sid


def test_an_empty_session_id_is_no_session(deployment: Deployment) -> None:
    """An empty Mcp-Session-Id header (a client with no id to send) names no session: served
    statelessly as without the header, on every instance; GET and DELETE 405 as without it."""
    key = deployment.key()
    for gateway in (deployment.gateway, deployment.other):
        url = gateway.url + "/mcp"
        listed = httpx.post(url, headers=headers(key, ""), timeout=30,
                            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert listed.status_code == 200, listed.text
        assert "asker__greet" in {tool["name"] for tool in listed.json()["result"]["tools"]}
        resp = httpx.post(url, headers=headers(key, ""), json=call("asker__greet", 2), timeout=30)
        assert resp.status_code == 200 and "not passed through" in refused(resp.json())
        done = httpx.post(url, headers=headers(key, ""), timeout=30,
                          json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code == 202, done.text
        # A 405 names every method /mcp takes: DELETE too (with a session id).
        for refused_method in (httpx.get(url, headers=headers(key, ""), timeout=30),
                               httpx.delete(url, headers=headers(key, ""), timeout=30)):
            assert refused_method.status_code == 405, refused_method.text
            assert refused_method.headers["allow"] == "DELETE, POST", refused_method.headers


def test_a_session_ends_with_its_clients_delete(deployment: Deployment) -> None:
    key = deployment.key()
    sid = initialize(deployment.gateway.url, key, {"elicitation": {}})
    url = deployment.gateway.url + "/mcp"
    # GET of a live session: no server stream (405, naming what is allowed).
    stream = httpx.get(url, headers=headers(key, sid), timeout=30)
    assert stream.status_code == 405 and stream.headers["allow"] == "DELETE, POST"
    assert stream.json()["error"]["data"]["code"] == "method_not_allowed"
    # Another key cannot end it.
    not_found(httpx.delete(url, headers=headers(deployment.key(), sid), timeout=30))
    ended = httpx.delete(deployment.other.url + "/mcp", headers=headers(key, sid), timeout=30)
    assert ended.status_code == 204 and ended.content == b""
    assert "content-type" not in ended.headers, ended.headers  # no body, nothing to type
    not_found(httpx.post(url, headers=headers(key, sid), json=call("asker__greet", rid=5), timeout=30), 5)


def test_a_session_lives_its_time_from_its_last_use(deployment: Deployment) -> None:
    """Each request presenting the session keeps it mcp.client_session_seconds (an hour) more. In
    the cluster its Redis entry, set to expire in 5 s as if unused for 59 minutes 55, is given its
    hour again by the next request (answered by the other instance), and once it has expired the
    client is told to initialize again. (The embedded cache's expiry runs on the gateway's own
    clock: tests/unit/mcp/test_passthrough.py moves it.)"""
    key = deployment.key()
    sid = initialize(deployment.gateway.url, key, {"elicitation": {}})

    def ping(gateway: Gateway, rid: int) -> httpx.Response:
        return httpx.post(gateway.url + "/mcp", headers=headers(key, sid), timeout=30,
                          json={"jsonrpc": "2.0", "id": rid, "method": "ping"})

    if deployment.redis_url is None:
        for rid in range(3):
            assert ping(deployment.gateway, rid).json() == {"jsonrpc": "2.0", "id": rid, "result": {}}
        return
    import redis

    client = redis.Redis.from_url(deployment.redis_url)
    entry = f"sb:cache:mcp:client-session:{sid}"
    try:
        assert 3_590_000 < client.pttl(entry) <= 3_600_000
        client.pexpire(entry, 5000)
        assert ping(deployment.other, 1).status_code == 200
        assert client.pttl(entry) > 3_590_000
        client.delete(entry)  # expired
        not_found(ping(deployment.gateway, 2), 2)
    finally:
        client.close()


def test_the_answer_reaches_the_waiting_server_from_any_instance(deployment: Deployment) -> None:
    key = deployment.key()
    sid = initialize(deployment.gateway.url, key, {"elicitation": {}})
    with httpx.stream("POST", deployment.gateway.url + "/mcp", headers=headers(key, sid),
                      json=call("asker__greet", rid=7), timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        stream = events(resp)
        request = next(stream)
        assert request["method"] == "elicitation/create" and request["id"].startswith("sb-")
        assert request["params"]["message"] == "What is your name?"
        # Another key presenting the id is ignored; the owner's answer (to the other instance in
        # the cluster) reaches the server.
        stranger = httpx.post(deployment.other.url + "/mcp", headers=headers(deployment.key(), sid),
                              timeout=10,
                              json={"jsonrpc": "2.0", "id": request["id"],
                                    "result": {"action": "accept", "content": {"name": "Mallory"}}})
        assert stranger.status_code == 404
        answer = httpx.post(deployment.other.url + "/mcp", headers=headers(key, sid), timeout=10,
                            json={"jsonrpc": "2.0", "id": request["id"],
                                  "result": {"action": "accept", "content": {"name": "Grace"}}})
        assert answer.status_code == 202, answer.text
        reply = next(stream)
    assert reply["id"] == 7 and tool_text(reply) == "hello Grace"


def test_an_unanswered_or_oversized_answer_is_an_error_to_the_server(deployment: Deployment) -> None:
    key = deployment.key()
    sid = initialize(deployment.gateway.url, key, {"elicitation": {}})
    with httpx.stream("POST", deployment.gateway.url + "/mcp", headers=headers(key, sid),
                      json=call("asker__greet"), timeout=30) as resp:
        stream = events(resp)
        assert next(stream)["method"] == "elicitation/create"
        reply = next(stream)  # never answered: after mcp.client_request_timeout_seconds
    assert f"did not answer elicitation/create within {TIMEOUT}" in refused(reply)
    with httpx.stream("POST", deployment.gateway.url + "/mcp", headers=headers(key, sid),
                      json=call("asker__greet"), timeout=30) as resp:
        stream = events(resp)
        request = next(stream)
        big = httpx.post(deployment.other.url + "/mcp", headers=headers(key, sid), timeout=10,
                         json={"jsonrpc": "2.0", "id": request["id"],
                               "result": {"action": "accept", "content": {"name": "x" * 4000}}})
        assert big.status_code == 200
        assert big.json()["error"]["data"]["code"] == "mcp_answer_too_large"
        reply = next(stream)
    assert "larger than 2048 bytes" in refused(reply)


def test_bad_answers_are_refused_or_ignored(deployment: Deployment) -> None:
    key = deployment.key()
    sid = initialize(deployment.gateway.url, key, {"elicitation": {}, "sampling": "yes"})
    url = deployment.gateway.url + "/mcp"
    # An answer to no request of the gateway's: accepted and ignored.
    for rid in ("sb-unknown", "plain", 5):
        resp = httpx.post(url, headers=headers(key, sid), json={"jsonrpc": "2.0", "id": rid, "result": {}},
                          timeout=10)
        assert resp.status_code == 202
    # A capability declared as something other than an object is not one.
    resp = httpx.post(url, headers=headers(key, sid), json=call("asker__think", arguments={"question": "q"}),
                      timeout=30)
    assert "sampling/createMessage is not passed through" in refused(resp.json())
