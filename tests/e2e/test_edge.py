"""The edge under abuse: oversized and slow requests, idle and excess connections, HTTP/1.0,
credentials echoed by an upstream, oversized upstream answers, odd image URLs. After each abuse
a normal request must still succeed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import MASTER_KEY, Gateway, Mock, free_port, openai_config, start_gateway

MIB = 1024 * 1024
TICK = 0.5  # the tiny timeouts configured for the edge gateway
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def edge(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(
        mock_upstream,
        max_body_bytes=MIB,
        header_timeout_seconds=TICK,
        body_timeout_seconds=TICK,
        keep_alive_seconds=TICK,
    )
    config["metrics"] = {}  # what the edge's failures are counted as
    config["files"] = {"provider": "local-openai"}  # an upload's body is read by its terminal
    config["services"] = [{"name": "sink", "url": mock_upstream.url}]  # a body relayed as it arrives
    gw = serving(start_gateway(config, tmp_path_factory.mktemp("edge")))
    yield gw
    gw.process.stop()


def serving(gw: Gateway) -> Gateway:
    """A gateway that listens: start_gateway already waited for "Uvicorn running on" (waiting
    for it again would wait for a line already read)."""
    assert any("Uvicorn running on" in line for line in gw.process.lines), gw.process.output
    return gw


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    _, headers, body = split_response(data)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return data


def connect(gw: Gateway, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    return sock


def request_head(method: str, path: str, *, version: str = "1.1", length: int | None = None,
                 extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
    if length is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
    return (head + extra + "\r\n").encode()


def read_until_closed(sock: socket.socket, deadline: float = 10.0) -> bytes:
    """Everything the server sends until it closes; fails if it does not close in time."""
    sock.settimeout(deadline)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    return data


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# A request id the gateway made (context.unique_id), or a caller's it echoes (endpoint.request_id).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def error_code(body: bytes) -> str:
    return str(orjson.loads(body)["error"]["code"])


def chat(gw: Gateway, body: bytes = CHAT) -> tuple[int, Any]:
    req = urllib.request.Request(
        gw.base_url + "/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def assert_healthy(gw: Gateway) -> None:
    status, body = chat(gw)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"]


# Request line and headers


def test_oversized_header_is_refused_with_431_before_it_is_read(edge: Gateway) -> None:
    sock = connect(edge)
    started = time.monotonic()
    big = "X-Filler: " + "a" * MIB + "\r\n"
    sock.sendall(request_head("GET", "/health/ready", extra=big))
    raw = read_until_closed(sock)
    elapsed = time.monotonic() - started
    status, headers, body = split_response(raw)
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert error_code(body) == "request_header_fields_too_large"
    assert elapsed < 5
    assert_healthy(edge)


def test_a_long_request_line_counts_towards_the_header_bound(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(b"GET /health/ready?" + b"q" * (200 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = split_response(read_until_closed(sock))
    assert status == 431
    assert error_code(body) == "request_header_fields_too_large"
    assert_healthy(edge)


@pytest.mark.parametrize("size", [70 * 1024, 200 * 1024])
def test_a_header_over_the_bound_in_one_piece_is_refused_too(edge: Gateway, size: int) -> None:
    """Headers that arrive in one read (with a body behind them) are measured exactly."""
    sock = connect(edge)
    filler = "X-Filler: " + "a" * size + "\r\n"
    head = request_head("POST", "/v1/chat/completions", length=len(CHAT), extra=filler)
    sock.sendall(head + CHAT)
    status, _, body = split_response(read_until_closed(sock))
    assert status == 431
    assert error_code(body) == "request_header_fields_too_large"
    assert_healthy(edge)


def test_headers_under_the_bound_still_work(edge: Gateway) -> None:
    sock = connect(edge)
    filler = "X-Filler: " + "a" * 30_000 + "\r\nConnection: close\r\n"
    sock.sendall(request_head("GET", "/health/live", extra=filler))
    status, _, _ = split_response(read_until_closed(sock))
    assert status == 200


# Time bounds


def test_a_connection_that_sends_nothing_is_closed(edge: Gateway) -> None:
    sock = connect(edge)
    started = time.monotonic()
    assert read_until_closed(sock, deadline=10 * TICK) == b""
    assert time.monotonic() - started < 10 * TICK
    assert_healthy(edge)


def test_partial_headers_get_408(edge: Gateway) -> None:
    sock = connect(edge)
    started = time.monotonic()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Ty")
    status, headers, body = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert time.monotonic() - started < 10 * TICK
    assert status == 408
    assert error_code(body) == "request_timeout"
    # A request id of its own, as every answer has one.
    assert REQUEST_ID.fullmatch(headers["x-request-id"]), headers
    assert_healthy(edge)


def test_a_408_echoes_the_callers_request_id(edge: Gateway) -> None:
    """The caller's x-request-id, when it arrived before the head stopped, as other answers echo it."""
    request_id, traced = _traced()
    sock = connect(edge)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n" + traced.encode() + b"Content-Ty")
    status, headers, _ = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 408
    assert headers["x-request-id"] == request_id


def test_headers_trickled_byte_by_byte_still_time_out(edge: Gateway) -> None:
    """The header bound is for the whole header, not per read."""
    sock = connect(edge)
    started = time.monotonic()
    head = request_head("GET", "/health/live")
    sock.settimeout(TICK / 10)
    got = b""
    for byte in head[:-2]:
        try:
            sock.send(bytes([byte]))
            got = sock.recv(65536)  # doubles as the pacing: waits TICK / 10 for an answer
            break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    got += read_until_closed(sock, deadline=10 * TICK)
    assert time.monotonic() - started < 10 * TICK
    status, _, body = split_response(got)
    assert status == 408
    assert error_code(body) == "request_timeout"


def test_a_body_shorter_than_content_length_gets_408(edge: Gateway) -> None:
    seen = len(edge.process.lines)
    sock = connect(edge)
    started = time.monotonic()
    sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT) + 100) + CHAT)
    status, headers, body = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert time.monotonic() - started < 10 * TICK
    assert status == 408
    assert error_code(body) == "request_timeout"
    # The id the caller is told is the one its request is logged under.
    assert REQUEST_ID.fullmatch(headers["x-request-id"]), headers
    [line] = _failure_lines(edge, "/v1/chat/completions", seen, headers["x-request-id"])
    assert "status=408 code=request_timeout" in line
    assert_healthy(edge)


def _traced() -> tuple[str, str]:
    """A request id of its own and the header that sends it: a log line is then this request's,
    not a late one of an earlier test's request to the same path."""
    request_id = f"edge-{uuid.uuid4().hex}"
    return request_id, f"X-Request-Id: {request_id}\r\n"


def _failure_lines(gw: Gateway, path: str, after: int, request_id: str) -> list[str]:
    """The "request failed" log lines for ``path`` and ``request_id`` since line ``after``, once
    one is there (it is written after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in gw.process.lines[after:]
                 if "request failed" in line and f"path={path} " in line
                 and f"request_id={request_id} " in line]
        if found:
            return found
        assert time.monotonic() < deadline, gw.process.output
        time.sleep(0.05)


def _requests_counted(gw: Gateway, **labels: str) -> float:
    text = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10).text
    wanted = set(labels.items())
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "switchboard_requests_total" and wanted <= set(sample.labels.items()))


def test_a_messages_body_that_stops_gets_anthropics_408(edge: Gateway) -> None:
    """An Anthropic client's body that stops arriving: the 408 in the error shape its SDK reads."""
    sock = connect(edge)
    body = b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    sock.sendall(request_head("POST", "/v1/messages", length=len(body) + 100) + body)
    status, _, answer = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 408
    assert orjson.loads(answer) == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "the request body stopped arriving"}}
    assert_healthy(edge)


