"""``POST /apis/{name}`` as an inbound API of the pipeline: the request is a prompt API call
(resolved by stages.ApiStage into a canonical chat request), the reply is the API's envelope.

Complete reply (200)::

    {"api": "sentiment", "version": 2, "model": "gpt-4o-mini",
     "output": "positive" | {...parsed JSON...}, "usage": {...}}

Stream (``?stream=true`` or ``Accept: text/event-stream``), Server-Sent Events::

    data: {"delta": "posi"}
    data: {"delta": "tive"}
    data: {"done": true, "api": "sentiment", "version": 2, "model": "...", "usage": {...}}

An error mid-stream is one ``data: {"error": {...}}`` event. Errors before the stream are
OpenAI-shaped error bodies.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.context import CanonicalNames, RequestContext, answered_model
from switchboard.errors import GatewayError
from switchboard.stores.protocols import ApiRecord, PromptVersion


@dataclass
class ApiCall:
    """One call of a prompt API under way."""

    record: ApiRecord
    prompt: PromptVersion
    version: int
    # The parsed output once checked against the output schema (stages.OutputStage).
    output: Any = None
    checked: bool = False

    @property
    def schema(self) -> dict[str, Any] | None:
        schema = self.prompt.output_schema
        return dict(schema) if schema is not None else None


class ApiCalls:
    """The calls under way, by request (the context has no slot of its own for them)."""

    def __init__(self) -> None:
        self._calls: dict[int, ApiCall] = {}

    def begin(self, ctx: RequestContext, call: ApiCall) -> None:
        self._calls[id(ctx)] = call
        ctx.after(self._end)

    async def _end(self, ctx: RequestContext) -> None:
        self._calls.pop(id(ctx), None)

    def get(self, ctx: RequestContext) -> ApiCall | None:
        return self._calls.get(id(ctx))


def reply_text(body: dict[str, Any]) -> str:
    """The text of a canonical chat reply's first choice ("" when there is none)."""
    choices = body.get("choices") or ()
    if not choices:
        return ""
    content = (choices[0].get("message") or {}).get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class ApiInbound(CanonicalNames):
    operation = "chat"
    # No provider speaks it: never a pass-through.
    dialect = "prompt-api"

    def __init__(self, calls: ApiCalls) -> None:
        self.calls = calls

    def decode(self, ctx: RequestContext) -> None:
        """Nothing: stages.ApiStage builds the canonical request (it needs the stores)."""
        return None

    def _head(self, ctx: RequestContext, model: Any) -> dict[str, Any]:
        call = self.calls.get(ctx)
        return {
            "api": call.record.name if call else None,
            "version": call.version if call else None,
            "model": answered_model(ctx, model),
        }

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        call = self.calls.get(ctx)
        output: Any = call.output if call is not None and call.checked else reply_text(body)
        return orjson.dumps({**self._head(ctx, body.get("model")), "output": output,
                             "usage": body.get("usage") or ctx.usage or {}})

    async def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        model: Any = None
        try:
            async for batch in batches:
                out = []
                for chunk in batch:
                    model = model or chunk.get("model")
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if isinstance(text, str) and text:
                            out.append(_sse({"delta": text}))
                if out:
                    yield b"".join(out)
        except GatewayError as err:
            yield self.encode_stream_error(err)
            return
        yield _sse({"done": True, **self._head(ctx, model), "usage": ctx.usage or {}})

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(error.to_openai())

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return _sse(error.to_openai())
