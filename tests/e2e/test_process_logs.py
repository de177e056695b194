"""The gateway's own log lines, end to end: with ``server.log_format: json`` every line the
process writes (the gateway's loggers, uvicorn's start-up and access log) is one JSON object with
time, level, logger and message, and the lines about a request carry its id (and its trace id
when traces are on); the text format keeps its shape and gains ``request_id=``. No line carries
the prompt or a credential, not even a key a caller put in the query string of any path (the
access log line shows ``key=[REDACTED]``). Every test runs on the embedded default (SQLite) and on a cluster
(PostgreSQL + Redis)."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml

from tests.e2e.sdk import ask
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.otlp_receiver import OtlpReceiver
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    free_port,
    openai_config,
    spawn,
    start_gateway,
)
from tests.services import Postgres, RedisServer


def _fragile() -> str:
    """A group of two deployments of its own (one per gateway: cooldowns are shared through
    Redis) whose deployments cool down at their first failure: the cooldown's warning is a line
    the gateway writes while handling the failing request."""
    return f"fragile-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    model: str

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def fail(self, prompt: str, group: str | None = None, **headers: str) -> str:
        """Send a request the upstream fails (to ``group``, by default the fragile one whose
        first failure cools it down); its request id."""
        request_id = f"req-{uuid.uuid4().hex}"
        with pytest.raises(openai.APIStatusError) as failed:
            self.sdk().chat.completions.create(
                model=group or self.model, messages=ask(f"{prompt} mock:status=500"),
                extra_headers={"x-request-id": request_id, **headers},
            )
        assert failed.value.response.headers["x-request-id"] == request_id
        return request_id


def _config(mock: Mock, kind: str, request: pytest.FixtureRequest, model: str, **server: Any,
            ) -> dict[str, Any]:
    config = openai_config(mock, **server)
    # The fragile group, and one for the tests that need no cooldown of their own (whichever test
    # first fails the fragile group sees its cooldown's line).
    config["models"] += [
        {"name": name, "provider": "local-openai", "model": "gpt-4o-mini", "deployment": f"{name}-{n}"}
        for name in (model, f"{model}-busy") for n in ("a", "b")
    ]
    config["router"] = {"num_retries": 0, "cooldown": {"failures": 1}}
    if kind == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"plogs_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def notes_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("notes")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def json_gateway(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, otlp: OtlpReceiver,
    notes_server: McpUpstream, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    model = _fragile()
    config = _config(mock_upstream, kind, request, model, log_format="json", access_log=True)
    config["tracing"] = {"enabled": True, "endpoint": otlp.url, "export_interval_seconds": 0.1}
    config["mcp_servers"] = [{"name": "notes", "url": notes_server.url}]
    config["mcp"] = {"max_tool_steps": 2}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"plogs-json-{kind}"))
    yield Deployment(kind, gw, model)
    gw.process.stop()


@pytest.fixture(scope="module")
def text_gateway(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    model = _fragile()
    config = _config(mock_upstream, kind, request, model, access_log=True)
    gw = start_gateway(config, tmp_path_factory.mktemp(f"plogs-text-{kind}"))
    yield Deployment(kind, gw, model)
    gw.process.stop()


def _parsed(lines: list[str]) -> list[dict[str, Any]]:
    entries = []
    for line in lines:
        entry = orjson.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        when = datetime.fromisoformat(entry["time"])
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=10), line
        entries.append(entry)
    return entries


def test_json_lines_carry_the_request_and_trace_ids(json_gateway: Deployment) -> None:
    process = json_gateway.gateway.process
    trace_id = secrets.token_hex(16)
    request_id = json_gateway.fail("the passphrase is marmalade",
                                   traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
    process.wait_for_all(request_id, "request failed")
    process.wait_for_all(request_id, "uvicorn.access")

    entries = _parsed(list(process.lines))
    startup = [e for e in entries if e["message"] == "Application startup complete."]
    assert startup and startup[0]["logger"] == "uvicorn.error" and "request_id" not in startup[0]
    mine = [e for e in entries if e.get("request_id") == request_id]
    by_logger = {e["logger"]: e for e in mine}
    # The failure line, the cooldown it caused, and the access log line: all about this request.
    failure = by_logger["switchboard.requests"]
    assert failure["level"] == "WARNING" and f"request_id={request_id}" in failure["message"]
    cooling = by_logger["switchboard.routing"]
    assert cooling["level"] == "WARNING" and "cooling down" in cooling["message"]
    assert "uvicorn.access" in by_logger
    assert all(e["trace_id"] == trace_id for e in mine)
    # Lines about other requests or none do not carry this id; no line carries the prompt.
    assert all("marmalade" not in line and MASTER_KEY not in line and UPSTREAM_KEY not in line
               for line in process.lines)


def test_lines_after_a_tool_loops_tool_call_keep_the_requests_ids(json_gateway: Deployment) -> None:
    """A traced request whose MCP tool loop ran a tool call: the lines about it after that call
    (here its failure line, the loop stopped at mcp.max_tool_steps) still carry the request's
    own id and trace id, not those of the tool call's span."""
    process = json_gateway.gateway.process
    trace_id = secrets.token_hex(16)
    request_id = f"req-{uuid.uuid4().hex}"
    with pytest.raises(openai.BadRequestError) as refused:
        json_gateway.sdk().responses.create(
            model="gpt-4o-mini", input="read again and again mock:tool_call=notes__read_note",
            tools=[{"type": "mcp", "server_label": "notes", "require_approval": "never"}],  # type: ignore[list-item]
            extra_headers={"x-request-id": request_id,
                           "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert refused.value.code == "mcp_max_tool_steps"
    process.wait_for_all(f"request_id={request_id} ", "request failed")
    failures = [e for e in _parsed(list(process.lines))
                if e["logger"] == "switchboard.requests" and f"request_id={request_id} " in e["message"]]
    assert len(failures) == 1, failures
    assert (failures[0]["request_id"], failures[0]["trace_id"]) == (request_id, trace_id)


def test_lines_of_concurrent_requests_keep_their_own_ids(json_gateway: Deployment) -> None:
    process = json_gateway.gateway.process
    ids = [json_gateway.fail(f"request {i}", f"{json_gateway.model}-busy") for i in range(3)]
    for request_id in ids:
        process.wait_for_all(request_id, "request failed")
    entries = _parsed(list(process.lines))
    for request_id in ids:
        failures = [e for e in entries if e["logger"] == "switchboard.requests"
                    and f"request_id={request_id}" in e["message"]]
        assert len(failures) == 1 and failures[0]["request_id"] == request_id


def test_text_lines_keep_their_shape_and_gain_the_request_id(text_gateway: Deployment) -> None:
    process = text_gateway.gateway.process
    request_id = text_gateway.fail("the passphrase is marmalade")
    line = process.wait_for_all(request_id, "cooling down")
    assert re.fullmatch(
        rf"WARNING:     switchboard\.routing: deployment \S+ of {text_gateway.model} is cooling down "
        rf"for \S+ s request_id={re.escape(request_id)}\n", line), line
    failure = process.wait_for_all(request_id, "request failed")
    assert failure.startswith("WARNING:     switchboard.requests: request failed ")
    assert failure.count(f"request_id={request_id}") == 1  # named once, not appended again
    assert "trace_id=" not in failure  # traces are off here
    # Lines about no request are as they always were.
    assert "INFO:     Application startup complete.\n" in process.lines
    assert not any(line.lstrip().startswith("{") for line in process.lines)
    assert all("marmalade" not in line for line in process.lines)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_access_log_line_holds_a_key_given_in_the_query(kind: str, log_format: str,
                                                          request: pytest.FixtureRequest) -> None:
    """A key in ``?key=`` (Google's API takes one there) is redacted from the access log on every
    path, not only on the Gemini paths that read it: a caller trying Google's shape elsewhere,
    the name percent-encoded, a credential-like parameter of the gateway's own (``ticket``)."""
    d: Deployment = request.getfixturevalue(f"{log_format}_gateway")
    url, secret = d.gateway.url, f"sk-in-the-url-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    chat = {"model": "gpt-4o-mini", "messages": ask("hi")}
    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    # The last field: whether the line shows the parameter redacted; a Gemini call reads its
    # key (percent-encoded name included) into a header, so its line has no key parameter left.
    sent: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None, bool]] = [
        ("GET", "/v1beta/models?key={s}&n={m}", None, None, True),
        ("POST", "/v1/chat/completions?key={s}&n={m}", chat, auth, True),
        ("POST", "/v1/chat/completions?n={m}&KEY={s}", chat, None, True),
        ("POST", "/v1/chat/completions?%6Bey={s}&n={m}", chat, auth, True),
        ("POST", "/v1beta/models/gpt-4o-mini:generateContent?%6Bey={s}&n={m}", gemini, None, False),
        ("GET", "/admin/v1/keys?n={m}&key={s}", None, auth, True),
        ("GET", "/mcp/oauth/some-server/authorize?ticket={s}&n={m}", None, None, True),
    ]
    for method, path, body, headers, redacted in sent:
        marker = f"m{uuid.uuid4().hex[:8]}"  # the request's own: its line carries it
        target = path.format(s=secret, m=marker)
        httpx.request(method, url + target, json=body, headers=headers, timeout=30)
        line = d.gateway.process.wait_for_all(f"n={marker}", "HTTP/1.1")
        assert secret not in line and ("=[REDACTED]" in line) == redacted, line
        assert target.split("?")[0] in line  # the rest of the line as it was
    assert all(secret not in line for line in d.gateway.process.lines)


def test_unknown_log_format_is_a_config_error(kind: str, mock_upstream: Mock, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    config = _config(mock_upstream, kind, request, _fragile(), log_format="xml")
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"UPSTREAM_KEY": UPSTREAM_KEY, "SWITCHBOARD_MASTER_KEY": MASTER_KEY,
           "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = spawn(args, env=env)
        assert proc.wait_exit(60) == 2, proc.output
        assert "server.log_format" in proc.output and "'text'" in proc.output and "'json'" in proc.output
        assert "Traceback" not in proc.output
