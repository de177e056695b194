"""``streamGenerateContent?alt=sse`` -> canonical ``chat.completion.chunk`` events.

Each SSE ``data:`` is a whole ``GenerateContentResponse`` holding the next piece of every
candidate; function calls arrive complete, so each becomes one tool-call delta with its own
index. The candidate's ``finishReason`` (usually on the last event) becomes a finish chunk and
the last ``usageMetadata`` (cumulative) a final ``choices: []`` usage chunk when the stream ends.
An ``error`` object in the stream raises; a stream cut before any finishReason raises too.

Reference: https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from switchboard.errors import GatewayError, UpstreamBadGateway
from switchboard.providers.base import DeferredError
from switchboard.providers.counts import position as index_of
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.google.errors import from_error_object
from switchboard.providers.google.response import (
    candidates_of,
    completion_id,
    failed_generation,
    failed_generation_error,
    finish_reason,
    logprobs,
    model_name,
    parts_of,
    prompt_blocked,
    split_parts,
    tool_call,
    usage,
)
from switchboard.providers.sse import SSEEvent, SSEParser, empty_data
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import new_call_id

JSON = dict[str, Any]


@dataclass(slots=True)
class _Candidate:
    started: bool = False
    said: bool = False  # text or a tool call went out
    tool_calls: int = 0
    finished: bool = False


class GoogleStreamDecoder(DeferredError):
    __slots__ = ("_candidates", "_created", "_id", "_model", "_parser", "_target", "_usage")

    def __init__(self, target: Target) -> None:
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._target = target
        self._candidates: dict[int, _Candidate] = {}
        self._id: str | None = None
        self._model = target.model
        self._created = int(time.time())
        self._usage: JSON | None = None
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        return self._decode(self._parser.feed(data))

    def close(self) -> list[JSON]:
        chunks = self._decode(self._parser.flush())
        if self._deferred is not None:
            raise self._taken()
        if not self._candidates or not all(c.finished for c in self._candidates.values()):
            raise UpstreamBadGateway(
                f"provider '{self._target.provider}' ended the stream before the response was complete"
            )
        if self._usage is not None:
            chunks.append({**self._envelope(), "choices": [], "usage": self._usage})
        return chunks

    def _decode(self, events: list[SSEEvent]) -> list[JSON]:
        """Chunks of ``events``. An error after some of them is raised on the next call, so the
        chunks decoded before it (possibly in the same network read) still reach the client."""
        if self._deferred is not None:
            raise self._taken()
        chunks: list[JSON] = []
        for event in events:
            try:
                self._event(event.data, chunks)
            except GatewayError as exc:
                if not chunks:
                    raise
                self._defer(exc)
                break
        return chunks

    # -- one event ---------------------------------------------------------------------------

    def _event(self, data: str, out: list[JSON]) -> None:
        """Appends the event's chunks to ``out`` as they are made: an error part-way through an
        event (a failed candidate) leaves those before it in ``out``, sent before the error."""
        obj = loads_object(data.encode())
        if obj is None:
            if empty_data(data):
                return  # dispatched, but carries nothing (providers/sse.py)
            raise invalid_body(self._target, "stream event")
        if isinstance(obj.get("error"), dict):
            raise from_error_object(obj["error"], 0, {}, self._target)
        if self._id is None:
            self._id = completion_id(obj)
            self._model = model_name(obj, self._target)
        if isinstance(obj.get("usageMetadata"), dict):
            self._usage = usage(obj["usageMetadata"])
        candidates = candidates_of(obj)
        if not candidates and prompt_blocked(obj):
            out.extend(self._blocked())
            return
        for position, candidate in enumerate(candidates):
            index = candidate.get("index")
            if index.__class__ is not int or index < 0:  # the usual index costs no call
                index = index_of(index)  # 1.0 is 1; of the wrong type: its place in the list
                index = position if index is None else index
            self._candidate(index, candidate, out)

    def _candidate(self, index: int, candidate: JSON, out: list[JSON]) -> None:
        state = self._candidates.setdefault(index, _Candidate())
        if state.finished:
            return
        text, thoughts, calls = split_parts(parts_of(candidate))
        state.said = state.said or bool(text or calls)
        delta: JSON = {}
        if not state.started:
            delta["role"] = "assistant"
            state.started = True
        if text:
            delta["content"] = text
        if thoughts:
            delta["reasoning_content"] = thoughts
        if calls:
            delta["tool_calls"] = [self._tool_delta(state, part) for part in calls]
        if failed_generation(candidate, state.said):
            # Answer text or calls in the failing event (MISSING_THOUGHT_SIGNATURE) go out before
            # the error, as earlier events' did. Thoughts alone do not: a first event failing so
            # stays an error before the stream starts, still retried or fallen back from.
            if text or calls:
                out.append(self._chunk(index, delta, None, logprobs(candidate)))
            raise failed_generation_error(candidate, self._target)
        reason = finish_reason(candidate.get("finishReason"), state.tool_calls > 0)
        if text or thoughts or calls or (reason is None and delta):
            out.append(self._chunk(index, delta, None, logprobs(candidate)))
            delta = {}
        if reason is not None:
            state.finished = True
            out.append(self._chunk(index, delta, reason, None))

    def _tool_delta(self, state: _Candidate, part: JSON) -> JSON:
        call = {"index": state.tool_calls, **tool_call(part, new_call_id())}
        state.tool_calls += 1
        return call

    def _blocked(self) -> list[JSON]:
        state = self._candidates.setdefault(0, _Candidate())
        if state.finished:
            return []
        state.finished = True
        delta = {} if state.started else {"role": "assistant"}
        state.started = True
        return [self._chunk(0, delta, "content_filter", None)]

    # -- chunk shapes ------------------------------------------------------------------------

    def _envelope(self) -> JSON:
        return {
            "id": self._id or completion_id({}),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, index: int, delta: JSON, finish: str | None, probs: JSON | None) -> JSON:
        choice = {"index": index, "delta": delta, "logprobs": probs, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}
