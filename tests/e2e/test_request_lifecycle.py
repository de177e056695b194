"""The request lifecycle as a client and an operator see it: request ids on every response, one
log line per failed request, repeated credentials refused, and shutdown that drains and then
ends what is left with a clear error."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests import ledger
from tests.e2e.sdk import ask
from tests.endless_upstream import EndlessUpstream
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import RedisServer

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def own_gateway(mock_upstream: Mock, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of the test's own, so its log holds only this test's lines."""
    gw = start_gateway(openai_config(mock_upstream), tmp_path)
    yield gw
    gw.process.stop()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models", 200),
        ("GET", "/models", 200),
        ("GET", "/v1/models/gpt-4o-mini", 200),
        ("GET", "/v1/models/no-such", 404),
        ("GET", "/health/live", 200),
        ("GET", "/health/ready", 200),
        ("GET", "/admin/models", 200),
        ("GET", "/v1/nowhere", 404),
        ("DELETE", "/v1/chat/completions", 405),
    ],
)
def test_every_response_carries_a_request_id(gateway: Gateway, method: str, path: str, status: int) -> None:
    resp = httpx.request(method, gateway.url + path, headers=AUTH, timeout=10)
    assert resp.status_code == status
    assert len(resp.headers["x-request-id"]) >= 8
    mine = f"probe-{uuid.uuid4().hex}"
    echoed = httpx.request(method, gateway.url + path, headers={**AUTH, "x-request-id": mine}, timeout=10)
    assert echoed.headers["x-request-id"] == mine


def test_failed_request_is_logged_once_with_its_route_and_no_credential(own_gateway: Gateway) -> None:
    rid = f"fail-{uuid.uuid4().hex}"
    client = openai.OpenAI(base_url=own_gateway.base_url, api_key=MASTER_KEY, max_retries=0,
                           default_headers={"x-request-id": rid})
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="misconfigured", messages=ask("hello"))
    assert err.value.status_code == 502
    own_gateway.process.wait_for(f"request_id={rid}")
    [line] = [x for x in own_gateway.process.lines if rid in x]
    assert "request failed" in line and line.startswith("WARNING")
    for field in ("status=502", "code=upstream_authentication_failed", "model=misconfigured",
                  "provider=bad-key", "upstream_model=gpt-4o-mini", "path=/v1/chat/completions",
                  "latency_ms="):
        assert field in line, (field, line)
    assert "sk-wrong-key-123" not in own_gateway.process.output
    assert UPSTREAM_KEY not in own_gateway.process.output


def test_client_errors_are_logged_at_info_with_their_code(own_gateway: Gateway) -> None:
    rid = f"bad-{uuid.uuid4().hex}"
    resp = httpx.post(f"{own_gateway.base_url}/chat/completions", headers={**AUTH, "x-request-id": rid},
                      json={"model": "no-such-model", "messages": ask("x")}, timeout=10)
    assert resp.status_code == 404
    own_gateway.process.wait_for(f"request_id={rid}")
    [line] = [x for x in own_gateway.process.lines if rid in x]
    assert line.startswith("INFO") and "status=404" in line and "code=model_not_found" in line


def test_a_repeated_authorization_header_is_refused(gateway: Gateway) -> None:
    headers = [("authorization", f"Bearer {MASTER_KEY}"), ("authorization", "Bearer someone-else")]
    resp = httpx.post(f"{gateway.base_url}/chat/completions", headers=headers,
                      json={"model": "gpt-4o-mini", "messages": ask("x")}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "duplicate_header"
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200


def _ready(gw: Gateway) -> int:
    return httpx.get(f"{gw.url}/health/ready", timeout=5).status_code


def _long_stream(gw: Gateway) -> Iterator[openai.types.chat.ChatCompletionChunk]:
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    words = "_".join(["word"] * 200)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"mock:chunk_delay_ms=100 mock:reply={words}"), stream=True
    )
    return iter(stream)


def test_sigterm_drains_then_ends_a_stream_with_an_error_event(mock_upstream: Mock, tmp_path: Path) -> None:
    config = openai_config(mock_upstream, drain_seconds=3, graceful_shutdown_seconds=0.5)
    gw = start_gateway(config, tmp_path)
    chunks = _long_stream(gw)
    next(chunks)
    gw.process.proc.send_signal(signal.SIGTERM)
    # Draining: still listening, still serving, but no longer ready.
    for _ in range(200):
        if _ready(gw) == 503:
            break
    assert httpx.get(f"{gw.url}/health/ready", timeout=5).json() == {"status": "draining"}
    served = httpx.get(f"{gw.base_url}/models", headers=AUTH, timeout=5)
    assert served.status_code == 200
    # The stream outlives drain + grace, so it is ended with the API's error event.
    with pytest.raises(openai.APIError) as err:
        for _ in chunks:
            pass
    assert "shutting down" in str(err.value.message)
    assert gw.process.wait_exit(30) == 0
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output


