"""A streamed tool call delta whose ``index`` is written as text ("0", "1"): an argument fragment
with no id continues the call that index started, as it did when the text named its call, not
whichever call started last."""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.config.schema import Timeouts
from switchboard.providers import openai_compatible
from switchboard.providers.target import Target


def _chunk(calls: list[dict[str, Any]], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "model-1",
        "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": finish}],
    }) + b"\n\n"


def test_interleaved_fragments_under_text_indices_keep_their_calls() -> None:
    spec = openai_compatible.SPEC
    target = Target("m", "model-1", "up", spec.type, "http://up", spec.options(), Timeouts())
    decoder = spec.adapter.chat_stream({}, target)
    body = b"".join([
        _chunk([{"index": "0", "id": "call_a", "type": "function",
                 "function": {"name": "f", "arguments": ""}}]),
        _chunk([{"index": "1", "id": "call_b", "type": "function",
                 "function": {"name": "g", "arguments": ""}}]),
        _chunk([{"index": "0", "function": {"arguments": "{\"a\":1}"}}]),
        _chunk([{"index": "1", "function": {"arguments": "{\"b\":2}"}}], "tool_calls"),
        b"data: [DONE]\n\n",
    ])
    chunks = decoder.feed(body) + decoder.close()
    args: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                args[call["index"]] = args.get(call["index"], "") + call["function"].get("arguments", "")
    assert args == {0: "{\"a\":1}", 1: "{\"b\":2}"}
