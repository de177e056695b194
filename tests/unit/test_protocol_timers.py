"""The edge's HTTP protocol (http/protocol.py) keeps its body timer from one request to the next:
a body written after its headers (as the SDKs' HTTP clients write it) used to set a timer and
cancel it on every request, a cost per request of the event loop's timer handling. uvicorn with
the gateway's protocol runs in the test's loop on a real socket (tests/unit/test_protocol_cycles.py);
each request's body is sent once the application has started, so it arrives in a read of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from switchboard.http.protocol import GatewayHttpProtocol
from tests.unit.test_protocol_cycles import SOON, Server, request, serving


class _Counting:
    """The protocol's loop, counting the timers set for ``_body_timeout``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counts: list[int]) -> None:
        self._loop = loop
        self._counts = counts

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__name__", "") == "_body_timeout":
            self._counts.append(1)
        return self._loop.call_later(delay, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def _counted(served: Server, counts: list[int]) -> None:
    base = served.protocol

    class Counted(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loop = _Counting(self.loop, counts)  # type: ignore[assignment]

    served.protocol = Counted


async def test_bodies_after_their_headers_share_one_body_timer_per_connection() -> None:
    counts: list[int] = []
    served = Server()
    _counted(served, counts)
    async with serving(served) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for body in (b"one..", b"two..", b"three"):
            served.started.clear()
            writer.write(request("1.1", "/", None))
            await writer.drain()
            await asyncio.wait_for(served.started.wait(), SOON)  # the body comes in a read of its own
            writer.write(body)
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.readuntil(body), SOON))
        writer.close()
        await writer.wait_closed()

    assert [a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers] == [True, True, True]
    assert len(counts) == 1  # the first request's timer, kept; before: one per request


async def test_a_body_timer_left_by_an_earlier_request_waits_for_the_current_body() -> None:
    """The kept timer was set for the first body's deadline; when it fires during a later body
    that is still arriving, it measures that body's own gap and waits on, rather than refusing it."""
    limits = GatewayHttpProtocol.limits
    GatewayHttpProtocol.limits = replace(limits, body_timeout=0.4)
    try:
        served = Server()
        async with serving(served) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            served.started.clear()
            writer.write(request("1.1", "/", None))
            await writer.drain()
            await asyncio.wait_for(served.started.wait(), SOON)
            writer.write(b"first")  # sets the timer, due 0.4 s from here
            await writer.drain()
            first = await asyncio.wait_for(reader.readuntil(b"first"), SOON)
            served.started.clear()
            writer.write(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n")
            await writer.drain()
            await asyncio.wait_for(served.started.wait(), SOON)
            # Pieces 0.15 s apart, each gap under the bound: the timer fires in between.
            for piece in (b"se", b"co", b"nd", b"..", b"ok"):
                await asyncio.sleep(0.15)  # paces the body: the gaps are what is tested
                writer.write(piece)
                await writer.drain()
            second = await asyncio.wait_for(reader.readuntil(b"ok"), SOON)
            writer.close()
            await writer.wait_closed()
    finally:
        GatewayHttpProtocol.limits = limits

    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"first")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b"second..ok")



class _Kept(Server):
    """The echo server, keeping each request's cycle (``receive`` is its method)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Any] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.kept.append(receive.__self__)
        await super().app(scope, receive, send)


@pytest.mark.parametrize("before", [b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello", b""],
                         ids=["after-an-answer", "fresh-connection"])
async def test_blank_lines_alone_time_out_as_an_idle_connection(
        before: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Blank lines before a request line begin no request (RFC 9112 2.2): when the header
    timeout passes with nothing else sent, the connection closes quietly, as one that sent
    nothing does (no 408, no "did not arrive in time" line), and the request answered before
    on the connection is left as it was, not marked as a client that left."""
    limits = GatewayHttpProtocol.limits
    GatewayHttpProtocol.limits = replace(limits, header_timeout=0.3)
    try:
        served = _Kept()
        async with serving(served) as (_, port):
            # uvicorn's loggers do not reach the root logger: the capture listens on its own.
            logger = logging.getLogger("uvicorn.error")
            logger.addHandler(caplog.handler)
            caplog.set_level(logging.INFO, logger="uvicorn.error")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if before:
                writer.write(before)
                answer = await asyncio.wait_for(reader.readuntil(b"hello"), SOON)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            served.lost.clear()
            writer.write(b"\r\n\r\n")
            await writer.drain()
            after = await asyncio.wait_for(reader.read(), SOON)  # until the server closes
            await asyncio.wait_for(served.lost.wait(), SOON)
            writer.close()
            await writer.wait_closed()
    finally:
        logging.getLogger("uvicorn.error").removeHandler(caplog.handler)
        GatewayHttpProtocol.limits = limits

    assert after == b""
    assert "did not arrive in time" not in caplog.text
    assert [cycle.disconnected for cycle in served.kept] == ([False] if before else [])
