"""Anthropic Messages SSE -> canonical chat.completion.chunk objects.

Reference: https://platform.claude.com/docs/en/build-with-claude/streaming. The flow is
``message_start``, then per content block ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``input_json_delta``, ...) / ``content_block_stop``, then ``message_delta``
(stop_reason and cumulative usage) and ``message_stop``; ``ping`` may come anywhere and
``error`` ends a failed stream. Unknown event and delta types are ignored, as the reference's
versioning policy asks.

Thinking blocks become ``reasoning_content`` deltas (``thinking_delta``) and, when the signature
arrives (``signature_delta``), a delta ``thinking_blocks: [{index, type: thinking, thinking: "",
signature}]``; a redacted_thinking block is one delta ``thinking_blocks: [{index, type:
redacted_thinking, data}]``. ``index`` is the block's place among the reply's thinking blocks (0,
1, ...), as a tool call delta's is among its calls, so clients that gather a stream's deltas by
OpenAI's rules (the openai SDK's stream helper) keep the blocks apart. ``message_delta``'s
``stop_sequence`` rides on the finish chunk's choice as ``stop_sequence``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers.anthropic.request import JSON_TOOL
from switchboard.providers.anthropic.response import finish_reason, stop_sequence, stream_error, usage
from switchboard.providers.base import JSON, PARTIAL, DeferredError
from switchboard.providers.counts import position
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.sse import SSEEvent, SSEParser, empty_data
from switchboard.providers.target import Target


@dataclass(slots=True)
class _Block:
    kind: str  # text | thinking | tool | json (the emulated JSON-mode tool) | other (ignored)
    tool_index: int = -1  # a tool block's place among the calls; a thinking block's among those
    initial_input: Any = None
    streamed: bool = False  # any argument/JSON text sent for this block yet


class AnthropicStreamDecoder(DeferredError):
    __slots__ = ("_blocks", "_created", "_done", "_finished", "_id", "_json_mode", "_model", "_parser",
                 "_target", "_thoughts", "_tools", "_usage")

    def __init__(self, target: Target) -> None:
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._target = target
        self._id = ""
        self._model = target.model
        self._created = int(time.time())
        self._usage: JSON = {}
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._thoughts = 0  # thinking and redacted_thinking blocks so far
        self._json_mode = False
        self._finished = False  # the finish_reason chunk went out
        self._done = False  # message_stop seen
        self._deferred: GatewayError | None = None  # raised once the chunks before it are delivered

    def feed(self, data: bytes) -> list[JSON]:
        return self._run(self._parser.feed(data))

    def close(self) -> list[JSON]:
        out = self._run(self._parser.flush())
        if self._deferred is not None:
            raise self._taken()
        if self._done:
            return out
        if not self._finished:
            raise UpstreamBadGateway(f"provider '{self._target.provider}' ended the stream before the "
                                     "message was complete")
        # message_delta arrived but message_stop did not: the answer itself is complete.
        out.append(self._usage_chunk())
        self._done = True
        return out

    def _run(self, events: list[SSEEvent]) -> list[JSON]:
        """Chunks for ``events``; a failure after some of them waits for the next call, so the client
        still receives what was decoded before it."""
        if self._deferred is not None:
            raise self._taken()
        out: list[JSON] = []
        try:
            for event in events:
                self._event(event, out)
        except GatewayError as exc:
            if not out:
                raise
            self._defer(exc)
        return out

    # -- events ---------------------------------------------------------------------------------

    def _event(self, event: SSEEvent, out: list[JSON]) -> None:
        if self._done:
            return
        obj = loads_object(event.data.encode())
        if obj is None:
            if empty_data(event.data):
                return  # dispatched, but carries nothing (providers/sse.py)
            raise invalid_body(self._target, "stream event")
        kind = obj.get("type") or event.event
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, obj, out)

    def _message_start(self, obj: JSON, out: list[JSON]) -> None:
        message = _object(obj.get("message"))
        # An id or model of the wrong JSON type is read as absent, not relayed as its Python text.
        if (found := message.get("id")).__class__ is str:
            self._id = found
        if (found := message.get("model")).__class__ is str and found:
            self._model = found
        self._merge_usage(message.get("usage"))
        chunk = self._chunk({"role": "assistant", "content": ""})
        # The prompt as the upstream counted it: a stream cut before message_delta is estimated
        # from it (pipeline/invoke.py takes it off the chunk before the client sees it).
        chunk["usage"] = usage(self._usage)
        chunk[PARTIAL] = True
        out.append(chunk)

    def _block_start(self, obj: JSON, out: list[JSON]) -> None:
        block = _object(obj.get("content_block"))
        index = _index(obj)
        if index < 0:
            raise invalid_body(self._target, "stream event")
        kind = block.get("type")
        # Text of the wrong JSON type (a number, a list) is read as absent, never relayed as text.
        if kind == "text":
            self._blocks[index] = _Block("text")
            if (text := block.get("text")).__class__ is str and text:
                out.append(self._chunk({"content": text}))
        elif kind == "thinking":
            state = self._blocks[index] = _Block("thinking", self._thought())
            if (text := block.get("thinking")).__class__ is str and text:
                out.append(self._chunk({"reasoning_content": text}))
            if block.get("signature"):
                self._signature(state, block["signature"], out)
        elif kind == "redacted_thinking":
            self._blocks[index] = _Block("other")
            if isinstance(block.get("data"), str):
                redacted = {"index": self._thought(), "type": "redacted_thinking", "data": block["data"]}
                out.append(self._chunk({"thinking_blocks": [redacted]}))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            self._json_mode = True
            self._blocks[index] = _Block("json", initial_input=block.get("input"))
        elif kind == "tool_use":
            state = _Block("tool", self._tools, block.get("input"))
            self._tools += 1
            self._blocks[index] = state
            call = {"index": state.tool_index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))
        else:
            self._blocks[index] = _Block("other")

    def _block_delta(self, obj: JSON, out: list[JSON]) -> None:
        state = self._blocks.get(_index(obj))
        delta = _object(obj.get("delta"))
        if state is None:
            return
        kind = delta.get("type")
        # A text of the wrong JSON type (a number, a list) is read as absent, as _block_start's.
        if kind == "text_delta":
            if state.kind == "text" and (text := delta.get("text")).__class__ is str and text:
                out.append(self._chunk({"content": text}))
        elif kind == "thinking_delta":
            if state.kind == "thinking" and (text := delta.get("thinking")).__class__ is str and text:
                out.append(self._chunk({"reasoning_content": text}))
        elif kind == "signature_delta" and state.kind == "thinking" and delta.get("signature"):
            self._signature(state, delta["signature"], out)
        elif kind == "input_json_delta" and (piece := delta.get("partial_json")).__class__ is str and piece:
            self._json_piece(state, piece, out)

    def _thought(self) -> int:
        """The place of a new thinking (or redacted_thinking) block among the reply's."""
        self._thoughts += 1
        return self._thoughts - 1

    def _signature(self, state: _Block, signature: Any, out: list[JSON]) -> None:
        if isinstance(signature, str):
            block = {"index": state.tool_index, "type": "thinking", "thinking": "", "signature": signature}
            out.append(self._chunk({"thinking_blocks": [block]}))

    def _json_piece(self, state: _Block, piece: str, out: list[JSON]) -> None:
        if state.kind == "tool":
            state.streamed = True
            call = {"index": state.tool_index, "function": {"arguments": piece}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif state.kind == "json":
            state.streamed = True
            out.append(self._chunk({"content": piece}))

    def _block_stop(self, obj: JSON, out: list[JSON]) -> None:
        state = self._blocks.get(_index(obj))
        if state is None or state.kind not in ("tool", "json") or state.streamed:
            return
        # No input_json_delta came (an empty input): send the input whole, so arguments are JSON.
        whole = orjson.dumps(state.initial_input if isinstance(state.initial_input, dict) else {}).decode()
        self._json_piece(state, whole, out)

    def _message_delta(self, obj: JSON, out: list[JSON]) -> None:
        self._merge_usage(obj.get("usage"))
        delta = _object(obj.get("delta"))
        if not self._finished:
            self._finished = True
            chunk = self._chunk({}, finish_reason(delta.get("stop_reason"), self._json_mode))
            if (sequence := stop_sequence(delta)) is not None:
                chunk["choices"][0]["stop_sequence"] = sequence
            out.append(chunk)

    def _message_stop(self, obj: JSON, out: list[JSON]) -> None:
        if not self._finished:
            self._finished = True
            out.append(self._chunk({}, "stop"))
        out.append(self._usage_chunk())
        self._done = True

    def _error(self, obj: JSON, out: list[JSON]) -> None:
        raise stream_error(obj, self._target)

    # -- chunks ---------------------------------------------------------------------------------

    def _merge_usage(self, raw: Any) -> None:
        # message_delta usage is cumulative: later values replace earlier ones.
        if isinstance(raw, dict):
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def _base(self) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model}

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._base(), "choices": [choice]}

    def _usage_chunk(self) -> JSON:
        return {**self._base(), "choices": [], "usage": usage(self._usage)}


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _index(obj: JSON) -> int:
    """A content block event's ``index``; -1 for one that is no position (providers/counts.py)."""
    index = obj.get("index")
    if index.__class__ is int and index >= 0:  # the usual index, with no call
        return index
    index = position(index)  # 0.0, from a server that writes its numbers as floats, is block 0
    return -1 if index is None else index


_HANDLERS = {
    "message_start": AnthropicStreamDecoder._message_start,
    "content_block_start": AnthropicStreamDecoder._block_start,
    "content_block_delta": AnthropicStreamDecoder._block_delta,
    "content_block_stop": AnthropicStreamDecoder._block_stop,
    "message_delta": AnthropicStreamDecoder._message_delta,
    "message_stop": AnthropicStreamDecoder._message_stop,
    "error": AnthropicStreamDecoder._error,
}
