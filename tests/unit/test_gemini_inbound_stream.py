"""Canonical chunks -> Gemini's streamGenerateContent events (http/gemini/stream.py)."""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.http.gemini.stream import StreamEncoder


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0, **extra: Any
) -> dict[str, Any]:
    choices = (
        []
        if delta is None and finish is None
        else [{"index": index, "delta": delta or {}, "finish_reason": finish}]
    )
    return {"id": "chatcmpl-xyz", "model": "up", "choices": choices, **extra}


def events(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\r\n\r\n")
    return [orjson.loads(part.removeprefix(b"data: ")) for part in data.split(b"\r\n\r\n") if part]


def test_text_deltas_of_a_batch_become_one_event() -> None:
    encoder = StreamEncoder("up", include_thoughts=True)
    first = events(
        encoder.feed(
            [
                chunk({"role": "assistant", "content": ""}),
                chunk({"reasoning_content": "hm"}),
                chunk({"reasoning_content": "m"}),
                chunk({"content": "Hel"}),
                chunk({"content": "lo"}),
            ]
        )
    )
    assert first == [
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": "hmm", "thought": True}, {"text": "Hello"}],
                        "role": "model",
                    },
                    "index": 0,
                }
            ],
            "modelVersion": "up",
            "responseId": "xyz",
        }
    ]
    assert encoder.feed([chunk({}, "stop")]) == b""
    assert encoder.feed([chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})]) == b""
    [last] = events(encoder.end())
    assert last == {
        "candidates": [
            {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
        "modelVersion": "up",
        "responseId": "xyz",
    }


def test_thoughts_are_left_out_unless_asked_for() -> None:
    encoder = StreamEncoder("up", include_thoughts=False)
    assert encoder.feed([chunk({"reasoning_content": "secret"})]) == b""
    [event] = events(encoder.feed([chunk({"content": "visible"})]))
    assert event["candidates"][0]["content"]["parts"] == [{"text": "visible"}]


def test_function_calls_are_sent_whole_with_the_finish() -> None:
    encoder = StreamEncoder("up", include_thoughts=False)
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert encoder.feed([chunk({"tool_calls": [start]})]) == b""
    assert (
        encoder.feed(
            [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Rome"}'}}]}),
            ]
        )
        == b""
    )
    second = {
        "index": 1,
        "id": "call_2",
        "function": {"name": "g", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "s"}},
    }
    encoder.feed([chunk({"tool_calls": [second]}), chunk({}, "tool_calls")])
    [last] = events(encoder.end())
    assert last["candidates"] == [
        {
            "content": {
                "parts": [
                    {"functionCall": {"id": "call_1", "name": "f", "args": {"city": "Rome"}}},
                    {"functionCall": {"id": "call_2", "name": "g", "args": {}}, "thoughtSignature": "s"},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert "usageMetadata" not in last


def test_a_truncated_call_is_malformed_and_an_unfinished_stream_has_no_finish() -> None:
    encoder = StreamEncoder("up", include_thoughts=False)
    encoder.feed(
        [chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a'}}]})]
    )
    [last] = events(encoder.end())
    assert last["candidates"][0]["finishReason"] == "MALFORMED_FUNCTION_CALL"
    cut = StreamEncoder("up", include_thoughts=False)
    cut.feed([chunk({"content": "par"})])
    [end] = events(cut.end())
    assert "finishReason" not in end["candidates"][0]


def test_several_candidates() -> None:
    encoder = StreamEncoder("up", include_thoughts=False)
    [event] = events(encoder.feed([chunk({"content": "a"}, index=0), chunk({"content": "b"}, index=1)]))
    assert [(c["index"], c["content"]["parts"]) for c in event["candidates"]] == [
        (0, [{"text": "a"}]),
        (1, [{"text": "b"}]),
    ]
    encoder.feed([chunk({}, "stop", index=0), chunk({}, "length", index=1)])
    [last] = events(encoder.end())
    assert [(c["index"], c["finishReason"]) for c in last["candidates"]] == [(0, "STOP"), (1, "MAX_TOKENS")]


def test_an_empty_stream_still_ends_with_an_event() -> None:
    [last] = events(StreamEncoder("up", include_thoughts=False).end())
    assert last["candidates"] == [] and last["modelVersion"] == "up" and last["responseId"]