@pytest.mark.parametrize(("request_bytes", "status", "message"), [
    (b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nbad header line\r\n\r\n", 400,
     "malformed HTTP request"),
    (b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "malformed HTTP request"),
    (b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nX-Filler: " + b"a" * (70 * 1024) + b"\r\n\r\n", 431,
     "the request line and headers exceed the limit of 65536 bytes"),
    (b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: gateway\r\nanthropic-version: 2023-06-01\r\nx-api", 408,
     "the request headers did not arrive in time"),
    (b"POST /v1/models HTTP/1.1\r\nanthropic-version: 2023-06-01\r\nX-Filler: " + b"a" * (70 * 1024), 431,
     "the request line and headers exceed the limit of 65536 bytes"),
], ids=["bad-header", "bad-chunk", "431", "408-headers", "431-anthropic-version"])
def test_what_the_connection_refuses_of_an_anthropic_client_has_anthropics_shape(
    edge: Gateway, request_bytes: bytes, status: int, message: str,
) -> None:
    """The answers written by the connection itself (malformed, oversized or slow headers) read
    by the Anthropic SDK as they are for any other /v1/messages error."""
    sock = connect(edge)
    sock.sendall(request_bytes)
    got, headers, answer = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert got == status
    assert orjson.loads(answer) == {"type": "error", "error": {
        "type": "invalid_request_error", "message": message}}
    # The request id in both headers the Anthropic SDKs and others read it from.
    assert REQUEST_ID.fullmatch(headers["request-id"]) and headers["x-request-id"] == headers["request-id"]
    assert_healthy(edge)


@pytest.mark.parametrize(("request_bytes", "status", "name", "message"), [
    (b"POST /v1beta/models/gpt-4o-mini:generateContent HTTP/1.1\r\nHost: gateway\r\nx-goog-api", 408,
     "DEADLINE_EXCEEDED", "the request headers did not arrive in time"),
    (b"POST /v1beta/models/gpt-4o-mini:generateContent HTTP/1.1\r\nHost: gateway\r\nExpect: later\r\n"
     b"Content-Length: 2\r\n\r\n{}", 417, "FAILED_PRECONDITION",
     "the expectation 'later' cannot be met; the only one this server meets is 100-continue"),
    (b"POST /v1beta/models/gpt-4o-mini:generateContent HTTP/1.1\r\nHost: gateway\r\nX-Filler: "
     + b"a" * (70 * 1024) + b"\r\n\r\n", 431, "INVALID_ARGUMENT",
     "the request line and headers exceed the limit of 65536 bytes"),
], ids=["408-headers", "417", "431"])
def test_what_the_connection_refuses_of_a_gemini_client_has_googles_shape(
    edge: Gateway, request_bytes: bytes, status: int, name: str, message: str,
) -> None:
    """Under the Gemini API's own prefix, the connection's own answers are in the error shape
    every other answer there has, which the google-genai SDKs read. Before, all three were
    FAILED_PRECONDITION: a deadline that passed and headers too large are named as such."""
    sock = connect(edge)
    sock.sendall(request_bytes)
    got, headers, answer = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert got == status
    assert orjson.loads(answer) == {"error": {"code": status, "message": message, "status": name}}
    assert REQUEST_ID.fullmatch(headers["x-request-id"])
    assert_healthy(edge)


def test_a_body_that_stops_is_logged_and_counted_as_the_408_it_got(edge: Gateway) -> None:
    """The connection answers 408 when a body stops arriving; the request's log line, the
    metrics and the ledger record that 408, not a client that left (499)."""
    seen = len(edge.process.lines)
    request_id, traced = _traced()
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT) + 100, extra=traced) + CHAT)
    assert split_response(read_until_closed(sock, deadline=10 * TICK))[0] == 408
    [line] = _failure_lines(edge, "/v1/chat/completions", seen, request_id)
    assert "status=408 code=request_timeout" in line and "client_disconnected" not in line
    # An upload, whose body its terminal reads inside the chain: the metrics count it too.
    before = _requests_counted(edge, operation="files", status="408")
    seen = len(edge.process.lines)
    request_id, traced = _traced()
    boundary = "sb-edge-boundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n{{}}").encode()
    sock = connect(edge)
    head = request_head("POST", "/v1/files",
                        extra=f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                        f"Content-Length: {len(part) + 1000}\r\n{traced}")
    sock.sendall(head + part)
    assert split_response(read_until_closed(sock, deadline=10 * TICK))[0] == 408
    [line] = _failure_lines(edge, "/v1/files", seen, request_id)
    assert "status=408 code=request_timeout" in line and "client_disconnected" not in line
    deadline = time.monotonic() + 10
    while _requests_counted(edge, operation="files", status="408") != before + 1:
        assert time.monotonic() < deadline, "the upload's 408 was never counted"
        time.sleep(0.05)
    assert_healthy(edge)


def test_an_upload_that_stops_has_one_request_id_in_its_408_and_every_log_line(edge: Gateway) -> None:
    """An upload whose body stops after its endpoint took it, with no ``X-Request-Id`` of the
    caller's: the 408 the connection writes carries the id the endpoint gave the request, the
    one every log line about the request is written under (the endpoint's own, written under
    that id before the request's end, and the failure line)."""
    seen = len(edge.process.lines)
    boundary = "sb-edge-one-id"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n{{}}").encode()
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/files",
                              extra=f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                              f"Content-Length: {len(part) + 1000}\r\n") + part)
    status, headers, _ = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 408
    rid = headers["x-request-id"]
    [failed] = _failure_lines(edge, "/v1/files", seen, rid)
    assert "status=408 code=request_timeout" in failed
    about = [line for line in edge.process.lines[seen:] if "request_id=" in line
             and (f"request_id={rid}" in line or "path=/v1/files" in line or "client disconnected" in line)]
    assert len(about) >= 2, about  # the failure line and what the upload's endpoint wrote
    assert {found for line in about for found in re.findall(r"request_id=(\S+)", line)} == {rid}, about
    # The endpoint's line says what happened: before, "client disconnected" for the 408 sent.
    assert not [line for line in about if "client disconnected" in line], about
    assert [line for line in about if "the connection answered 408" in line
            and "the request body stopped arriving" in line], about
    assert_healthy(edge)


def test_a_service_call_whose_body_stops_logs_the_408_not_a_client_that_left(edge: Gateway) -> None:
    """A REST service's body is relayed as it arrives; when it stops, the connection answers
    408 and the services edge says so in its log line (it said "client disconnected")."""
    seen = len(edge.process.lines)
    sock = connect(edge)
    sock.sendall(request_head("POST", "/services/sink/v1/anything", length=1000) + b'{"a": 1')
    status, headers, _ = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 408
    rid = headers["x-request-id"]
    line = edge.process.wait_for_all(rid, "the connection answered 408", timeout=10)
    assert "the request body stopped arriving" in line, line
    assert not [x for x in edge.process.lines[seen:] if rid in x and "client disconnected" in x]
    assert_healthy(edge)


