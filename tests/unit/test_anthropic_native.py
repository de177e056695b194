"""The same-dialect pass-through's pure half (providers/anthropic/native.py): the request sent as
it came, the reply and its usage, and a stream split into its events as they were."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError, InvalidRequest, UpstreamBadGateway
from switchboard.providers.anthropic import AnthropicOptions
from switchboard.providers.anthropic.native import NativeStream, native_message, native_request, output_text
from switchboard.providers.base import OUTPUT, PARTIAL, WIRE
from switchboard.providers.sse import MAX_EVENT_BYTES
from switchboard.providers.target import Target


def target(**options: Any) -> Target:
    return Target(
        name="claude",
        model="claude-sonnet-4-5",
        provider="anth",
        provider_type="anthropic",
        api_base="https://api.example.com",
        options=AnthropicOptions(**options),
        timeouts=Timeouts(),
    )


BODY: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 2000,
    "system": [{"type": "text", "text": "Rules", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}
    ],
    "drop_params": True,
}


def test_body_goes_as_sent_with_model_rewritten_and_gateway_fields_removed() -> None:
    upstream = native_request(orjson.dumps(BODY), {}, target())
    sent = orjson.loads(upstream.body)
    expected = {k: v for k, v in BODY.items() if k != "drop_params"}
    assert sent == {**expected, "model": "claude-sonnet-4-5"}
    assert list(sent) == list(expected)  # the caller's field order too
    assert upstream.url == "https://api.example.com/v1/messages" and upstream.method == "POST"
    assert upstream.stream is False


def test_stream_flag_and_headers() -> None:
    caller = {"anthropic-version": "2024-01-01", "anthropic-beta": "a-1, b-2", "x-api-key": "gateway-key"}
    upstream = native_request(orjson.dumps({**BODY, "stream": True}), caller, target())
    assert upstream.stream is True
    assert upstream.headers["anthropic-version"] == "2024-01-01"
    assert upstream.headers["anthropic-beta"] == "a-1, b-2"  # as the caller wrote it
    assert upstream.headers["Accept"] == "text/event-stream"
    assert "x-api-key" not in upstream.headers  # the gateway's key never goes upstream


def test_default_version_and_configured_betas() -> None:
    upstream = native_request(orjson.dumps(BODY), {}, target(anthropic_beta="fixed-1"))
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["anthropic-beta"] == "fixed-1"
    merged = native_request(
        orjson.dumps(BODY), {"anthropic-beta": "mine,fixed-1"}, target(anthropic_beta="fixed-1")
    )
    assert merged.headers["anthropic-beta"] == "mine,fixed-1"  # no beta twice
    both = native_request(orjson.dumps(BODY), {"anthropic-beta": "mine"}, target(anthropic_beta="fixed-1"))
    assert both.headers["anthropic-beta"] == "fixed-1,mine"


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        native_request(b"[1]", {}, target())


def test_reply_as_it_came_and_usage_in_the_canonical_shape() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "text", "text": "Hi"},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 7,
            "cache_read_input_tokens": 11,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 3},
            "output_tokens": 2,
        },
    }
    body, usage = native_message(orjson.dumps(message), target())
    assert body == message
    assert usage == {
        "prompt_tokens": 23,
        "completion_tokens": 2,
        "total_tokens": 25,
        "prompt_tokens_details": {
            "cached_tokens": 11,
            "cache_creation_tokens": 7,
            "cache_creation_1h_tokens": 3,
        },
    }
    with pytest.raises(UpstreamBadGateway):
        native_message(b'{"type": "message"}', target())


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


START = sse(
    "message_start",
    {
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 3,
                "cache_read_input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        }
    },
)
BLOCK = [
    sse(
        "content_block_start",
        {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    ),
    sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "sig-1"}}),
    sse("content_block_stop", {"index": 0}),
]
DELTA = sse(
    "message_delta",
    {"delta": {"stop_reason": "refusal", "stop_sequence": None}, "usage": {"output_tokens": 9}},
)
STOP = sse("message_stop", {})


def test_stream_events_relayed_byte_for_byte_with_usage_and_finish() -> None:
    stream = NativeStream(target())
    wire = START + b"".join(BLOCK) + DELTA + STOP
    chunks: list[dict[str, Any]] = []
    for k in range(0, len(wire), 7):  # reads that cut events anywhere
        chunks += stream.feed(wire[k : k + 7])
    chunks += stream.close()
    assert b"".join(c[WIRE] for c in chunks) == wire
    assert len(chunks) == 7  # one chunk per event
    assert chunks[0]["id"] == "msg_1" and chunks[0]["model"] == "claude-x"
    assert chunks[0]["usage"]["prompt_tokens"] == 13
    assert chunks[0]["usage"]["prompt_tokens_details"]["cached_tokens"] == 10
    assert chunks[0][PARTIAL] is True  # the usage so far: the call's comes with message_delta
    last_usage = chunks[5]["usage"]
    assert (last_usage["prompt_tokens"], last_usage["completion_tokens"]) == (13, 9)
    assert PARTIAL not in chunks[5]
    assert chunks[5]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]
    # Content events are not parsed: those carrying output are marked, their bytes kept as is.
    assert all(set(c) == {WIRE, OUTPUT} and c[OUTPUT] is c[WIRE] for c in chunks[1:4])
    assert set(chunks[4]) == {WIRE}  # content_block_stop


def test_the_output_of_marked_events_is_read_only_when_asked() -> None:
    tool = [
        sse("content_block_start", {"index": 1, "content_block": {
            "type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}}}),
        *(sse("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": p}})
          for p in ('{"city', '": "Paris"}')),
    ]
    text = [
        sse("content_block_start", {"index": 2, "content_block": {"type": "text", "text": ""}}),
        sse("content_block_delta", {"index": 2, "delta": {"type": "text_delta", "text": "Sunny."}}),
    ]
    stream = NativeStream(target())
    chunks = stream.feed(START + b"".join(BLOCK) + b"".join(tool) + b"".join(text))
    outputs = [c[OUTPUT] for c in chunks if OUTPUT in c]
    # Thinking, tool name and input, text; a signature is not output.
    assert "".join(output_text(o) for o in outputs) == 'hmget_weather{"city": "Paris"}Sunny.'
    assert output_text(b"event: content_block_delta\ndata: {nope\n\n") == ""
    unnamed = b"data: " + orjson.dumps({"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": "x"}}) + b"\n\n"
    [chunk] = NativeStream(target()).feed(unnamed)
    assert output_text(chunk[OUTPUT]) == "x"


def test_crlf_and_comments() -> None:
    stream = NativeStream(target())
    chunks = stream.feed(b": keep-alive\r\n\r\n" + START.replace(b"\n", b"\r\n"))
    assert len(chunks) == 1 and chunks[0][WIRE] == START


def test_a_crlf_split_between_reads_ends_one_line_not_the_event() -> None:
    stream = NativeStream(target())
    wire = START.replace(b"\n", b"\r\n")
    cr = wire.index(b"\r\n") + 1  # after the event line's CR, before its LF
    assert stream.feed(wire[:cr]) == []
    [chunk] = stream.feed(wire[cr:])
    assert chunk[WIRE] == START and chunk["id"] == "msg_1"


def test_an_event_that_never_ends_is_refused_past_the_bound() -> None:
    stream = NativeStream(target())
    stream.feed(b"event: content_block_delta\ndata: {\"text\":\"")
    with pytest.raises(UpstreamBadGateway, match="provider 'anth' sent a stream event longer than 16 MiB"):
        for _ in range(MAX_EVENT_BYTES // 65536 + 1):
            stream.feed(b"y" * 65536)


def test_error_event_after_good_events_is_raised_on_the_next_call() -> None:
    stream = NativeStream(target())
    error = sse("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    chunks = stream.feed(START + BLOCK[0] + error)
    assert len(chunks) == 2  # the error event itself is not relayed: the client gets the gateway's
    with pytest.raises(GatewayError) as exc:
        stream.feed(b"")
    assert exc.value.status == 503 and "Overloaded" in exc.value.message  # the adapter's mapping


def test_error_as_the_first_event_raises_at_once() -> None:
    error = sse("error", {"error": {"type": "api_error", "message": "boom"}})
    with pytest.raises(GatewayError) as exc:
        NativeStream(target()).feed(error)
    assert isinstance(exc.value, UpstreamBadGateway) and "boom" in exc.value.message


def test_a_stream_cut_before_the_message_ended_is_an_error() -> None:
    stream = NativeStream(target())
    stream.feed(START + BLOCK[0])
    with pytest.raises(UpstreamBadGateway):
        stream.close()
    finished = NativeStream(target())
    finished.feed(START + DELTA)
    assert finished.close() == []  # message_delta came: the answer is complete


def test_invalid_event_data() -> None:
    with pytest.raises(UpstreamBadGateway):
        NativeStream(target()).feed(b"event: message_start\ndata: {nope\n\n")


@pytest.mark.parametrize("block", [b"id: 1\n\n", b"retry: 3000\n\n", b"event: message_start\n\n",
                                   b"event: message_delta\nid: 7\n\n"])
def test_a_block_with_no_data_line_is_no_event_and_is_not_relayed(block: bytes) -> None:
    # As the event-stream rules say: not an invalid event (502), nothing to relay either.
    wire = START + b"".join(BLOCK) + DELTA + STOP
    stream = NativeStream(target())
    chunks = stream.feed(START + block + b"".join(BLOCK) + block + DELTA + STOP) + stream.close()
    assert b"".join(c[WIRE] for c in chunks) == wire
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("kind", [["message_delta"], {"type": "message_delta"}, 5])
def test_an_event_type_of_the_wrong_type_is_read_as_absent(kind: Any) -> None:
    # Not looked up as it came (a list is no set member: a TypeError, a 500): the event's name
    # stands for it, and an unnamed event is relayed unread.
    stream = NativeStream(target())
    odd = b"data: " + orjson.dumps({"type": kind}) + b"\n\n"
    named = b"event: message_delta\n" + odd
    chunks = stream.feed(START + odd + b"".join(BLOCK) + named + STOP) + stream.close()
    assert b"".join(c[WIRE] for c in chunks) == START + odd + b"".join(BLOCK) + named + STOP
    assert set(chunks[1]) == {WIRE}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
