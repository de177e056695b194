"""MCP tools through the LLM endpoints (mcp/loop.py), end to end: the official ``openai`` SDK sends
Responses and chat requests naming MCP servers; the mock upstream answers with tool calls (it calls
an offered tool, then answers with the tool's result); the tools run on an MCP server written with
the official SDK (streamable HTTP) and on a stdio server run by the gateway. Every test runs on the
embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.test_metrics import Samples, parse, total
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    Process,
    captured,
    free_port,
    new_marker,
    openai_config,
    refused_port,
    spawn,
    start_gateway,
)
from tests.services import Postgres, RedisServer
from tests.threaded_server import ThreadedServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
STDIO_SCRIPT = str(Path(__file__).parents[1] / "mcp_stdio_server.py")
MODEL = "gpt-4o-mini"
STEPS = 3
# The credentials the servers are given: "extras" in a header, "local" (stdio) in its environment.
EXTRAS_SECRET = "mcp-extras-secret-0123456789abcdef"
LOCAL_SECRET = "mcp-local-secret-0123456789abcdef"


def notes(*allowed: str) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "mcp", "server_label": "notes", "require_approval": "never"}
    if allowed:
        tool["allowed_tools"] = list(allowed)
    return tool


@pytest.fixture(scope="module")
def notes_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("notes")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def cutting_server() -> Iterator[McpUpstream]:
    """tests/mcp_servers.py ``cutting``: hand-written replies (a tool result whose isError is 1)."""
    server = start_mcp_server("cutting")
    yield server
    server.process.stop()


def _serve_extras(transport: str) -> Iterator[str]:
    """tests/mcp_stdio_server.py over HTTP (``http``: streamable HTTP, ``sse``: HTTP+SSE); its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, STDIO_SCRIPT, transport, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    process = Process(proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, process.output
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}" + ("/sse" if transport == "sse" else "/mcp")
    process.stop()


@pytest.fixture(scope="module")
def extras_server() -> Iterator[str]:
    """tests/mcp_stdio_server.py over streamable HTTP (progress, cancellation)."""
    yield from _serve_extras("http")


@pytest.fixture(scope="module")
def legacy_extras_server() -> Iterator[str]:
    """tests/mcp_stdio_server.py over the older HTTP+SSE transport (cancellation)."""
    yield from _serve_extras("sse")


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock
    notes_url: str

    def key(self, **body: Any) -> tuple[str, str]:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": ["*"], **body}, headers=ADMIN,
                          timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"]), str(resp.json()["id"])

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=60)

    def metrics(self) -> Samples:
        """Every sample of the gateway's /metrics."""
        resp = httpx.get(f"{self.gateway.url}/metrics", headers=ADMIN, timeout=10)
        assert resp.status_code == 200, resp.text
        return parse(resp.text)

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


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, mock_upstream: Mock, notes_server: McpUpstream,
               extras_server: str, legacy_extras_server: str, cutting_server: McpUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = openai_config(mock_upstream)
    # Claude through the Anthropic adapter: extended thinking across the loop's model calls.
    config["providers"].append({"name": "anthropic-mock", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}", "default_max_tokens": 1024})
    config["models"].append({"name": "claude", "provider": "anthropic-mock", "model": "claude-sonnet-4-5"})
    config["mcp_servers"] = [
        {"name": "notes", "url": notes_server.url},
        {"name": "local", "transport": "stdio", "command": [sys.executable, STDIO_SCRIPT],
         "env": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "STDIO_TEST_TOKEN": LOCAL_SECRET},
         "connect_timeout_seconds": 60},
        {"name": "down", "url": f"http://127.0.0.1:{refused_port()}/mcp", "connect_timeout_seconds": 1},
        {"name": "extras", "url": extras_server, "headers": {"Authorization": f"Bearer {EXTRAS_SECRET}"}},
        {"name": "oldextras", "url": legacy_extras_server, "transport": "sse"},
        {"name": "paid", "url": notes_server.url, "price_per_call": 0.01},
        {"name": "cutting", "url": cutting_server.url},
        # Frozen by a test (a hung process): its calls must still end at timeout_seconds.
        {"name": "frozen", "transport": "stdio", "command": [sys.executable, STDIO_SCRIPT],
         "env": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}, "connect_timeout_seconds": 60,
         "timeout_seconds": 2},
    ]
    # Results are bounded below the stdio message bound (max_argument_bytes 1 MiB + 64 KiB).
    config["mcp"] = {"allow_stdio": True, "max_tool_steps": STEPS, "max_result_bytes": 65536}
    config["spend"] = {"flush_seconds": 0.1}
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"mcploop_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"mcploop-{request.param}"))
    deployment = Deployment(request.param, gw, mock_upstream, notes_server.url)
    _wait_for_stdio(deployment)
    yield deployment
    gw.process.stop()