@pytest.mark.parametrize(("start", "endless"), [
    (b"1\r\n{\r\n0\r\n", b"X-Trailer: " + b"t" * 100 + b"\r\n"),  # field after field
    (b"1\r\n{\r\n0\r\nX-Trailer: ", b"t" * 1000),  # one value without end
    (b"1", b";" + b"e" * 1000),  # a chunk extension without end
], ids=["fields", "one-value", "extension"])
def test_an_endless_trailer_section_of_a_chunked_body_gets_431(
    edge: Gateway, start: bytes, endless: bytes,
) -> None:
    """Trailer fields (after the last chunk) and chunk extensions are bounded like the headers:
    the gateway does not keep them until the body timeout, growing its memory all along."""
    sock = connect(edge)
    head = request_head("POST", "/v1/chat/completions", extra="Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n")
    sock.sendall(head + start)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed meanwhile
        sock.sendall(endless * (2 * MIB // len(endless)))
    status, _, body = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 431
    assert error_code(body) == "request_header_fields_too_large"
    assert_healthy(edge)


@pytest.mark.parametrize(("path", "operation", "status", "code", "body"), [
    ("/v1/chat/completions", "chat", "431", "request_header_fields_too_large",
     b"1\r\n{\r\n0\r\nX-Long: " + b"t" * (2 * MIB)),
    ("/v1/embeddings", "embeddings", "400", "malformed_http_request", b"1\r\n{\r\nzz\r\n"),
], ids=["endless-trailer-431", "bad-chunk-400"])
def test_what_the_connection_answers_while_a_body_is_read_is_recorded_as_sent(
    edge: Gateway, path: str, operation: str, status: str, code: str, body: bytes,
) -> None:
    """The connection's own answer to a request whose body was being read (endless trailer
    fields, a malformed chunk) is what the log line and the metrics record, not a client that
    left (499)."""
    before = _requests_counted(edge, operation=operation, status=status, code=code)
    seen = len(edge.process.lines)
    request_id, traced = _traced()
    sock = connect(edge)
    sock.sendall(request_head("POST", path, extra="Content-Type: application/json\r\n"
                              f"Transfer-Encoding: chunked\r\n{traced}"))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed meanwhile
        sock.sendall(body)
    got, _, answer = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert str(got) == status and error_code(answer) == code
    [line] = _failure_lines(edge, path, seen, request_id)
    assert f"status={status} code={code}" in line and "client_disconnected" not in line
    deadline = time.monotonic() + 10
    while _requests_counted(edge, operation=operation, status=status, code=code) != before + 1:
        assert time.monotonic() < deadline, f"the {status} was never counted"
        time.sleep(0.05)
    assert_healthy(edge)


def test_host_and_expect_in_a_trailer_change_nothing(edge: Gateway) -> None:
    """Trailer fields are not the request's head: a Host or an Expect there neither refuses
    this request nor counts towards the next one on the connection."""
    sock = connect(edge)
    head = request_head("POST", "/v1/chat/completions", extra="Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n")
    sock.sendall(head + b"%x\r\n%s\r\n0\r\nHost: other\r\nExpect: nothing\r\n\r\n" % (len(CHAT), CHAT))
    status, _, body = split_response(read_response(sock))
    assert status == 200, body
    sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT)) + CHAT)
    status, _, body = split_response(read_response(sock))
    sock.close()
    assert status == 200, body


def test_a_chunked_body_in_one_byte_chunks_with_a_trailer_passes(edge: Gateway) -> None:
    sock = connect(edge)
    head = request_head("POST", "/v1/chat/completions", extra="Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n")
    sock.sendall(head)
    sock.sendall(b"".join(b"1\r\n%c\r\n" % byte for byte in CHAT) + b"0\r\nX-Checksum: abc\r\n\r\n")
    status, _, body = split_response(read_response(sock))
    sock.close()
    assert status == 200, body
    assert orjson.loads(body)["choices"]


def test_a_chunked_body_that_stops_gets_408(edge: Gateway) -> None:
    sock = connect(edge)
    head = request_head("POST", "/v1/chat/completions", extra="Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n")
    sock.sendall(head + b"%x\r\n" % len(CHAT) + CHAT + b"\r\n")
    status, _, body = split_response(read_until_closed(sock, deadline=10 * TICK))
    assert status == 408
    assert error_code(body) == "request_timeout"
    assert_healthy(edge)


def _samples(gw: Gateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_requests_refused_before_their_chain_are_counted(edge: Gateway) -> None:
    """What the edge refuses before the stages run (a repeated header, 415, 413, a body that
    stops (408) or a client gone while sending it (499), an unknown URL, a wrong method) is in
    switchboard_requests_total like any other answer: its operation when the path names one, no
    model, the status and code sent; the path never becomes a label."""
    before = _samples(edge)
    head = "Host: gateway\r\n"
    cases: list[tuple[bytes, int]] = [
        # A repeated single-valued header: 400 duplicate_header.
        (f"POST /v1/chat/completions HTTP/1.1\r\n{head}Authorization: Bearer {MASTER_KEY}\r\n"
         f"Authorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(CHAT)}\r\n\r\n".encode() + CHAT, 400),
        # Not JSON: 415.
        (request_head("POST", "/v1/embeddings", extra=f"Content-Type: text/plain\r\n"
                      f"Content-Length: {len(CHAT)}\r\n") + CHAT, 415),
        # Declared over server.max_body_bytes: 413 before the body is read.
        (request_head("POST", "/v1/chat/completions", length=2 * MIB), 413),
    ]
    for raw, status in cases:
        sock = connect(edge)
        sock.sendall(raw)
        assert split_response(read_until_closed(sock, deadline=10 * TICK))[0] == status
        sock.close()
    # A body that stops: the connection answers 408.
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT) + 100) + CHAT)
    assert split_response(read_until_closed(sock, deadline=10 * TICK))[0] == 408
    # A client that leaves while sending its body: 499, nothing answered.
    seen = len(edge.process.lines)
    request_id, traced = _traced()
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/completions", length=len(CHAT) + 100, extra=traced) + CHAT[:10])
    sock.close()
    _failure_lines(edge, "/v1/completions", seen, request_id)  # its log line is written once it is counted
    # Routed nowhere, or not for this method.
    missing = f"/v1/no-such-thing-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=edge.url, headers=auth, timeout=10) as http:
        assert http.get(missing).status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405
        assert http.post("/v1beta/models/gpt-4o-mini:noSuchMethod", json={}).status_code == 404
        assert http.get("/v1beta/models/gpt-4o-mini:generateContent").status_code == 405
        assert http.delete("/v1/batches").status_code == 405  # the files and batches edge
        assert http.get("/services/no%20such%20name/x").status_code == 404  # the services edge

    name = "switchboard_requests_total"
    expected = [
        ({"operation": "chat", "status": "400", "code": "duplicate_header"}, 1),
        ({"operation": "embeddings", "status": "415", "code": "unsupported_media_type"}, 1),
        ({"operation": "chat", "status": "413", "code": "request_too_large"}, 1),
        ({"operation": "chat", "status": "408", "code": "request_timeout"}, 1),
        ({"operation": "completions", "status": "499", "code": ""}, 1),
        ({"operation": "", "status": "404", "code": "unknown_url"}, 2),  # one of them Gemini's
        ({"operation": "", "status": "405", "code": "method_not_allowed"}, 2),
        ({"operation": "batches", "status": "405", "code": "method_not_allowed"}, 1),
        ({"operation": "service", "status": "404", "code": "service_not_found"}, 1),
    ]
    deadline = time.monotonic() + 10
    while True:
        after = _samples(edge)
        moved = [_sum(after, name, **labels) - _sum(before, name, **labels) for labels, _ in expected]
        if moved == [n for _, n in expected] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert moved == [n for _, n in expected], list(zip(expected, moved, strict=True))
    # None names a model, a route or a caller; the unknown path is no label.
    for labels, _ in expected:
        assert _sum(after, name, model="", group="", deployment="", **labels) == _sum(after, name, **labels)
    assert _sum(after, "switchboard_request_duration_seconds_count", operation="", status_class="4xx") >= 4
    assert not any(missing in str(labels) for _, labels in after)
    assert _sum(after, "switchboard_requests_in_flight") == 0
    assert_healthy(edge)


