"""No request leaves a reference cycle behind: what a request built is freed as it ends, not by
the cyclic garbage collector, whose passes over a few hundred requests' worth stall the event
loop for milliseconds (the tail latency of every request served meanwhile).

The gateway runs in this process, on uvloop as it serves, against the mock upstream; each kind
of request is sent a few times with the collector off and saving what it finds, then one
collection must find nothing unreachable that the requests left. Both paths: the master key on
the bare configuration, and the full path (a key with rate limits and a budget, the request log
keeping every body, the ledger and metrics; a routing group of two deployments). A REST service
(/services/), a prompt API (/apis/), MCP tools (the tool loop, and /mcp with the official client)
and message batches are called too; test_no_cycles_outage.py does the same with Redis down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import uvicorn
import uvloop
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from switchboard.app import SwitchboardApp
from switchboard.http.protocol import GatewayHttpProtocol
from switchboard.settings.loader import validate
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, SECRET_KEY, UPSTREAM_KEY, Mock, refused_port

N = 5  # requests of each kind measured (after one that warms the caches up)
HELLO = [{"role": "user", "content": "hello"}]
TOOL = {"type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def _config(mock: Mock, notes: McpUpstream, full: bool) -> dict[str, Any]:
    upstream = {"type": "openai", "api_base": f"{mock.url}/v1", "api_key": UPSTREAM_KEY}
    config: dict[str, Any] = {
        "providers": [
            {"name": "oa", **upstream},
            {"name": "oa2", **upstream},
            {"name": "oa-down", **upstream, "headers": {"x-mock-faults": "rate=1;kinds=500"}},
            {"name": "an", "type": "anthropic", "api_base": mock.url, "api_key": UPSTREAM_KEY},
            {"name": "nowhere", "type": "openai", "api_base": f"http://127.0.0.1:{refused_port()}/v1"},
        ],
        "models": [
            {"name": "gpt-4o-mini", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "gpt-4o-mini", "provider": "oa2", "model": "gpt-4o-mini", "deployment": "second"},
            # Its failures cool no deployment of the others down.
            {"name": "fails", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "down", "provider": "oa-down", "model": "gpt-4o-mini"},
            {"name": "unreachable", "provider": "nowhere", "model": "gpt-4o-mini"},
            {"name": "claude", "provider": "an", "model": "claude-3-5-haiku-latest"},
            {"name": "whisper-1", "provider": "oa", "model": "whisper-1"},
            {"name": "text-embedding-3-small", "provider": "oa", "model": "text-embedding-3-small"},
            {"name": "gpt-3.5-turbo-instruct", "provider": "oa", "model": "gpt-3.5-turbo-instruct"},
            # Too small for any request: a pin on it is refused outright.
            {"name": "small", "provider": "oa", "model": "gpt-4o-mini", "deployment": "tiny",
             "info": {"context_window": 4}},
            {"name": "native", "provider": "oa", "model": "gpt-4o-mini", "responses": "native"},
        ],
        "auth": {"master_key": MASTER_KEY, "secret_key": SECRET_KEY},
        # Retries at once, and deployments never cooled down: every request takes the same path.
        "router": {"retry": {"backoff_seconds": 0}, "cooldown": {"failures": 1000}, "allow_pinning": True,
                   "fallbacks": {"down": ["gpt-4o-mini"]}},
        "services": [{"name": "down", "url": f"http://127.0.0.1:{refused_port()}"}],
        "mcp_servers": [
            {"name": "notes", "url": notes.url},
            {"name": "down", "url": f"http://127.0.0.1:{refused_port()}/mcp", "connect_timeout_seconds": 1},
        ],
        "server": {"log_level": "error"},
    }
    if full:
        config["request_log"] = {"bodies": [{"request": True, "response": True}]}
    return config


@dataclass
class InProcess:
    """The gateway on a free port of this process's loop, which runs while a test drives it."""

    loop: asyncio.AbstractEventLoop
    server: uvicorn.Server
    port: int
    key: str = MASTER_KEY
    limited_key: str = ""  # a key allowed one request a minute, spent
    api_key: str = ""  # a key of the team that published the prompt API ``API``
    kinds: dict[str, Callable[[], None]] = field(default_factory=dict)  # each kind of request

    def drive(self, call: Callable[[], None], times: int) -> None:
        """``call`` (a blocking client) ``times`` times in a thread, the loop serving, until the
        gateway has finished every request (post-response work included)."""

        async def run() -> None:
            for _ in range(times):
                await asyncio.to_thread(call)
            while self.server.server_state.tasks:  # a request still ending (a client that left)
                await asyncio.wait(list(self.server.server_state.tasks))

        self.loop.run_until_complete(run())


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cycles")


