"""The OpenAI-compatible inbound API: chat completions, embeddings, legacy completions."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import orjson

from switchboard.context import CanonicalNames, RequestContext
from switchboard.errors import GatewayError, InvalidRequest
from switchboard.http import validate
from switchboard.jsonio import MAX_DEPTH, too_deep

_DONE = b"data: [DONE]\n\n"


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":", 1)[0]
        if reason == "depth limit exceeded":  # orjson's own bound (1,024 levels): past ours too
            raise too_deep_body() from None
        raise InvalidRequest(f"the request body is not valid JSON: {reason}", code="invalid_json") from None
    # A body with no more brackets than the bound cannot nest past it (brackets inside strings
    # only make the count larger): two byte scans, far cheaper than the depth check's write.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and too_deep(value):
        raise too_deep_body()
    return value


def too_deep_body() -> InvalidRequest:
    return InvalidRequest(
        f"the request body nests deeper than {MAX_DEPTH} levels of arrays and objects", code="invalid_json")


def parse_object(body: bytes) -> dict[str, Any]:
    """The body of a JSON-body endpoint, which must be an object. Every such endpoint (model
    API, media, batches, Responses, Anthropic, Gemini) refuses other JSON (``[]``, ``3``,
    ``"x"``) as it refuses malformed JSON: ``400 invalid_json`` with no ``param``."""
    return validate.require_object(parse_json(body))


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class OpenAIInbound(CanonicalNames):
    # The canonical form is OpenAI's: a native (pass-through) reply is written as any other.
    dialect = "openai"

    def __init__(self, operation: str, check: Callable[[Any], dict[str, Any]], streams: bool) -> None:
        self.operation = operation
        self._check = check
        self._streams = streams

    def decode(self, ctx: RequestContext) -> None:
        request = self._check(parse_json(ctx.body))
        ctx.request = request
        if self._streams and request.get("stream"):
            ctx.stream = True
            ctx.client_wants_usage = bool((request.get("stream_options") or {}).get("include_usage"))

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        return orjson.dumps(body)

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        wants_usage = ctx.client_wants_usage
        try:
            async for batch in batches:
                out = []
                for chunk in batch:
                    if not wants_usage:
                        # Usage is always requested upstream for accounting; hide it unless asked.
                        usage = chunk.pop("usage", None)
                        if usage is not None and not chunk.get("choices"):
                            continue
                    out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if out:
                    yield b"".join(out)
        except GatewayError as err:
            yield self.encode_stream_error(err)
            return
        yield _DONE

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error.to_openai())

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return sse(error.to_openai())


class OpenAIJson(CanonicalNames):
    """Bodiless OpenAI-style endpoints (``/v1/models``, ``/admin/*``): JSON out, OpenAI errors.
    The media endpoints add their decoding (http/media)."""

    dialect = "openai"

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

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error.to_openai())

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return sse(error.to_openai())


CHAT = OpenAIInbound("chat", validate.chat_request, streams=True)
EMBEDDINGS = OpenAIInbound("embeddings", validate.embeddings_request, streams=False)
COMPLETIONS = OpenAIInbound("completions", validate.completions_request, streams=True)
MODELS = OpenAIJson("models")
MODEL = OpenAIJson("model")
ADMIN = OpenAIJson("admin")
