"""OpenTelemetry traces, end to end: a gateway with ``tracing.enabled`` exports its spans over
OTLP/HTTP to a local collector stand-in (tests/otlp_receiver.py), which decodes them. A model
call is one SERVER span with one CLIENT child per attempt, carrying the GenAI semantic-convention
attributes; an incoming ``traceparent`` is continued and each attempt's upstream request carries
its own span as the parent; a retried request shows every attempt under one parent; no prompt or
completion text is ever exported. Every test runs on the embedded default (SQLite) and on a
cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from switchboard.observability.tracing import MAX_ATTRIBUTE_CHARS
from tests.e2e.sdk import ask
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    captured,
    new_marker,
    openai_config,
    refused_port,
    spawn,
    start_gateway,
)
from tests.services import Postgres, RedisServer


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def tracing_config(mock: Mock, otlp: OtlpReceiver, service: str) -> dict[str, Any]:
    config = openai_config(mock)
    config["models"] += [
        {"name": "pair", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "pair-a"},
        {"name": "pair", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "pair-b"},
        {"name": "omni-moderation-latest", "provider": "local-openai", "model": "omni-moderation-latest",
         "info": {"mode": "moderation"}},
    ]
    config["router"] = {
        "num_retries": 1,  # two attempts per request to the pair
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        "cooldown": {"failures": 1000},  # the failing requests here must not cool the pair down
        "rules": [{"name": "any", "model": "auto", "to": "gpt-4o-mini"}],
    }
    config["tracing"] = {"enabled": True, "endpoint": otlp.url, "service_name": service,
                         "export_interval_seconds": 0.1}
    return config


@pytest.fixture(scope="module")
def notes_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("notes")
    yield server
    server.process.stop()


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock
    otlp: OtlpReceiver
    service: str

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, otlp: OtlpReceiver, notes_server: McpUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    service = f"switchboard-{request.param}-{uuid.uuid4().hex[:6]}"
    config = tracing_config(mock_upstream, otlp, service)
    config["mcp_servers"] = [{"name": "notes", "url": notes_server.url}]
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"tracing_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"tracing-{request.param}"))
    yield Deployment(request.param, gw, mock_upstream, otlp, service)
    gw.process.stop()


def _traceparent() -> tuple[str, str, str]:
    """(trace id, parent span id, the sampled traceparent header naming them)."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def _one(spans: list[ReceivedSpan], kind: str) -> ReceivedSpan:
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, spans
    return found[0]


def _no_text(spans: list[ReceivedSpan], *texts: str) -> None:
    for span in spans:
        shown = repr(span)
        for text in texts:
            assert text not in shown, f"{text!r} exported in {span}"


def test_a_chat_call_continues_the_callers_trace_with_genai_attributes(deployment: Deployment) -> None:
    trace_id, parent, header = _traceparent()
    marker = new_marker()
    prompt = f"the secret plan is tangerine mock:capture={marker}"
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask(prompt), max_tokens=50, temperature=0.5, top_p=0.9,
        extra_headers={"traceparent": header, "tracestate": "vendor=abc"},
    )
    reply = raw.parse()
    request_id = raw.headers["x-request-id"]

    spans = deployment.otlp.trace(trace_id, count=2)
    assert len(spans) == 2, spans
    server, client = _one(spans, "server"), _one(spans, "client")
    # The caller's trace continued: same trace id, the caller's span as our parent.
    assert server.parent_span_id == parent
    assert client.parent_span_id == server.span_id
    assert server.name == "chat gpt-4o-mini" and client.name == "chat gpt-4o-mini"
    assert server.resource["service.name"] == deployment.service
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns

    a = client.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.response.id"] == reply.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert reply.usage is not None
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == deployment.mock.port
    assert a["switchboard.request_id"] == request_id
    assert a["switchboard.attempt"] == 1
    assert client.status == "unset" and "error.type" not in a

    s = server.attributes
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "gpt-4o-mini"
    assert s["switchboard.request_id"] == request_id
    assert s["switchboard.group"] == "gpt-4o-mini" and s["switchboard.attempts"] == 1
    assert s["gen_ai.provider.name"] == "openai"  # the attempt's
    assert s["http.response.status_code"] == 200
    assert s["switchboard.cost_usd"] > 0
    assert server.status == "unset"

    # The upstream call carried the attempt span as its parent, in the caller's trace.
    upstream = captured(deployment.mock, marker)[0]
    assert upstream["headers"]["traceparent"] == f"00-{trace_id}-{client.span_id}-01"
    assert upstream["headers"]["tracestate"] == "vendor=abc"
    _no_text(spans, "tangerine", reply.choices[0].message.content or "-")


