"""Bedrock ConverseStream event frames -> canonical chunks, including the ugly cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway, UpstreamRateLimited, UpstreamUnavailable
from switchboard.providers.bedrock import SPEC, BedrockOptions
from switchboard.providers.target import Target
from switchboard.upstream.eventstream import encode_message

TARGET = Target("claude", "anthropic.claude-3-haiku-20240307-v1:0", "aws", "bedrock", "http://x",
                BedrockOptions(aws_region="us-east-1"), Timeouts())


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(dict(headers), orjson.dumps({**payload, "p": "abcdef"}))


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(dict(headers), orjson.dumps({"message": message}))


def run(data: bytes, step: int | None = None) -> list[dict[str, Any]]:
    decoder = SPEC.adapter.chat_stream({"stream": True}, TARGET)
    step = step or len(data)
    chunks = [c for i in range(0, len(data), step) for c in decoder.feed(data[i : i + step])]
    return chunks + decoder.close()


USAGE = {"inputTokens": 20, "outputTokens": 4, "totalTokens": 24, "cacheReadInputTokens": 8}
TEXT_STREAM = b"".join([
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "end_turn"}),
    event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 100}}),
])


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


@pytest.mark.parametrize("step", [None, 1, 7])
def test_text_stream(step: int | None) -> None:
    chunks = run(TEXT_STREAM, step)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 28, "completion_tokens": 4, "total_tokens": 32,
                                   "prompt_tokens_details": {"cached_tokens": 8}}
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["object"] == "chat.completion.chunk"
    assert all(c["model"] == TARGET.model for c in chunks)


def test_text_then_two_tool_calls_get_their_own_indices() -> None:
    data = b"".join([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockStart", {"contentBlockIndex": 1,
                                    "start": {"toolUse": {"toolUseId": "tu_1", "name": "get_weather"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("contentBlockStart", {"contentBlockIndex": 2,
                                    "start": {"toolUse": {"toolUseId": "tu_2", "name": "now"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}}),
        event("contentBlockStop", {"contentBlockIndex": 2}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": USAGE}),
    ])
    chunks = run(data, 5)
    assert deltas(chunks)[1:-1] == [
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "tu_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "tu_2", "type": "function",
                         "function": {"name": "now", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": ""}}]},
        # No input came for "now": its arguments are completed to "{}" when its block stops.
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_missing_usage_ends_without_a_usage_chunk() -> None:
    metadata = event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 100}})
    data = TEXT_STREAM[: TEXT_STREAM.rindex(metadata)]
    chunks = run(data)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in c for c in chunks)


def test_unknown_events_are_ignored() -> None:
    data = b"".join([
        event("messageStart", {"role": "assistant"}),
        event("somethingNew", {"x": 1}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"citation": {"x": 1}}}),
        event("messageStop", {"stopReason": "max_tokens"}),
    ])
    chunks = run(data)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_truncated_stream_raises_on_close() -> None:
    cut = TEXT_STREAM[: len(TEXT_STREAM) // 2]
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    assert decoder.feed(cut)  # the complete events still come through
    with pytest.raises(UpstreamBadGateway, match="ended the stream"):
        decoder.close()


def test_stream_without_message_stop_raises_on_close() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    decoder.feed(event("messageStart", {"role": "assistant"}))
    with pytest.raises(UpstreamBadGateway, match="before the response was complete"):
        decoder.close()


@pytest.mark.parametrize(("kind", "cls", "status"), [
    ("throttlingException", UpstreamRateLimited, 429),
    ("serviceUnavailableException", UpstreamUnavailable, 503),
    ("modelStreamErrorException", UpstreamBadGateway, 502),
    ("internalServerException", UpstreamBadGateway, 502),
])
def test_exception_frame_mid_stream_raises(kind: str, cls: type[Exception], status: int) -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    assert decoder.feed(TEXT_STREAM[: TEXT_STREAM.index(event("contentBlockStop", {"contentBlockIndex": 0}))])
    with pytest.raises(cls) as err:
        decoder.feed(exception(kind, "it broke"))
    assert getattr(err.value, "status", None) == status


def test_validation_exception_frame_keeps_context_length_code() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    with pytest.raises(Exception) as err:
        decoder.feed(exception("validationException", "Input is too long for requested model."))
    assert getattr(err.value, "code", None) == "context_length_exceeded"


def test_unmodeled_error_frame_raises() -> None:
    frame = encode_message({":message-type": "error", ":error-code": "InternalFailure",
                            ":error-message": "An internal error occurred."}, b"")
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.chat_stream({}, TARGET).feed(frame)


def test_corrupted_frame_is_an_invalid_stream() -> None:
    bad = bytearray(TEXT_STREAM)
    bad[-2] ^= 0xFF  # inside the last message's CRC
    with pytest.raises(UpstreamBadGateway, match="invalid event stream"):
        run(bytes(bad))


def test_non_json_payload_is_an_invalid_stream() -> None:
    frame = encode_message({":event-type": "messageStart", ":message-type": "event"}, b"<html>")
    with pytest.raises(UpstreamBadGateway, match="invalid stream event"):
        SPEC.adapter.chat_stream({}, TARGET).feed(frame)


def test_tool_input_without_its_start_is_an_invalid_stream() -> None:
    frame = event("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}})
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.chat_stream({}, TARGET).feed(frame)


@pytest.mark.parametrize("payload", [
    {"contentBlockIndex": 0, "delta": "text"},
    {"contentBlockIndex": 0, "delta": ["text"]},
    {"contentBlockIndex": 0, "start": "toolUse"},
])
def test_a_delta_or_start_that_is_not_an_object_is_skipped(payload: dict[str, Any]) -> None:
    kind = "contentBlockStart" if "start" in payload else "contentBlockDelta"
    frames = TEXT_STREAM.split(event("contentBlockStop", {"contentBlockIndex": 0}))
    stop = event("contentBlockStop", {"contentBlockIndex": 0})
    chunks = run(frames[0] + event(kind, payload) + stop + frames[1])
    assert deltas(chunks)[1:3] == [{"content": "Hel"}, {"content": "lo"}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("fragment", [{"city": "Paris"}, 5, ["x"]])
def test_tool_input_that_is_not_a_string_is_an_invalid_stream(fragment: Any) -> None:
    # Relayed, it would reach the caller as arguments that are not a string (not OpenAI's shape).
    start = event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "t1", "name": "weather"}}})
    piece = event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": fragment}}})
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    assert decoder.feed(event("messageStart", {"role": "assistant"}) + start)
    with pytest.raises(UpstreamBadGateway, match="tool input that is not a string"):
        decoder.feed(piece)


def test_chunks_before_an_exception_frame_in_the_same_read_are_delivered_first() -> None:
    data = TEXT_STREAM[: TEXT_STREAM.index(event("contentBlockStop", {"contentBlockIndex": 0}))]
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    chunks = decoder.feed(data + exception("throttlingException", "slow down"))
    assert deltas(chunks)[1:] == [{"content": "Hel"}, {"content": "lo"}]
    with pytest.raises(UpstreamRateLimited):
        decoder.close()
    with pytest.raises(UpstreamRateLimited):
        decoder.feed(b"")


def reasoning(delta: dict[str, Any]) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": delta}})


def test_reasoning_deltas_become_reasoning_content_then_the_signature() -> None:
    data = b"".join([
        event("messageStart", {"role": "assistant"}),
        reasoning({"text": "Let me "}),
        reasoning({"text": "think"}),
        reasoning({"signature": "c2ln"}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"reasoningContent": {
            "redactedContent": "ZW5j"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Hi"}}),
        event("messageStop", {"stopReason": "end_turn"}),
    ])
    assert deltas(run(data)) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Let me "},
        {"reasoning_content": "think"},
        # Each block names its place among the reply's thinking blocks, as tool call deltas do.
        {"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "", "signature": "c2ln"}]},
        {"thinking_blocks": [{"index": 1, "type": "redacted_thinking", "data": "ZW5j"}]},
        {"content": "Hi"},
        {},
    ]


def test_claude_stop_sequence_is_reported_on_the_finish_chunk() -> None:
    data = b"".join([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        event("messageStop", {"stopReason": "stop_sequence",
                              "additionalModelResponseFields": {"stop_sequence": "END"}}),
    ])
    finish = run(data)[-1]["choices"][0]
    assert (finish["finish_reason"], finish["stop_sequence"]) == ("stop", "END")
    plain = run(b"".join([event("messageStart", {"role": "assistant"}),
                          event("messageStop", {"stopReason": "stop_sequence"})]))[-1]["choices"][0]
    assert plain["finish_reason"] == "stop" and plain["stop_sequence"] is None  # matched, unnamed