def _wait_for_stdio(deployment: Deployment) -> None:
    """The stdio servers' processes start with the gateway: wait until their tools are listed."""
    deadline = time.monotonic() + 60
    while not {"local__echo", "frozen__echo"} <= asyncio.run(_tool_names(deployment, MASTER_KEY)):
        assert time.monotonic() < deadline, "the stdio server never came up"
        time.sleep(0.2)


@asynccontextmanager
async def session(deployment: Deployment, key: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(deployment.gateway.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as client,
    ):
        await client.initialize()
        yield client


async def _tool_names(deployment: Deployment, key: str) -> set[str]:
    async with session(deployment, key) as client:
        return {t.name for t in (await client.list_tools()).tools}


# -- Responses -------------------------------------------------------------------------------------


def test_a_responses_request_runs_the_loop_and_returns_mcp_call_items(deployment: Deployment) -> None:
    key, key_id = deployment.key()
    client = deployment.sdk(key)
    marker = new_marker()
    response = client.responses.create(model=MODEL, input=f"Read a note mock:capture={marker}",
                                       tools=[notes("read_note")])  # type: ignore[list-item]
    kinds = [item.type for item in response.output]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"], kinds
    listed, call, _ = response.output
    assert listed.server_label == "notes" and [t.name for t in listed.tools] == ["read_note"]  # type: ignore[union-attr]
    assert (call.server_label, call.name, call.status) == ("notes", "read_note", "completed")  # type: ignore[union-attr]
    assert call.error is None  # type: ignore[union-attr]
    assert call.output == "no such note"  # type: ignore[union-attr]
    assert "The tool returned: no such note" in response.output_text
    assert response.status == "completed"
    # The model was offered the tool as a function, then given its result.
    sent = captured(deployment.mock, marker, count=2)
    assert [t["function"]["name"] for t in sent[0]["body"]["tools"]] == ["notes__read_note"]
    asked, answered = sent[1]["body"]["messages"][-2:]
    call_id = asked["tool_calls"][0]["id"]
    assert answered == {"role": "tool", "tool_call_id": call_id, "content": "no such note"}
    # Every step is recorded: each model call and the tool call, its own record.
    records = deployment.records(key_id, 3)
    ids = sorted(r["request_id"] for r in records)
    base = ids[0].rsplit(".", 1)[0]
    assert ids == [f"{base}.1", f"{base}.2", f"{base}.t1"], ids
    models = {r["request_id"].rsplit(".", 1)[1]: r["model"] for r in records}
    assert models["t1"] == "notes__read_note" and models["1"] == MODEL


def test_a_refusal_in_the_loops_model_call_names_the_input_item(deployment: Deployment) -> None:
    """An answer to no call, refused by the Anthropic adapter in the loop's first model call: it
    named the chat message (messages[2], the instructions first), not the input item."""
    client = deployment.sdk(deployment.key()[0])
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="claude", instructions="Be brief.", tools=[notes("read_note")],  # type: ignore[list-item]
                                input=[{"role": "user", "content": "x"},
                                       {"type": "function_call_output", "call_id": "nope", "output": "r"}])
    assert refused.value.body["param"] == "input[1].call_id"  # type: ignore[index]
    assert "'input[1].call_id'" in refused.value.body["message"]  # type: ignore[index]


