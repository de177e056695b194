"""Bedrock ConverseStream (binary event stream) -> canonical chat.completion.chunk dicts.

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
and API_runtime_ConverseStreamOutput. Each frame's ``:event-type`` header names the event and its
JSON payload is the event's members:

    messageStart       {role}                                  -> delta {role, content: ""}
    contentBlockStart  {contentBlockIndex, start: {toolUse}}   -> delta tool_calls[{index, id, name}]
    contentBlockDelta  {contentBlockIndex, delta: {text}}      -> delta {content}
                       {contentBlockIndex, delta: {reasoningContent: {text}}}
                                                               -> delta {reasoning_content}
                       {..., delta: {reasoningContent: {signature | redactedContent}}}
                                                               -> delta thinking_blocks [one block,
                                                                  with its place among the reply's
                                                                  thinking blocks as ``index``]
                       {contentBlockIndex, delta: {toolUse: {input: "<json fragment>"}}}
                                                               -> delta tool_calls[{index, arguments}]
    contentBlockStop   {contentBlockIndex}                     -> nothing; for a tool block that had
                                                                  no input fragment (a call without
                                                                  arguments: Converse sends none),
                                                                  delta tool_calls[{index, "{}"}]
    messageStop        {stopReason, additionalModelResponseFields}
                                                               -> finish_reason (+ stop_sequence) chunk
    metadata           {usage, metrics}                        -> final chunk, choices [] and usage

Frames with ``:message-type`` ``exception`` (``:exception-type`` e.g. throttlingException) or
``error`` (``:error-code``/``:error-message``) become gateway errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers.base import JSON, DeferredError
from switchboard.providers.bedrock.errors import frame_error
from switchboard.providers.bedrock.reasoning import reasoning_delta
from switchboard.providers.bedrock.response import (
    canonical_usage,
    completion_id,
    finish_reason,
    mark_stop_sequence,
)
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.target import Target
from switchboard.upstream.eventstream import EventStreamDecoder, EventStreamError, Message


class ConverseStreamDecoder(DeferredError):
    __slots__ = ("_created", "_finished", "_frames", "_id", "_inputless", "_target", "_thoughts",
                 "_tool_index", "_tools")

    def __init__(self, target: Target) -> None:
        self._frames = EventStreamDecoder()
        self._target = target
        self._id = completion_id()
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool_calls index
        # Tool blocks no input fragment has come for yet (contentBlockIndex).
        self._inputless: set[int] = set()
        self._tool_index = 0
        self._thoughts = 0  # signed or redacted reasoning blocks so far
        self._finished = False
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        try:
            messages = self._frames.feed(data)
        except EventStreamError:
            raise invalid_body(self._target, "event stream") from None
        chunks: list[JSON] = []
        for message in messages:
            try:
                chunk = self._event(message)
            except GatewayError as err:
                if not chunks:
                    raise
                # Deliver what arrived before the failure in the same read; fail on the next call.
                self._defer(err)
                return chunks
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def close(self) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        try:
            self._frames.close()
        except EventStreamError:
            raise self._truncated() from None
        if not self._finished:
            raise self._truncated()
        return []

    def _truncated(self) -> UpstreamBadGateway:
        where = f"provider '{self._target.provider}'"
        return UpstreamBadGateway(f"{where} ended the stream before the response was complete")

    # ---- events ----

    def _event(self, message: Message) -> JSON | None:
        kind = message.header(":message-type") or "event"
        if kind == "exception":
            raise frame_error(message.header(":exception-type"), message.payload, self._target)
        if kind == "error":
            text = message.header(":error-message")
            raise frame_error(message.header(":error-code"), None, self._target, text)
        payload = loads_object(message.payload)
        if payload is None:
            raise invalid_body(self._target, "stream event")
        handler = _HANDLERS.get(message.header(":event-type") or "")
        return handler(self, payload) if handler else None

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._target.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _message_start(self, payload: JSON) -> JSON:
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, payload: JSON) -> JSON | None:
        start = payload.get("start")
        tool = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(tool, dict):
            return None
        index = self._tool_index
        self._tool_index += 1
        self._tools[_block_index(payload)] = index
        self._inputless.add(_block_index(payload))
        call = {"index": index, "id": tool.get("toolUseId") or "", "type": "function",
                "function": {"name": tool.get("name") or "", "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def _block_delta(self, payload: JSON) -> JSON | None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return None
        if isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        tool = delta.get("toolUse")
        if isinstance(tool, dict):
            index = self._tools.get(_block_index(payload))
            if index is None:
                raise invalid_body(self._target, "stream event (tool input before its tool start)")
            fragment = tool.get("input")
            if not isinstance(fragment, str | None):  # a piece of a JSON text, never JSON itself
                raise invalid_body(self._target, "stream event (tool input that is not a string)")
            if fragment:
                self._inputless.discard(_block_index(payload))
            return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment or ""}}]})
        if (reasoning := reasoning_delta(delta.get("reasoningContent"))) is not None:
            for block in reasoning.get("thinking_blocks", ()):
                # Its place among the thinking blocks, as a tool call delta's among the calls: the
                # openai SDK's stream helper gathers list entries by index.
                block["index"] = self._thoughts
                self._thoughts += 1
            return self._chunk(reasoning)
        return None  # citations have no Chat Completions equivalent

    def _block_stop(self, payload: JSON) -> JSON | None:
        """A tool block ended without input: its arguments are "{}", as in the non-stream reply
        (``json.dumps`` of the ``input`` {}), rather than "", which is not JSON."""
        block = _block_index(payload)
        if block not in self._inputless:
            return None
        self._inputless.discard(block)
        return self._chunk({"tool_calls": [{"index": self._tools[block], "function": {"arguments": "{}"}}]})

    def _message_stop(self, payload: JSON) -> JSON:
        self._finished = True
        reason = payload.get("stopReason")
        chunk = self._chunk({}, finish_reason(reason))
        mark_stop_sequence(chunk["choices"][0], reason, payload.get("additionalModelResponseFields"))
        return chunk

    def _metadata(self, payload: JSON) -> JSON | None:
        usage = canonical_usage(payload.get("usage"))
        if usage is None:
            return None
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._target.model, "choices": [], "usage": usage}


def _block_index(payload: JSON) -> int:
    index = payload.get("contentBlockIndex")
    return index if isinstance(index, int) else 0


_HANDLERS: dict[str, Callable[[ConverseStreamDecoder, JSON], JSON | None]] = {
    "messageStart": ConverseStreamDecoder._message_start,
    "contentBlockStart": ConverseStreamDecoder._block_start,
    "contentBlockDelta": ConverseStreamDecoder._block_delta,
    "contentBlockStop": ConverseStreamDecoder._block_stop,
    "messageStop": ConverseStreamDecoder._message_stop,
    "metadata": ConverseStreamDecoder._metadata,
}