def test_an_idle_keep_alive_connection_is_closed(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(request_head("GET", "/health/live"))
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert read_until_closed(sock, deadline=10 * TICK) == b""
    assert time.monotonic() - started < 10 * TICK


def test_a_keep_alive_connection_used_again_gets_a_whole_idle_period_after_each_answer(edge: Gateway) -> None:
    """The connection's one keep-alive timer, set after the first answer, fires while the
    connection is in use again: it is set again for the end of the new idle period."""
    sock = connect(edge)
    for _ in range(3):  # each request 0.6 periods after the previous answer: 1.2 periods in all
        sock.sendall(request_head("GET", "/health/live"))
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.settimeout(0.6 * TICK)
        with pytest.raises(TimeoutError):  # paces the requests; the connection stays open
            assert sock.recv(1) != b""
    assert read_until_closed(sock, deadline=10 * TICK) == b""  # and it still closes when idle


def test_a_slow_but_steady_upload_is_not_cut(edge: Gateway) -> None:
    """The body bound is a gap between reads: a body that keeps coming is read whole."""
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * 2000 + b'"}]}'
    piece = 200  # about a dozen pieces, TICK / 5 apart: twice the body timeout in all
    sock = connect(edge)
    close = "Connection: close\r\n"
    sock.sendall(request_head("POST", "/v1/chat/completions", length=len(body), extra=close))
    sock.settimeout(TICK / 5)
    started = time.monotonic()
    sent = 0
    while len(body) - sent > piece:
        sock.sendall(body[sent:sent + piece])
        sent += piece
        try:  # paces the sends and sees any early answer
            early = sock.recv(65536)
            pytest.fail(f"answered before the body was sent: {early[:100]!r}")
        except TimeoutError:
            pass
    assert time.monotonic() - started > 2 * TICK
    sock.sendall(body[sent:])
    status, _, reply = split_response(read_until_closed(sock))
    assert status == 200, reply


@pytest.fixture(scope="module")
def bounded(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A request timeout shorter than the gap allowed between body reads."""
    config = openai_config(mock_upstream, body_timeout_seconds=10 * TICK, request_timeout_seconds=6 * TICK)
    config["metrics"] = {}
    gw = serving(start_gateway(config, tmp_path_factory.mktemp("bounded")))
    yield gw
    gw.process.stop()


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"),
                                             ("/v1/messages", "anthropic")])
def test_a_body_trickled_in_past_the_request_timeout_gets_408(
    bounded: Gateway, path: str, shape: str,
) -> None:
    """Each gap under server.body_timeout_seconds, but the whole body not in within
    server.request_timeout_seconds: the connection answers 408 (in the client's error shape),
    recorded as that 408."""
    seen = len(bounded.process.lines)
    request_id, traced = _traced()
    sock = connect(bounded)
    sock.sendall(request_head("POST", path, length=len(CHAT) + 1000, extra=traced) + CHAT[:1])
    sock.settimeout(TICK / 5)
    started = time.monotonic()
    reply = b""
    while not reply:
        assert time.monotonic() - started < 20 * TICK, "the trickle was never cut"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b" ")  # a byte each tenth of a second
        try:  # paces the sends and reads the answer when it comes
            reply = sock.recv(65536)
        except TimeoutError:
            pass
        except ConnectionResetError:
            break
    assert time.monotonic() - started >= 6 * TICK * 0.9
    status, _, body = split_response(reply + read_until_closed(sock))
    assert status == 408
    message = f"the request body took longer than {6 * TICK:g} s to arrive"
    if shape == "anthropic":
        assert orjson.loads(body) == {"type": "error",
                                      "error": {"type": "invalid_request_error", "message": message}}
    else:
        assert orjson.loads(body)["error"] == {"message": message, "type": "invalid_request_error",
                                               "param": None, "code": "request_timeout"}
    [line] = _failure_lines(bounded, path, seen, request_id)
    assert "status=408 code=request_timeout" in line and "client_disconnected" not in line
    assert_healthy(bounded)


# Lingering close


def test_urllib_posting_an_oversized_body_reads_the_413(edge: Gateway) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * (8 * MIB) + b'"}]}'
    for _ in range(2):
        status, reply = chat(edge, body)
        assert status == 413
        assert reply["error"]["code"] == "request_too_large"
    assert_healthy(edge)


def test_a_keep_alive_client_is_told_the_connection_closes_after_an_early_413(edge: Gateway) -> None:
    """http.client keeps the connection unless told: the 413 says close, so the next request
    on the same HTTPConnection opens a new one instead of failing on the old."""
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * (4 * MIB) + b'"}]}'
    conn.request("POST", "/v1/chat/completions", body=big, headers=headers)
    resp = conn.getresponse()
    assert resp.status == 413
    assert resp.getheader("connection") == "close"
    assert json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.request("POST", "/v1/chat/completions", body=CHAT, headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["choices"]
    conn.close()


def _expecting(path: str, key: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Expect: 100-continue\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/batches",
                                  "/v1/messages/batches", "/v1/files"])
def test_a_bad_key_with_expect_100_continue_gets_401_without_being_told_to_send_its_body(
    edge: Gateway, path: str,
) -> None:
    """curl and other clients hold a large body back until ``100 Continue``: a request whose
    key is refused is answered at once, and never told to send the body it would send for
    nothing."""
    sock = connect(edge)
    sock.sendall(_expecting(path, "sk-not-a-key", CHAT))
    reply = read_until_closed(sock)
    sock.close()
    assert not reply.startswith(b"HTTP/1.1 100"), reply
    status, headers, body = split_response(reply)
    assert status == 401, reply
    assert headers["connection"] == "close"
    error = orjson.loads(body)["error"]
    assert error["type"] == "authentication_error"
    assert_healthy(edge)


def test_a_good_key_with_expect_100_continue_is_told_to_send_its_body(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(_expecting("/v1/chat/completions", MASTER_KEY, CHAT))
    sock.settimeout(10)
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(65536)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(CHAT)
    status, _, body = split_response(read_response(sock))
    sock.close()
    assert status == 200, body
    assert orjson.loads(body)["choices"]


def _expiring_key_told_to_send(gw: Gateway) -> tuple[str, socket.socket]:
    """A key that expires moments from now, and a connection whose request (``Expect:
    100-continue``) it was checked for and told to send its body. On a host too busy to check it
    before it expires, again with a longer life (the 401 is then not the behaviour under test),
    still well within the request timeout (6 ticks) the body must arrive in."""
    for ticks in (2, 3, 4):
        expires = datetime.now(UTC) + timedelta(seconds=ticks * TICK)
        created = httpx.post(f"{gw.url}/admin/v1/keys", timeout=10,
                             headers={"Authorization": f"Bearer {MASTER_KEY}"},
                             json={"models": ["gpt-4o-mini"], "expires_at": expires.isoformat()})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        sock = connect(gw)
        sock.sendall(_expecting("/v1/chat/completions", key, CHAT))
        sock.settimeout(10)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        if interim == b"HTTP/1.1 100 Continue\r\n\r\n":
            return key, sock
        sock.close()
        assert b'"key_expired"' in interim and datetime.now(UTC) >= expires, interim
    raise AssertionError("the key expired before its request was checked, three times")


def test_a_key_checked_before_100_continue_is_not_checked_again(bounded: Gateway) -> None:
    """The key of a request with ``Expect: 100-continue`` is checked once, before the client
    is told to send its body: one that expires while the body is on its way does not refuse
    the body it asked for (nor is a token verified twice, or a key's use noted twice)."""
    key, sock = _expiring_key_told_to_send(bounded)
    deadline = time.monotonic() + 20 * TICK
    while True:  # until the key has expired (within the gap allowed before the body)
        refused = httpx.get(f"{bounded.url}/v1/models", headers={"Authorization": f"Bearer {key}"},
                            timeout=10)
        if refused.status_code == 401:
            assert refused.json()["error"]["code"] == "key_expired"
            break
        assert time.monotonic() < deadline, refused.text
        time.sleep(0.05)
    sock.sendall(CHAT)
    status, _, body = split_response(read_response(sock))
    sock.close()
    assert status == 200, body
    assert orjson.loads(body)["choices"]


@pytest.mark.parametrize("value", ["something-else", "100-continue, extra", "100-continued"])
def test_an_expectation_other_than_100_continue_gets_417(edge: Gateway, value: str) -> None:
    with httpx.Client(timeout=10) as http:
        resp = http.post(f"{edge.base_url}/chat/completions", content=CHAT,
                         headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json",
                                  "Expect": value})
    assert resp.status_code == 417, resp.text
    assert resp.headers["connection"] == "close"
    assert resp.json()["error"] == {
        "message": f"the expectation '{value}' cannot be met; the only one this server meets is 100-continue",
        "type": "invalid_request_error", "param": None, "code": "expectation_failed"}
    assert_healthy(edge)


def test_an_anthropic_client_gets_its_417_in_anthropics_shape(edge: Gateway) -> None:
    client = anthropic.Anthropic(base_url=edge.url, api_key=MASTER_KEY, max_retries=0,
                                 default_headers={"Expect": "later"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="gpt-4o-mini", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 417
    assert caught.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "the expectation 'later' cannot be met; the only one this server meets is 100-continue"}}


def test_an_empty_expect_and_a_100_continue_in_any_case_are_served(edge: Gateway) -> None:
    for value in ("", "100-Continue"):
        sock = connect(edge)
        sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT),
                                  extra=f"Expect: {value}\r\n"))
        if value:
            sock.settimeout(10)
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += sock.recv(65536)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CHAT)
        status, _, body = split_response(read_response(sock))
        sock.close()
        assert status == 200, body


