"""The one value adapters hand to the upstream client, and the form of a caller's header value
relayed in it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    # Headers carrying the caller's own credential: sent instead of the provider's stored
    # credential (none of the client's auth headers go with them), and scrubbed from errors.
    credentials: dict[str, str] | None = None
    # A body sent from a file as it is read (multipart uploads, providers/media.py): sent
    # instead of ``body``, never loaded whole into memory. Its owner closes it once the
    # exchange is over (pipeline/media.py).
    upload: IO[bytes] | None = None

    def __repr__(self) -> str:  # headers may hold credentials once signed: never print them
        return f"UpstreamRequest({self.method} {self.url}, {len(self.body or b'')} bytes)"


async def file_pieces(file: IO[bytes]) -> AsyncIterator[bytes]:
    """A file's content from where it stands, read in pieces off the event loop (spooled
    uploads are on disk beyond 1 MiB)."""
    while piece := await asyncio.to_thread(file.read, 256 * 1024):
        yield piece


def relayed_header(raw: bytes) -> str:
    """A caller's header value (its bytes) as the text the upstream clients (upstream/http1.py,
    aiohttp) write as those same bytes: they encode header text as UTF-8, while the edge reads
    header bytes as latin-1 (ASGI), so a value relayed as read would reach the upstream re-encoded
    (``é`` sent as two bytes arrives as four). Bytes that are not UTF-8 (latin-1 text) cannot be
    written again by either client; they keep their latin-1 reading."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def header_text(value: str) -> str:
    """A header value as the edge read it (latin-1, one character a byte) as the text its sender
    meant: the UTF-8 reading of its bytes when they are UTF-8, as clients write text beyond
    ASCII. The usual value, ASCII, is returned as it is."""
    if value.isascii():
        return value
    return relayed_header(value.encode("latin-1"))