def test_a_streamed_responses_request_gets_the_items_as_events(deployment: Deployment) -> None:
    key, _ = deployment.key()
    client = deployment.sdk(key)
    tools: Any = [notes("read_note")]
    events = list(client.responses.create(model=MODEL, input="Read a note", tools=tools, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.mcp_list_tools.completed" in kinds and "response.mcp_call.completed" in kinds
    final = events[-1].response  # type: ignore[union-attr]
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]


def test_a_replayed_output_with_store_false_is_the_loops_conversation(deployment: Deployment) -> None:
    # As Codex and other agents do with store: false: the whole output of a turn is the next input.
    client = deployment.sdk(deployment.key()[0])
    tools: Any = [notes("read_note")]
    first = client.responses.create(model=MODEL, input="Read a note", tools=tools, store=False)
    assert [item.type for item in first.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = first.output[1]
    marker = new_marker()
    replay: Any = [{"role": "user", "content": "Read a note"},
                   *(item.model_dump(exclude_none=True) for item in first.output),
                   {"role": "user", "content": f"And the next one mock:capture={marker}"}]
    second = client.responses.create(model=MODEL, input=replay, tools=tools, store=False)
    assert second.status == "completed"
    # The model gets the first turn as the loop gave it: the call and its result, then the answer.
    sent = captured(deployment.mock, marker, count=2)[0]["body"]["messages"]
    assert sent[:4] == [
        {"role": "user", "content": "Read a note"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": "notes__read_note", "arguments": call.arguments}}]},  # type: ignore[union-attr]
        {"role": "tool", "tool_call_id": call.id, "content": "no such note"},
        {"role": "assistant", "content": first.output_text},
    ]
    assert sent[4]["role"] == "user" and len(sent) == 5


def test_a_stored_turn_continued_by_id_keeps_the_loops_calls(deployment: Deployment) -> None:
    # previous_response_id gives the model what a store: false replay of the same output gives it.
    client = deployment.sdk(deployment.key()[0])
    tools: Any = [notes("read_note")]
    first = client.responses.create(model=MODEL, input="Read a note", tools=tools)
    assert [item.type for item in first.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = first.output[1]
    marker = new_marker()
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=tools,
                                     input=f"And the next one mock:capture={marker}")
    assert second.status == "completed" and second.previous_response_id == first.id
    sent = captured(deployment.mock, marker, count=2)[0]["body"]["messages"]
    assert sent[:4] == [
        {"role": "user", "content": "Read a note"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": "notes__read_note", "arguments": call.arguments}}]},  # type: ignore[union-attr]
        {"role": "tool", "tool_call_id": call.id, "content": "no such note"},
        {"role": "assistant", "content": first.output_text},
    ]
    assert len(sent) == 5 and sent[4]["content"] == f"And the next one mock:capture={marker}"
    # A turn continuing the second one still carries the first turn's calls (and the second's).
    third_marker = new_marker()
    third = client.responses.create(model=MODEL, previous_response_id=second.id,
                                    input=f"Once more mock:capture={third_marker}")
    assert third.status == "completed"
    later = captured(deployment.mock, third_marker)[0]["body"]["messages"]
    assert later[:4] == sent[:4] and later[-1]["content"] == f"Once more mock:capture={third_marker}"


def test_the_loop_stops_after_max_tool_steps(deployment: Deployment) -> None:
    key, key_id = deployment.key()
    client = deployment.sdk(key)
    # The mock calls the tool on every turn: the loop stops at mcp.max_tool_steps model calls.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="mock:tool_call=notes__read_note again and again",
                                tools=[notes("read_note")])  # type: ignore[list-item]
    assert refused.value.body["code"] == "mcp_max_tool_steps"  # type: ignore[index]
    assert f"after {STEPS} model calls" in refused.value.body["message"]  # type: ignore[index]
    records = deployment.records(key_id, 2 * STEPS - 1)
    assert len([r for r in records if r["model"] == MODEL]) == STEPS
    assert len([r for r in records if r["model"] == "notes__read_note"]) == STEPS - 1


def test_a_denied_tool_is_not_offered(deployment: Deployment) -> None:
    key, _ = deployment.key(mcp_tools={"deny": ["notes__delete_note"]})
    client = deployment.sdk(key)
    marker = new_marker()
    response = client.responses.create(model=MODEL, input=f"Tidy up mock:capture={marker}",
                                       tools=[notes("read_note", "delete_note")])  # type: ignore[list-item]
    listed = response.output[0]
    assert [t.name for t in listed.tools] == ["read_note"]  # type: ignore[union-attr]
    offered = [t["function"]["name"] for t in captured(deployment.mock, marker)[0]["body"]["tools"]]
    assert offered == ["notes__read_note"]


def test_bad_mcp_tools_are_refused(deployment: Deployment) -> None:
    client = deployment.sdk(deployment.key()[0])
    bad: list[tuple[dict[str, Any], str]] = [
        ({**notes(), "server_label": "nope"}, "tools[0].server_label"),
        ({**notes(), "server_url": "http://169.254.169.254/mcp"}, "tools[0].server_url"),
        ({**notes(), "require_approval": "always"}, "tools[0].require_approval"),
        ({**notes(), "headers": {"Authorization": "Bearer x"}}, "tools[0].headers"),
        ({**notes(), "allowed_tools": "read_note"}, "tools[0].allowed_tools"),
    ]
    for tool, param in bad:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=MODEL, input="hi", tools=[tool])  # type: ignore[list-item]
        assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]
    # The registered URL itself is accepted.
    registered: Any = [{**notes("read_note"), "server_url": deployment.notes_url}]
    ok = client.responses.create(model=MODEL, input="hi", tools=registered)
    assert ok.output[1].type == "mcp_call"


# -- chat (extension) ------------------------------------------------------------------------------


def test_chat_completions_run_the_loop_with_the_calls_listed(deployment: Deployment) -> None:
    client = deployment.sdk(deployment.key()[0])
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "read"}],
                                           tools=[notes("read_note")])  # type: ignore[list-item]
    assert reply.choices[0].message.content == "The tool returned: no such note"
    assert reply.choices[0].message.tool_calls is None
    extra = reply.model_extra or {}
    assert [i["type"] for i in extra["mcp_output"]] == ["mcp_list_tools", "mcp_call"]
    assert extra["mcp_output"][1]["output"] == "no such note"
    streamed = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "read"}], tools=[notes("read_note")],  # type: ignore[list-item]
        stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == "The tool returned: no such note"
    items = [i for c in streamed for i in (c.model_extra or {}).get("mcp_output", [])]
    assert [i["type"] for i in items] == ["mcp_list_tools", "mcp_call"]



