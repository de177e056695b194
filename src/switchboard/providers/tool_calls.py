"""``parallel_tool_calls: false`` enforced by the gateway.

Gemini, Vertex, Cohere and Bedrock's non-Claude models have no control to stop a model from
calling several tools in one turn, so the request goes without it and the gateway keeps only the
FIRST tool call of each choice in the reply (``finish_reason`` stays ``tool_calls``). Where the
provider honours the flag the reply holds one call already, and keeping the first is a no-op.

Non-stream replies go through :func:`first_tool_call` (the chat operation's ``finish`` hook);
streams through :func:`serial_decoder`, which wraps the provider's decoder only when the request
asks for it, so a request without the flag pays nothing.

It also makes the gateway's own tool call ids (:func:`new_call_id`), for providers that give none
or none usable, and reads a replayed call's ``arguments`` as the object the providers that take
them parsed require (:func:`object_arguments`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON, StreamDecoder


def new_call_id() -> str:
    """A tool call id made by the gateway, in OpenAI's ``call_...`` form."""
    return f"call_{uuid.uuid4().hex[:24]}"


def object_arguments(raw: Any, param: str) -> JSON:
    """A tool call's ``arguments`` (JSON text, or already an object) as an object; none given is
    ``{}``. Anthropic's ``tool_use.input``, Converse's ``toolUse.input`` and Gemini's
    ``functionCall.args`` take only an object: ``"null"``, ``"[1]"`` or ``"5"`` is a 400 naming
    ``param`` here rather than the provider's refusal naming its own field."""
    if raw is None or raw == "":
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param} must be a JSON object (tool call arguments)", param=param)
    return value


def serial(request: JSON) -> bool:
    """Whether the caller asked for one tool call at most per turn."""
    return request.get("parallel_tool_calls") is False


def first_tool_call(request: JSON, reply: JSON) -> JSON:
    """``reply`` (canonical, non-stream) with only the first tool call of each choice kept."""
    if not serial(request):
        return reply
    for choice in reply.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            message["tool_calls"] = message["tool_calls"][:1]
    return reply


def serial_decoder(request: JSON, decoder: StreamDecoder) -> StreamDecoder:
    """``decoder`` itself, or wrapped to drop the tool calls after the first when asked."""
    return _FirstToolCall(decoder) if serial(request) else decoder


class _FirstToolCall:
    """Drops tool-call deltas whose ``index`` is not 0 (each choice numbers its calls from 0), and
    the chunks left with nothing to say once they are gone."""

    __slots__ = ("_inner",)

    def __init__(self, inner: StreamDecoder) -> None:
        self._inner = inner

    def feed(self, data: bytes) -> list[JSON]:
        return _kept(self._inner.feed(data))

    def close(self) -> list[JSON]:
        return _kept(self._inner.close())


def _kept(chunks: list[JSON]) -> list[JSON]:
    return [chunk for chunk in chunks if _trim(chunk)]


def _trim(chunk: JSON) -> bool:
    """Removes later tool calls from ``chunk`` in place; False when nothing is left worth sending."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return True
    kept = [c for c in choices if not isinstance(c, dict) or _trim_choice(c)]
    if not kept and not chunk.get("usage"):
        return False
    chunk["choices"] = kept
    return True


def _trim_choice(choice: JSON) -> bool:
    """Removes later tool calls from ``choice``'s delta in place; False when nothing is left."""
    delta = choice.get("delta")
    if not isinstance(delta, dict) or not isinstance(delta.get("tool_calls"), list):
        return True
    calls = delta["tool_calls"]
    first = [c for c in calls if not isinstance(c, dict) or c.get("index", 0) == 0]
    if len(first) == len(calls):
        return True
    if first:
        delta["tool_calls"] = first
        return True
    del delta["tool_calls"]
    says = any(k != "role" for k in delta)
    return says or choice.get("finish_reason") is not None or choice.get("logprobs") is not None