def test_second_sigint_ends_streams_with_an_error_event(mock_upstream: Mock, tmp_path: Path) -> None:
    gw = start_gateway(openai_config(mock_upstream, graceful_shutdown_seconds=60), tmp_path)
    chunks = _long_stream(gw)
    next(chunks)
    gw.process.proc.send_signal(signal.SIGINT)
    gw.process.wait_for("Waiting for connections to close")
    gw.process.proc.send_signal(signal.SIGINT)
    with pytest.raises(openai.APIError) as err:
        for _ in chunks:
            pass
    assert "shutting down" in str(err.value.message)
    gw.process.wait_exit(30)
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output


def test_a_responses_stream_cut_at_shutdown_ends_with_response_failed_in_sequence(
        mock_upstream: Mock, tmp_path: Path) -> None:
    """A Responses stream outliving drain + grace ends as any stream failing after it started:
    ``response.failed`` saying ``server_shutting_down``, numbered after the events before it (it was
    an ``error`` event numbered 0), and its usage is recorded."""
    config = openai_config(mock_upstream, drain_seconds=0.5, graceful_shutdown_seconds=0.5)
    gw = start_gateway(config, tmp_path)
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    words = "_".join(["word"] * 200)
    stream = client.responses.create(model="gpt-4o-mini", input=f"mock:chunk_delay_ms=100 mock:reply={words}",
                                     stream=True, extra_headers={"x-request-id": "cut-at-shutdown"})
    events = []
    for event in stream:
        if not events:
            gw.process.proc.send_signal(signal.SIGTERM)
        events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.failed", last
    assert last.response.status == "failed" and last.response.error is not None
    # server_shutting_down is no code of the SDK's ResponseError: said in the message.
    assert last.response.error.code == "server_error"
    assert last.response.error.message.startswith("server_shutting_down: ")
    assert gw.process.wait_exit(30) == 0
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output
    record = ledger.records(ledger.database_of(config, tmp_path))["cut-at-shutdown"]
    assert record.status == 503 and record.error_code == "server_shutting_down"
    assert record.completion_tokens > 0