def test_a_tool_result_whose_is_error_is_not_a_boolean_is_a_failed_call(deployment: Deployment) -> None:
    """``isError: 1`` is not MCP (a boolean): the call fails as a malformed reply, as on /mcp,
    rather than its content being given to the model either as a failure or as a success."""
    client = deployment.sdk(deployment.key()[0])
    tool: Any = {"type": "mcp", "server_label": "cutting", "require_approval": "never",
                 "allowed_tools": ["odd_error"]}
    response = client.responses.create(model=MODEL, input="go", tools=[tool])
    call = response.output[1]
    assert (call.type, call.name, call.status) == ("mcp_call", "odd_error", "failed"), call  # type: ignore[union-attr]
    error = call.error.model_dump()  # type: ignore[union-attr]
    assert (error["type"], error["code"]) == ("http_error", 502) and "isError" in error["message"], error
    assert call.output is None  # type: ignore[union-attr]


def test_the_loops_usage_adds_up_every_model_calls_with_its_details(deployment: Deployment) -> None:
    # Both model calls report 3 audio tokens in their prompt: the answer's usage is the loop's,
    # its details too (not the last call's details beside the summed counts).
    client = deployment.sdk(deployment.key()[0])
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "read mock:audio_tokens=3"}],
        tools=[notes("read_note")])  # type: ignore[list-item]
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.audio_tokens == 6 and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_extended_thinking_goes_on_after_a_tool_call(deployment: Deployment) -> None:
    # Anthropic accepts thinking on the call answering a tool result only with the calling turn's
    # signed thinking block first: the loop sends it back, so the model still thinks after a call.
    client = deployment.sdk(deployment.key()[0])
    marker = new_marker()
    reply = client.chat.completions.create(
        model="claude", reasoning_effort="low", max_tokens=2048, tools=[notes("read_note")],  # type: ignore[list-item]
        messages=[{"role": "user", "content": f"read mock:capture={marker}"}])
    assert reply.choices[0].message.content == "The tool returned: no such note"
    first, second = (s["body"] for s in captured(deployment.mock, marker, count=2))
    assert first["thinking"] == second["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    called = second["messages"][1]
    assert called["role"] == "assistant"
    assert [b["type"] for b in called["content"]] == ["thinking", "text", "tool_use"]
    assert (reply.choices[0].message.model_extra or {}).get("reasoning_content")


def test_the_loops_model_calls_are_not_counted_as_retries(deployment: Deployment) -> None:
    """Each model call of the loop is a call of its own: the second is no retry of the first."""
    def scrape() -> tuple[float, float]:
        now = deployment.metrics()
        return (total(now, "switchboard_retries_total", group=MODEL),
                total(now, "switchboard_requests_total", model=MODEL, status="200"))

    retries, requests = scrape()
    reply = deployment.sdk(deployment.key()[0]).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "read"}], tools=[notes("read_note")])  # type: ignore[list-item]
    assert reply.headers["x-switchboard-mcp-steps"] == "2"
    deadline = time.monotonic() + 10
    while (now := scrape())[1] == requests:  # counted once the response has been written
        assert time.monotonic() < deadline, "the request was never counted"
        time.sleep(0.05)
    assert now == (retries, requests + 1)


