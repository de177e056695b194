"""``POST /v1/messages``: the Anthropic Messages API as an inbound API of the pipeline.

The request is translated to the canonical (OpenAI) chat request, routed to any configured model
of any provider, and the canonical result is written back as an Anthropic message or event
stream. The error body is Anthropic's (see errors.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.errors import GatewayError
from switchboard.http.anthropic import response
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.request import messages_request
from switchboard.http.anthropic.stream import StreamEncoder, event


def requested_model(ctx: RequestContext) -> str:
    """The model name the client asked for (adapters may rewrite the canonical request's)."""
    if ctx.route is not None:
        return ctx.route.target.name
    model = ctx.request.get("model")
    return model if isinstance(model, str) else ""


class AnthropicMessages:
    operation = "chat"

    def decode(self, ctx: RequestContext) -> None:
        ctx.request = messages_request(ctx.body)
        ctx.stream = bool(ctx.request.get("stream"))
        # Anthropic streams always carry usage (message_start / message_delta).
        ctx.client_wants_usage = ctx.stream
        # The Anthropic SDKs read the request id from this header (``message._request_id``).
        ctx.response_headers["request-id"] = ctx.request_id

    def encode(self, ctx: RequestContext, body: dict[str, Any]) -> bytes:
        return orjson.dumps(response.message(body, requested_model(ctx)))

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncGenerator[bytes, None]:
        encoder = StreamEncoder(requested_model(ctx))
        yield encoder.start()
        try:
            async for batch in batches:
                if data := b"".join(encoder.feed(chunk) for chunk in batch):
                    yield data
        except GatewayError as err:
            yield self.encode_stream_error(err)
            return
        yield encoder.end()

    def encode_error(self, error: GatewayError) -> bytes:
        return orjson.dumps(error_body(error))

    def encode_stream_error(self, error: GatewayError) -> bytes:
        return event("error", error=error_body(error)["error"])


MESSAGES = AnthropicMessages()
