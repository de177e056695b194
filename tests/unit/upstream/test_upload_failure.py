"""A spooled upload (transcriptions, image edits: ``UpstreamRequest.upload``) whose file fails
while it is sent (closed under it, unreadable) ends the exchange at once: the caller gets a 500
naming the failure, and the upstream's connection is reset, not left waiting for the rest of the
body until the provider's timeout.

At the upstream client rather than end to end: the file is the gateway process's temporary file,
out of a test's reach (the end-to-end test of a caller's body failing part-way is
tests/e2e/test_upload_body_fails.py).
"""

from __future__ import annotations

import asyncio
import io

import pytest

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
