"""A spooled upload (transcriptions, image edits: ``UpstreamRequest.upload``) whose file fails
while it is sent (closed under it, unreadable) ends the exchange at once: the caller gets a 500
naming the failure, and the upstream's connection is reset, not left waiting for the rest of the
body until the provider's timeout. So does one whose upstream answered in full before reading it
(an early 413), whatever aiohttp did with the connection meanwhile.

At the upstream client rather than end to end: the file is the gateway process's temporary file,
out of a test's reach (the end-to-end test of a caller's body failing part-way is
tests/e2e/test_upload_body_fails.py).
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import pytest
import uvloop

from switchboard.errors import InternalError
from switchboard.upstream.request import UpstreamRequest
from tests.unit.upstream.test_http1 import Conn, Handler, Upstream, chunk, chunked_head, upstream_client

# Far below the client's total timeout (30 s): the failure must end the exchange, not the timer.
PROMPTLY = 5.0
PIECE = 256 * 1024  # what the upload is read in (upstream/request.py file_pieces)


class ClosedUnderIt(io.BytesIO):
    """A file closed by someone else after its first two pieces were read."""

    def __init__(self) -> None:
        super().__init__(b"a" * (16 * PIECE))
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.reads == 3:
            self.close()
        return super().read(size)


def _upload(up: Upstream) -> UpstreamRequest:
    length = str(16 * PIECE)
    return UpstreamRequest("POST", up.url("/v1/audio/transcriptions"), None,
                           {"Content-Type": "audio/wav", "Content-Length": length}, upload=ClosedUnderIt())


class Ended:
    """How the upstream's connection ended (``eof`` or ``reset``), once it has."""

    def __init__(self) -> None:
        self.how: str | None = None
        self.event = asyncio.Event()

    async def wait(self) -> str | None:
        await self.event.wait()
        return self.how


async def _read_until_ended(conn: Conn, ended: Ended) -> None:
    try:
        while await conn.reader.read(65536):
            pass
        ended.how = "eof"
    except ConnectionResetError:
        ended.how = "reset"
    ended.event.set()


def _answering_first(ended: Ended) -> Handler:
    """Answers the head of a stream as soon as the request's head is in, then reads the body."""

    async def handler(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        head = chunked_head(headers=[("Content-Type", "text/event-stream")])
        await conn.send(head + chunk(b"data: {}\n\n"))
        await _read_until_ended(conn, ended)

    return handler


def _reading_first(ended: Ended) -> Handler:
    """Reads the body before it answers (so never answers here)."""

    async def handler(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await _read_until_ended(conn, ended)

    return handler


async def test_an_upload_failing_after_the_answer_began_ends_the_stream_at_once() -> None:
    ended = Ended()
    async with Upstream(_answering_first(ended)) as up, upstream_client() as client:
        async with asyncio.timeout(PROMPTLY):
            stream = await client.open_stream(_upload(up), None)
            assert stream.status == 200
            with pytest.raises(InternalError) as caught:
                async for _ in stream.chunks():
                    pass
            assert await ended.wait() == "reset"
    assert caught.value.status == 500
    assert "failed part-way (ValueError: I/O operation on closed file" in caught.value.message


async def test_an_upload_failing_before_any_answer_is_a_500_at_once() -> None:
    ended = Ended()
    async with Upstream(_reading_first(ended)) as up, upstream_client() as client:
        async with asyncio.timeout(PROMPTLY):
            with pytest.raises(InternalError) as caught:
                await client.send(_upload(up), None)
            assert await ended.wait() == "reset"
    assert "provider 'prov'" in caught.value.message and "closed file" in caught.value.message


def _established(sock: Any) -> bool:
    """TCP_INFO's first byte, the state, is ESTABLISHED: the client has neither closed nor reset
    the connection (Linux). uvloop's stand-in socket raises ValueError once its transport has
    closed on the reset."""
    try:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1)
    except (OSError, ValueError):
        return False


async def _until_not_established(sock: Any) -> None:
    """Looks at the socket's state, never reads it: a read would drain the queued upload and let
    a graceful close through (bounded by the caller's timeout)."""
    while _established(sock):
        await asyncio.sleep(0.01)


class Refusal:
    """An upstream's 413 sent in two steps: its head once the upload has begun, its body when
    ``finish`` is set; then ``ended`` once the client has ended the connection. The upload is
    never read but for its first byte."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.ended = asyncio.Event()

    async def __call__(self, conn: Conn) -> None:
        # A small fixed receive buffer (no autotuning): the unread upload backs up in the client,
        # as over a real network, instead of the system taking in ever more of it.
        conn.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.reader.readexactly(1)
        body = b'{"error": {"message": "request too large"}}'
        await conn.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body))
        await self.finish.wait()
        await conn.send(body)
        await _until_not_established(conn.writer.get_extra_info("socket"))
        self.ended.set()


async def _until_queued(response: aiohttp.ClientResponse) -> None:
    """Until part of the upload waits in the connection's own buffer, the system's being full."""
    assert response.connection is not None and response.connection.transport is not None
    while not response.connection.transport.get_write_buffer_size():
        await asyncio.sleep(0.01)


async def _refused_with_the_upload_queued() -> None:
    refusal = Refusal()
    # Far more than loopback's socket buffers take: most of it is still unsent when refused.
    upload = io.BytesIO(b"a" * (64 * 1024 * 1024))
    async with Upstream(refusal) as up, upstream_client() as client:
        async with asyncio.timeout(PROMPTLY):
            request = UpstreamRequest("POST", up.url("/v1/audio/transcriptions"), None,
                                      {"Content-Type": "audio/wav"}, upload=upload)
            stream = await client.open_stream(request, None)
            assert stream.status == 413
            response = stream.response
            assert isinstance(response, aiohttp.ClientResponse)
            await _until_queued(response)
            refusal.finish.set()
            # The whole answer in, aiohttp cancels the sending and closes the connection
            # gracefully, a close that waits for the queued upload: that happens first here.
            await response.wait_for_close()
            await stream.close()
            await refusal.ended.wait()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_an_upload_refused_in_full_before_it_was_read_ends_the_connection_at_once(
        run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    """The order that left the connection open: aiohttp's graceful close of the connection
    (the sending cancelled once the answer ended), with part of the upload still queued in it,
    before the gateway ends the exchange."""
    run(_refused_with_the_upload_queued())
