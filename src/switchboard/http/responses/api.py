"""``POST /v1/responses``: the OpenAI Responses API as an inbound API of the pipeline, and the
JSON endpoints that read stored responses.

The request is translated to the canonical chat request (request.py) and served by any model of
any provider; the canonical result is written back as a Response object (response.py) or the
typed event stream (stream.py). Errors are OpenAI's error bodies.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.errors import GatewayError
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.responses.request import parse_body, translate
from switchboard.http.responses.response import JSON, from_chat, skeleton
from switchboard.http.responses.state import Responses
from switchboard.http.responses.stream import StreamEncoder


def answered_model(ctx: RequestContext, reported: Any = None) -> str:
    """The model the upstream reported, else the deployment's upstream model id, else the name
    asked for (as the chat endpoint and the Anthropic inbound API name it)."""
    if isinstance(reported, str) and reported:
        return reported
    if ctx.route is not None:
        return ctx.route.target.model
    model = ctx.request.get("model")
    return model if isinstance(model, str) else ""


class ResponsesAPI:
    operation = "chat"

    def __init__(self, responses: Responses) -> None:
        self.responses = responses

    def decode(self, ctx: RequestContext) -> None:
        translated = translate(parse_body(ctx.body))
        ctx.request = translated.request
        ctx.stream = bool(translated.request.get("stream"))
        ctx.client_wants_usage = ctx.stream  # response.completed carries usage
        self.responses.begin(ctx, translated)

    def _base(self, ctx: RequestContext, model: str) -> JSON:
        call = self.responses.call(ctx)
        return skeleton(call.id, call.created_at, model, call.translated.echo)

    def encode(self, ctx: RequestContext, body: dict[str, Any]) -> bytes:
        response = from_chat(body, self._base(ctx, answered_model(ctx, body.get("model"))))
        self.responses.complete(ctx, response)
        return orjson.dumps(response)

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncGenerator[bytes, None]:
        # response.created names the model of the first chunk, which the attempts stage has read.
        encoder: StreamEncoder | None = None
        try:
            async for batch in batches:
                if encoder is None:
                    model = answered_model(ctx, batch[0].get("model") if batch else None)
                    encoder = StreamEncoder(self._base(ctx, model))
                    yield encoder.start() + b"".join(encoder.feed(chunk) for chunk in batch)
                elif data := b"".join(encoder.feed(chunk) for chunk in batch):
                    yield data
        except GatewayError as err:
            if encoder is None:
                encoder = StreamEncoder(self._base(ctx, answered_model(ctx)))
                yield encoder.start()
            yield encoder.failed(err.code, err.message)
            return
        if encoder is None:
            encoder = StreamEncoder(self._base(ctx, answered_model(ctx)))
            yield encoder.start()
        data = encoder.end()
        if encoder.final is not None:
            self.responses.complete(ctx, encoder.final)
        yield data

    def encode_error(self, error: GatewayError) -> bytes:
        return orjson.dumps(error.to_openai())

    def encode_stream_error(self, error: GatewayError) -> bytes:
        data = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
        }
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


# GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items: JSON, OpenAI errors.
STORED = OpenAIJson("responses")
