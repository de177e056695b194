"""Mistral SSE -> canonical chunks.

Mistral streams OpenAI-like ``chat.completion.chunk`` events ended by ``data: [DONE]``, with
``usage`` on the last chunk (the one carrying the finish_reason) and each tool call whole in one
delta (CompletionChunk / CompletionResponseStreamChoice / DeltaMessage in mistralai/client-python).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway
from switchboard.providers.mistral import SPEC, Options
from switchboard.providers.target import Target

TARGET = Target(
    name="mistral-small",
    model="mistral-small-latest",
    provider="mi",
    provider_type="mistral",
    api_base="https://api.mistral.ai/v1",
    options=Options(),
    timeouts=Timeouts(),
)
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
CANONICAL_USAGE = {**USAGE, "prompt_tokens_details": {"cached_tokens": 0}}
DONE = b"data: [DONE]\n\n"


def event(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
    data: dict[str, Any] = {
        "id": "7c1b",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "mistral-small-latest",
        "choices": choices,
    }
    if usage is not None:
        data["usage"] = usage
    return b"data: " + orjson.dumps(data) + b"\n\n"


def delta(d: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": d, "finish_reason": finish}


def decode(*parts: bytes) -> list[dict[str, Any]]:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    out: list[dict[str, Any]] = []
    for part in parts:
        out.extend(decoder.feed(part))
    out.extend(decoder.close())
    return out


TEXT_STREAM = [
    event([delta({"role": "assistant", "content": ""})]),
    event([delta({"content": "Hello"})]),
    event([delta({"content": " there"})]),
    event([delta({"content": ""}, "stop")], USAGE),
    DONE,
]


def test_text_stream() -> None:
    chunks = decode(*TEXT_STREAM)
    assert [c["choices"] for c in chunks] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": " there"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "7c1b" for c in chunks)
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["usage"] == CANONICAL_USAGE


def test_any_byte_split_gives_the_same_chunks() -> None:
    whole = b"".join(TEXT_STREAM)
    expected = decode(whole)
    for size in (1, 7, 64):
        assert decode(*(whole[i : i + size] for i in range(0, len(whole), size))) == expected


def test_crlf_line_endings() -> None:
    whole = b"".join(TEXT_STREAM).replace(b"\n", b"\r\n")
    assert [c["choices"] for c in decode(whole)] == [c["choices"] for c in decode(*TEXT_STREAM)]


def test_whole_tool_calls_get_indices() -> None:
    chunks = decode(
        event([delta({"role": "assistant", "content": ""})]),
        event(
            [
                delta(
                    {
                        "content": "",
                        "tool_calls": [
                            {
                                "id": "D681PevKs",
                                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                                "index": 0,
                            },
                            {
                                "id": "Q2w3E4r5T",
                                "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
                                "index": 0,
                            },
                        ],
                    }
                )
            ]
        ),
        event([delta({"content": ""}, "tool_calls")], USAGE),
        DONE,
    )
    calls = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert calls == [
        {
            "index": 0,
            "id": "D681PevKs",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "index": 1,
            "id": "Q2w3E4r5T",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_continuation_keeps_its_index() -> None:
    chunks = decode(
        event([delta({"tool_calls": [{"id": "D681PevKs", "function": {"name": "f", "arguments": '{"a"'}}]})]),
        event([delta({"tool_calls": [{"id": "null", "function": {"name": "", "arguments": ": 1}"}}]})]),
        event([delta({}, "tool_calls")]),
        DONE,
    )
    assert chunks[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": ": 1}"}}]


def test_null_arguments_are_read_as_none() -> None:
    # null is "no arguments" (as a missing member), never the text "null" in the call's JSON.
    chunks = decode(
        event([delta({"tool_calls": [{"id": "D681PevKs", "function": {"name": "now", "arguments": None}}]})]),
        event([delta({"tool_calls": [{"id": "null", "function": {"name": "", "arguments": None}}]})]),
        event([delta({}, "tool_calls")]),
        DONE,
    )
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "now", "arguments": ""}
    assert chunks[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": ""}}]


def test_choices_keep_their_own_tool_indices() -> None:
    call = {"id": "D681PevKs", "function": {"name": "f", "arguments": "{}"}}
    chunks = decode(
        event([delta({"tool_calls": [call]}, index=0)]),
        event([delta({"tool_calls": [{**call, "id": "Z681PevKs"}]}, index=1)]),
        event([delta({}, "tool_calls", 0), delta({}, "tool_calls", 1)], USAGE),
        DONE,
    )
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert chunks[1]["choices"][0]["index"] == 1
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0


def test_content_chunks_in_deltas() -> None:
    chunks = decode(
        event([delta({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]}]})]),
        event([delta({"content": [{"type": "text", "text": "4"}]}, "stop")]),
        DONE,
    )
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["", "4"]
    assert chunks[0]["choices"][0]["delta"]["reasoning_content"] == "hm"


def test_model_length_is_length() -> None:
    chunks = decode(event([delta({"content": "x"}, "model_length")]), DONE)
    assert chunks[0]["choices"][0]["finish_reason"] == "length"


def test_missing_usage_means_no_usage_chunk() -> None:
    chunks = decode(event([delta({"content": "x"})]), event([delta({}, "stop")]), DONE)
    assert all(c["choices"] for c in chunks)


def test_finish_without_done_is_complete() -> None:
    chunks = decode(event([delta({"content": "x"})]), event([delta({}, "stop")], USAGE))
    assert chunks[-1]["usage"] == CANONICAL_USAGE


def test_truncated_stream_raises() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    assert decoder.feed(event([delta({"content": "Hel"})])) != []
    decoder.feed(b'data: {"id": "7c1b", "choi')
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.close()
    assert "before it was complete" in exc.value.message


def test_error_event_mid_stream() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    decoder.feed(event([delta({"content": "Hel"})]))
    error = {
        "object": "error",
        "message": "Internal server error",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.feed(b"data: " + orjson.dumps(error) + b"\n\n")
    assert "Internal server error" in exc.value.message


def test_finish_reason_error_raises() -> None:
    with pytest.raises(UpstreamBadGateway):
        decode(event([delta({"content": "x"}, "error")]))


def test_garbage_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(b"data: <html>502 Bad Gateway</html>\n\n")
    assert "invalid stream event" in exc.value.message


def test_nothing_after_done() -> None:
    chunks = decode(*TEXT_STREAM, event([delta({"content": "late"})]))
    assert chunks[-1]["choices"] == []


def test_chunks_before_an_error_in_the_same_read_are_kept() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    error = {"object": "error", "message": "overloaded", "type": "internal_server_error"}
    out = decoder.feed(event([delta({"content": "Hel"})]) + b"data: " + orjson.dumps(error) + b"\n\n")
    assert [c["choices"][0]["delta"]["content"] for c in out] == ["Hel"]
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.close()
    assert "overloaded" in exc.value.message


@pytest.mark.parametrize("choice", [
    {"index": [0], "delta": {"content": "x"}, "finish_reason": None},
    {"index": 0, "delta": "x", "finish_reason": None},
    {"index": 0, "delta": 5, "finish_reason": None},
    {"index": 0, "delta": {"tool_calls": 5}, "finish_reason": None},
    {"index": 0, "delta": {"tool_calls": [{"id": "c1", "function": 5}]}, "finish_reason": None},
    {"index": 0, "delta": {}, "finish_reason": ["stop"]},
], ids=["index-list", "delta-str", "delta-int", "tool-calls-int", "function-int", "finish-list"])
def test_members_of_the_wrong_type_do_not_break_the_stream(choice: dict[str, Any]) -> None:
    # A chunk whose members have the wrong JSON types is read, not a TypeError (a 500).
    chunks = decode(event([delta({"role": "assistant", "content": "a"})]), event([choice]),
                    event([delta({"content": "b"}, "stop")], USAGE), DONE)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("a") and text.endswith("b")
    assert chunks[-1]["usage"]["total_tokens"] == 12


@pytest.mark.parametrize("reason", [5, ["stop"], {"type": "stop"}, True])
def test_a_finish_reason_that_is_not_a_string_is_read_as_absent(reason: Any) -> None:
    # As any member of the wrong JSON type is: null, never its text ("5", "['stop']") as a reason.
    chunks = decode(event([delta({"role": "assistant", "content": "a"})]),
                    event([{"index": 0, "delta": {"content": "b"}, "finish_reason": reason}]),
                    event([delta({}, "stop")], USAGE), DONE)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, "stop"]


def test_a_stream_whose_only_finish_reason_is_not_a_string_ends_unfinished() -> None:
    with pytest.raises(UpstreamBadGateway, match="before it was complete"):
        decode(event([delta({"role": "assistant", "content": "a"})]),
               event([{"index": 0, "delta": {}, "finish_reason": 5}], USAGE))


@pytest.mark.parametrize(("index", "read"), [(1, 1), (1.0, 1), (0.0, 0), (1.5, 0), (True, 0), (-1, 0),
                                             ("1", 0), (None, 0), (1e300, 0)])
def test_a_choice_index_is_a_whole_number_else_0(index: Any, read: int) -> None:
    call = {"id": "D681PevKs", "function": {"name": "f", "arguments": "{}"}}
    chunks = decode(event([{"index": index, "delta": {"content": "a", "tool_calls": [call]},
                            "finish_reason": "tool_calls"}]), DONE)
    [choice] = chunks[0]["choices"]
    assert choice["index"] == read and choice["index"].__class__ is int
    assert choice["delta"]["tool_calls"][0]["index"] == 0


@pytest.mark.parametrize("value", [5, {"text": "x"}, ["x"], True])
def test_text_and_names_of_the_wrong_type_are_read_as_absent(value: Any) -> None:
    # Never relayed as their Python text ("5", "{'text': 'x'}").
    content = [{"type": "text", "text": value}, {"type": "thinking", "thinking": value},
               {"type": "text", "text": "b"}]
    call = {"id": "D681PevKs", "function": {"name": value, "arguments": "{}"}}
    chunks = decode(event([delta({"role": "assistant", "content": value})]),
                    event([delta({"content": content})]),
                    event([delta({"tool_calls": [call]}, "tool_calls")], USAGE), DONE)
    first = "" if isinstance(value, list) else None  # a list is chunks, here with no text
    assert [c["choices"][0]["delta"] for c in chunks if c["choices"]] == [
        {"role": "assistant", "content": first}, {"content": "b"},
        {"tool_calls": [{"index": 0, "id": "D681PevKs", "type": "function",
                         "function": {"name": "", "arguments": "{}"}}]},
    ]
