"""A request body the aiohttp client sends as it is read (upstream/client.py): a multipart
upload's file, or a caller's body streamed on (files). A body failing part-way ends its exchange
at once.

aiohttp reports a body's failure only to a request still waiting for its answer's head, and
leaves the connection as it is: once the head is in (an upstream that answers before reading the
whole upload), the answer would be waited on until the timeout, and the upstream left waiting
for the rest of the body. The connection is reset instead (upstream/reset.py): the upstream
stops at once, and the gateway's read of its answer fails at once too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter
from aiohttp.payload import AsyncIterablePayload

from switchboard.upstream.reset import reset


class Sending:
    """How an upload's sending goes: the connection it is sent on (once sending) and, if it
    failed, what made it fail (words, not the exception, whose traceback holds the pieces'
    generator). Apart from the :class:`Upload`, which holds the generator: no reference cycle."""

    __slots__ = ("failure", "sent", "transport")

    def __init__(self) -> None:
        self.failure: str | None = None
        self.sent = False  # every piece handed to the connection
        self.transport: asyncio.Transport | None = None


class Upload(AsyncIterablePayload):
    """``pieces`` as aiohttp's request body, watched (``sending``)."""

    def __init__(self, pieces: AsyncIterable[bytes]) -> None:
        self.sending = sending = Sending()
        super().__init__(_watched(pieces, sending))

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        if isinstance(writer, StreamWriter):
            self.sending.transport = writer.transport
        await super().write_with_length(writer, content_length)


async def _watched(pieces: AsyncIterable[bytes], sending: Sending) -> AsyncIterator[bytes]:
    try:
        async for piece in pieces:
            yield piece
        sending.sent = True
    except Exception as exc:  # the body's own failure, not the connection's (a write's)
        sending.failure = f"{type(exc).__name__}: {exc}"[:200]
        if sending.transport is not None:
            reset(sending.transport)
        raise
