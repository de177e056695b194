"""Anthropic SSE -> canonical chunks (providers/anthropic/stream.py).

The golden streams mirror the examples of https://platform.claude.com/docs/en/build-with-claude/streaming
(text, tool use with input_json_delta, ping, error events).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway, UpstreamRateLimited, UpstreamUnavailable
from switchboard.providers.anthropic import SPEC, AnthropicOptions
from switchboard.providers.anthropic.request import JSON_TOOL
from switchboard.providers.target import Target

TARGET = Target(
    name="claude",
    model="claude-sonnet-4-5",
    provider="anthropic-main",
    provider_type="anthropic",
    api_base="https://api.anthropic.com",
    options=AnthropicOptions(),
    timeouts=Timeouts(),
)


def ev(data: dict[str, Any], name: str | None = None) -> bytes:
    return b"event: " + (name or data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def start(**usage: int) -> bytes:
    return ev(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-5-20250929",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage or {"input_tokens": 25, "output_tokens": 1},
            },
        }
    )


def block_start(index: float, block: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_start", "index": index, "content_block": block})


def text_delta(index: float, text: str) -> bytes:
    return ev({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})


def json_delta(index: float, piece: str) -> bytes:
    return ev(
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": piece},
        }
    )


def block_stop(index: float) -> bytes:
    return ev({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, **usage: int) -> bytes:
    return ev(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage or {"output_tokens": 15},
        }
    )


PING = ev({"type": "ping"})
STOP = ev({"type": "message_stop"})


def decode(*events: bytes, split: int | None = None) -> list[dict[str, Any]]:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    data = b"".join(events)
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    chunks = [c for p in pieces for c in decoder.feed(p)]
    return chunks + decoder.close()


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


TEXT_STREAM = (
    start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta(0, "Hello"),
    text_delta(0, "!"),
    block_stop(0),
    message_delta("end_turn"),
    STOP,
)


def test_text_stream_golden() -> None:
    chunks = decode(*TEXT_STREAM)
    for c in chunks:
        assert c["id"] == "msg_1"
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == "claude-sonnet-4-5-20250929"
        assert isinstance(c["created"], int)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({"content": "!"}, None),
        ({}, "stop"),
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0},
    }


@pytest.mark.parametrize("split", [1, 7, 64])
def test_any_split_gives_the_same_chunks(split: int) -> None:
    def strip(chunks: list[dict[str, Any]]) -> list[Any]:
        return [{k: v for k, v in c.items() if k != "created"} for c in chunks]

    assert strip(decode(*TEXT_STREAM, split=split)) == strip(decode(*TEXT_STREAM))


def test_crlf_line_endings() -> None:
    data = b"".join(TEXT_STREAM).replace(b"\n", b"\r\n")
    assert [d for d, _ in deltas(decode(data))][1:3] == [{"content": "Hello"}, {"content": "!"}]


def test_tool_use_stream_indices_follow_tool_use_blocks() -> None:
    chunks = decode(
        start(input_tokens=10, cache_read_input_tokens=90, cache_creation_input_tokens=5, output_tokens=1),
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Checking both."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
        PING,
        json_delta(1, ""),
        json_delta(1, '{"city": '),
        json_delta(1, '"Paris"}'),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}),
        json_delta(2, '{"tz":"UTC"}'),
        block_stop(2),
        message_delta(
            "tool_use",
            input_tokens=10,
            cache_read_input_tokens=90,
            cache_creation_input_tokens=5,
            output_tokens=40,
        ),
        STOP,
    )
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Checking both."}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_B",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"UTC"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 105,
        "completion_tokens": 40,
        "total_tokens": 145,
        "prompt_tokens_details": {"cached_tokens": 90, "cache_creation_tokens": 5},
    }


def test_tool_without_input_deltas_gets_complete_arguments() -> None:
    chunks = decode(
        start(),
        block_start(0, {"type": "tool_use", "id": "toolu_A", "name": "now", "input": {}}),
        block_stop(0),
        message_delta("tool_use"),
        STOP,
    )
    args = "".join(
        d["tool_calls"][0]["function"]["arguments"] for d, _ in deltas(chunks) if "tool_calls" in d
    )
    assert args == "{}"


def test_emulated_json_tool_streams_as_content() -> None:
    chunks = decode(
        start(),
        block_start(0, {"type": "tool_use", "id": "toolu_J", "name": JSON_TOOL, "input": {}}),
        json_delta(0, '{"answer"'),
        json_delta(0, ': "yes"}'),
        block_stop(0),
        message_delta("tool_use"),
        STOP,
    )
    pairs = deltas(chunks)
    assert "".join(d.get("content", "") for d, _ in pairs) == '{"answer": "yes"}'
    assert all("tool_calls" not in d for d, _ in pairs)
    assert pairs[-1] == ({}, "stop")


def test_unknown_events_are_ignored_and_thinking_is_reasoning() -> None:
    chunks = decode(
        start(),
        block_start(0, {"type": "thinking", "thinking": ""}),
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "s"},
            }
        ),
        block_stop(0),
        ev({"type": "some_future_event", "x": 1}),
        block_start(1, {"type": "text", "text": ""}),
        ev({"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}}),
        text_delta(1, "42"),
        block_stop(1),
        message_delta("end_turn"),
        STOP,
    )
    assert [d for d, _ in deltas(chunks)] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hmm"},
        {"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "", "signature": "s"}]},
        {"content": "42"},
        {},
    ]


def test_overloaded_error_mid_stream() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    first = decoder.feed(start() + block_start(0, {"type": "text", "text": ""}) + text_delta(0, "Hel"))
    assert [d for d, _ in deltas(first)] == [{"role": "assistant", "content": ""}, {"content": "Hel"}]
    with pytest.raises(UpstreamUnavailable) as err:
        decoder.feed(ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert err.value.status == 503
    assert "Overloaded" in err.value.message


def test_error_in_the_same_read_as_content_is_raised_after_the_content() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    data = (
        start()
        + block_start(0, {"type": "text", "text": ""})
        + text_delta(0, "Hel")
        + ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    assert [d for d, _ in deltas(decoder.feed(data))] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
    ]
    with pytest.raises(UpstreamUnavailable):
        decoder.close()
    with pytest.raises(UpstreamUnavailable):
        decoder.feed(b"")


def test_other_errors_mid_stream() -> None:
    with pytest.raises(UpstreamRateLimited):
        decode(start(), ev({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}))
    with pytest.raises(UpstreamBadGateway):
        decode(
            start(), ev({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
        )
    with pytest.raises(UpstreamBadGateway):
        decode(start(), ev({"type": "error"}))


def test_truncated_stream_raises() -> None:
    with pytest.raises(UpstreamBadGateway, match="before the message was complete"):
        decode(start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hel"))


def test_truncated_in_the_middle_of_an_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway):
        decode(start(), b'event: content_block_delta\ndata: {"type": "content_block_del')


def test_missing_message_stop_after_message_delta_still_completes() -> None:
    chunks = decode(*TEXT_STREAM[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 15


def test_missing_usage_and_message_delta() -> None:
    chunks = decode(
        ev({"type": "message_start", "message": {"id": "msg_2", "content": [], "model": "m"}}),
        block_start(0, {"type": "text", "text": "Hi"}),
        block_stop(0),
        STOP,
    )
    assert deltas(chunks)[1:] == [({"content": "Hi"}, None), ({}, "stop")]
    assert chunks[-1]["usage"]["total_tokens"] == 0


def test_events_after_message_stop_are_ignored() -> None:
    chunks = decode(*TEXT_STREAM, text_delta(0, "late"))
    assert all(d.get("content") != "late" for d, _ in deltas(chunks))


def test_invalid_json_event_is_502() -> None:
    with pytest.raises(UpstreamBadGateway):
        decode(start(), b"event: content_block_delta\ndata: {not json\n\n")


def text_then_lookup(text: str, arguments: str) -> list[tuple[dict[str, Any], str | None]]:
    """The deltas of a text block, then a tool_use block calling "lookup" (toolu_1)."""
    return [
        ({"content": text}, None),
        ({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                          "function": {"name": "lookup", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}, None),
        ({}, "tool_calls"),
    ]


def test_a_whole_number_float_block_index_names_its_block() -> None:
    # 0.0 and 1.0, from a server that writes its numbers as floats, are blocks 0 and 1.
    call = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
    chunks = decode(start(), block_start(0.0, {"type": "text", "text": ""}), text_delta(0.0, "Hi"),
                    block_stop(0.0), block_start(1.0, call), json_delta(1.0, '{"q": 1}'),
                    block_stop(1.0), message_delta("tool_use"), STOP)
    assert deltas(chunks)[1:] == text_then_lookup("Hi", '{"q": 1}')


@pytest.mark.parametrize("index", [1.5, -1, True, "0", None])
def test_a_block_start_whose_index_is_no_whole_number_is_invalid(index: Any) -> None:
    with pytest.raises(UpstreamBadGateway, match="invalid stream event"):
        decode(start(), block_start(index, {"type": "text", "text": ""}), text_delta(0, "Hi"))


@pytest.mark.parametrize("value", [5, ["Hi"], {"text": "Hi"}, True])
def test_text_of_the_wrong_type_is_read_as_absent(value: Any) -> None:
    # Never relayed as content, reasoning or arguments (each a string in the canonical chunk).
    call = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
    chunks = decode(
        start(),
        block_start(0, {"type": "thinking", "thinking": value}),
        ev({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": value}}),
        block_stop(0),
        block_start(1, {"type": "text", "text": value}),
        ev({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": value}}),
        text_delta(1, "ok"),
        block_stop(1),
        block_start(2, call),
        ev({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": value}}),
        json_delta(2, "{}"),
        block_stop(2),
        message_delta("tool_use"),
        STOP,
    )
    assert deltas(chunks)[1:] == text_then_lookup("ok", "{}")


@pytest.mark.parametrize("value", [5, ["msg_1"], {"id": "msg_1"}, True])
def test_an_id_or_model_of_the_wrong_type_is_read_as_absent(value: Any) -> None:
    message = {"id": value, "type": "message", "role": "assistant", "content": [], "model": value,
               "usage": {"input_tokens": 25, "output_tokens": 1}}
    chunks = decode(ev({"type": "message_start", "message": message}), *TEXT_STREAM[1:])
    assert {(c["id"], c["model"]) for c in chunks} == {("", "claude-sonnet-4-5")}
