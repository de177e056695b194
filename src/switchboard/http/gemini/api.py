"""The Gemini API's methods as inbound APIs of the pipeline: ``generateContent``,
``streamGenerateContent`` (``alt=sse``), ``countTokens``, ``embedContent`` and
``batchEmbedContents`` on ``/v1beta/models/{model}:{method}`` (and ``/v1/...``, which the
google-genai SDK uses by default, and ``/v1alpha/...``). The model is read from the path; errors are Google's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from switchboard.context import InboundAPI, RequestContext, answered_model
from switchboard.errors import GatewayError, InvalidRequest, name_as_sent
from switchboard.http.gemini import embeddings, errors
from switchboard.http.gemini.request import EFFORT_LEVELS, Decoded, count_tokens_request, generate_request
from switchboard.http.gemini.response import count_tokens_response, generate_content_response
from switchboard.http.gemini.sources import name_contents
from switchboard.http.gemini.stream import StreamEncoder
from switchboard.providers.effort import EffortRefused
from switchboard.providers.params import without_request_drop

JSON = dict[str, Any]

# v1alpha (the SDK's api_version="v1alpha") carries the same bodies for these methods as v1beta.
PREFIXES = ("/v1beta/models/", "/v1alpha/models/", "/v1/models/")
# A model name as it may appear in the path: gateway model names may hold dots, colons (the
# method is after the last one), slashes and @; nothing that needs escaping.
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+~-]{0,255}$")

# Canonical parameters an error may name, as this API calls them (request.py maps them in): a
# provider's refusal of ``n`` is one of the caller's candidateCount.
CALLER_PARAMS = {
    "stop": "generationConfig.stopSequences",
    "enable_enhanced_civic_answers": "generationConfig.enableEnhancedCivicAnswers",
    "n": "generationConfig.candidateCount",
    "temperature": "generationConfig.temperature",
    "top_p": "generationConfig.topP",
    "top_k": "generationConfig.topK",
    "max_completion_tokens": "generationConfig.maxOutputTokens",
    "max_tokens": "generationConfig.maxOutputTokens",
    "seed": "generationConfig.seed",
    "presence_penalty": "generationConfig.presencePenalty",
    "frequency_penalty": "generationConfig.frequencyPenalty",
    "thinking": "generationConfig.thinkingConfig.thinkingBudget",
    "thinking.budget_tokens": "generationConfig.thinkingConfig.thinkingBudget",
    "reasoning_effort": "generationConfig.thinkingConfig.thinkingLevel",
    "response_format": "generationConfig.responseMimeType",
    "tool_choice": "toolConfig.functionCallingConfig",
    "dimensions": "outputDimensionality",
}

# The canonical names a refusal's message may hold unquoted ("max_tokens must be greater than
# thinking.budget_tokens"); only compound ones: a bare word ("stop", "n") is ordinary English.
# Quoted ones are name_as_sent's, or a name the caller wrote ('Unknown name "max_tokens"').
_UNQUOTED = re.compile(
    r"(?<![\w.'\"])("
    + "|".join(re.escape(k) for k in sorted(CALLER_PARAMS, key=len, reverse=True) if "_" in k or "." in k)
    + r")(?![\w'\"])"
)

# thinkingConfig.includeThoughts of the requests under way that asked for it, by context.
_THOUGHTS: dict[int, bool] = {}


def split_path(path: str) -> tuple[str, str]:
    """(model, method) of ``/v1beta/models/{model}:{method}``; method "" when there is none."""
    for prefix in PREFIXES:
        if path.startswith(prefix):
            model, sep, method = path[len(prefix):].rpartition(":")
            return (model, method) if sep else (path[len(prefix):], "")
    return "", ""


def path_model(ctx: RequestContext) -> str:
    model, _ = split_path(ctx.path)
    if not _MODEL.match(model) or "//" in model or model.endswith("/"):
        shown = model if len(model) <= 100 else model[:100] + "..."
        raise InvalidRequest(f"the model name 'models/{shown}' in the URL is malformed", param="model")
    return model


def refused(ctx: RequestContext, model: str) -> None:
    """The body was refused: the metrics and the failure log still name the URL's model, as
    they name a chat body's (pipeline/decode.py; the metrics only if it is a configured one)."""
    if not ctx.request:
        ctx.request = {"model": model}



def _remember_thoughts(ctx: RequestContext) -> None:
    key = id(ctx)
    _THOUGHTS[key] = True

    async def forget(_: RequestContext) -> None:
        _THOUGHTS.pop(key, None)

    ctx.after(forget)


def wants_thoughts(ctx: RequestContext) -> bool:
    return _THOUGHTS.get(id(ctx), False)


