"""``POST /v1/responses``: the OpenAI Responses API as an inbound API of the pipeline, and the
JSON endpoints that read stored responses.

The request is translated to the canonical chat request (request.py) and served by any model of
any provider; the canonical result is written back as a Response object (response.py) or the
typed event stream (stream.py). Errors are OpenAI's error bodies.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext, answered_model
from switchboard.errors import GatewayError, UnsupportedParameter, name_as_sent, unraised
from switchboard.http.errors import ServerShuttingDown
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.responses.request import (
    account_objects,
    counted,
    loaded_mcp_tool,
    parse_body,
    translate,
    translate_count,
    without_unsupported,
)
from switchboard.http.responses.response import JSON, from_chat, skeleton
from switchboard.http.responses.sources import name_input
from switchboard.http.responses.state import Responses
from switchboard.http.responses.stream import StreamEncoder
from switchboard.providers.params import without_request_drop

# Canonical (chat) parameter -> the Responses field it came from.
RESPONSES_PARAMS = {
    "reasoning_effort": "reasoning.effort",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "messages": "input",
    "tool_choice": "tool_choice",
    "verbosity": "text.verbosity",
}


# A function tool's fields, by canonical path: request.py keeps the tools in order, and a
# Responses function tool has name, parameters and strict at its top level.
_TOOL_FUNCTION = re.compile(r"tools\[(\d+)\]\.function\.")
_ALLOWED_TOOLS = "tool_choice.allowed_tools."


def responses_param(param: str) -> str | None:
    """``param`` as a Responses caller spells it, or None when it is spelt the same."""
    if (given := RESPONSES_PARAMS.get(param)) is not None:
        return given
    if param.startswith(_ALLOWED_TOOLS):  # request.py's allowed_tools: mode and tools at the top
        return "tool_choice." + param[len(_ALLOWED_TOOLS):]
    match = _TOOL_FUNCTION.match(param)
    return None if match is None else f"tools[{match[1]}]." + param[match.end():]


class ResponsesAPI:
    operation = "chat"
    # No provider type speaks it through pipeline/native.py; a ``responses: native`` deployment
    # has its own exchange (native.py), recognised by the body it returns.
    dialect = "openai-responses"

    def __init__(self, responses: Responses) -> None:
        self.responses = responses

    def decode(self, ctx: RequestContext) -> None:
        body = parse_body(ctx.body)
        refused = shared = None
        try:
            translated = translate(body)
        except UnsupportedParameter as err:
            # Only a native deployment can serve it: refused (the invoke terminal) unless routed to one,
            # and there only with the caller's own credential if it names objects of the account.
            if (mcp := loaded_mcp_tool(body)) is not None:
                raise mcp from None
            # Kept as a copy never raised: err's traceback holds this frame, which holds it.
            refused, shared = unraised(err), account_objects(body)
            translated = translate(without_unsupported(body))
            translated.body = body
        ctx.request = translated.request
        if body.get("metadata") is not None:  # kept by the gateway, seen by the routing rules
            ctx.request_metadata = translated.echo["metadata"]
        ctx.stream = bool(translated.request.get("stream"))
        ctx.client_wants_usage = ctx.stream  # response.completed carries usage
        call = self.responses.begin(ctx, translated)
        call.refused, call.shared = refused, shared

    def _base(self, ctx: RequestContext, model: str) -> JSON:
        call = self.responses.call(ctx)
        return skeleton(call.id, call.created_at, model, call.translated.echo)

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        call = self.responses.call(ctx)
        if call.native and isinstance(body.get("native"), dict):
            response = {**body["native"], **self._own(ctx)}
        else:
            response = from_chat(body, self._base(ctx, answered_model(ctx, body.get("model"))))
        self.responses.complete(ctx, response)
        return orjson.dumps(response)

    def _own(self, ctx: RequestContext) -> JSON:
        """What the gateway sets in a native deployment's response: its own id and state."""
        call = self.responses.call(ctx)
        return {
            "id": call.id,
            "previous_response_id": call.translated.previous_response_id,
            "store": call.translated.store,
        }

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        # response.created names the model of the first chunk, which the attempts stage has read.
        # A native deployment's events are passed on (renumbered, with the gateway's response id).
        encoder: StreamEncoder | None = None
        native = False
        try:
            async for batch in batches:
                if encoder is None:
                    native = bool(batch) and "native" in batch[0]
                    model = answered_model(ctx, batch[0].get("model") if batch else None)
                    encoder = StreamEncoder(self._base(ctx, model), self._own(ctx))
                    self.responses.call(ctx).events = encoder
                    head = b"" if native else encoder.start()
                    data = head + b"".join(encoder.feed(chunk) for chunk in batch)
                    first = True
                else:
                    data, first = b"".join(encoder.feed(chunk) for chunk in batch), False
                if encoder.final is not None:  # a native deployment's last event is in this batch
                    await self._kept(ctx, encoder.final)
                if data or first:
                    yield data
        except GatewayError as err:
            if encoder is None:
                encoder = StreamEncoder(self._base(ctx, answered_model(ctx)))
                yield encoder.start()
            # Else the upstream's response.failed, passed on, said it (and is the final response).
            data = b"" if encoder.failed_sent else encoder.failed(err.code, err.message)
            # Stored like any other: GET answers it, status failed. Not when the server stops:
            # the process may exit during the write, before the call's usage is recorded after it.
            if encoder.final is not None and not isinstance(err, ServerShuttingDown):
                await self._kept(ctx, encoder.final)
            if data:
                yield data
            return
        if encoder is None:
            encoder = StreamEncoder(self._base(ctx, answered_model(ctx)))
            yield encoder.start()
        data = b"" if native else encoder.end()
        if encoder.final is not None:
            await self._kept(ctx, encoder.final)
        yield data

    async def _kept(self, ctx: RequestContext, final: dict[str, Any]) -> None:
        """The stream's final response kept (stored when asked), before the event ending it leaves."""
        self.responses.complete(ctx, final)
        if ctx.reply_waits is not None:
            waits, ctx.reply_waits = ctx.reply_waits, None
            await waits()

    def name_error(self, error: GatewayError, ctx: RequestContext) -> None:
        # A refusal names the chat form the request became (an adapter's, an upstream's, in the
        # tool loop's model calls too): a message by the input item it came from, another
        # parameter by its Responses field.
        call = self.responses.found(ctx)
        if call is not None and isinstance(ctx.request.get("messages"), list):
            name_input(error, ctx.request["messages"], call.translated.sources, call.history)
        without_request_drop(error)  # a Responses body has no drop_params: the model entry's key
        name_as_sent(error, responses_param)

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error.to_openai())

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        # Written apart from the encoder (a stream cut at shutdown while a send waits on its
        # client): numbered after the events it sent.
        call = None if ctx is None else self.responses.found(ctx)
        encoder = StreamEncoder({}) if call is None or call.events is None else call.events
        return encoder.event("error", code=error.code, message=error.message, param=error.param)


class ResponsesInputTokens(ResponsesAPI):
    """``POST /v1/responses/input_tokens``: the ``count_tokens`` operation in the Responses API's
    wire format. Decoded as a create is (its fields that shape the input), the stored conversation
    of ``previous_response_id`` read by the same history stage; the count is the operation's
    terminal (pipeline/count_tokens.py), nothing is stored."""

    operation = "count_tokens"

    def decode(self, ctx: RequestContext) -> None:
        body = parse_body(ctx.body)
        refused = None
        try:
            translated = translate_count(body)
        except UnsupportedParameter as err:
            # What the count cannot see is refused by its terminal (Responses.count), after the
            # key's model access and routing, in the order a create refuses it (Responses.invoke):
            # a key is told 403 for a model it may not use, not what that model's deployments do.
            refused = unraised(err)
            translated = translate_count(counted(body))
        self.responses.begin(ctx, translated).refused = refused
        ctx.request = translated.request

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        return orjson.dumps({"object": "response.input_tokens", "input_tokens": body["input_tokens"]})

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        raise TypeError("count_tokens does not stream")
        yield b""  # pragma: no cover - makes this an async generator


# GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items: JSON, OpenAI errors.
STORED = OpenAIJson("responses")
