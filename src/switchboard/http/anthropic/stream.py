"""Canonical chunk stream -> Anthropic Messages server-sent events.

Reference: https://docs.anthropic.com/en/docs/build-with-claude/streaming. The sequence is

    message_start         the message with empty content; usage.input_tokens is 0 here because
                          OpenAI-shaped upstreams report usage only at the end of the stream
    content_block_start   index 0, 1, ... in order; thinking blocks (from reasoning_content and
                          thinking_blocks deltas), a text block, then one per tool call (a
                          call that starts while the open one's arguments are incomplete is
                          held and sent whole after it: no delta follows a block's stop)
    ping                  once, after the first content_block_start (as the API does)
    content_block_delta   thinking_delta {thinking} | signature_delta {signature} |
                          text_delta {text} | input_json_delta {partial_json}
    content_block_stop
    message_delta         {stop_reason, stop_sequence} and the cumulative usage: output_tokens and
                          the real input_tokens / cache counts, which the SDKs fold into the
                          final message
    message_stop

The canonical stream sends finish_reason before its last chunk (``choices: []`` with usage), so
message_delta is held until the stream ends. stop_reason is read as for a whole message
(``response.stop_reason``): a refusal delta with no content gives "refusal" in both, and the
finish chunk's ``stop_sequence`` gives "stop_sequence". A GatewayError mid-stream ends the stream with
``event: error`` and the error body, without message_stop.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.http.anthropic.response import (
    JSON,
    at_stop_sequence,
    block_id,
    matched_sequence,
    message_id,
    obj,
    stop_reason,
    thinking_block,
    usage,
)


def event(name: str, **fields: Any) -> bytes:
    """One SSE event; its data is ``{"type": name, **fields}`` as in every Anthropic event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **fields}) + b"\n\n"


