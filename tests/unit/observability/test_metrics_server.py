"""The metrics.port listener's bounds: connections beyond the limit are closed at once, a head
that does not arrive in time is dropped, and requests keep being answered afterwards."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.observability import metrics_server
from switchboard.observability.metrics_server import MetricsServer
from tests.servers import free_port


async def _get(port: int, request: bytes = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n") -> bytes:
    """What the listener answered; b"" when it closed the connection (a reset included: our
    request left unread)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_bounded_connections_and_slow_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_server, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(metrics_server, "HEAD_SECONDS", 0.5)
    port = free_port()
    server = MetricsServer("127.0.0.1", port, lambda: b"switchboard_up 1\n", b"text/plain")
    await server.start()
    try:
        assert (await _get(port)).endswith(b"\r\n\r\nswitchboard_up 1\n")
        # Two connections that never finish their head hold both places...
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, writer in idle:
            writer.write(b"GET /metr")
            await writer.drain()
        async with asyncio.timeout(5):  # until the listener holds both
            while server._open < 2:
                await asyncio.sleep(0.01)
        # ... so a third is closed without an answer.
        assert await _get(port) == b""
        # The slow heads are dropped after HEAD_SECONDS, and the listener answers again.
        for reader, _ in idle:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert (await _get(port)).startswith(b"HTTP/1.1 200 OK\r\n")
        assert (await _get(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")).endswith(b"connection: close\r\n\r\n")
        assert (await _get(port, b"DELETE /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _get(port, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert (await _get(port, b"GET /\r\n\r\n")).startswith(b"HTTP/1.1 400")
        for _, writer in idle:
            writer.close()
    finally:
        await server.close()


async def test_the_step_before_a_scrape_runs_before_the_values_are_read() -> None:
    """The gateway checks its stores there when their answers are old (switchboard_store_up
    as they are now); not for an answer other than the metrics."""
    state = {"up": 0, "before": 0}

    async def before() -> None:
        state["before"] += 1
        state["up"] = 1

    port = free_port()
    server = MetricsServer("127.0.0.1", port, lambda: b"store_up %d\n" % state["up"], b"text/plain",
                           before=before)
    await server.start()
    try:
        assert (await _get(port)).endswith(b"\r\n\r\nstore_up 1\n")
        assert (await _get(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert state["before"] == 1
    finally:
        await server.close()
