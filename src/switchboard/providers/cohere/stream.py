"""Cohere API v2 chat SSE stream -> canonical OpenAI chat.completion.chunk dicts.

Reference: https://docs.cohere.com/reference/chat-stream (``StreamedChatResponseV2``). Each SSE event
is ``event: <type>`` plus a JSON ``data`` object carrying the same ``type``:

    message-start    id                                      -> role chunk
    content-start    delta.message.content {type, text}      -> content chunk if text is non-empty
    content-delta    delta.message.content.text (+logprobs)  -> content chunk
    tool-plan-delta  delta.message.tool_plan                 -> content chunk (the plan precedes the calls)
    tool-call-start  index, delta.message.tool_calls {id, type, function{name, arguments}}
                                                             -> tool_calls[{index, id, type, function}]
    tool-call-delta  index, delta.message.tool_calls.function.arguments -> argument fragment
    message-end      delta {finish_reason, usage, error}     -> finish chunk, then a usage chunk
    content-end, tool-call-end, citation-*, debug, ``[DONE]`` -> nothing

Thinking content (``content.thinking``) becomes ``reasoning_content`` deltas.
"""

from __future__ import annotations

import time
from typing import Any

from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers.base import JSON, DeferredError
from switchboard.providers.cohere.response import (
    finish_error,
    finish_reason,
    logprob_entries,
    mark_stop_sequence,
    obj_at,
    str_at,
    usage,
)
from switchboard.providers.counts import position
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.sse import SSEEvent, SSEParser, empty_data
from switchboard.providers.target import Target


def _cut_short(event: SSEEvent) -> bool:
    """An unterminated last event whose JSON is incomplete: the connection ended mid-event."""
    return event.data != "[DONE]" and loads_object(event.data.encode()) is None and not empty_data(event.data)


def _delta_message(event: JSON) -> JSON:
    return obj_at(obj_at(event, "delta"), "message")