class StreamEncoder:
    """The state of one stream: the open block, the tool calls seen, the finish and the usage."""

    __slots__ = ("_at_stop_sequence", "_blocks", "_finish", "_held", "_live", "_live_args", "_model", "_open",
                 "_pinged", "_refusal", "_saw_text", "_saw_tool", "_stop_sequence", "_tool_blocks", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._blocks = 0  # content blocks started so far; the next one gets this index
        self._open: str | None = None  # "text" or "tool_use" while a block is open
        self._tool_blocks: dict[int, int] = {}
        # The tool call streaming into the open block (its position and arguments so far), and
        # calls that started before its arguments were complete, held whole until it is done.
        self._live: int | None = None
        self._live_args: list[str] = []
        self._held: dict[int, tuple[JSON, list[str]]] = {}
        self._finish: Any = None
        self._usage: Any = None
        self._saw_tool = False
        self._saw_text = False
        self._refusal = False  # refusal text came (a refusal, when no content came)
        self._stop_sequence: Any = None
        self._at_stop_sequence = False
        self._pinged = False

    def start(self) -> bytes:
        message: JSON = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage(None),
        }
        return event("message_start", message=message)

    def feed(self, chunk: JSON) -> bytes:
        """The events for one canonical chunk (possibly none)."""
        out: list[bytes] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Anthropic messages have one choice; n > 1 is never requested
            delta = obj(choice.get("delta"))
            self._reasoning(delta, out)
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                self._saw_text = self._saw_text or bool(delta.get("content"))
                self._refusal = self._refusal or bool(delta.get("refusal"))
                self._text(text, out)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._stop_sequence = choice.get("stop_sequence")
                self._at_stop_sequence = at_stop_sequence(choice)
                self._flush_held(out)
                self._close(out)
        return b"".join(out)

    def end(self) -> bytes:
        out: list[bytes] = []
        self._flush_held(out)
        self._close(out)
        refused = self._refusal and not self._saw_text
        reason = stop_reason(self._finish, self._saw_tool, refused, self._at_stop_sequence)
        sequence = matched_sequence({"stop_sequence": self._stop_sequence}, reason)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out.append(event("message_delta", delta=delta, usage=usage(self._usage)))
        out.append(event("message_stop"))
        return b"".join(out)

    def _start_block(self, block: JSON, out: list[bytes]) -> int:
        if self._held and block["type"] != "tool_use":
            self._flush_held(out)
        self._close(out)
        self._live = None
        index = self._blocks
        self._blocks += 1
        self._open = block["type"]
        out.append(event("content_block_start", index=index, content_block=block))
        if not self._pinged:
            self._pinged = True
            out.append(event("ping"))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event("content_block_stop", index=self._blocks - 1))
            self._open = None

    def _delta(self, index: int, delta: JSON, out: list[bytes]) -> None:
        out.append(event("content_block_delta", index=index, delta=delta))

    def _reasoning(self, delta: JSON, out: list[bytes]) -> None:
        """reasoning_content streams into an open thinking block; a thinking_blocks entry brings its
        signature (and closes the block) or is a whole redacted block."""
        text = delta.get("reasoning_content")
        if isinstance(text, str) and text:
            self._thinking_text(text, out)
        for raw in delta.get("thinking_blocks") or ():
            block = thinking_block(raw)
            if block is None:
                continue
            if block["type"] == "redacted_thinking":
                self._start_block(block, out)
                self._close(out)
                continue
            if block["thinking"]:
                self._thinking_text(block["thinking"], out)
            elif self._open != "thinking":
                self._start_block({"type": "thinking", "thinking": "", "signature": ""}, out)
            if block["signature"]:
                signature = {"type": "signature_delta", "signature": block["signature"]}
                self._delta(self._blocks - 1, signature, out)
            self._close(out)

    def _thinking_text(self, text: str, out: list[bytes]) -> None:
        if self._open != "thinking":
            self._start_block({"type": "thinking", "thinking": "", "signature": ""}, out)
        self._delta(self._blocks - 1, {"type": "thinking_delta", "thinking": text}, out)

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open != "text":
            self._start_block({"type": "text", "text": ""}, out)
        self._delta(self._blocks - 1, {"type": "text_delta", "text": text}, out)

    def _tool_call(self, call: JSON, out: list[bytes]) -> None:
        position = call.get("index", 0)
        function = obj(call.get("function"))
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        if position in self._held:
            self._held[position][1].append(arguments)
            return
        index = self._tool_blocks.get(position)
        if index is None:
            self._saw_tool = True
            block = self._tool_block(call, function)
            if self._held or self._unfinished_live():
                # Anthropic streams one block at a time and never a delta after a block's stop:
                # a call that starts while the open one's arguments are incomplete (upstreams that
                # interleave parallel calls) waits, whole, until the open one is done.
                self._held[position] = (block, [arguments])
                return
            index = self._start_block(block, out)
            self._tool_blocks[position] = index
            self._live, self._live_args = position, []
        if position == self._live:
            self._live_args.append(arguments)
        # A delta for a call whose block was already closed (text came in between) still goes to
        # that call's index, which the SDKs accumulate correctly.
        if arguments:
            self._delta(index, {"type": "input_json_delta", "partial_json": arguments}, out)

    def _tool_block(self, call: JSON, function: JSON) -> JSON:
        # A call's first delta holds its id and (Gemini) its signature, which rides in the id.
        return {
            "type": "tool_use",
            "id": block_id(call),
            "name": function.get("name") or "",
            "input": {},
        }

    def _unfinished_live(self) -> bool:
        """The open block is a tool call whose arguments are not yet a whole JSON value."""
        if self._live is None or self._open != "tool_use":
            return False
        try:
            orjson.loads("".join(self._live_args))
        except orjson.JSONDecodeError:
            return True
        return False

    def _flush_held(self, out: list[bytes]) -> None:
        """The held calls, each as a whole block, after the open one."""
        held, self._held = self._held, {}
        for position, (block, parts) in held.items():
            index = self._start_block(block, out)
            self._tool_blocks[position] = index
            arguments = "".join(parts)
            if arguments:
                self._delta(index, {"type": "input_json_delta", "partial_json": arguments}, out)
