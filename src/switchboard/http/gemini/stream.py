"""Canonical chunks -> Gemini's ``streamGenerateContent?alt=sse`` events.

Each event is a partial ``GenerateContentResponse`` (``data: {...}`` and a blank line), as
Gemini sends them: text and thought parts as they arrive (the deltas of one upstream read joined
into one event), each function call whole (Gemini never splits a call's arguments, so they are
gathered until the call's candidate finishes), and one last event with the finish reasons,
any function calls and ``usageMetadata``. Every event names ``modelVersion`` and ``responseId``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard.http.gemini.response import finish_reason, function_call, obj, response_id, usage_metadata

JSON = dict[str, Any]


def event(data: JSON) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


@dataclass(slots=True)
class _Call:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    extra: Any = None


@dataclass(slots=True)
class _Candidate:
    calls: dict[int, _Call] = field(default_factory=dict)  # by the tool call's index
    held: list[JSON] = field(default_factory=list)  # parts for the last event
    finish: str | None = None

    def flush_calls(self) -> None:
        for _, call in sorted(self.calls.items()):
            canonical = {"id": call.id, "function": {"name": call.name, "arguments": "".join(call.arguments)},
                         "extra_content": call.extra}
            part = function_call(canonical)
            if part is None:
                self.finish = "MALFORMED_FUNCTION_CALL"
            else:
                self.held.append(part)
        self.calls.clear()


class StreamEncoder:
    __slots__ = ("_candidates", "_id", "_model", "_thoughts", "_usage")

    def __init__(self, model: str, include_thoughts: bool) -> None:
        self._model = model
        self._thoughts = include_thoughts
        self._id: str | None = None
        self._usage: Any = None
        self._candidates: dict[int, _Candidate] = {}

    def _meta(self, out: JSON) -> JSON:
        out["modelVersion"] = self._model
        if self._id is None:
            self._id = response_id(None)
        out["responseId"] = self._id
        return out

    def feed(self, batch: list[JSON]) -> bytes:
        """The event for one batch of canonical chunks (empty when it carries no new parts)."""
        parts: dict[int, list[JSON]] = {}
        for chunk in batch:
            if self._id is None and chunk.get("id"):
                self._id = response_id(chunk["id"])
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    self._choice(choice, parts)
        if not parts:
            return b""
        candidates = [{"content": {"parts": p, "role": "model"}, "index": i}
                      for i, p in sorted(parts.items())]
        return event(self._meta({"candidates": candidates}))

    def _choice(self, choice: JSON, parts: dict[int, list[JSON]]) -> None:
        index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
        state = self._candidates.get(index)
        if state is None:
            state = self._candidates[index] = _Candidate()
        delta = obj(choice.get("delta"))
        reasoning = delta.get("reasoning_content")
        if self._thoughts and isinstance(reasoning, str) and reasoning:
            _text(parts.setdefault(index, []), reasoning, thought=True)
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                _text(parts.setdefault(index, []), text, thought=False)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                _gather(state, call)
        reason = finish_reason(choice.get("finish_reason"))
        if reason is not None:
            state.finish = reason
            state.flush_calls()

    def end(self) -> bytes:
        """The last event: held function calls, the finish reasons and the usage."""
        candidates = []
        for index, state in sorted(self._candidates.items()):
            state.flush_calls()
            # Never an empty parts list: clients read `.text` of the last event too.
            parts = state.held or [{"text": ""}]
            item: JSON = {"content": {"parts": parts, "role": "model"}}
            if state.finish is not None:
                item["finishReason"] = state.finish
            item["index"] = index
            candidates.append(item)
        out: JSON = {"candidates": candidates}
        meta = usage_metadata(self._usage)
        if meta is not None:
            out["usageMetadata"] = meta
        return event(self._meta(out))


def _text(parts: list[JSON], text: str, *, thought: bool) -> None:
    """Append ``text``, joined to the previous part when it is text of the same kind."""
    last = parts[-1] if parts else None
    if last is not None and "text" in last and bool(last.get("thought")) == thought:
        last["text"] += text
    else:
        parts.append({"text": text, "thought": True} if thought else {"text": text})


def _gather(state: _Candidate, call: JSON) -> None:
    position = call.get("index", 0) if isinstance(call.get("index"), int) else 0
    found = state.calls.get(position)
    if found is None:
        found = state.calls[position] = _Call()
    if isinstance(call.get("id"), str) and call["id"]:
        found.id = call["id"]
    function = obj(call.get("function"))
    if isinstance(function.get("name"), str) and function["name"]:
        found.name = function["name"]
    if isinstance(function.get("arguments"), str):
        found.arguments.append(function["arguments"])
    if call.get("extra_content") is not None:
        found.extra = call["extra_content"]