@pytest.fixture(scope="module")
def notes_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("notes")
    yield server
    server.process.stop()


@contextlib.contextmanager
def in_process(config: dict[str, Any], data_dir: Path) -> Iterator[InProcess]:
    """The gateway of ``config`` on a free port of a new loop of this process."""
    thresholds = gc.get_threshold()
    loop = uvloop.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWITCHBOARD_DATA_DIR", str(data_dir))
        settings = validate(config, "test", env={})
        uvi = uvicorn.Config(SwitchboardApp(settings), http=GatewayHttpProtocol, loop="none",
                             lifespan="on", log_level="error", access_log=False)
        uvi.load()
        server = uvicorn.Server(uvi)
        server.lifespan = uvi.lifespan_class(uvi)
        loop.run_until_complete(server.startup(sockets=[sock]))
        try:
            yield InProcess(loop, server, sock.getsockname()[1])
        finally:
            loop.run_until_complete(server.shutdown(sockets=[sock]))
            loop.close()
            gc.unfreeze()  # start-up froze what it had built, and raised the thresholds
            gc.set_threshold(*thresholds)


@pytest.fixture(scope="module", params=["bare", "full"])
def gateway(request: pytest.FixtureRequest, mock_upstream: Mock, notes_server: McpUpstream, tmp_path: Path,
            ) -> Iterator[InProcess]:
    full = request.param == "full"
    with in_process(_config(mock_upstream, notes_server, full), tmp_path / request.param) as gw:
        if full:
            gw.key = _issue(gw, {"models": ["*"], "rpm_limit": 100_000, "tpm_limit": 10**9,
                                 "max_budget_usd": 1000})
        gw.limited_key = _issue(gw, {"models": ["*"], "rpm_limit": 1})
        # Its one request of the minute.
        gw.drive(lambda: _post(gw, "/v1/chat/completions", CHAT, gw.limited_key), 1)
        gw.api_key = _publish(gw)
        gw.kinds = _kinds(gw)
        yield gw


CHAT = json.dumps({"model": "gpt-4o-mini", "messages": HELLO}).encode()
PIN = "x-switchboard-deployment"
# Unsupported on a translated deployment; naming an object of the shared account on a native one.
RESPONSES_UNSUPPORTED = json.dumps({"model": "gpt-4o-mini", "input": "hi", "truncation": "auto"}).encode()
RESPONSES_ACCOUNT = json.dumps({"model": "native", "input": "hi", "conversation": "conv_1"}).encode()
# A model with no Anthropic deployment.
MESSAGE_BATCH = json.dumps({"requests": [{"custom_id": "a", "params": {
    "model": "gpt-4o-mini", "max_tokens": 5, "messages": HELLO}}]}).encode()
GEMINI = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()


