"""streamGenerateContent SSE -> canonical chunks, including ugly streams."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError, UpstreamBadGateway, UpstreamRateLimited
from switchboard.providers.gemini import SPEC, GeminiOptions
from switchboard.providers.target import Target

TARGET = Target(
    "g", "gemini-2.5-flash", "studio", "gemini", "https://example.test", GeminiOptions(), Timeouts()
)
USAGE = {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}


def sse(*events: Any, sep: bytes = b"\r\n\r\n") -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + sep for e in events)


def text_event(text: str, finish: str | None = None, usage: Any = None, index: int = 0) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": index}
    if finish:
        cand["finishReason"] = finish
    event: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    if usage:
        event["usageMetadata"] = usage
    return event


def decode(data: bytes, pieces: int = 1) -> list[dict[str, Any]]:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    size = max(1, len(data) // pieces)
    chunks = []
    for start in range(0, len(data), size):
        chunks.extend(decoder.feed(data[start : start + size]))
    return chunks + decoder.close()


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_text_stream(pieces: int) -> None:
    data = sse(text_event("Hel", usage={"promptTokenCount": 4}), text_event("lo", "STOP", USAGE))
    chunks = decode(data, pieces)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "stop"),
    ]
    assert all(c["id"] == "chatcmpl-r1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_lf_separators_and_final_event_without_blank_line() -> None:
    data = sse(text_event("a"), sep=b"\n\n") + b"data: " + orjson.dumps(text_event("b", "STOP", USAGE))
    assert [d for d, _ in deltas(decode(data))] == [
        {"role": "assistant", "content": "a"},
        {"content": "b"},
        {},
    ]


def test_tool_calls_get_indices_and_finish_tool_calls() -> None:
    def call(name: str) -> dict[str, Any]:
        return {"functionCall": {"name": name, "args": {"q": name}}}

    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me check."}]}}]}
    second = {"candidates": [{"content": {"role": "model", "parts": [call("a"), call("b")]}}]}
    third = {"candidates": [{"content": {"role": "model", "parts": [call("c")]}, "finishReason": "STOP"}]}
    out = deltas(decode(sse(first, second, third)))
    assert out[0] == ({"role": "assistant", "content": "Let me check."}, None)
    calls = [tc for d, _ in out for tc in d.get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0, 1, 2]
    assert [c["function"] for c in calls] == [
        {"name": n, "arguments": orjson.dumps({"q": n}).decode()} for n in "abc"
    ]
    assert len({c["id"] for c in calls}) == 3 and all(c["type"] == "function" for c in calls)
    assert out[-1] == ({}, "tool_calls")


def test_first_event_with_finish_only() -> None:
    event = {"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": {"promptTokenCount": 2}}
    chunks = decode(sse(event))
    assert deltas(chunks) == [({"role": "assistant"}, "content_filter")]
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


def test_blocked_prompt_in_stream() -> None:
    event = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 2},
    }
    assert deltas(decode(sse(event))) == [({"role": "assistant"}, "content_filter")]


def test_two_candidates() -> None:
    data = sse(
        text_event("x", index=0), text_event("y", "MAX_TOKENS", index=1), text_event("z", "STOP", index=0)
    )
    chunks = [c for c in decode(data) if c["choices"]]
    by_index: dict[int, list[Any]] = {}
    for c in chunks:
        choice = c["choices"][0]
        by_index.setdefault(choice["index"], []).append(
            (choice["delta"].get("content"), choice["finish_reason"])
        )
    assert by_index == {0: [("x", None), ("z", None), (None, "stop")], 1: [("y", None), (None, "length")]}


def test_missing_usage_sends_no_usage_chunk() -> None:
    chunks = decode(sse(text_event("a", "STOP")))
    assert all(c["choices"] for c in chunks)


def test_thoughts_are_reasoning_content() -> None:
    event = {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}]}}]}
    out = deltas(decode(sse(event, text_event("ok", "STOP"))))
    assert out[0] == ({"role": "assistant", "reasoning_content": "hmm"}, None)


def test_truncated_stream_raises() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    assert decoder.feed(sse(text_event("partial")))
    with pytest.raises(UpstreamBadGateway, match="ended the stream"):
        decoder.close()


def test_cut_inside_an_event_raises() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    decoder.feed(sse(text_event("a")) + b'data: {"candidates": [{"content"')
    with pytest.raises(UpstreamBadGateway):
        decoder.close()


def test_empty_stream_raises() -> None:
    with pytest.raises(UpstreamBadGateway):
        decode(b"")


def test_error_event_mid_stream_after_chunks_in_the_same_read() -> None:
    error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    chunks = decoder.feed(sse(text_event("a"), error, text_event("b", "STOP")))
    assert deltas(chunks) == [({"role": "assistant", "content": "a"}, None)]  # delivered before the error
    with pytest.raises(UpstreamRateLimited):
        decoder.close()


def test_error_event_first() -> None:
    error = {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    with pytest.raises(GatewayError) as info:
        decoder.feed(sse(error))
    assert info.value.status == 502 and "Internal error encountered." in info.value.message


def test_garbage_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway, match="invalid stream event"):
        decode(b"data: <html>\r\n\r\n")


@pytest.mark.parametrize("event", [
    {"candidates": 5, "responseId": "r1"},
    {"candidates": "text", "promptFeedback": "blocked"},
    {"candidates": [], "promptFeedback": ["blocked"]},
])
def test_fields_of_the_wrong_type_are_no_candidates(event: dict[str, Any]) -> None:
    assert deltas(decode(sse(event, text_event("ok", "STOP")))) == [
        ({"role": "assistant", "content": "ok"}, None), ({}, "stop"),
    ]


def test_logprobs_entries_that_are_not_objects_are_skipped() -> None:
    event = text_event("Hi", "STOP")
    event["candidates"][0]["logprobsResult"] = {
        "chosenCandidates": [5, {"token": "Hi", "logProbability": -0.1}, "x"],
        "topCandidates": "x",
    }
    chunks = [c for c in decode(sse(event)) if c["choices"]]
    assert chunks[0]["choices"][0]["logprobs"]["content"] == [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []},
    ]


def test_a_whole_number_float_candidate_index_names_its_candidate() -> None:
    # Candidates listed out of order, their indices written as floats: each keeps its own.
    first = {"candidates": [text_event("b", index=1)["candidates"][0] | {"index": 1.0},
                            text_event("a", index=0)["candidates"][0] | {"index": 0.0}]}
    last = {"candidates": [text_event("!", "STOP", index=1)["candidates"][0] | {"index": 1.0},
                           text_event("?", "STOP", index=0)["candidates"][0] | {"index": 0.0}]}
    chunks = [c for c in decode(sse(first, last)) if c["choices"]]
    text: dict[Any, str] = {}
    for c in chunks:
        choice = c["choices"][0]
        assert choice["index"].__class__ is int
        text[choice["index"]] = text.get(choice["index"], "") + (choice["delta"].get("content") or "")
    assert text == {0: "a?", 1: "b!"}


@pytest.mark.parametrize("index", [True, 1.5, "1"])
def test_a_candidate_index_of_the_wrong_type_is_its_place_in_the_list(index: Any) -> None:
    chunks = decode(sse({"candidates": [text_event("a", "STOP")["candidates"][0] | {"index": index}]}))
    assert [c["choices"][0]["index"] for c in chunks if c["choices"]] == [0, 0]


def test_a_function_name_or_args_of_the_wrong_type_is_read_as_absent() -> None:
    part = {"functionCall": {"name": ["f"], "args": ["x"]}}
    candidate = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
    event = {"candidates": [candidate]}
    [call] = [call for c in decode(sse(event)) if c["choices"]
              for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert call["function"] == {"name": "", "arguments": "{}"}