def _http10(edge: Gateway, path: str, key: str, extra: str = "") -> tuple[bytes, int, bytes]:
    """(the raw reply, its status, its body) of an HTTP/1.0 POST of CHAT sent in one piece."""
    head = request_head("POST", path, version="1.0", length=len(CHAT), extra=extra)
    sock = connect(edge)
    sock.sendall(head.replace(MASTER_KEY.encode(), key.encode()) + CHAT)
    reply = read_until_closed(sock)
    sock.close()
    status, _, body = split_response(reply)
    return reply, status, body


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/batches"])
@pytest.mark.parametrize("key", [MASTER_KEY, "sk-not-a-key"], ids=["good-key", "bad-key"])
def test_an_http10_request_with_expect_100_continue_is_read_as_one_without(
    edge: Gateway, path: str, key: str,
) -> None:
    """RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request (an HTTP/1.0
    client reads no interim answer): no ``100 Continue`` is written before the answer, the body
    is read and the key checked as for the same request without Expect."""
    reply, status, body = _http10(edge, path, key, "Expect: 100-continue\r\n")
    assert not reply.startswith(b"HTTP/1.1 100"), reply
    _, plain_status, plain_body = _http10(edge, path, key)
    assert status == plain_status, reply
    assert orjson.loads(body).keys() == orjson.loads(plain_body).keys()
    if path == "/v1/chat/completions" and key == MASTER_KEY:
        assert status == 200 and orjson.loads(body)["choices"], reply
    assert_healthy(edge)


HOSTLESS = (f"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n").encode()


@pytest.mark.parametrize(("head", "message"), [
    (HOSTLESS + b"\r\n", "malformed HTTP request: no Host header, which HTTP/1.1 requires"),
    (HOSTLESS + b"Host: a\r\nHost: b\r\n\r\n", "malformed HTTP request: more than one Host header"),
    (HOSTLESS.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Host: a\r\nHost: a\r\n\r\n",
     "malformed HTTP request: more than one Host header"),
], ids=["http11-no-host", "two-hosts", "http10-two-hosts"])
def test_a_request_without_one_host_gets_400(edge: Gateway, head: bytes, message: str) -> None:
    sock = connect(edge)
    sock.sendall(head + CHAT)
    status, headers, body = split_response(read_until_closed(sock))
    assert status == 400
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"] == {"message": message, "type": "invalid_request_error", "param": None,
                                           "code": "malformed_http_request"}
    assert_healthy(edge)


def test_an_anthropic_request_without_host_gets_anthropics_400(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    status, _, body = split_response(read_until_closed(sock))
    assert status == 400
    assert orjson.loads(body) == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "malformed HTTP request: no Host header, which HTTP/1.1 requires"}}


def test_an_http10_request_without_host_is_served(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(HOSTLESS.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + CHAT)
    status, _, body = split_response(read_until_closed(sock))
    assert status == 200, body
    assert orjson.loads(body)["choices"]


@pytest.mark.parametrize(("path", "fields", "status"), [
    ("/v1/files", {"purpose": "batch"}, 200),
    ("/v1/audio/transcriptions", {"model": "gpt-4o-mini"}, 400),  # a chat model: read, then refused
])
def test_a_multipart_content_length_padded_past_4300_digits_is_read_by_its_value(
        edge: Gateway, path: str, fields: dict[str, str], status: int) -> None:
    """Leading zeros are allowed in a Content-Length; past 4300 digits int() refuses the text
    (it was a 500, as plain text from the media endpoints)."""
    boundary = "b0undary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
                 '{"custom_id":"a"}\n\r\n' f"--{boundary}--\r\n")
    body = "".join(parts).encode()
    head = request_head("POST", path, extra=f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                        f"Content-Length: {len(body):0>4400}\r\nConnection: close\r\n")
    with connect(edge) as sock:
        sock.sendall(head + body)
        got, headers, reply = split_response(read_until_closed(sock))
    assert got == status, reply
    assert headers["content-type"] == "application/json"
    if status == 200:
        assert orjson.loads(reply)["bytes"] == len('{"custom_id":"a"}\n')
    else:
        assert error_code(reply) == "model_mode_mismatch"
    assert_healthy(edge)


def test_an_oversized_chunked_body_reads_the_413(edge: Gateway) -> None:
    """No Content-Length: the limit is found while reading, and the rest is discarded."""

    def chunks() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
        for _ in range(16):
            yield b"x" * (256 * 1024)
        yield b'"}]}'

    req = urllib.request.Request(
        edge.base_url + "/chat/completions",
        data=chunks(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=30)
    assert caught.value.code == 413
    assert json.loads(caught.value.read())["error"]["code"] == "request_too_large"
    assert_healthy(edge)


# HTTP/1.0


def test_http10_stream_is_close_delimited_not_chunked(edge: Gateway) -> None:
    body = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/chat/completions", version="1.0", length=len(body)) + body)
    status, headers, payload = split_response(read_until_closed(sock))
    assert status == 200
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in payload.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in map(json.loads, events[:-1]) if c["choices"]
    )
    assert text
    assert_healthy(edge)