class CohereStreamDecoder(DeferredError):
    """Feeds on Cohere's SSE bytes; returns the canonical chunks completed so far."""

    __slots__ = ("_created", "_ended", "_id", "_parser", "_role_sent", "_target", "_tool_index")

    def __init__(self, target: Target) -> None:
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._target = target
        self._id = ""
        self._created = int(time.time())
        self._role_sent = False
        self._ended = False
        # Cohere's tool-call index -> the OpenAI tool_calls index (dense, in order of appearance).
        self._tool_index: dict[Any, int] = {}
        # An error met after other chunks of the same read: raised on the next call, so those
        # chunks still reach the client first.
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        self._raise_pending()
        return self._events(self._parser.feed(data))

    def close(self) -> list[JSON]:
        self._raise_pending()
        rest = self._parser.flush()
        if not self._ended and any(_cut_short(e) for e in rest):
            raise self._truncated()
        chunks = self._events(rest)
        # No later call follows close(): a failure in the last event outweighs its companions.
        self._raise_pending()
        if not self._ended:
            raise self._truncated()
        return chunks

    def _truncated(self) -> UpstreamBadGateway:
        return UpstreamBadGateway(
            f"provider '{self._target.provider}' ended the stream before its message-end event"
        )

    # ---- event dispatch -----------------------------------------------------------------------

    def _raise_pending(self) -> None:
        if self._deferred is not None:
            try:
                raise self._taken()
            finally:
                self._deferred = None  # raised once

    def _events(self, events: list[SSEEvent]) -> list[JSON]:
        chunks: list[JSON] = []
        for event in events:
            if self._ended:
                continue
            try:
                obj = loads_object(event.data.encode())
                if obj is None:
                    if event.data == "[DONE]" or empty_data(event.data):
                        continue  # the end, or an event that carries nothing (providers/sse.py)
                    raise invalid_body(self._target, "stream event")
                chunks.extend(self._event(obj.get("type") or event.event, obj))
            except GatewayError as exc:
                if not chunks:
                    raise
                self._defer(exc)
                self._ended = True  # nothing after a failure is relayed
                break
        return chunks

    def _event(self, kind: Any, event: JSON) -> list[JSON]:
        if kind == "message-start":
            self._id = str_at(event, "id") or self._id  # one of the wrong type is read as absent
            return self._role([])
        if kind in ("content-start", "content-delta"):
            return self._content(event)
        if kind == "tool-plan-delta":
            plan = _delta_message(event).get("tool_plan")
            return self._role([self._chunk({"content": plan})]) if isinstance(plan, str) and plan else []
        if kind == "tool-call-start":
            return self._role([self._tool_start(event)])
        if kind == "tool-call-delta":
            return self._tool_delta(event)
        if kind == "message-end":
            return self._end(event)
        if kind is None and "message" in event:
            # An error object instead of an event: Cohere's {"id", "message"} error shape.
            where = f"provider '{self._target.provider}'"
            raise UpstreamBadGateway(f"{where} failed mid-stream: {event['message']}")
        return []  # content-end, tool-call-end, citation-start/end, debug and future event types

    # ---- chunk builders -----------------------------------------------------------------------

    def _chunk(self, delta: JSON, finish: str | None = None, logprobs: JSON | None = None) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._target.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }

    def _role(self, chunks: list[JSON]) -> list[JSON]:
        """Prefix the role chunk once, whichever event comes first."""
        if self._role_sent:
            return chunks
        self._role_sent = True
        return [self._chunk({"role": "assistant", "content": ""}), *chunks]

    def _content(self, event: JSON) -> list[JSON]:
        content = _delta_message(event).get("content")
        text = content.get("text") if isinstance(content, dict) else None
        thinking = content.get("thinking") if isinstance(content, dict) else None
        if isinstance(thinking, str) and thinking:
            return self._role([self._chunk({"reasoning_content": thinking})])
        if not isinstance(text, str) or not text:
            return self._role([])
        entries = logprob_entries(event.get("logprobs")) if event.get("logprobs") else None
        logprobs = {"content": entries} if entries else None
        return self._role([self._chunk({"content": text}, logprobs=logprobs)])

    def _tool_start(self, event: JSON) -> JSON:
        call = obj_at(_delta_message(event), "tool_calls")
        fn = obj_at(call, "function")
        index = self._index(event.get("index"), starts=True)
        args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        return self._chunk({"tool_calls": [{
            "index": index, "id": str_at(call, "id"), "type": "function",
            "function": {"name": str_at(fn, "name"), "arguments": args},
        }]})

    def _tool_delta(self, event: JSON) -> list[JSON]:
        args = obj_at(obj_at(_delta_message(event), "tool_calls"), "function").get("arguments")
        if not isinstance(args, str) or not args:
            return []
        index = self._index(event.get("index"))
        return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": args}}]})]

    def _index(self, cohere_index: Any, starts: bool = False) -> int:
        """Our index of the call Cohere's ``index`` names (0.0, as a JSON number may be written,
        is 0; a string names its call too). One of any other type names no call: a start begins
        a call of its own, under a key no index can take later; a fragment goes on with the call
        last started."""
        key: Any = position(cohere_index)
        if key is None:
            if isinstance(cohere_index, str):
                key = cohere_index
            elif starts or not self._tool_index:
                key = ("no index", len(self._tool_index))
            else:
                return len(self._tool_index) - 1
        if key not in self._tool_index:
            self._tool_index[key] = len(self._tool_index)
        return self._tool_index[key]

    def _end(self, event: JSON) -> list[JSON]:
        self._ended = True
        delta = obj_at(event, "delta")
        failure = finish_error(delta.get("finish_reason"), delta.get("error"), self._target)
        if failure is not None:
            try:
                raise failure
            finally:
                del failure  # its traceback holds this frame: a reference cycle otherwise
        self._id = str_at(event, "id") or self._id
        finish = self._chunk({}, finish_reason(delta.get("finish_reason")))
        mark_stop_sequence(finish["choices"][0], delta.get("finish_reason"))
        chunks = self._role([finish])
        normalised = usage(delta.get("usage"))
        if normalised is not None:
            final = self._chunk({})
            final["choices"] = []
            final["usage"] = normalised
            chunks.append(final)
        return chunks