def test_a_rerouted_request_is_traced_under_the_name_it_asked_for(deployment: Deployment) -> None:
    """A rule sent "auto" to gpt-4o-mini: the server span names the model the client asked for,
    the attempt the upstream model, the group the one that served."""
    trace_id, _, header = _traceparent()
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="auto", messages=ask("route me"), extra_headers={"traceparent": header})
    assert raw.headers["x-switchboard-route"] == "gpt-4o-mini (rule any)"
    spans = deployment.otlp.trace(trace_id, count=2)
    server, client = _one(spans, "server"), _one(spans, "client")
    assert server.name == "chat auto" and server.attributes["gen_ai.request.model"] == "auto"
    assert server.attributes["switchboard.group"] == "gpt-4o-mini"
    assert client.name == "chat gpt-4o-mini" and client.attributes["gen_ai.request.model"] == "gpt-4o-mini"


def test_a_stream_span_ends_with_the_stream(deployment: Deployment) -> None:
    trace_id, _, header = _traceparent()
    stream = deployment.sdk().chat.completions.create(
        model="gpt-4o-mini", messages=ask("stream a little mock:reply=one_two_three"), stream=True,
        stream_options={"include_usage": True}, extra_headers={"traceparent": header},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None

    spans = deployment.otlp.trace(trace_id, count=2)
    server, client = _one(spans, "server"), _one(spans, "client")
    assert client.parent_span_id == server.span_id
    a = client.attributes
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert a["gen_ai.response.id"] == chunks[0].id
    assert server.attributes["switchboard.stream"] is True
    _no_text(spans, "one two three")


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_is_traced_as_closed_with_its_499(deployment: Deployment, stream: bool) -> None:
    trace_id, _, header = _traceparent()
    body = {"model": "gpt-4o-mini", "stream": stream, "messages": ask("mock:latency_ms=3000 slow")}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up before any answer
        httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body, timeout=0.5,
                   headers={"Authorization": f"Bearer {MASTER_KEY}", "traceparent": header})
    spans = deployment.otlp.trace(trace_id, count=2)
    server, client = _one(spans, "server"), _one(spans, "client")
    assert client.status == "error" and client.attributes["error.type"] == "closed"
    assert server.attributes["http.response.status_code"] == 499
    assert server.attributes["error.type"] == "closed"
    assert server.status == "unset"  # not the gateway's failure


def test_embeddings_completions_and_messages_are_named_by_their_operation(deployment: Deployment) -> None:
    client = deployment.sdk()
    trace_id, _, header = _traceparent()
    client.embeddings.create(model="text-embedding-3-small", input="to embed",
                             extra_headers={"traceparent": header})
    spans = deployment.otlp.trace(trace_id, count=2)
    for span in spans:
        assert span.name == "embeddings text-embedding-3-small"
        assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert _one(spans, "client").attributes["gen_ai.usage.input_tokens"] > 0

    trace_id, _, header = _traceparent()
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say", max_tokens=5,
                              extra_headers={"traceparent": header})
    spans = deployment.otlp.trace(trace_id, count=2)
    assert {s.name for s in spans} == {"text_completion gpt-3.5-turbo-instruct"}
    assert _one(spans, "client").attributes["gen_ai.request.max_tokens"] == 5

    # The Anthropic Messages API is a chat call like any other.
    trace_id, _, header = _traceparent()
    messages = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=MASTER_KEY, max_retries=0,
                                   timeout=30)
    message = messages.messages.create(model="gpt-4o-mini", max_tokens=20, messages=ask("hi"),
                                       extra_headers={"traceparent": header})
    spans = deployment.otlp.trace(trace_id, count=2)
    assert {s.name for s in spans} == {"chat gpt-4o-mini"}
    attempt = _one(spans, "client").attributes
    assert attempt["gen_ai.request.max_tokens"] == 20
    assert attempt["gen_ai.usage.output_tokens"] == message.usage.output_tokens

    # A media call is traced under its own operation.
    trace_id, _, header = _traceparent()
    client.moderations.create(model="omni-moderation-latest", input="hi",
                              extra_headers={"traceparent": header})
    spans = deployment.otlp.trace(trace_id, count=2)
    assert {s.name for s in spans} == {"moderations omni-moderation-latest"}
    assert {s.attributes["gen_ai.operation.name"] for s in spans} == {"moderations"}