def test_a_failed_loop_is_counted_with_its_model_calls_attempts(deployment: Deployment) -> None:
    """The loop's model call failed after its retries: the metrics count the request under the
    group that failed and its retries, as for a request without tools."""
    def scrape() -> tuple[float, float]:
        now = deployment.metrics()
        return (total(now, "switchboard_retries_total", group=MODEL),
                total(now, "switchboard_requests_total", model=MODEL, group=MODEL, status="502"))

    retries, failed = scrape()
    key, key_id = deployment.key()
    with pytest.raises(openai.InternalServerError):
        deployment.sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "mock:status=500"}],
            tools=[notes("read_note")])  # type: ignore[list-item]
    [record] = deployment.records(key_id, 1)  # the loop's one model call
    tried = len(record["attempts"])
    assert tried > 1 and record["status"] == 502
    deadline = time.monotonic() + 10
    while (now := scrape())[1] == failed:  # counted once the response has been written
        assert time.monotonic() < deadline, "the failed request was never counted under its group"
        time.sleep(0.05)
    assert now == (retries + tried - 1, failed + 1)


def _costs(deployment: Deployment, **request: str) -> tuple[float, float, float]:
    """(the chat cost, the mcp cost, the requests labelled ``request``) in the metrics."""
    now = deployment.metrics()
    return (total(now, "switchboard_cost_usd_total", operation="chat"),
            total(now, "switchboard_cost_usd_total", operation="mcp"),
            total(now, "switchboard_requests_total", **request))


def _costs_added(deployment: Deployment, before: tuple[float, float, float],
                 **request: str) -> tuple[float, float]:
    """The chat and mcp costs added since ``before``, once the request is counted (after its
    response has been written)."""
    deadline = time.monotonic() + 10
    while (now := _costs(deployment, **request))[2] == before[2]:
        assert time.monotonic() < deadline, "the request was never counted"
        time.sleep(0.05)
    return now[0] - before[0], now[1] - before[1]


def test_a_tool_calls_price_is_counted_once_under_the_tool_call(deployment: Deployment) -> None:
    """The cost counter adds up to the ledger: the loop's model calls under chat, its priced tool
    call under mcp, each once; the cost header tells the whole loop's."""
    key, key_id = deployment.key()
    before = _costs(deployment, model=MODEL, operation="chat", status="200")
    paid = {**notes("read_note"), "server_label": "paid"}
    reply = deployment.sdk(key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "read"}], tools=[paid])  # type: ignore[list-item]
    records = deployment.records(key_id, 3)
    tool = sum(Decimal(r["cost_usd"]) for r in records if r["model"] == "paid__read_note")
    model = sum(Decimal(r["cost_usd"]) for r in records if r["model"] == MODEL)
    assert tool == Decimal("0.01") and model > 0
    assert Decimal(reply.headers["x-switchboard-cost-usd"]) == tool + model
    added = _costs_added(deployment, before, model=MODEL, operation="chat", status="200")
    assert added == (pytest.approx(float(model)), pytest.approx(float(tool)))


def test_a_loop_stopped_at_max_tool_steps_counts_its_model_calls_cost(deployment: Deployment) -> None:
    """A loop refused after its model calls were made and priced: the cost counter still adds up
    to the ledger (the model calls' cost under chat, the tool calls' under mcp)."""
    key, key_id = deployment.key()
    before = _costs(deployment, model=MODEL, code="mcp_max_tool_steps")
    paid = {**notes("read_note"), "server_label": "paid"}
    with pytest.raises(openai.BadRequestError):
        deployment.sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "mock:tool_call=paid__read_note again"}],
            tools=[paid])  # type: ignore[list-item]
    records = deployment.records(key_id, 2 * STEPS - 1)
    model = sum(Decimal(r["cost_usd"]) for r in records if r["model"] == MODEL)
    tool = sum(Decimal(r["cost_usd"]) for r in records if r["model"] == "paid__read_note")
    assert model > 0 and tool == Decimal("0.01") * (STEPS - 1)
    added = _costs_added(deployment, before, model=MODEL, code="mcp_max_tool_steps")
    assert added == (pytest.approx(float(model)), pytest.approx(float(tool)))


# -- stdio -----------------------------------------------------------------------------------------


