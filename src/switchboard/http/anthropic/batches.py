"""``/v1/messages/batches``: JSON in and out, errors in Anthropic's shape. The operations are
the files edge's (http/files/edge.py) and their terminal http/files/message_batches.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.errors import GatewayError
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.stream import event


class AnthropicJson:
    dialect = "anthropic"

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def decode(self, ctx: RequestContext) -> None:
        return None

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        return orjson.dumps(body)

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        raise TypeError(f"{self.operation} does not stream")
        yield b""  # pragma: no cover - makes this an async generator

    def encode_error(self, error: GatewayError) -> bytes:
        return orjson.dumps(error_body(error))

    def encode_stream_error(self, error: GatewayError) -> bytes:
        return event("error", error=error_body(error)["error"])


MESSAGE_BATCHES = AnthropicJson("batches")
