"""``POST /v1/messages``: the Anthropic Messages API as an inbound API of the pipeline.

The request is translated to the canonical (OpenAI) chat request, routed to any configured model
of any provider, and the canonical result is written back as an Anthropic message or event
stream. A reply an ``anthropic`` deployment gave untranslated (``native``, pipeline/native.py)
is written as it came (passthrough.py). The error body is Anthropic's (see errors.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext, answered_model
from switchboard.errors import GatewayError, name_as_sent
from switchboard.http.anthropic import passthrough, prompt, response
from switchboard.http.anthropic.errors import error_body
from switchboard.http.anthropic.request import EFFORT_LEVELS, check_headers, decode_into
from switchboard.http.anthropic.sources import name_messages
from switchboard.http.anthropic.stream import StreamEncoder, event
from switchboard.providers.effort import EffortRefused
from switchboard.providers.params import without_request_drop

# Canonical parameters an error may name, as this API calls them (request.py maps them in): a
# provider's refusal of ``user`` is one of ``metadata.user_id``.
CALLER_PARAMS = {
    "stop": "stop_sequences",
    "reasoning_effort": "output_config.effort",
    "user": "metadata.user_id",
}
# A tool's name or schema, by its canonical path: request.py keeps the tools in order, so
# tools[i].function.parameters... is the caller's tools.i.input_schema... (a provider's refusal of
# a schema node or of a tool name names it this way).
_TOOL_FIELD = re.compile(r"tools\[(\d+)\]\.function\.(name|parameters)(?![^.\[])")
# The output format, by its canonical path: request.py makes output_config.format the
# response_format json_schema, its schema response_format.json_schema.schema (a provider's refusal
# of a schema node, or of the format, names it this way).
_FORMAT_FIELD = re.compile(r"response_format(?:\.json_schema(\.schema(?![^.\[]))?)?(?![^.\[])")
_INDEX = re.compile(r"\[(\d+)\]")


def caller_param(param: str) -> str | None:
    """``param`` as an Anthropic caller spells it, or None when it is spelt the same."""
    if (given := CALLER_PARAMS.get(param)) is not None:
        return given
    if (match := _FORMAT_FIELD.match(param)) is not None:
        if match[1] is None:  # the format itself, or a part of it the caller did not write
            return "output_config.format"
        return "output_config.format.schema" + _INDEX.sub(r".\1", param[match.end():])
    match = _TOOL_FIELD.match(param)
    if match is None:
        return None
    field = "name" if match[2] == "name" else "input_schema"
    return f"tools.{match[1]}.{field}" + _INDEX.sub(r".\1", param[match.end():])


def _note_metadata(ctx: RequestContext) -> None:
    user = ctx.request.get("user")  # only ever metadata.user_id: Anthropic has no ``user``
    if isinstance(user, str):  # the routing rules' metadata condition sees it as sent
        ctx.request_metadata = {"user_id": user}


class AnthropicMessages:
    operation = "chat"
    dialect = "anthropic"

    def decode(self, ctx: RequestContext) -> None:
        check_headers(ctx.headers)
        decode_into(ctx)
        _note_metadata(ctx)
        ctx.stream = bool(ctx.request.get("stream"))
        # Anthropic streams always carry usage (message_start / message_delta).
        ctx.client_wants_usage = ctx.stream

    def with_prompt(self, ctx: RequestContext, rendered: list[dict[str, Any]], model: str,
                    params: dict[str, Any]) -> None:
        """A registry prompt merged into the request (pipeline/prompt.py)."""
        prompt.with_prompt(ctx, rendered, model, params)
        # Decoded again, whole: a request naming a prompt carried only the reference before.
        _note_metadata(ctx)

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        if native:
            return passthrough.message(body)
        return orjson.dumps(response.message(body, answered_model(ctx, body.get("model"))))

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        if native:
            async for data in passthrough.relay(batches, self.encode_stream_error):
                yield data
            return
        # message_start names the model its first chunk reports: it waits for that chunk, which
        # the attempts stage has already read (a stream is returned with its first batch in hand).
        encoder: StreamEncoder | None = None
        try:
            async for batch in batches:
                if encoder is None:
                    encoder = StreamEncoder(answered_model(ctx, batch[0].get("model") if batch else None))
                    yield encoder.start() + b"".join(encoder.feed(chunk) for chunk in batch)
                elif data := b"".join(encoder.feed(chunk) for chunk in batch):
                    yield data
        except GatewayError as err:
            if encoder is None:
                yield StreamEncoder(answered_model(ctx)).start()
            yield self.encode_stream_error(err, ctx)
            return
        if encoder is None:
            encoder = StreamEncoder(answered_model(ctx))
            yield encoder.start()
        yield encoder.end()

    def name_error(self, error: GatewayError, ctx: RequestContext) -> None:
        """``error``'s param as this API's caller spells it: a refused message (an adapter's, an
        upstream's) by the Messages field it came from, other canonical names by CALLER_PARAMS."""
        if ctx.message_sources and isinstance(ctx.request.get("messages"), list):
            name_messages(error, ctx.request["messages"], ctx.message_sources)
        if isinstance(error, EffortRefused):  # its advice in output_config.effort's values
            error.advise(EFFORT_LEVELS)
        without_request_drop(error)  # a Messages body has no drop_params: the model entry's key
        name_as_sent(error, caller_param)

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error_body(error))

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return event("error", error=error_body(error)["error"])


MESSAGES = AnthropicMessages()
