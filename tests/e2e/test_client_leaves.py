"""A client that leaves a streamed answer stops the relay at once: the gateway's next write to
the gone connection ends the work and closes the upstream response, so a fast upstream is not
read on (formerly until the disconnect watcher noticed, a quarter of a second later: tens to
hundreds of MB). The request is still recorded as a client disconnect.

The upstream (a test double on a free port) writes as fast as it is read and counts its bytes.
The client is a raw socket that reads the first bytes of the answer and closes, well within the
watcher's quarter of a second (so the log says a send stopped the relay, not the watcher). Both
the client's receive buffer and the upstream's send buffer are small, so what the upstream
writes after the close is what the gateway read after the client left (and the little its own
receive buffer then takes), not buffers filling.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.endless_upstream import MIB, EndlessUpstream
from tests.servers import MASTER_KEY, Gateway, start_gateway

# What the upstream may still write once the client has closed: what the gateway reads before
# its next write to the client fails (measured up to some 0.9 MiB: a read or two, and its socket
# buffer refilled). With the disconnect watcher alone a fast upstream wrote 38 MiB (chat) to
# 540 MiB (raw bytes) after the client left.
AFTER_CLOSE = 4 * MIB
DEADLINE = 30.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[EndlessUpstream]:
    server = EndlessUpstream(send_buffer=65536)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: EndlessUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = upstream.config()
    gw = start_gateway(config, tmp_path_factory.mktemp("gone"))
    yield gw
    gw.process.stop()


def upload(gw: Gateway) -> str:
    """A file uploaded through the gateway (so that it is the master key's own)."""
    resp = httpx.post(gw.url + "/v1/files", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                      data={"purpose": "batch"}, files={"file": ("a.jsonl", b"{}\n")}, timeout=30)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def request(kind: str, rid: str, file_id: str = "", version: str = "1.1") -> bytes:
    head = f"Host: gateway\r\nAuthorization: Bearer {MASTER_KEY}\r\nX-Request-Id: {rid}\r\n"
    if kind == "service":
        return f"GET /services/bulk/download HTTP/{version}\r\n{head}\r\n".encode()
    if kind == "file":
        return f"GET /v1/files/{file_id}/content HTTP/{version}\r\n{head}\r\n".encode()
    if kind == "chat":
        path, body = "/v1/chat/completions", {"model": "fast-chat", "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}
    else:
        path, body = "/v1/audio/speech", {"model": "fast-tts", "voice": "alloy", "input": "hi"}
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/{version}\r\n{head}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def read_first_bytes(sock: socket.socket) -> bytes:
    """The answer's head and the first part of its body."""
    sock.settimeout(DEADLINE)
    got = b""
    while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 64:
        piece = sock.recv(4096)
        assert piece, f"the connection closed after {got[:200]!r}"
        got += piece
    return got


@pytest.mark.parametrize("kind", ["chat", "speech", "file", "service"])
def test_a_client_that_leaves_stops_the_upstream_at_once(
    gateway: Gateway, upstream: EndlessUpstream, kind: str
) -> None:
    leave_early(gateway, upstream, kind, "1.1")


@pytest.mark.parametrize("kind", ["chat", "speech"])
def test_an_http10_client_that_leaves_stops_the_upstream_at_once(
    gateway: Gateway, upstream: EndlessUpstream, kind: str
) -> None:
    """HTTP/1.0 has its own send (a reply without a length ends at the close): the same stop."""
    leave_early(gateway, upstream, kind, "1.0")


def leave_early(gateway: Gateway, upstream: EndlessUpstream, kind: str, version: str) -> None:
    """Ask for ``kind``, read its first bytes and close; the upstream must be dropped at once."""
    file_id = upload(gateway) if kind == "file" else ""
    rid = f"gone-{kind}-{uuid.uuid4().hex[:8]}"
    upstream.ended.clear()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    try:
        sock.sendall(request(kind, rid, file_id, version))
        first = read_first_bytes(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]
        if kind == "chat":
            assert b"data: " in first
    finally:
        at_close = upstream.written
        sock.close()  # with unread bytes: the gateway's connection is reset
    assert upstream.ended.wait(DEADLINE), "the upstream response was not closed"
    after = upstream.written - at_close
    assert after < AFTER_CLOSE, f"the upstream wrote {after / MIB:.1f} MiB after the client left"
    # Recorded as a client that left, as before.
    line = gateway.process.wait_for_all(rid, "request failed", timeout=DEADLINE)
    assert "client_disconnected=true" in line
    if kind in ("chat", "speech"):  # the log names the stop: a send, not the watcher's cancel
        stop = gateway.process.wait_for_all(rid, "client disconnected", timeout=DEADLINE)
        assert "during the answer; upstream response closed" in stop, stop
    assert "Traceback" not in gateway.process.output  # an expected end, not an error


def test_the_gateway_still_streams_to_a_client_that_stays(
    gateway: Gateway, upstream: EndlessUpstream
) -> None:
    """A client that keeps reading gets its stream: the stop is for a client that left."""
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    try:
        sock.sendall(request("chat", f"stay-{uuid.uuid4().hex[:8]}"))
        got = read_first_bytes(sock)
        while len(got) < 8 * MIB:
            piece = sock.recv(1 << 20)
            assert piece, "the stream ended early"
            got += piece
        assert got.count(b"chatcmpl-endless") > 1000
    finally:
        sock.close()