def test_a_tool_loops_tool_call_is_a_step_of_the_requests_trace(deployment: Deployment) -> None:
    """A Responses request naming an MCP server: the tool call the loop makes between its two
    model calls is a child of the request's span, in its trace (no traceparent sent: the trace
    is the gateway's own), as the model calls' attempts are."""
    response = deployment.sdk().responses.with_raw_response.create(
        model="gpt-4o-mini", input="Read a note",
        tools=[{"type": "mcp", "server_label": "notes", "require_approval": "never",  # type: ignore[list-item]
                "allowed_tools": ["read_note"]}])
    assert [item.type for item in response.parse().output] == ["mcp_list_tools", "mcp_call", "message"]
    request_id = response.headers["x-request-id"]
    spans = deployment.otlp.wait(
        lambda s: str(s.attributes.get("switchboard.request_id", "")).startswith(request_id), count=4)
    assert len(spans) == 4, spans
    server = _one(spans, "server")
    assert server.name == "chat gpt-4o-mini" and server.parent_span_id == ""
    # Named and attributed as the GenAI conventions' execute_tool span: a tool, not a model.
    tool = _one(spans, "internal")
    assert tool.name == "execute_tool notes__read_note"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "notes__read_note"
    assert tool.attributes["mcp.method.name"] == "tools/call"
    assert "gen_ai.request.model" not in tool.attributes and "gen_ai.provider.name" not in tool.attributes
    assert tool.attributes["switchboard.request_id"] == f"{request_id}.t1"
    assert [s.kind for s in spans].count("client") == 2
    for span in spans:
        if span is not server:
            assert (span.trace_id, span.parent_span_id) == (server.trace_id, server.span_id), span


def test_a_tool_loops_failed_tool_call_is_an_error_span_naming_the_models_call(
    deployment: Deployment,
) -> None:
    """A tool that answers an error result (``isError``) is a failed tool execution: its span
    carries ``error.type`` ``tool_error`` and status ERROR (the MCP conventions), though the
    gateway's own answer is a 200; and the span names the model's tool call it ran
    (``gen_ai.tool.call.id``), the id the model's next call is sent its result under."""
    marker = new_marker()
    response = deployment.sdk().responses.with_raw_response.create(
        model="gpt-4o-mini", input=f"Break something mock:capture={marker}",
        tools=[{"type": "mcp", "server_label": "notes", "require_approval": "never",  # type: ignore[list-item]
                "allowed_tools": ["broken"]}])
    call = [item for item in response.parse().output if item.type == "mcp_call"]
    assert len(call) == 1 and call[0].error, call  # the tool failed; the request did not
    request_id = response.headers["x-request-id"]
    fed_back = captured(deployment.mock, marker, count=2)[-1]["body"]["messages"][-1]
    assert fed_back["role"] == "tool" and fed_back["tool_call_id"].startswith("call_"), fed_back
    spans = deployment.otlp.wait(
        lambda s: str(s.attributes.get("switchboard.request_id", "")).startswith(request_id), count=4)
    tool = _one(spans, "internal")
    assert tool.name == "execute_tool notes__broken"
    assert tool.attributes["error.type"] == "tool_error"
    assert tool.status == "error"
    assert tool.attributes["http.response.status_code"] == 200
    assert tool.attributes["gen_ai.tool.call.id"] == fed_back["tool_call_id"]
    server = _one(spans, "server")
    assert server.status != "error" and "error.type" not in server.attributes  # the request succeeded
    _no_text(spans, "this tool is broken")  # the tool's error text is never on a span


