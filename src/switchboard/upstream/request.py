"""The one value adapters hand to the upstream client."""

from __future__ import annotations

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
    # instead of ``body``, never loaded whole into memory.
    upload: IO[bytes] | None = None

    def __repr__(self) -> str:  # headers may hold credentials once signed: never print them
        return f"UpstreamRequest({self.method} {self.url}, {len(self.body or b'')} bytes)"