def test_a_stdio_server_is_listed_and_called(deployment: Deployment) -> None:
    key, _ = deployment.key()
    assert {"local__echo", "local__add"} <= asyncio.run(_tool_names(deployment, key))
    client = deployment.sdk(key)
    tools: Any = [{"type": "mcp", "server_label": "local", "allowed_tools": ["echo"],
                   "require_approval": "never"}]
    response = client.responses.create(model=MODEL, input="say it", tools=tools)
    call = response.output[1]
    assert call.type == "mcp_call" and call.server_label == "local" and call.name == "echo"
    assert call.output is not None and call.output.startswith("echo: ")


def test_a_stdio_servers_result_is_bounded_by_max_result_bytes(deployment: Deployment) -> None:
    """As for an HTTP server: a reply over mcp.max_result_bytes fails its call, naming the server
    and the configured bound; the process stays up and serves the next call."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("local__big", {"size": 100_000})
            assert refused.value.error.data["code"] == "mcp_result_too_large"  # type: ignore[index]
            assert refused.value.error.message == (
                "the MCP server 'local' sent a reply larger than 65536 bytes (mcp.max_result_bytes)")
            small = await client.call_tool("local__big", {"size": 100})
            assert not small.is_error and "x" * 100 in str(small.content)
            echoed = await client.call_tool("local__echo", {"text": "still up"})
            assert "echo: still up" in str(echoed.content)

    asyncio.run(scenario())


def test_a_stdio_servers_reply_with_an_id_of_no_request_is_ignored(deployment: Deployment) -> None:
    """A line on stdout that reads as a reply but whose id is no request's (an array, an object:
    no id the gateway gives) is ignored like any other stray line: the call under way gets its
    answer, and the process is not stopped and started again."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            stray = await client.call_tool("local__stray", {})
            assert not stray.is_error and "answered" in str(stray.content), stray
            echoed = await client.call_tool("local__echo", {"text": "still up"})
            assert "echo: still up" in str(echoed.content)

    asyncio.run(scenario())


# -- CLI -------------------------------------------------------------------------------------------