def test_a_tools_call_answered_with_an_error_result_is_an_error_span(deployment: Deployment) -> None:
    """On /mcp too: a tools/call whose result is ``isError`` has ``error.type`` ``tool_error``
    and status ERROR on its SERVER span; one sent to /mcp names no model tool call."""
    trace_id, parent, header = _traceparent()
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "notes__broken", "arguments": {}}}
    resp = httpx.post(deployment.gateway.url + "/mcp", json=call, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}", "traceparent": header,
                               "Accept": "application/json, text/event-stream"})
    assert resp.status_code == 200 and resp.json()["result"]["isError"] is True, resp.text
    span = _one(deployment.otlp.trace(trace_id, count=1), "server")
    assert (span.name, span.parent_span_id) == ("tools/call notes__broken", parent)
    assert span.attributes["error.type"] == "tool_error"
    assert span.status == "error"
    assert "gen_ai.tool.call.id" not in span.attributes
    _no_text([span], "this tool is broken")


def test_an_upstream_4xx_without_a_code_has_the_same_error_type_on_both_spans(deployment: Deployment) -> None:
    """An upstream 400 passed on carries no error code of ours: the attempt names it by its
    status, as the server span does (not by the exception's class)."""
    trace_id, _, header = _traceparent()
    with pytest.raises(openai.BadRequestError) as refused:
        deployment.sdk().chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=400 no"),
                                                 extra_headers={"traceparent": header})
    assert refused.value.code is None
    spans = deployment.otlp.trace(trace_id, count=2)
    server, client = _one(spans, "server"), _one(spans, "client")
    assert client.status == "error" and client.attributes["http.response.status_code"] == 400
    assert client.attributes["error.type"] == "400" == server.attributes["error.type"]
    assert server.status == "unset"  # the caller's error


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)  # no state involved
def test_a_callers_long_strings_are_cut_on_the_span(deployment: Deployment) -> None:
    """What a caller writes reaches a span cut to a bounded length, so a flood of long names
    cannot make each queued span tens of kilobytes: the Gemini API's model is in the URL (the
    request line may be up to the header limit, 64 KiB), a chat body's model is any string."""
    long_name = "m" * 30_000
    trace_id, _, header = _traceparent()
    resp = httpx.post(f"{deployment.gateway.url}/v1beta/models/{long_name}:generateContent",
                      headers={"x-goog-api-key": MASTER_KEY, "traceparent": header},
                      json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=30)
    assert resp.status_code == 400, resp.text
    (server,) = deployment.otlp.trace(trace_id, count=1)
    path = server.attributes["url.path"]
    assert path.startswith("/v1beta/models/mmm") and len(path) == MAX_ATTRIBUTE_CHARS
    assert server.attributes["http.response.status_code"] == 400

    trace_id, _, header = _traceparent()
    with pytest.raises(openai.NotFoundError):
        deployment.sdk().chat.completions.create(model=long_name, messages=ask("hi"),
                                                 extra_headers={"traceparent": header})
    (server,) = deployment.otlp.trace(trace_id, count=1)
    assert server.name == f"chat {long_name[:256]}"
    assert server.attributes["gen_ai.request.model"] == long_name[:256]
    assert all(len(v) <= MAX_ATTRIBUTE_CHARS for v in server.attributes.values() if isinstance(v, str))


def test_a_keys_tenant_is_on_the_span_and_a_refused_call_is_traced(deployment: Deployment) -> None:
    created = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", json={"models": ["gpt-4o-mini"]},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert created.status_code == 201, created.text
    client = openai.OpenAI(base_url=deployment.gateway.base_url, api_key=created.json()["key"],
                           max_retries=0, timeout=30)
    trace_id, _, header = _traceparent()
    client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"),
                                   extra_headers={"traceparent": header})
    server = _one(deployment.otlp.trace(trace_id, count=2), "server")
    assert server.attributes["switchboard.tenant"] == created.json()["tenant"]

    # A model the key may not use: refused before any attempt, traced as a 4xx (not an error).
    trace_id, _, header = _traceparent()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="text-embedding-3-small", messages=ask("hi"),
                                       extra_headers={"traceparent": header})
    (server,) = deployment.otlp.trace(trace_id, count=1)
    assert server.kind == "server" and server.name == "chat text-embedding-3-small"
    assert server.attributes["http.response.status_code"] == 403
    assert server.attributes["error.type"] == refused.value.code
    assert server.status == "unset" and "switchboard.attempts" not in server.attributes