def _post(gw: InProcess, path: str, body: bytes, key: str, content_type: str = "application/json",
          ) -> tuple[int, bytes]:
    """A POST with the standard library's client (which leaves no cycle of its own)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        headers = {"content-type": content_type, "authorization": f"Bearer {key}", "x-goog-api-key": key}
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _admin(gw: InProcess, path: str, body: dict[str, Any], key: str = MASTER_KEY) -> dict[str, Any]:
    """A POST to the admin API that creates something."""
    answers: list[tuple[int, bytes]] = []
    gw.drive(lambda: answers.append(_post(gw, path, json.dumps(body).encode(), key)), 1)
    [(status, answer)] = answers
    assert status == 201, answer
    return dict(json.loads(answer))


def _issue(gw: InProcess, body: dict[str, Any]) -> str:
    """A key issued with the master key (the admin API)."""
    return str(_admin(gw, "/admin/v1/keys", body)["key"])


API = "sentiment"


def _publish(gw: InProcess) -> str:
    """A prompt published as the REST API ``API`` by a team: a key of that team's admin."""
    _admin(gw, "/admin/v1/tenants", {"id": "acme", "name": "ACME"})
    team = _admin(gw, "/admin/v1/teams", {"tenant": "acme", "name": "owners"})["id"]
    key = _issue(gw, {"tenant": "acme", "team": team, "role": "team_admin", "models": ["gpt-4o-mini"]})
    _admin(gw, "/admin/v1/prompts", {
        "name": API, "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
        "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    }, key)
    _admin(gw, "/admin/v1/apis", {"name": API, "prompt": API, "version": 1}, key)
    return key


def _kinds(gw: InProcess) -> dict[str, Callable[[], None]]:
    base = f"http://127.0.0.1:{gw.port}"
    oai = openai.OpenAI(base_url=base + "/v1", api_key=gw.key, max_retries=0, timeout=30)
    ant = anthropic.Anthropic(base_url=base, api_key=gw.key, max_retries=0, timeout=30)

    def chat(model: str = "gpt-4o-mini", text: str = "hello", **extra: Any) -> Callable[[], None]:
        messages: Any = [{"role": "user", "content": text}]

        def call() -> None:
            answer = oai.chat.completions.create(model=model, messages=messages, **extra)
            if extra.get("stream"):
                for _ in answer:
                    pass
        return call

    def failing(call: Callable[[], None]) -> Callable[[], None]:
        def fail() -> None:
            with contextlib.suppress(openai.APIError):
                call()
        return fail

    def refused(call: Callable[[], None], status: int) -> Callable[[], None]:
        def refuse() -> None:
            with pytest.raises(openai.APIStatusError) as err:
                call()
            assert err.value.status_code == status, err.value
        return refuse

    def messages(model: str, stream: bool) -> Callable[[], None]:
        def call() -> None:
            if stream:
                with ant.messages.stream(model=model, max_tokens=20, messages=HELLO) as events:  # type: ignore[arg-type]
                    for _ in events:
                        pass
            else:
                ant.messages.create(model=model, max_tokens=20, messages=HELLO)  # type: ignore[arg-type]
        return call

    def raw(path: str, body: bytes, status: int, key: str | None = None,
            content_type: str = "application/json") -> Callable[[], None]:
        def call() -> None:
            got, answer = _post(gw, path, body, key or gw.key, content_type)
            assert got == status, answer
        return call

    def form(path: str, status: int, *fields: tuple[str, str | None, bytes], cut: bool = False,
             ) -> Callable[[], None]:
        """A multipart/form-data POST of ``fields`` (name, file name, data); ``cut``: without its
        closing boundary."""
        parts = [b'--xx\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n'
                 % (name.encode(), b'; filename="%s"' % filename.encode() if filename else b"", data)
                 for name, filename, data in fields]
        body = b"".join(parts) + (b"--xx" if cut else b"--xx--\r\n")
        return raw(path, body, status, content_type="multipart/form-data; boundary=xx")

    def responses(stream: bool) -> Callable[[], None]:
        def call() -> None:
            answer = oai.responses.create(model="gpt-4o-mini", input="hi", stream=stream)
            if stream:
                for _ in answer:
                    pass
        return call

    def mcp_loop(server: str) -> Callable[[], None]:
        """A Responses request naming an MCP server: the gateway lists its tools, the model (the
        mock) calls one, the gateway runs it and gives the model its result."""
        tool: Any = {"type": "mcp", "server_label": server, "require_approval": "never",
                     "allowed_tools": ["read_note"]}

        def call() -> None:
            oai.responses.create(model="gpt-4o-mini", input="Read a note", tools=[tool])
        return call

    def mcp_tool(name: str, arguments: dict[str, Any]) -> Callable[[], None]:
        """A tool called through the gateway's own MCP endpoint with the official client."""
        async def session() -> None:
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {gw.key}"}, timeout=30) as http,
                streamable_http_client(base + "/mcp", http_client=http) as streams,
                ClientSession(streams[0], streams[1]) as client,
            ):
                await client.initialize()
                await client.call_tool(name, arguments)

        return lambda: asyncio.run(session())

    def embeddings() -> None:
        oai.embeddings.create(model="text-embedding-3-small", input="hi")

    def completions() -> None:
        oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")

    def client_leaves() -> None:
        """A raw client that reads the first event of a slow stream and closes."""
        text = "x mock:chunk_delay_ms=20 mock:reply=a_b_c_d_e_f_g_h"
        body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": text}]}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                f"authorization: Bearer {gw.key}\r\ncontent-length: {len(body)}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(head.encode() + body)
            got = b""
            while b"data:" not in got:
                got += sock.recv(65536)

    return {
        "chat": chat(),
        "chat-stream": chat(stream=True),
        "chat-stream-usage": chat(stream=True, stream_options={"include_usage": True}),
        "tool-call": chat(text="x mock:tool_call=get_weather", tools=[TOOL]),
        "upstream-400": failing(chat("fails", "x mock:status=400")),
        "upstream-500": failing(chat("fails", "x mock:status=500")),
        "upstream-500-stream": failing(chat("fails", "x mock:status=500", stream=True)),
        "upstream-cut-mid-stream": failing(chat("fails", "x mock:disconnect_after=2 mock:reply=a_b_c_d",
                                                stream=True)),
        "upstream-error-mid-stream": failing(chat("fails", "x mock:fail_after=2 mock:reply=a_b_c_d",
                                                  stream=True)),
        "fallback": chat("down"),
        "upstream-unreachable": failing(chat("unreachable")),
        "client-leaves-mid-stream": client_leaves,
        "messages-to-openai": messages("gpt-4o-mini", False),
        "messages-to-openai-stream": messages("gpt-4o-mini", True),
        "messages-to-anthropic": messages("claude", False),
        "messages-to-anthropic-stream": messages("claude", True),
        "gemini": raw("/v1beta/models/gpt-4o-mini:generateContent", GEMINI, 200),
        "gemini-stream": raw("/v1beta/models/gpt-4o-mini:streamGenerateContent?alt=sse", GEMINI, 200),
        "responses": responses(False),
        "responses-stream": responses(True),
        "embeddings": embeddings,
        "completions": completions,
        "refused-401": raw("/v1/chat/completions", b"{}", 401, key="sk-not-a-key"),
        "refused-400": raw("/v1/chat/completions", b"{nope", 400),
        "refused-429": raw("/v1/chat/completions", CHAT, 429, key=gw.limited_key),
        "max-tokens-too-large": failing(chat(max_tokens=10_000_000)),
        "pin-never-fits": refused(chat("small", "hello " * 20, extra_headers={PIN: "tiny"}), 400),
        "responses-refused": raw("/v1/responses", RESPONSES_UNSUPPORTED, 400),
        "responses-account-object": raw("/v1/responses", RESPONSES_ACCOUNT, 400),
        "message-batch-refused": raw("/v1/messages/batches", MESSAGE_BATCH, 400),
        "service-unreachable": raw("/services/down/things", b"{}", 502),
        "prompt-api": raw(f"/apis/{API}", b'{"text": "great"}', 200, key=gw.api_key),
        "prompt-api-bad-input": raw(f"/apis/{API}", b'{"text": 1}', 400, key=gw.api_key),
        "mcp-tool-loop": mcp_loop("notes"),
        "mcp-server-down-in-loop": mcp_loop("down"),
        "mcp-tool-call": mcp_tool("notes__read_note", {"title": "welcome"}),
        "mcp-tool-fails": mcp_tool("notes__broken", {}),
        "transcription": form("/v1/audio/transcriptions", 200, ("model", None, b"whisper-1"),
                              ("file", "a.wav", b"RIFF0000WAVE")),
        "transcription-bad-form": form("/v1/audio/transcriptions", 400, ("model", None, b"whisper-1"),
                                       cut=True),
        "file-upload": form("/v1/files", 200, ("purpose", None, b"batch"), ("model", None, b"gpt-4o-mini"),
                            ("file", "a.jsonl", b"{}\n")),
        "file-upload-bad-form": form("/v1/files", 400, ("purpose", None, b"batch"), cut=True),
        # Requests that outlast http/disconnect.py's WATCH_AFTER (0.25 s), as an LLM's answer
        # does: a watcher for the client's disconnect is started, then cancelled at the end.
        "slow-chat": chat(text="x mock:latency_ms=400"),
        "slow-chat-stream": chat(text="x mock:chunk_delay_ms=60 mock:reply=a_b_c_d_e_f_g_h", stream=True),
        # An upload refused at a field it does not know, before the body's end.
        "file-upload-unknown-field": form("/v1/files", 400, ("purpose", None, b"batch"),
                                          ("colour", None, b"red"), ("file", "a.jsonl", b"{}\n" * 50_000)),
        # A field over its bound (256 KiB), refused while the body is still arriving (its 1 MB
        # is read in pieces: the edge pauses reading past 64 KiB until the app takes them).
        "transcription-field-too-large": form("/v1/audio/transcriptions", 413, ("model", None, b"whisper-1"),
                                              ("prompt", None, b"x" * 1_000_000),
                                              ("file", "a.wav", b"RIFF0000WAVE")),
        "file-upload-cut-in-file": form("/v1/files", 400, ("purpose", None, b"batch"),
                                        ("model", None, b"gpt-4o-mini"), ("file", "a.jsonl", b"{}\n"),
                                        cut=True),
    }


KINDS = [
    "chat", "chat-stream", "chat-stream-usage", "tool-call", "upstream-400", "upstream-500",
    "upstream-500-stream", "upstream-cut-mid-stream", "upstream-error-mid-stream", "fallback",
    "upstream-unreachable", "client-leaves-mid-stream", "messages-to-openai", "messages-to-openai-stream",
    "messages-to-anthropic", "messages-to-anthropic-stream", "gemini", "gemini-stream", "responses",
    "responses-stream", "embeddings", "completions", "refused-401", "refused-400", "refused-429",
    "max-tokens-too-large", "pin-never-fits", "responses-refused", "responses-account-object",
    "message-batch-refused", "service-unreachable", "prompt-api", "prompt-api-bad-input", "mcp-tool-loop",
    "mcp-server-down-in-loop", "mcp-tool-call", "mcp-tool-fails", "transcription", "transcription-bad-form",
    "file-upload", "file-upload-bad-form", "transcription-field-too-large", "slow-chat", "slow-chat-stream",
    "file-upload-unknown-field", "file-upload-cut-in-file",
]


def _ours(found: list[object]) -> Counter[str]:
    """The gateway's objects among ``found``, by type (the rest are what they held: frames,
    dicts, tracebacks)."""
    return Counter(type(o).__qualname__ for o in found if type(o).__module__.startswith("switchboard"))


@pytest.mark.parametrize("kind", KINDS)
def test_no_request_leaves_a_cycle(gateway: InProcess, kind: str) -> None:
    found, ours = left_behind(gateway, gateway.kinds[kind])
    assert ours == Counter(), f"{kind}: {found} objects in cycles, of ours: {dict(ours)}"


def left_behind(gw: InProcess, call: Callable[[], None]) -> tuple[int, Counter[str]]:
    """What ``N`` calls left for the cyclic collector (after one that warms the caches up): how
    many objects, and the gateway's own by type."""
    gw.drive(call, 1)  # caches, lazy imports, connections: built once, kept
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    start = len(gc.garbage)
    try:
        gw.drive(call, N)
        gc.collect()
        found = gc.garbage[start:]
        return len(found), _ours(found)
    finally:
        gc.set_debug(0)
        del gc.garbage[start:]
        gc.enable()
