"""Coalesced writes on a client connection (http/cork.py), over a real loopback connection:
the writes of one event-loop pass leave in one transport write, in order; a large pass is sent
at FLUSH_BYTES; closing or ending the stream sends what is pending first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from switchboard.http.cork import FLUSH_BYTES, JOIN_MAX_BYTES, CorkedTransport


class Counting:
    """The real transport, with its writes counted (the boundary under the wrapper)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []
        self.handed: list[bytes] = []  # the pieces of the last writelines

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def writelines(self, lines: list[bytes]) -> None:
        """Counted as one write of the pieces as they are, each kept by identity."""
        self.handed = list(lines)
        self.writes.append(b"".join(lines))
        self.transport.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@asynccontextmanager
async def connection() -> AsyncIterator[tuple[CorkedTransport, Counting, asyncio.Future[bytes]]]:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.read())  # everything until the client's EOF
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    counting = Counting(transport)  # type: ignore[arg-type]
    try:
        yield CorkedTransport(counting, loop), counting, received  # type: ignore[arg-type]
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


async def end_of_pass() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_the_writes_of_one_pass_leave_in_one_write_in_order() -> None:
    async with connection() as (corked, counting, received):
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"data: 1\n\n")
        corked.writelines([b"data: 2\n\n", b"0\r\n\r\n"])
        assert counting.writes == [] and corked.get_write_buffer_size() > 0
        await end_of_pass()
        assert counting.writes == [b"HTTP/1.1 200 OK\r\n\r\ndata: 1\n\ndata: 2\n\n0\r\n\r\n"]
        corked.write(b"next")
        await end_of_pass()
        assert counting.writes[1:] == [b"next"]
        corked.write_eof()
        assert await asyncio.wait_for(received, 5) == b"".join(counting.writes)


async def test_a_pass_that_writes_a_lot_is_sent_at_the_flush_size() -> None:
    async with connection() as (corked, counting, received):
        piece = b"x" * (FLUSH_BYTES // 4)
        for _ in range(5):
            corked.write(piece)
        assert len(counting.writes) == 1 and len(counting.writes[0]) == FLUSH_BYTES  # without waiting
        await end_of_pass()
        assert [len(w) for w in counting.writes] == [FLUSH_BYTES, FLUSH_BYTES // 4]
        corked.write_eof()
        assert len(await asyncio.wait_for(received, 5)) == 5 * len(piece)


async def test_closing_sends_what_is_pending_first() -> None:
    async with connection() as (corked, counting, received):
        corked.write(b"the answer")
        corked.close()
        assert counting.writes == [b"the answer"] and corked.is_closing()
        assert await asyncio.wait_for(received, 5) == b"the answer"
        await end_of_pass()  # the scheduled flush finds nothing left to send
        assert counting.writes == [b"the answer"]


async def test_a_large_answer_leaves_with_its_head_without_being_copied() -> None:
    """A head and a large body are handed to the transport as they are (writelines): joining
    them copied the body on the event loop, and writing the copy cost as much again (about
    150 ms for 30 MiB). A small answer's pieces are still joined into one write."""
    async with connection() as (corked, counting, received):
        head, body = b"HTTP/1.1 200 OK\r\n\r\n", b"x" * JOIN_MAX_BYTES
        corked.write(head)
        corked.write(body)
        assert counting.writes == [head + body]  # one write, at once (past FLUSH_BYTES)
        assert counting.handed[0] is head and counting.handed[1] is body  # not copied
        corked.write(b"small ")
        corked.write(b"answer")
        await end_of_pass()
        assert counting.writes[1:] == [b"small answer"]
        corked.write_eof()
        assert await asyncio.wait_for(received, 5) == head + body + b"small answer"