def test_a_request_refused_after_routing_names_no_provider(deployment: Deployment) -> None:
    """A budget refuses the request once it is routed, before any attempt: its span names the
    group it was routed to, but no provider, since none was called."""
    created = httpx.post(f"{deployment.gateway.url}/admin/v1/keys",
                         json={"models": ["gpt-4o-mini"], "max_budget_usd": 0.0000001},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert created.status_code == 201, created.text
    client = openai.OpenAI(base_url=deployment.gateway.base_url, api_key=created.json()["key"],
                           max_retries=0, timeout=30)
    trace_id, _, header = _traceparent()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("too dear"),
                                       extra_headers={"traceparent": header})
    assert refused.value.code in ("budget_exceeded", "request_exceeds_budget")
    (server,) = deployment.otlp.trace(trace_id, count=1)  # no attempt span either
    assert server.kind == "server" and server.name == "chat gpt-4o-mini"
    assert server.attributes["error.type"] == refused.value.code
    assert server.attributes["switchboard.group"] == "gpt-4o-mini"
    assert "gen_ai.provider.name" not in server.attributes
    assert "switchboard.attempts" not in server.attributes


def test_a_retried_request_shows_each_attempt_under_one_parent(deployment: Deployment) -> None:
    marker = new_marker()
    with pytest.raises(openai.APIStatusError) as failed:
        deployment.sdk().chat.completions.create(
            model="pair", messages=ask(f"fail please mock:status=500 mock:capture={marker}"))
    status = failed.value.status_code
    assert status >= 500
    request_id = failed.value.response.headers["x-request-id"]
    assert failed.value.response.headers["x-switchboard-attempts"] == "2"

    spans = deployment.otlp.of_request(request_id, count=3)
    assert len(spans) == 3, spans
    server = _one(spans, "server")
    attempts = sorted((s for s in spans if s.kind == "client"), key=lambda s: s.start_ns)
    assert len(attempts) == 2
    assert server.parent_span_id == ""  # no incoming traceparent: a new trace
    assert server.name == "chat pair"
    assert server.status == "error"
    assert server.attributes["switchboard.attempts"] == 2
    assert server.attributes["http.response.status_code"] == status
    assert server.attributes["error.type"]
    for number, attempt in enumerate(attempts, 1):
        assert attempt.trace_id == server.trace_id and attempt.parent_span_id == server.span_id
        assert attempt.status == "error"
        assert attempt.attributes["error.type"] == failed.value.code == server.attributes["error.type"]
        assert attempt.attributes["http.response.status_code"] >= 500
        assert attempt.attributes["switchboard.attempt"] == number
        assert attempt.attributes["switchboard.group"] == "pair"
    # Each attempt is its own deployment (the pair's other one on retry) and its own parent.
    assert {a.attributes["switchboard.deployment"] for a in attempts} == {"pair-a", "pair-b"}
    upstream = captured(deployment.mock, marker, count=2)
    sent = [r["headers"]["traceparent"].rsplit("-", 1) for r in upstream]
    assert [prefix for prefix, _ in sent] == [f"00-{server.trace_id}-{a.span_id}" for a in attempts]
    assert all(int(flags, 16) & 1 for _, flags in sent)  # sampled