def cli(deployment: Deployment, *args: str, key: str = MASTER_KEY) -> tuple[int, str]:
    proc = spawn(["mcp", *args, "--url", deployment.gateway.url, "--key", key], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_cli_shows_servers_and_tools_and_calls_a_tool(deployment: Deployment) -> None:
    code, output = cli(deployment, "servers", "--json")
    assert code == 0, output
    servers = {row["server"]: row for row in json.loads(output)}
    assert servers["notes"]["state"] == "up" and servers["notes"]["tools"] >= 3
    assert servers["local"]["state"] == "up"
    assert servers["down"]["state"] == "left out" and servers["down"]["notice"]
    # A key sees its own tools: a denied one is not listed, and cannot be called.
    key, _ = deployment.key(mcp_tools={"deny": ["notes__delete_note"]})
    code, output = cli(deployment, "tools", "--server", "notes", "--json", key=key)
    assert code == 0, output
    names = {t["name"] for t in json.loads(output)}
    assert "notes__read_note" in names and "notes__delete_note" not in names
    code, output = cli(deployment, "call", "notes__delete_note", "--arg", "title=welcome", key=key)
    assert code == 1 and "mcp_tool_denied" in output
    code, output = cli(deployment, "call", "local__add", "--arg", "a=2", "--arg", "b=40", key=key)
    assert (code, output.strip()) == (0, "42")
    code, output = cli(deployment, "call", "notes__read_note", "--json", '{"title": "welcome"}', key=key)
    assert (code, output.strip()) == (0, "hello from notes")
    # What a server says (a tool's description, its result) is printed as written, never read
    # as Rich markup.
    code, output = cli(deployment, "tools", "--server", "notes", key=key)
    assert code == 0 and "Fails [/always] [bold]loudly[/bold]" in output, output
    title = f"markup-{uuid.uuid4().hex[:6]}"
    assert cli(deployment, "call", "notes__add_note", "--arg", f"title={title}", "--arg", "text=[/n] [bold]x",
               key=key)[0] == 0
    code, output = cli(deployment, "call", "notes__read_note", "--arg", f"title={title}", key=key)
    assert (code, output.strip()) == (0, "[/n] [bold]x")
    # Bad input: a tool that fails, an unknown tool, arguments that are not key=value or not JSON.
    code, output = cli(deployment, "call", "nope__tool")
    assert code == 1 and "mcp_unknown_tool" in output
    assert cli(deployment, "call", "local__add", "--arg", "a")[0] == 2
    code, output = cli(deployment, "tools", key="sk-not-a-key")
    assert code == 1 and "HTTP 401" in output


class CuttingFront(ThreadedServer):
    """Plain HTTP in front of the gateway that passes each request on and sends the gateway's
    answer back chunked, its one chunk cut in half and the connection closed: a gateway (or a
    proxy) stopped mid-answer."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        super().__init__(self._serve, name="cutting front")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            back_reader, back_writer = await asyncio.open_connection("127.0.0.1", self.backend)
            back_writer.write(head + body)
            answer = await back_reader.read()  # urllib asks for Connection: close
            back_writer.close()
            status_and_headers, _, content = answer.partition(b"\r\n\r\n")
            status = status_and_headers.split(b"\r\n", 1)[0]
            writer.write(status + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + f"{len(content):x}\r\n".encode() + content[: len(content) // 2])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def test_the_cli_names_the_refusals_code_and_a_cut_answer_in_one_line(deployment: Deployment) -> None:
    """docs/mcp.md: a refusal prints the error and its code (the 401 said only its message); an
    answer cut short is one line and exit 1 (a traceback before), as for the admin commands."""
    code, output = cli(deployment, "servers", key="sk-not-a-key")
    assert code == 1 and "HTTP 401" in output and "(invalid_api_key)" in output, output
    front = CuttingFront(deployment.gateway.port)
    try:
        for args in (("servers",), ("tools",), ("call", "local__add", "--arg", "a=1", "--arg", "b=2")):
            proc = spawn(["mcp", *args, "--url", f"http://127.0.0.1:{front.port}", "--key", MASTER_KEY])
            code = proc.wait_exit(60)
            assert code == 1 and "Traceback" not in proc.output, (args, proc.output)
            assert "cannot reach the gateway" in proc.output and "IncompleteRead" in proc.output, proc.output
    finally:
        front.stop()


def test_stdio_servers_are_refused_at_start_unless_allowed(deployment: Deployment, tmp_path: Path) -> None:
    # The same configuration without mcp.allow_stdio: the gateway does not start, naming the server.
    config = yaml.safe_load(deployment.gateway.config_path.read_text())
    del config["mcp"]["allow_stdio"]
    path = tmp_path / "no-stdio.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY}
    proc = spawn(["serve", "--config", str(path), "--port", str(free_port())], env=env)
    assert proc.wait_exit(60) != 0
    assert "mcp_servers[1] ('local')" in proc.output and "mcp.allow_stdio: true" in proc.output
    assert "Traceback" not in proc.output


# -- protocol extras on /mcp -----------------------------------------------------------------------


def test_progress_is_relayed_from_http_and_stdio_servers(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for name in ("extras__slow", "local__slow"):
                seen: list[tuple[float, float | None, str | None]] = []

                async def progress(value: float, total: float | None, message: str | None) -> None:
                    seen.append((value, total, message))  # noqa: B023 - used before the next loop

                result = await client.call_tool(name, {"steps": 3}, progress_callback=progress)
                assert "".join(getattr(c, "text", "") for c in result.content) == "done"
                assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")], (name, seen)
            # Without a progress token, the same call is a plain reply.
            assert not (await client.call_tool("extras__slow", {"steps": 1})).is_error

    asyncio.run(scenario())


def test_progress_quoting_a_servers_credential_reaches_the_caller_scrubbed(deployment: Deployment) -> None:
    """A server's progress message quoting the credential it was given (an HTTP server's header,
    a stdio server's environment) reaches the caller with it replaced by [redacted], as its
    answers do."""
    key, _ = deployment.key()

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for name, seen_by_server in (("extras__leaky_progress", "Bearer [redacted]"),
                                         ("local__leaky_progress", "[redacted]")):
                seen: list[str | None] = []

                async def progress(value: float, total: float | None, message: str | None) -> None:
                    seen.append(message)  # noqa: B023 - used before the next loop

                result = await client.call_tool(name, {}, progress_callback=progress)
                assert "".join(getattr(c, "text", "") for c in result.content) == "done"
                assert seen == [f"working with {seen_by_server}"], (name, seen)

    asyncio.run(scenario())


def test_two_callers_progress_tokens_never_mix_on_a_stdio_server(deployment: Deployment) -> None:
    """Callers of one stdio process choose their progress tokens (the SDK's is its request id, the
    same in every session): each caller gets the progress of its own call only, never another's,
    even when both use the same token at once."""
    first, second = deployment.key()[0], deployment.key()[0]
    started = asyncio.Event()

    async def call(key: str, steps: int) -> list[dict[str, Any]]:
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "local__slow", "arguments": {"steps": steps},
                              "_meta": {"progressToken": "p"}}}
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        got: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
                "POST", deployment.gateway.url + "/mcp", json=message, headers=headers) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    got.append(json.loads(line[5:]))
                    started.set()  # the first call is under way: the second starts now
        return got

    async def after_the_first(key: str, steps: int) -> list[dict[str, Any]]:
        await started.wait()
        return await call(key, steps)

    async def scenario() -> None:
        mine, theirs = await asyncio.gather(call(first, 20), after_the_first(second, 3))
        for got, steps in ((mine, 20), (theirs, 3)):
            *progress, reply = got
            assert reply["result"]["content"][0]["text"] == "done", reply
            assert [(p["params"]["progressToken"], p["params"]["progress"], p["params"]["total"])
                    for p in progress] == [("p", i + 1, steps) for i in range(steps)], (steps, progress)

    asyncio.run(scenario())


def test_a_cancellation_never_reaches_another_clients_call_of_the_same_id(deployment: Deployment) -> None:
    """Two clients of one key, each with a call under way under the same JSON-RPC id (the SDK's
    ids start alike in every session): one's notifications/cancelled for that id is ambiguous and
    cancels neither call, rather than the other client's."""
    key, _ = deployment.key()
    url = deployment.gateway.url + "/mcp"
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    first_running, second_running = asyncio.Event(), asyncio.Event()

    async def call(steps: int, running: asyncio.Event) -> list[dict[str, Any]]:
        message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "extras__slow", "arguments": {"steps": steps},
                              "_meta": {"progressToken": f"t{steps}"}}}
        got: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
                "POST", url, json=message, headers=headers) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    got.append(json.loads(line[5:]))
                    running.set()
        return got

    async def second() -> list[dict[str, Any]]:
        await first_running.wait()
        return await call(10, second_running)

    async def cancel() -> None:
        await second_running.wait()  # both calls are under way: the second client cancels "its" 7
        notice = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.post(url, json=notice, headers=headers)).status_code == 202

    async def scenario() -> None:
        mine, _, _ = await asyncio.gather(call(40, first_running), second(), cancel())
        assert mine[-1].get("result", {}).get("content", [{}])[0].get("text") == "done", mine[-1]
        assert len(mine) == 41

    asyncio.run(scenario())