def test_a_responses_stream_cut_at_shutdown_while_its_client_reads_nothing_ends_cut_without_an_event(
        mock_upstream: Mock, tmp_path: Path) -> None:
    """A client that stopped reading (its socket full) has nothing more written to it: when the
    shutdown cuts its Responses stream, what it reads afterwards ends cut, with neither
    ``response.failed`` nor an ``error`` event; the cut is still logged."""
    config = openai_config(mock_upstream, drain_seconds=0, graceful_shutdown_seconds=1)
    # Its window set past the long prompt the mock is told the reply in.
    config["models"].append({"name": "gpt-4o-mini-wide", "provider": "local-openai", "model": "gpt-4o-mini",
                             "info": {"context_window": 2**31 - 1}})
    gw = start_gateway(config, tmp_path)
    # Some 8 MB of deltas: more than every buffer between the gateway and a client that reads
    # nothing (its own small receive buffer, the gateway's socket and transport) can hold.
    word = "-".join(["abcd"] * 3200)
    body = orjson.dumps({"model": "gpt-4o-mini-wide", "stream": True,
                         "input": "mock:reply=" + "_".join([word] * 500)})
    head = (f"POST /v1/responses HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
            f"X-Request-Id: cut-unread\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(head + body)
        got = b""
        while b"response.created" not in got:
            piece = sock.recv(4096)
            assert piece, got[:300]
            got += piece
        # The client reads no more: the gateway fills what lies between and waits on it.
        gw.process.proc.send_signal(signal.SIGTERM)
        assert gw.process.wait_exit(30) == 0
        while piece := sock.recv(1 << 20):  # what reached the client's side before the exit
            got += piece
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert b"response.output_text.delta" in got
    assert b"response.failed" not in got and b"event: error" not in got and b'"type":"error"' not in got
    assert b"response.completed" not in got and not got.endswith(b"0\r\n\r\n")  # cut, not ended
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output
    record = ledger.records(ledger.database_of(config, tmp_path))["cut-unread"]
    assert record.status == 503 and record.error_code == "server_shutting_down"


def test_a_client_that_leaves_a_stream_while_draining_is_a_disconnect_not_a_shutdown_cut(
        mock_upstream: Mock, tmp_path: Path) -> None:
    """The disconnect watcher's cancellation during the drain is the client's leaving: the
    stream is recorded as relayed (200), not as cut by the server (503 server_shutting_down)."""
    config = openai_config(mock_upstream, drain_seconds=5, graceful_shutdown_seconds=0.5)
    gw = start_gateway(config, tmp_path)
    words = "_".join(["word"] * 200)
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": ask(f"mock:chunk_delay_ms=100 mock:reply={words}")}
    with httpx.stream("POST", f"{gw.base_url}/chat/completions", json=body, timeout=30,
                      headers={**AUTH, "x-request-id": "left-while-draining"}) as resp:
        lines = resp.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        gw.process.proc.send_signal(signal.SIGTERM)
        gw.process.wait_for("draining for 5.0 s")
        next(lines)  # still served while draining; then the client leaves
    gw.process.wait_for("request left-while-draining: client disconnected")
    gw.process.proc.send_signal(signal.SIGINT)
    assert gw.process.wait_exit(30) == 0
    assert "cut short by server shutdown" not in gw.process.output
    record = ledger.records(ledger.database_of(config, tmp_path))["left-while-draining"]
    assert record.status == 200 and record.error_code is None, record


def test_sigint_during_the_drain_skips_drain_and_grace(mock_upstream: Mock, tmp_path: Path) -> None:
    """A SIGINT after the first signal stops at once: the stream in flight is ended with the
    API's error event now, not after the drain or the grace period (each a minute here)."""
    config = openai_config(mock_upstream, drain_seconds=60, graceful_shutdown_seconds=60)
    gw = start_gateway(config, tmp_path)
    chunks = _long_stream(gw)  # 20 s of words
    next(chunks)
    gw.process.proc.send_signal(signal.SIGTERM)
    gw.process.wait_for("draining for 60.0 s")
    gw.process.proc.send_signal(signal.SIGINT)
    with pytest.raises(openai.APIError) as err:
        for _ in chunks:
            pass
    assert "shutting down" in str(err.value.message)
    assert gw.process.wait_exit(30) == 0
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output


def test_repeated_sigterm_keeps_draining_and_sigint_forces(mock_upstream: Mock, tmp_path: Path) -> None:
    """With --workers a SIGTERM to the process group reaches each worker twice (directly and from
    uvicorn's parent): one signal was sent, so the drain goes on. A SIGINT still stops at once."""
    config = openai_config(mock_upstream, drain_seconds=60, graceful_shutdown_seconds=0.5)
    gw = start_gateway(config, tmp_path)
    gw.process.proc.send_signal(signal.SIGTERM)
    gw.process.wait_for("draining for 60.0 s")
    gw.process.proc.send_signal(signal.SIGTERM)
    gw.process.wait_for("already draining")
    assert httpx.get(f"{gw.url}/health/ready", timeout=5).json() == {"status": "draining"}
    assert httpx.get(f"{gw.base_url}/models", headers=AUTH, timeout=5).status_code == 200
    gw.process.proc.send_signal(signal.SIGINT)
    assert gw.process.wait_exit(30) == 0


def _signal_group(gw: Gateway, sig: int) -> None:
    """What killpg does (systemd's KillMode=control-group, a terminal's Ctrl-C): the signal to
    uvicorn's parent and to each of its children, sent directly (the test's process group is
    shared with other tests, so it is not signalled)."""
    pid = gw.process.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for target in (pid, *map(int, children)):
        os.kill(target, sig)


def test_sigterm_to_the_process_group_drains_every_worker(
    mock_upstream: Mock, tmp_path: Path, redis_server: RedisServer
) -> None:
    config = {**openai_config(mock_upstream, drain_seconds=60, graceful_shutdown_seconds=0.5),
              "redis": {"url": redis_server.url}}
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    gw.process.wait_for("Application startup complete")  # the second worker's handlers are in place
    _signal_group(gw, signal.SIGTERM)
    for _ in range(2):  # each worker: its own SIGTERM, then the parent's copy
        gw.process.wait_for("already draining")
    for _ in range(4):  # fresh connections, so both workers are likely asked
        with httpx.Client(timeout=5) as http:
            assert http.get(f"{gw.url}/health/ready").json() == {"status": "draining"}
            assert http.get(f"{gw.base_url}/models", headers=AUTH).status_code == 200
    _signal_group(gw, signal.SIGINT)  # a second Ctrl-C: stop now
    assert gw.process.wait_exit(30) == 0


def test_sigterm_drops_a_speech_stream_so_a_cut_file_is_never_passed_off_as_whole(
        mock_upstream: Mock, tmp_path: Path) -> None:
    config = openai_config(mock_upstream, drain_seconds=1, graceful_shutdown_seconds=0.5)
    config["models"].append({"name": "tts-1", "provider": "local-openai", "model": "tts-1",
                             "info": {"mode": "audio_speech"}})
    gw = start_gateway(config, tmp_path)
    text = "x" * 3000 + " mock:chunk_delay_ms=100"  # 47 pieces of 4 KiB, one every 100 ms
    body = {"model": "tts-1", "voice": "alloy", "input": text}
    got = b""
    # The audio outlives drain + grace: the connection is dropped, not ended as a whole file.
    with pytest.raises(httpx.HTTPError), httpx.stream("POST", f"{gw.base_url}/audio/speech", json=body,
                                                      headers=AUTH, timeout=30) as resp:
        assert resp.status_code == 200
        for piece in resp.iter_bytes():
            if not got:
                gw.process.proc.send_signal(signal.SIGTERM)
            got += piece
    assert 0 < len(got) < len(text) * 64
    assert gw.process.wait_exit(30) == 0
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output


@pytest.fixture(scope="module")
def endless() -> Iterator[EndlessUpstream]:
    server = EndlessUpstream()
    yield server
    server.stop()


@pytest.mark.parametrize(("path", "body", "first"), [
    ("/v1/images/generations", {"model": "fast-image", "prompt": "a cat", "stream": True,
                                "partial_images": 3}, b"image_generation.partial_image"),
    ("/v1/audio/speech", {"model": "fast-tts", "voice": "alloy", "input": "hi"}, b"\0" * 1024),
], ids=["image-stream", "speech"])
def test_a_media_relay_cut_at_shutdown_while_its_client_reads_nothing_ends_at_once_and_is_recorded(
        endless: EndlessUpstream, tmp_path: Path, path: str, body: dict[str, object], first: bytes) -> None:
    """A relayed media answer (an image event stream, speech audio) whose client stopped reading
    (its socket full) is ended at shutdown without waiting on that client: the process exits
    without a traceback and the cut answer's usage is recorded."""
    config = endless.config(server={"drain_seconds": 0, "graceful_shutdown_seconds": 1})
    gw = start_gateway(config, tmp_path)
    data = orjson.dumps(body)
    head = (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
            f"X-Request-Id: media-unread\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(head + data)
        got = b""
        while first not in got:
            piece = sock.recv(4096)
            assert piece, got[:300]
            got += piece
        # The client reads no more; the endless upstream fills what lies between.
        gw.process.proc.send_signal(signal.SIGTERM)
        assert gw.process.wait_exit(30) == 0
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert gw.process.output.count("cut short by server shutdown") == 1
    assert "Traceback" not in gw.process.output
    record = ledger.records(ledger.database_of(config, tmp_path))["media-unread"]
    assert record.status == 503 and record.error_code == "server_shutting_down"


def _logged(gw: Gateway, request_id: str, timeout: float = 20.0) -> dict[str, object]:
    """The request's usage record once the ledger has it (written behind the response)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": request_id}, headers=AUTH,
                         timeout=10)
        assert resp.status_code == 200, resp.text
        if resp.json()["data"]:
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"{request_id} never reached the request log"
        time.sleep(0.1)  # polling interval of a condition with a deadline


def test_sighup_is_ignored_and_the_inflight_stream_finishes_and_is_recorded(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    # There is no reload; SIGHUP (logrotate, a closed terminal) must not drop requests in flight.
    gw = start_gateway(openai_config(mock_upstream), tmp_path)
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    words = [f"w{i}" for i in range(20)]  # 2 s of stream: still running when the signal lands
    prompt = f"mock:chunk_delay_ms=100 mock:reply={'_'.join(words)}"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask(prompt), stream=True
    )
    chunks = iter(raw.parse())
    first = next(chunks)
    gw.process.proc.send_signal(signal.SIGHUP)
    gw.process.wait_for("SIGHUP ignored")
    rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == " ".join(words), text
    assert [c for c in rest if c.choices][-1].choices[0].finish_reason == "stop"
    assert _logged(gw, raw.headers["x-request-id"])["status"] == 200
    assert _ready(gw) == 200  # still serving
    assert gw.process.stop() == 0
    assert "Traceback" not in gw.process.output
