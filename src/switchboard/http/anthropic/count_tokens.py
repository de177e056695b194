"""``POST /v1/messages/count_tokens``: the Anthropic wire format of the ``count_tokens`` operation.

The body is decoded into the canonical chat request; the count itself is the operation's terminal
(``pipeline/count_tokens.py``). Errors use Anthropic's error body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import CanonicalNames, RequestContext
from switchboard.errors import GatewayError
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.request import check_headers, count_tokens_request
from switchboard.http.anthropic.stream import event


class AnthropicCountTokens(CanonicalNames):
    operation = "count_tokens"
    dialect = "anthropic"

    def decode(self, ctx: RequestContext) -> None:
        check_headers(ctx.headers)
        ctx.request = count_tokens_request(ctx.body)

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        return orjson.dumps(body)

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        raise TypeError("count_tokens does not stream")
        yield b""  # pragma: no cover - makes this an async generator

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error_body(error))

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return event("error", error=error_body(error)["error"])


COUNT_TOKENS = AnthropicCountTokens()
