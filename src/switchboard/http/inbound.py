"""The inbound API seam: how one client-facing wire format is decoded and encoded.

An InboundAPI turns the raw body into the canonical request (``decode``) and canonical results
back into its own wire format (``encode``, ``encode_stream``, ``encode_error``). The pipeline
never sees wire formats; adding an inbound API (OpenAI, Anthropic) means one new class.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from switchboard.context import RequestContext
from switchboard.errors import GatewayError


class InboundAPI(Protocol):
    operation: str  # chat | embeddings | completions | ...

    def decode(self, ctx: RequestContext) -> None:
        """Parse and validate ``ctx.body`` into ``ctx.request``; set ``ctx.stream``. Raises InvalidRequest."""
        ...

    def encode(self, ctx: RequestContext, body: dict[str, Any]) -> bytes: ...

    def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncGenerator[bytes, None]:
        """Wire bytes for each batch of canonical chunks (one write per batch); a GatewayError
        raised mid-stream becomes the API's error event."""
        ...

    def encode_error(self, error: GatewayError) -> bytes: ...