def test_http10_non_stream_keeps_its_content_length(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/chat/completions", version="1.0", length=len(CHAT)) + CHAT)
    status, headers, payload = split_response(read_until_closed(sock))
    assert status == 200
    assert int(headers["content-length"]) == len(payload)
    assert "transfer-encoding" not in headers
    assert json.loads(payload)["choices"]


# Connection cap

CAP = 4


@pytest.fixture(scope="module")
def capped(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(
        mock_upstream, max_connections=CAP, header_timeout_seconds=4 * TICK, keep_alive_seconds=4 * TICK
    )
    gw = serving(start_gateway(config, tmp_path_factory.mktemp("capped")))
    yield gw
    gw.process.stop()


def _served_keep_alive(gw: Gateway) -> socket.socket:
    """A keep-alive connection the server has certainly counted (it answered on it)."""
    sock = connect(gw)
    sock.sendall(request_head("GET", "/health/live"))
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    return sock


def _chat_when_free(gw: Gateway) -> tuple[int, Any]:
    """The server learns of closed connections asynchronously: retry a 503, bounded."""
    deadline = time.monotonic() + 10
    while True:
        status, body = chat(gw)
        if status != 503 or time.monotonic() > deadline:
            return status, body


def test_connections_past_the_cap_get_503_and_the_server_recovers(capped: Gateway) -> None:
    held = [_served_keep_alive(capped) for _ in range(CAP)]
    try:
        for _ in range(3 * CAP):
            sock = connect(capped)
            sock.sendall(request_head("POST", "/v1/chat/completions", length=len(CHAT)) + CHAT)
            status, headers, body = split_response(read_until_closed(sock))
            assert status == 503
            assert headers["connection"] == "close"
            assert error_code(body) == "too_many_connections"
            sock.close()
    finally:
        for sock in held:
            sock.close()
    status, body = _chat_when_free(capped)
    assert status == 200, body


def test_idle_connections_cannot_hold_the_server(capped: Gateway) -> None:
    """Connections that never send a byte fill the cap; more of them are refused (answered when
    their time for a request is up), and the header and keep-alive timeouts free the server
    without any client closing anything."""
    idle = [connect(capped) for _ in range(CAP - 1)]
    idle.append(_served_keep_alive(capped))  # answered, so the others were accepted before it
    refused = [connect(capped) for _ in range(4 * CAP)]
    for sock in refused:
        status, _, body = split_response(read_until_closed(sock))
        assert status == 503
        assert error_code(body) == "too_many_connections"
    started = time.monotonic()
    for sock in idle:
        assert read_until_closed(sock, deadline=10 * TICK) == b""  # closed by the server
    assert time.monotonic() - started < 10 * TICK
    status, body = _chat_when_free(capped)
    assert status == 200, body


def test_a_connection_past_the_cap_that_sends_nothing_is_answered_without_the_wait_for_a_head(
        capped: Gateway) -> None:
    """A refused connection whose client has sent nothing (a pre-opened pooled connection, a flood
    of idle ones) is answered 503 soon, in OpenAI's shape, rather than held for the whole time a
    head is waited for (2 s): it holds a connection of the worker's meanwhile."""
    held = [_served_keep_alive(capped) for _ in range(CAP)]
    try:
        sock = connect(capped)
        started = time.monotonic()
        status, headers, body = split_response(read_until_closed(sock))
        took = time.monotonic() - started
        sock.close()
    finally:
        for other in held:
            other.close()
    assert status == 503 and headers["connection"] == "close"
    assert json.loads(body)["error"] == {"message": OVER_CAP, "type": "api_error", "param": None,
                                         "code": "too_many_connections"}
    assert took < 1.0, took  # far from the 2 s a head is waited for once its first byte is in
    status, body = _chat_when_free(capped)
    assert status == 200, body


OVER_CAP = "the server has too many open connections; retry later"


def test_past_the_cap_each_client_gets_the_503_in_its_own_shape_with_its_request_id(capped: Gateway) -> None:
    """A connection past the cap is answered once its request's head is here: an Anthropic
    client's SDK reads Anthropic's shape (``overloaded_error``), a Gemini client's Google's, any
    other OpenAI's; each with the caller's own request id."""
    request_id, _ = _traced()
    held = [_served_keep_alive(capped) for _ in range(CAP)]
    try:
        client = anthropic.Anthropic(base_url=capped.url, api_key=MASTER_KEY, max_retries=0,
                                     default_headers={"X-Request-Id": request_id})
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model="gpt-4o-mini", max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503
        assert caught.value.body == {"type": "error",
                                     "error": {"type": "overloaded_error", "message": OVER_CAP}}
        assert caught.value.request_id == request_id
        gemini = httpx.post(f"{capped.url}/v1beta/models/gpt-4o-mini:generateContent", timeout=10,
                            headers={"x-goog-api-key": MASTER_KEY, "X-Request-Id": request_id},
                            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        assert gemini.status_code == 503
        assert gemini.json() == {"error": {"code": 503, "message": OVER_CAP, "status": "UNAVAILABLE"}}
        assert gemini.headers["x-request-id"] == request_id
        plain = httpx.post(f"{capped.base_url}/chat/completions", content=CHAT, timeout=10,
                           headers={"Authorization": f"Bearer {MASTER_KEY}",
                                    "Content-Type": "application/json"})
        assert plain.status_code == 503
        assert plain.json()["error"] == {"message": OVER_CAP, "type": "api_error", "param": None,
                                         "code": "too_many_connections"}
        assert REQUEST_ID.fullmatch(plain.headers["x-request-id"])
    finally:
        for sock in held:
            sock.close()
    status, body = _chat_when_free(capped)
    assert status == 200, body


# Upstream answers: credentials echoed in errors, oversized bodies

ECHO_KEY = "sk-echo/SECRET+0123456789abcdefghijklmnopqrstuv"
ECHO_ANTHROPIC_KEY = "sk-ant-echo-9876543210ZYXWVUTSRQPONMLKJIHG"
ECHO_HEADER_TOKEN = "ctok-5566778899aabbccddeeff00"
# User info in a provider's api_base (a proxy's credential), sent as Authorization: Basic.
PROXY_USER, PROXY_PASSWORD = "proxyuser", "PROXYPASS4455667788"
PROXY_BASIC = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
LIMIT = 100_000
_DIRECTIVE = re.compile(r"\b(echo|midecho|failecho|big|chunked|bigerror)=(\d+)")


class ProviderDouble:
    """A test-only upstream on a free port: echoes the credentials it receives in its error text
    (as careless providers do), or answers with a body of a chosen size."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._run, daemon=True).start()
        if not self._started.wait(10):
            raise TimeoutError("the test upstream did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        directives = dict(_DIRECTIVE.findall(json.dumps(body)))
        anthropic = request.path.endswith("/messages")
        if "midecho" in directives:
            return await self._fail_mid_stream(request, anthropic)
        if "failecho" in directives:
            return await self._failed_response(request, bool(body.get("stream")))
        if "echo" in directives:
            message = self._echo(request)
            if anthropic:
                error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            else:
                error = {"error": {"message": message, "type": "invalid_request_error", "code": "bad_key"}}
            return web.json_response(error, status=int(directives["echo"]))
        if "bigerror" in directives:
            return web.Response(status=500, body=b"x" * int(directives["bigerror"]))
        size = int(directives.get("big") or directives.get("chunked") or 0)
        payload = orjson.dumps(self._completion("y" * size))
        if "chunked" not in directives:
            return web.Response(body=payload, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 16 * 1024):
            await resp.write(payload[i:i + 16 * 1024])
        await resp.write_eof()
        return resp

    @staticmethod
    def _echo(request: web.Request) -> str:
        """An error message quoting the credential the request carried, in several forms."""
        sent = request.headers.get("x-api-key") or request.headers.get("Authorization", "")
        bare = sent.removeprefix("Bearer ")
        message = (
            f"Incorrect API key provided: {sent}. As sent: {bare}; encoded: {quote(bare, safe='')}; "
            f"start: {bare[:20]}...; end: ...{bare[-14:]}; "
            f"custom: {request.headers.get('X-Custom-Token', '')}"
        )
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):  # and a proxy's credential, as sent and as it decodes
            decoded = base64.b64decode(basic[6:]).decode()
            message += f"; authorization: {basic}; user and password: {decoded}; " \
                       f"password: {decoded.partition(':')[2]}"
        return message

    async def _fail_mid_stream(self, request: web.Request, anthropic: bool) -> web.StreamResponse:
        """A stream that starts well, then reports an error quoting the credential."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        message = self._echo(request)
        if anthropic:
            start = {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "double", "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            delta = {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": "Hel"}}
            error = {"type": "error", "error": {"type": "api_error", "message": message}}
            await resp.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
            # Some of the answer first: an error before any is retried and answered as a status.
            await resp.write(f"event: content_block_start\ndata: {json.dumps(block)}\n\n".encode())
            await resp.write(f"event: content_block_delta\ndata: {json.dumps(delta)}\n\n".encode())
            await resp.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
        else:
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "double",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}
            error = {"error": {"message": message, "type": "server_error"}}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(f"data: {json.dumps(error)}\n\n".encode())
        await resp.write_eof()
        return resp

    async def _failed_response(self, request: web.Request, stream: bool) -> web.StreamResponse:
        """A Responses API answer with status ``failed`` whose error quotes the credential."""
        response = {"id": "resp_1", "object": "response", "created_at": 1, "model": "double",
                    "status": "in_progress", "output": [], "error": None}
        failed = {**response, "status": "failed",
                  "error": {"code": "server_error", "message": self._echo(request)}}
        if not stream:
            return web.json_response(failed)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for kind, body in (("response.created", response), ("response.failed", failed)):
            event = {"type": kind, "sequence_number": 0, "response": body}
            await resp.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())
        await resp.write_eof()
        return resp

    @staticmethod
    def _completion(text: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-double", "object": "chat.completion", "created": 1, "model": "double",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text or "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


@pytest.fixture(scope="module")
def double() -> Iterator[ProviderDouble]:
    upstream = ProviderDouble()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def careless(double: ProviderDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "echo-openai", "type": "openai", "api_base": f"{double.url}/v1", "api_key": ECHO_KEY,
             "headers": {"X-Custom-Token": ECHO_HEADER_TOKEN}, "max_response_bytes": LIMIT},
            {"name": "echo-anthropic", "type": "anthropic", "api_base": double.url,
             "api_key": ECHO_ANTHROPIC_KEY},
            # User info in api_base: alone, and with a key the provider sends in its own header.
            {"name": "echo-proxy", "type": "openai-compatible", "api_base": f"{proxied(double)}/v1"},
            {"name": "echo-proxy-anthropic", "type": "anthropic", "api_base": proxied(double),
             "api_key": ECHO_ANTHROPIC_KEY},
        ],
        "models": [
            {"name": "echo-gpt", "provider": "echo-openai", "model": "gpt-4o-mini"},
            {"name": "echo-claude", "provider": "echo-anthropic", "model": "claude-sonnet-4-5"},
            {"name": "echo-native", "provider": "echo-openai", "model": "gpt-4o-mini", "responses": "native"},
            {"name": "echo-proxied", "provider": "echo-proxy", "model": "gpt-4o-mini"},
            {"name": "echo-proxied-claude", "provider": "echo-proxy-anthropic", "model": "claude-sonnet-4-5"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "request_log": {"bodies": [{"model": "echo-proxied*"}], "flush_seconds": 0.1},
    }
    gw = serving(start_gateway(config, tmp_path_factory.mktemp("careless")))
    yield gw
    gw.process.stop()


def proxied(double: ProviderDouble) -> str:
    return f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{double.port}"


def post(gw: Gateway, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        gw.url + path,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json",
                 "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def assert_no_credential(text: str) -> None:
    for key in (ECHO_KEY, ECHO_ANTHROPIC_KEY, ECHO_HEADER_TOKEN, PROXY_PASSWORD, PROXY_BASIC,
                f"{PROXY_USER}:{PROXY_PASSWORD}"):
        for form in (key, quote(key, safe="")):
            leaked = [form[i:i + 12] for i in range(len(form) - 11) if form[i:i + 12] in text]
            assert not leaked, f"credential fragments {leaked} in {text[:500]}"


@pytest.mark.parametrize("status", [400, 422, 429, 500])
@pytest.mark.parametrize("model", ["echo-gpt", "echo-claude"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_echoed_credential_never_reaches_the_client(
    careless: Gateway, status: int, model: str, path: str, stream: bool
) -> None:
    payload = {"model": model, "max_tokens": 50, "stream": stream,
               "messages": [{"role": "user", "content": f"echo={status}"}]}
    got, body = post(careless, path, payload)
    assert got == (502 if status == 500 else status), body
    text = body.decode()
    assert_no_credential(text)
    if status != 500 or model == "echo-gpt":
        assert "[redacted]" in text  # the provider's message is still passed on, minus the key


@pytest.mark.parametrize("model", ["echo-gpt", "echo-claude"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_credential_echoed_mid_stream_never_reaches_the_client(
    careless: Gateway, model: str, path: str
) -> None:
    payload = {"model": model, "max_tokens": 50, "stream": True,
               "messages": [{"role": "user", "content": "midecho=1"}]}
    got, body = post(careless, path, payload)
    assert got == 200, body  # the stream had started: the error is its last event
    text = body.decode()
    assert "error" in text
    assert_no_credential(text)
    assert "[redacted]" in text  # the provider's message is still passed on, minus the key
    assert_no_credential(careless.process.output)


@pytest.mark.parametrize("stream", [False, True])
def test_a_credential_in_a_failed_native_response_never_reaches_the_client(
    careless: Gateway, stream: bool
) -> None:
    payload = {"model": "echo-native", "input": "failecho=1", "stream": stream}
    got, body = post(careless, "/v1/responses", payload)
    # The upstream answered a response whose status is failed (a stream's response.failed before
    # any output, or a non-stream 200): nothing reached the client, so an error status.
    assert got == 502, body
    text = body.decode()
    assert json.loads(text)["error"]["code"] == "upstream_error"
    assert_no_credential(text)
    assert "[redacted]" in text  # the provider's message is still passed on, minus the key
    assert_no_credential(careless.process.output)


def _logged_response(gw: Gateway, request_id: str) -> str:
    """The response body the request log stored for a request (polled: it is written behind it)."""
    deadline = time.monotonic() + 20
    while True:
        found = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": request_id},
                          headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30).json()["data"]
        if found and found[0].get("response") is not None:
            return str(found[0]["response"])
        assert time.monotonic() < deadline, f"no stored body for {request_id}"
        time.sleep(0.1)


@pytest.mark.parametrize("model", ["echo-proxied", "echo-proxied-claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_user_info_in_api_base_is_sent_as_basic_and_scrubbed_like_a_key(
    careless: Gateway, model: str, stream: bool
) -> None:
    rid = f"proxied-{uuid.uuid4().hex}"
    resp = httpx.post(f"{careless.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}", "X-Request-Id": rid},
                      json={"model": model, "max_tokens": 50, "stream": stream,
                            "messages": [{"role": "user", "content": "echo=400"}]})
    assert resp.status_code == 400, resp.text
    # The proxy got its credential (with the provider's own key, when it has one in its header).
    assert "authorization: Basic [redacted]" in resp.text
    if model == "echo-proxied-claude":
        assert "Incorrect API key provided: [redacted]" in resp.text
    assert_no_credential(resp.text)
    assert_no_credential(_logged_response(careless, rid))
    assert_no_credential(careless.process.output)


def test_a_stored_provider_with_user_info_is_scrubbed_in_calls_and_in_its_test(
    careless: Gateway, double: ProviderDouble
) -> None:
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    name = f"stored-proxy-{uuid.uuid4().hex[:8]}"
    created = httpx.post(f"{careless.url}/admin/v1/providers", headers=admin, timeout=30,
                         json={"name": name, "type": "openai", "api_base": f"{proxied(double)}/v1"})
    assert created.status_code == 201, created.text
    assert created.json()["api_base"] == f"http://{PROXY_USER}:[hidden]@127.0.0.1:{double.port}/v1"
    model = httpx.post(f"{careless.url}/admin/v1/models", headers=admin, timeout=30,
                       json={"name": name, "provider": name, "model": "gpt-4o-mini"})
    assert model.status_code == 201, model.text
    status, body = post(careless, "/v1/chat/completions",
                        {"model": name, "messages": [{"role": "user", "content": "echo=400"}]})
    assert status == 400 and "authorization: Basic [redacted]" in body.decode(), body
    assert_no_credential(body.decode())
    # The connection test sends the model named: the upstream echoes the credential back.
    tested = httpx.post(f"{careless.url}/admin/v1/providers/{name}/test", headers=admin, timeout=30,
                        json={"model": "echo=400"})
    assert tested.status_code == 200 and tested.json()["ok"] is False, tested.text
    assert "[redacted]" in tested.json()["error"]
    assert_no_credential(tested.text)


def test_credentials_stay_out_of_the_gateway_log(careless: Gateway) -> None:
    post(careless, "/v1/chat/completions",
         {"model": "echo-gpt", "messages": [{"role": "user", "content": "echo=500"}]})
    assert_healthy_on(careless, "echo-gpt")
    assert_no_credential(careless.process.output)


def assert_healthy_on(gw: Gateway, model: str) -> None:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    status, body = post(gw, "/v1/chat/completions", payload)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]


@pytest.mark.parametrize("directive", ["big", "chunked"])
def test_an_oversized_upstream_answer_is_a_502(careless: Gateway, directive: str) -> None:
    payload = {"model": "echo-gpt", "messages": [{"role": "user", "content": f"{directive}={4 * LIMIT}"}]}
    status, body = post(careless, "/v1/chat/completions", payload)
    assert status == 502, body[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "upstream_response_too_large"
    assert str(LIMIT) in error["message"]
    assert_healthy_on(careless, "echo-gpt")


@pytest.mark.parametrize("directive", ["big", "chunked"])
def test_an_upstream_answer_under_the_bound_passes(careless: Gateway, directive: str) -> None:
    payload = {"model": "echo-gpt", "messages": [{"role": "user", "content": f"{directive}={LIMIT // 2}"}]}
    status, body = post(careless, "/v1/chat/completions", payload)
    assert status == 200, body[:300]
    assert len(json.loads(body)["choices"][0]["message"]["content"]) == LIMIT // 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_huge_upstream_error_body_is_cut(careless: Gateway, stream: bool) -> None:
    payload = {"model": "echo-gpt", "stream": stream,
               "messages": [{"role": "user", "content": f"bigerror={8 * MIB}"}]}
    status, body = post(careless, "/v1/chat/completions", payload)
    assert status == 502
    assert json.loads(body)["error"]["code"] == "upstream_error"
    assert len(body) < 2 * MIB
    assert_healthy_on(careless, "echo-gpt")


# Image URL schemes (Gemini takes URLs as file URIs)


@pytest.fixture(scope="module")
def gemini(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    config = {
        "providers": [{"name": "studio", "type": "gemini", "api_base": mock_upstream.url,
                       "api_key": "${UPSTREAM_KEY}"}],
        "models": [{"name": "gemini-flash", "provider": "studio", "model": "gemini-2.5-flash"}],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }
    gw = serving(start_gateway(config, tmp_path_factory.mktemp("gemini-images")))
    yield openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    gw.process.stop()


def with_image(client: openai.OpenAI, url: str) -> Any:
    return client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    )


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "gopher://127.0.0.1:70/_stats",
    "ftp://example.com/a.png",
    "javascript:alert(1)",
    "/relative/a.png",
])
def test_image_urls_with_other_schemes_are_refused(gemini: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        with_image(gemini, url)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1]"
    assert "scheme" in error["message"]
    assert with_image(gemini, PIXEL).choices[0].message.content


def test_upper_case_http_is_http(gemini: openai.OpenAI, mock_upstream: Mock) -> None:
    url = mock_upstream.url.replace("http://", "HTTP://") + "/images/pixel.png"
    reply = with_image(gemini, url)
    # Fetched and inlined like any http URL, not passed on as a file URI.
    assert "(attachments: image/png)" in (reply.choices[0].message.content or "")


def test_gs_urls_are_refused_on_the_gateways_credential(gemini: openai.OpenAI) -> None:
    # Google would read the object with the gateway's credential (test_account_objects.py: the
    # caller's own Gemini key may name one).
    with pytest.raises(openai.BadRequestError) as caught:
        with_image(gemini, "gs://bucket/photo.png")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_parameter"
    assert error["param"] == "messages[0].content[1].image_url.url"


@pytest.mark.parametrize(("garbage", "status", "code", "message"), [
    (b"\x00\x01 not HTTP at all\r\n\r\n", 400, "malformed_http_request", "malformed HTTP request"),
    (b"\r\n\r\nGARBAGE / HTTP/1.1\r\n\r\n", 400, "malformed_http_request", "malformed HTTP request"),
    # Blank lines before a request line are skipped (RFC 9112 2.2) and start no request.
    (b"\r\n" * (40 * 1024), 431, "request_header_fields_too_large",
     "the request line and headers exceed the limit of 65536 bytes"),
], ids=["garbage", "garbage-after-blank-lines", "endless-blank-lines"])
def test_what_follows_an_anthropic_request_on_the_same_connection_gets_openais_shape(
    edge: Gateway, garbage: bytes, status: int, code: str, message: str,
) -> None:
    """What follows a finished request on a kept-alive connection is a new request whose path
    is not known yet: the connection's answer to it has the default (OpenAI) shape, not the
    shape of the request before it."""
    body = b'{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
    sock = connect(edge)
    sock.sendall(request_head("POST", "/v1/messages", length=len(body),
                              extra="anthropic-version: 2023-06-01\r\n") + body)
    got, _, answer = split_response(read_response(sock))
    assert got == 200, answer
    assert orjson.loads(answer)["type"] == "message"
    sock.sendall(garbage)
    got, headers, answer = split_response(read_until_closed(sock, deadline=10 * TICK))
    sock.close()
    assert got == status
    assert headers["connection"] == "close"
    assert orjson.loads(answer) == {"error": {"message": message, "type": "invalid_request_error",
                                              "param": None, "code": code}}
    assert_healthy(edge)
