"""A connection past ``server.max_connections`` (http/protocol.py): its request's head is read by
a parser of its own, only for the shape and the id of its 503, which is written once the head is
whole, too large or malformed, or once the refused connection's time is up (soon, when nothing at
all came); the application
never sees the request. uvicorn with the gateway's protocol runs in the test's loop on a real
socket (tests/unit/test_protocol_cycles.py), with a cap of 0: every connection is past it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

from switchboard.http import protocol
from switchboard.http.protocol import GatewayHttpProtocol
from tests.unit.test_protocol_cycles import SOON, serving

OVER_CAP = "the server has too many open connections; retry later"
OPENAI = {"error": {"message": OVER_CAP, "type": "api_error", "param": None, "code": "too_many_connections"}}
ANTHROPIC = {"type": "error", "error": {"type": "overloaded_error", "message": OVER_CAP}}
WAIT = 0.3  # the refused connection's time, shortened
QUIET = 0.1  # and the time after which one that sent nothing is answered


@pytest.fixture(autouse=True)
def capped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    limits = GatewayHttpProtocol.limits
    GatewayHttpProtocol.limits = replace(limits, max_connections=0, max_header_bytes=1024)
    monkeypatch.setattr(protocol, "REFUSED_LINGER_SECONDS", WAIT)
    monkeypatch.setattr(protocol, "REFUSED_QUIET_SECONDS", QUIET)
    try:
        yield
    finally:
        GatewayHttpProtocol.limits = limits


async def _refused(port: int, pieces: list[bytes]) -> tuple[bytes, dict[str, str], object, float]:
    """Send ``pieces`` one read apart; (status line, headers, body, seconds to the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.01)  # pacing only: each piece a read of its own
    raw = await asyncio.wait_for(reader.read(), SOON)
    took = time.monotonic() - started
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status.encode(), headers, orjson.loads(body), took


async def test_a_head_in_pieces_is_read_whole_for_its_shape_and_id() -> None:
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: t\r\nX-Request-Id: caller-7\r\n"
            b"Content-Length: 2\r\n\r\n{}")
    async with serving() as (served, port):
        status, headers, body, _ = await _refused(port, [head[i:i + 7] for i in range(0, len(head), 7)])
        assert not served.started.is_set()
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert body == ANTHROPIC
    assert headers["request-id"] == headers["x-request-id"] == "caller-7"
    assert headers["connection"] == "close"


@pytest.mark.parametrize("pieces", [
    [b"GET / HTTP/1.1\r\nHost: t\r\nbad header line\r\n\r\n"],  # malformed
    [b"GET / HTTP/1.1\r\nX-Filler: " + b"a" * 2000],  # over the head bound, never ended
    [b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"],
], ids=["malformed", "too-large", "upgrade"])
async def test_a_head_that_cannot_be_whole_is_answered_at_once(pieces: list[bytes]) -> None:
    async with serving() as (_, port):
        status, _, body, took = await _refused(port, pieces)
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert body == OPENAI
    assert took < WAIT


async def test_a_silent_connection_is_answered_soon_and_a_head_begun_when_its_time_is_up() -> None:
    async with serving() as (_, port):
        status, headers, body, took = await _refused(port, [])
        partial_status, _, partial, partial_took = await _refused(
            port, [b"POST /v1/messages?beta=true HTTP/1.1\r\nHo"])
    # Nothing came: answered in OpenAI's shape once the quiet time is over, not at the end.
    assert status == b"HTTP/1.1 503 Service Unavailable" and body == OPENAI
    assert headers["x-request-id"]
    assert QUIET * 0.9 <= took < WAIT
    # A head begun is waited for; as much of it as arrived decides the shape.
    assert partial_status == status and partial == ANTHROPIC
    assert partial_took >= WAIT * 0.9