def test_calls_to_a_hung_stdio_server_end_at_its_timeout(deployment: Deployment) -> None:
    """A stdio process that stops reading its stdin (hung) while a large call is being written to
    it: that call and the next ones still end at the server's timeout_seconds (2 s here), rather
    than waiting for the process to read again."""
    key, _ = deployment.key()

    def call(name: str, arguments: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": name, "arguments": arguments}}
        started = time.monotonic()
        resp = httpx.post(deployment.gateway.url + "/mcp", json=message, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        return time.monotonic() - started, resp.json()

    elapsed, frozen = call("frozen__freeze", {"seconds": 15})
    assert frozen["error"]["data"]["code"] == "upstream_timeout", frozen
    # More than the pipe and the write buffer hold: written only as the process reads.
    for name, arguments in (("frozen__echo", {"text": "x" * 400_000}), ("frozen__add", {"a": 1, "b": 2})):
        elapsed, answer = call(name, arguments)
        assert answer["error"]["data"]["code"] == "upstream_timeout", (name, answer)
        assert elapsed < 8, (name, elapsed)
    # Once it runs again, it answers as before (and lists its tools for the other tests).
    deadline = time.monotonic() + 60
    while "result" not in call("frozen__add", {"a": 1, "b": 2})[1]:
        assert time.monotonic() < deadline, "the frozen server never came back"


def test_a_cancelled_call_is_cancelled_upstream(deployment: Deployment) -> None:
    key, _ = deployment.key()

    async def cancellations(client: ClientSession, server: str) -> int:
        result = await client.call_tool(f"{server}__cancellations", {})
        return int("".join(getattr(c, "text", "") for c in result.content))

    async def scenario() -> None:
        async with session(deployment, key) as client:
            for server in ("extras", "local", "oldextras"):  # streamable HTTP, stdio, HTTP+SSE
                before = await cancellations(client, server)
                with pytest.raises(Exception):  # noqa: B017 - the client gives up on its call
                    await client.call_tool(f"{server}__wait", {"seconds": 60}, read_timeout_seconds=1.0)
                deadline = time.monotonic() + 20
                while await cancellations(client, server) == before:
                    assert time.monotonic() < deadline, f"{server}: the call was not cancelled upstream"
                    await asyncio.sleep(0.2)

    asyncio.run(scenario())
