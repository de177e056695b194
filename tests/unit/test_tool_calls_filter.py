"""parallel_tool_calls false enforced by the gateway (providers/tool_calls.py): only the first tool
call of each choice reaches the client, in replies and in streams; without the flag nothing changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from switchboard.pipeline.invoke import OPERATIONS
from switchboard.providers.tool_calls import first_tool_call, serial_decoder

SERIAL = {"model": "m", "messages": [], "parallel_tool_calls": False}


def call(name: str) -> dict[str, Any]:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": "{}"}}


def reply() -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None,
                                 "tool_calls": [call("a"), call("b"), call("c")]},
         "finish_reason": "tool_calls"},
        {"index": 1, "message": {"role": "assistant", "content": "thinking aloud",
                                 "tool_calls": [call("d"), call("e")]},
         "finish_reason": "tool_calls"},
        {"index": 2, "message": {"role": "assistant", "content": "no tools"}, "finish_reason": "stop"},
    ], "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}}


def test_a_reply_keeps_the_first_call_of_each_choice() -> None:
    out = first_tool_call(SERIAL, reply())
    first, second, third = out["choices"]
    assert [c["function"]["name"] for c in first["message"]["tool_calls"]] == ["a"]
    assert [c["function"]["name"] for c in second["message"]["tool_calls"]] == ["d"]
    assert second["message"]["content"] == "thinking aloud" and third == reply()["choices"][2]
    assert first["finish_reason"] == second["finish_reason"] == "tool_calls"
    assert out["usage"] == reply()["usage"]  # the dropped calls were generated: billed as reported


PARALLEL = [{"model": "m", "messages": []}, {**SERIAL, "parallel_tool_calls": True}]


@pytest.mark.parametrize("request_", PARALLEL)
def test_without_the_flag_a_reply_is_untouched(request_: dict[str, Any]) -> None:
    assert first_tool_call(request_, reply()) == reply()


def delta(choice: int, calls: list[dict[str, Any]] | None = None, finish: str | None = None,
          **fields: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(fields)
    if calls is not None:
        d["tool_calls"] = calls
    return {"object": "chat.completion.chunk",
            "choices": [{"index": choice, "delta": d, "logprobs": None, "finish_reason": finish}]}


def start(i: int, name: str) -> dict[str, Any]:
    return {"index": i, "id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": ""}}


def args(i: int, text: str) -> dict[str, Any]:
    return {"index": i, "function": {"arguments": text}}


class Canned:
    """A provider decoder that yields canned chunks: one batch per feed, the last on close."""

    def __init__(self, batches: list[list[dict[str, Any]]], last: list[dict[str, Any]]) -> None:
        self.batches, self.last = batches, last

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self.batches.pop(0)

    def close(self) -> list[dict[str, Any]]:
        return self.last


def stream() -> Canned:
    both = {"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"tool_calls": [args(0, "{}"), args(1, "{}")]}, "logprobs": None,
         "finish_reason": None},
        {"index": 1, "delta": {"tool_calls": [args(1, "{}")]}, "logprobs": None, "finish_reason": None},
    ]}
    return Canned(
        [
            [delta(0, [start(0, "a")], role="assistant"), delta(0, [start(1, "b")])],
            [delta(1, [start(0, "d")], role="assistant"), delta(1, [start(1, "e")], role="assistant")],
            [both, delta(0, [args(2, "{}")], content="text")],
        ],
        [delta(0, finish="tool_calls"), delta(1, finish="tool_calls"),
         {"object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 5}}],
    )


def drain(decoder: Any, feeds: int) -> list[dict[str, Any]]:
    return [chunk for _ in range(feeds) for chunk in decoder.feed(b"x")] + decoder.close()


def test_a_stream_keeps_the_first_call_of_each_choice() -> None:
    chunks = drain(serial_decoder(SERIAL, stream()), 3)
    calls = [(c["index"], tc["index"], tc.get("id") or tc["function"]["arguments"])
             for chunk in chunks for c in chunk["choices"] for tc in c["delta"].get("tool_calls", [])]
    assert calls == [(0, 0, "call_a"), (1, 0, "call_d"), (0, 0, "{}")]
    # Choices and chunks left with nothing to say are not sent; those with something else keep it.
    assert [c["index"] for c in chunks[2]["choices"]] == [0]
    assert chunks[3]["choices"][0]["delta"] == {"content": "text"}
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls", "tool_calls"] and chunks[-1]["usage"] == {"total_tokens": 5}
    assert len(chunks) == 7


def test_a_chunk_with_only_later_calls_is_not_sent() -> None:
    decoder = serial_decoder(SERIAL, Canned([[delta(0, [start(1, "b")]), delta(0, [args(1, "{}")])]], []))
    assert decoder.feed(b"x") == [] and decoder.close() == []


def test_without_the_flag_the_decoder_is_the_providers_own() -> None:
    inner = stream()
    for request in PARALLEL:
        assert serial_decoder(request, inner) is inner  # nothing wraps it: costs nothing
    expected = copy.deepcopy(stream().batches[0])
    assert inner.feed(b"x") == expected


def test_the_chat_operation_applies_both() -> None:
    chat = OPERATIONS["chat"]
    assert chat.finish is not None and chat.wrap is not None
    assert chat.finish(SERIAL, reply()) == first_tool_call(SERIAL, reply())
    assert chat.wrap(SERIAL, stream()).feed(b"x") == serial_decoder(SERIAL, stream()).feed(b"x")
    inner = stream()
    assert chat.wrap(PARALLEL[0], inner) is inner  # no flag, no single stop sequence: nothing wraps it
    assert OPERATIONS["embeddings"].wrap is None and OPERATIONS["completions"].wrap is None
