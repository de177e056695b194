"""Back-pressure at the edge: a client that reads slowly or not at all, in front of an upstream
that writes as fast as it can. The gateway must stop reading the upstream while the client's
connection is full (so neither the upstream's bytes nor the gateway's memory pile up), and must
cut off a client that takes nothing for ``server.send_timeout_seconds``, dropping the upstream
call with it.

The clients are raw sockets with a small receive buffer that send a request and never read;
the upstream (a test double on a free port) streams without end and counts what it managed to
write: without back-pressure it would write gigabytes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.endless_upstream import MIB, EndlessUpstream
from tests.servers import MASTER_KEY, Gateway, start_gateway

# What the upstream may manage to write to one stalled request: the kernel's socket buffers on
# both of the gateway's connections (several MiB each on loopback) and the gateway's own few
# hundred KiB. Without back-pressure it writes without end.
BYTES_PER_STALLED = 32 * MIB
STALLED = 200
# The gateway's resident memory per stalled stream, measured about 2 MiB (a stalled chat stream
# held some 5.5 MiB before its upstream pieces were bounded); and a margin for the process.
RSS_PER_STALLED = 3 * MIB
RSS_SLACK = 64 * MIB
SEND_TIMEOUT = 1.0


def config(upstream: EndlessUpstream, send_timeout: float) -> dict[str, object]:
    return upstream.config(server={"send_timeout_seconds": send_timeout, "max_connections": 4 * STALLED})


@pytest.fixture(scope="module")
def upstream() -> Iterator[EndlessUpstream]:
    server = EndlessUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patient(upstream: EndlessUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that waits long for a stalled client: what it holds meanwhile is measured."""
    gw = start_gateway(config(upstream, 600), tmp_path_factory.mktemp("patient"))
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def impatient(upstream: EndlessUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(config(upstream, SEND_TIMEOUT), tmp_path_factory.mktemp("impatient"))
    yield gw
    gw.process.stop()


def request(kind: str) -> bytes:
    auth = f"Authorization: Bearer {MASTER_KEY}\r\n"
    if kind == "service":
        return f"GET /services/bulk/download HTTP/1.1\r\nHost: gateway\r\n{auth}\r\n".encode()
    if kind == "chat":
        path, body = "/v1/chat/completions", {"model": "fast-chat", "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}
    else:
        path, body = "/v1/audio/speech", {"model": "fast-tts", "voice": "alloy", "input": "hi"}
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: gateway\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


def stalled_client(gw: Gateway, kind: str) -> socket.socket:
    """A client that asks for ``kind`` and then reads nothing (a small receive buffer, so the
    gateway's connection fills soon)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(request(kind))
    return sock


def rss(gw: Gateway) -> int:
    for line in Path(f"/proc/{gw.process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for(condition: object, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, f"not within {deadline} s: {what}"
        time.sleep(0.1)


def settled(upstream: EndlessUpstream, since: int = 0, deadline: float = 120.0) -> None:
    """Until every answer the upstream started from the ``since``-th on can write no more: ended
    or held by the gateway, seen on the upstream's side of each connection (its writes wait for
    the gateway to read), not guessed from a pause in its counts, which a stalled process fakes.
    Fails if one keeps being read past the deadline."""
    end = time.monotonic() + deadline
    while not upstream.blocked(since):
        assert time.monotonic() < end, f"the upstream is still writing after {deadline} s"
        time.sleep(0.1)


def closed_by_server(sock: socket.socket, deadline: float = 30.0) -> bool:
    """Whether the server ends the connection: what it had sent is read and dropped (at most
    the buffers' worth; an answer that goes on without end fails), then EOF or a reset."""
    sock.settimeout(deadline)
    got = 0
    try:
        while piece := sock.recv(1 << 20):
            got += len(piece)
            if got > BYTES_PER_STALLED:
                return False  # still streaming: not cut off
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def chat_works(gw: Gateway) -> None:
    """The gateway still answers (the stream is cut by its client after the first bytes)."""
    body = {"model": "fast-chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as resp:
        assert resp.status_code == 200
        first = next(resp.iter_lines())
        assert first.startswith("data: ") and "chatcmpl-endless" in first


@pytest.mark.parametrize("kind", ["chat", "speech", "service"])
def test_a_client_that_reads_nothing_stops_the_upstream_and_is_cut_off(
    impatient: Gateway, upstream: EndlessUpstream, kind: str
) -> None:
    started = upstream.started
    sock = stalled_client(impatient, kind)
    try:
        wait_for(lambda: upstream.started > started, "the upstream call")
        answer = upstream.answers[started]  # this test's: the earlier tests' calls all started
        # Cut off after the send timeout, its connection closed by the server...
        peer = f"127.0.0.1:{sock.getsockname()[1]} "
        line = impatient.process.wait_for_all(peer, "took none of the answer", timeout=30)
        assert "server.send_timeout_seconds" in line
        assert closed_by_server(sock)
    finally:
        sock.close()
    # ...and the upstream call dropped with it, having written what the buffers hold, not more.
    wait_for(lambda: answer.finished, "the upstream connection dropped")
    assert answer.written < BYTES_PER_STALLED
    chat_works(impatient)


def test_a_slow_reader_is_not_cut_off(impatient: Gateway, upstream: EndlessUpstream) -> None:
    """A client that keeps taking its answer, slower than the upstream writes it, keeps its
    connection for many send timeouts: the timeout is for a client that takes nothing."""
    sock = stalled_client(impatient, "service")
    try:
        got, end = 0, time.monotonic() + 8 * SEND_TIMEOUT
        sock.settimeout(10)
        while time.monotonic() < end:
            piece = sock.recv(4096)
            assert piece, "the server closed the connection of a client still reading"
            got += len(piece)
            time.sleep(0.05)  # this client's pace: some 80 KiB/s, far below the upstream's
        assert got > 4096
    finally:
        sock.close()


def test_many_stalled_streams_hold_bounded_memory(patient: Gateway, upstream: EndlessUpstream) -> None:
    chat_works(patient)  # the first request's one-time costs are not counted below
    settled(upstream)  # the earlier tests' calls ended or held: this test's memory is measured
    before_rss, started = rss(patient), upstream.started
    socks = [stalled_client(patient, "chat") for _ in range(STALLED)]
    try:
        wait_for(lambda: upstream.started - started >= STALLED, "every stream's upstream call", 120)
        settled(upstream, started)
        grown = rss(patient) - before_rss
        per_stream = sum(answer.written for answer in upstream.answers[started:]) / STALLED
        assert per_stream < BYTES_PER_STALLED, f"{per_stream / MIB:.1f} MiB written per stalled stream"
        assert grown < STALLED * RSS_PER_STALLED + RSS_SLACK, f"resident memory grew {grown / MIB:.0f} MiB"
    finally:
        for sock in socks:
            sock.close()