class _GoogleErrors:
    # No provider speaks this wire format to the gateway as a pass-through (pipeline/native.py):
    # every attempt is translated, so ``native`` replies never reach these encoders.
    dialect = "gemini"

    def name_error(self, error: GatewayError, ctx: RequestContext) -> None:
        # A refused message (an adapter's, an upstream's) by the content or part it came from.
        if ctx.message_sources and isinstance(ctx.request.get("messages"), list):
            name_contents(error, ctx.request["messages"], ctx.message_sources)
        if isinstance(error, EffortRefused):  # its advice in thinkingLevel's values
            error.advise(EFFORT_LEVELS)
        without_request_drop(error)  # a Gemini body has no drop_params: the model entry's key
        if error.param:  # the gateway's own refusal of a value: told in the caller's names
            error.message = _UNQUOTED.sub(lambda m: CALLER_PARAMS[m.group(1)], error.message)
        name_as_sent(error, CALLER_PARAMS)
        if error.code == "missing_api_key":  # the hint in the way Gemini clients send a key
            error.message = "missing API key: send it as 'x-goog-api-key: <key>' (or '?key=<key>' in the URL)"

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return errors.encode_error(error)

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return errors.stream_error(error)


class GeminiGenerate(_GoogleErrors):
    """``generateContent`` and ``streamGenerateContent``: the chat operation."""

    operation = "chat"

    def __init__(self, stream: bool) -> None:
        self._stream = stream

    def decode(self, ctx: RequestContext) -> None:
        model = path_model(ctx)
        try:
            if self._stream and "sse" not in parse_qs(ctx.query).get("alt", ()):
                raise InvalidRequest("streamGenerateContent is served as server-sent events only: add "
                                     "'?alt=sse' to the URL", param="alt")
            decoded = generate_request(ctx.body, model, self._stream)
        except GatewayError:
            refused(ctx, model)
            raise
        ctx.request = decoded.request
        ctx.message_sources = decoded.sources
        ctx.stream = self._stream
        ctx.client_wants_usage = self._stream
        if decoded.include_thoughts:
            _remember_thoughts(ctx)

    def encode(self, ctx: RequestContext, body: JSON, native: bool = False) -> bytes:
        model = answered_model(ctx, body.get("model"))
        return orjson.dumps(generate_content_response(body, model, wants_thoughts(ctx)))

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[JSON]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        thoughts = wants_thoughts(ctx)
        encoder: StreamEncoder | None = None
        try:
            async for batch in batches:
                if encoder is None:
                    reported = batch[0].get("model") if batch else None
                    encoder = StreamEncoder(answered_model(ctx, reported), thoughts)
                if data := encoder.feed(batch):
                    yield data
        except GatewayError as err:
            yield errors.stream_error(err)
            return
        if encoder is None:
            encoder = StreamEncoder(answered_model(ctx), thoughts)
        yield encoder.end()


class _Json(_GoogleErrors):
    """A method answered with one JSON body: ``decode`` and ``answer`` say how. A decoder that
    gives a chat request with its sources (countTokens) has its refusals of a message named by
    the contents it came from, as generateContent's are."""

    def __init__(
        self, operation: str, decode: Callable[[bytes, str], JSON | Decoded], answer: Callable[[JSON], JSON]
    ) -> None:
        self.operation = operation
        self._decode = decode
        self._answer = answer

    def decode(self, ctx: RequestContext) -> None:
        model = path_model(ctx)
        try:
            decoded = self._decode(ctx.body, model)
        except GatewayError:
            refused(ctx, model)
            raise
        if isinstance(decoded, Decoded):
            ctx.request = decoded.request
            ctx.message_sources = decoded.sources
        else:
            ctx.request = decoded

    def encode(self, ctx: RequestContext, body: JSON, native: bool = False) -> bytes:
        return orjson.dumps(self._answer(body))

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[JSON]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        raise TypeError(f"{self.operation} does not stream")
        yield b""  # pragma: no cover - makes this an async generator


GENERATE = GeminiGenerate(stream=False)
STREAM_GENERATE = GeminiGenerate(stream=True)
COUNT_TOKENS = _Json("count_tokens", count_tokens_request, count_tokens_response)
EMBED = _Json("embeddings", embeddings.embed_request, embeddings.embed_response)
BATCH_EMBED = _Json("embeddings", embeddings.batch_embed_request, embeddings.batch_embed_response)

# The Gemini methods served, by the name after the ':' in the path.
METHODS: dict[str, InboundAPI] = {
    "generateContent": GENERATE,
    "streamGenerateContent": STREAM_GENERATE,
    "countTokens": COUNT_TOKENS,
    "embedContent": EMBED,
    "batchEmbedContents": BATCH_EMBED,
}