def _on_store(kind: str, request: pytest.FixtureRequest, config: dict[str, Any]) -> None:
    """A cluster gateway's config: its own database on the worker's PostgreSQL, and Redis."""
    if kind == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"tracing_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_collector_that_is_down_fails_no_request(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path,
) -> None:
    config = openai_config(mock_upstream)
    config["tracing"] = {"enabled": True, "endpoint": f"http://127.0.0.1:{refused_port()}/v1/traces",
                         "export_interval_seconds": 0.1, "timeout_seconds": 1}
    _on_store(kind, request, config)
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        for n in range(5):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask(f"still here {n}"))
            assert reply.choices[0].message.content
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask("and streaming"),
                                                stream=True)
        assert list(stream)
    finally:
        # Shutdown tries the last export once, bounded by timeout_seconds, and exits cleanly.
        assert gw.process.stop(timeout=30) == 0
    assert "Traceback" not in gw.process.output


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_collector_that_never_answers_delays_shutdown_by_timeout_seconds_at_most(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path,
) -> None:
    """A collector that takes the connection and never answers: each export waits its
    timeout_seconds, so spans pile up in the queue; stopping the gateway tries them for
    timeout_seconds in all, not once per batch still queued."""
    with socket.socket() as hung:  # listens, never accepts: a connection is made, never answered
        hung.bind(("127.0.0.1", 0))
        hung.listen(128)
        config = openai_config(mock_upstream)
        config["tracing"] = {"enabled": True, "endpoint": f"http://127.0.0.1:{hung.getsockname()[1]}/v1/traces",
                             "export_interval_seconds": 0.1, "timeout_seconds": 1, "max_export_batch_size": 1}
        _on_store(kind, request, config)
        gw = start_gateway(config, tmp_path)
        try:
            client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
            for n in range(10):  # 20 spans, exported one per batch
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask(f"queued {n}"))
                assert reply.choices
        finally:
            began = time.monotonic()
            assert gw.process.stop(timeout=60) == 0
            stopped = time.monotonic() - began
    assert stopped < 8, f"stopping took {stopped:.1f} s"
    assert "Traceback" not in gw.process.output


def test_a_key_in_the_collectors_query_string_is_never_logged(mock_upstream: Mock, tmp_path: Path) -> None:
    secret = "otlp-query-secret-0123456789"
    config = openai_config(mock_upstream)
    # A timeout long enough for a retry: the first failure is logged as a transient error.
    config["tracing"] = {"enabled": True, "export_interval_seconds": 0.1, "timeout_seconds": 5,
                         "endpoint": f"http://127.0.0.1:{refused_port()}/v1/traces?api_key={secret}&x=1"}
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("traced")).choices
        # The collector is down: the exporter says so, naming the URL without its query string.
        line = gw.process.wait_for_all("encountered while exporting", "/v1/traces?[REDACTED]")
        assert secret not in line
    finally:
        assert gw.process.stop(timeout=30) == 0
    gw.process.wait_exit()
    assert secret not in gw.process.output


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_config_errors_name_the_tracing_key(kind: str, tmp_path: Path, mock_upstream: Mock) -> None:
    cases = {
        "bad-url": ({"enabled": True, "endpoint": "collector:4318"}, "tracing.endpoint"),
        "unknown-key": ({"enabled": True, "exporter": "zipkin"}, "tracing.exporter"),
        "ratio": ({"sample_ratio": 2}, "tracing.sample_ratio"),
        "interval": ({"export_interval_seconds": 0}, "tracing.export_interval_seconds"),
        "batch": ({"max_queue_size": 10, "max_export_batch_size": 20}, "max_export_batch_size"),
        "protocol": ({"protocol": "grpc"}, "tracing.protocol"),
    }
    for name, (section, expected) in cases.items():
        config = openai_config(mock_upstream)
        if kind == "cluster":  # checked without connecting
            config["database"] = {"url": "postgresql://sb@127.0.0.1:5432/sb"}
            config["redis"] = {"url": "redis://127.0.0.1:6379/0"}
        config["tracing"] = section
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = spawn(["config", "check", str(path)],
                     env={"UPSTREAM_KEY": UPSTREAM_KEY, "SWITCHBOARD_MASTER_KEY": MASTER_KEY})
        assert proc.proc.wait(60) == 2, (name, proc.output)
        proc.wait_exit()
        assert expected in proc.output, (name, proc.output)
        assert "Traceback" not in proc.output
