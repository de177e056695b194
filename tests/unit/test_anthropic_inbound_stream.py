"""Canonical chunk streams -> Anthropic Messages SSE events (golden sequences).

Event order per https://docs.anthropic.com/en/docs/build-with-claude/streaming.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.errors import RateLimited, UpstreamBadGateway
from switchboard.http.anthropic import MESSAGES

Event = tuple[str, dict[str, Any]]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def usage_chunk(prompt: int = 12, completion: int = 5, cached: int = 2) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def tool_delta(
    index: int, call_id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


async def _source(items: list[Any]) -> AsyncIterator[list[dict[str, Any]]]:
    # One chunk per batch, as when every upstream read holds a single event.
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield [item]


def parse(raw: bytes) -> list[Event]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        name, data = name_line[7:], orjson.loads(data_line[6:])
        assert data["type"] == name
        events.append((name, data))
    return events


def run(items: list[Any]) -> list[Event]:
    ctx = RequestContext("rid", "chat", MESSAGES, {}, b"", 0.0)
    ctx.request = {"model": "claude-gw", "messages": []}

    async def collect() -> bytes:
        return b"".join([piece async for piece in MESSAGES.encode_stream(ctx, _source(items))])

    return parse(asyncio.run(collect()))


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def test_text_stream_golden_sequence() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(finish="stop"),
            usage_chunk(),
        ]
    )
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert start["model"] == "up"  # the model the first chunk reports, as the OpenAI API answers
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 0  # unknown until the stream ends
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert events[5][1] == {"type": "content_block_stop", "index": 0}
    delta = events[6][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2,
    }


def test_text_then_two_tool_calls() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": "Let me look."}),
            chunk(tool_delta(0, "call_a", "get_weather")),
            chunk(tool_delta(0, args='{"city":')),
            chunk(tool_delta(0, args='"Paris"}')),
            chunk(tool_delta(1, "call_b", "get_time", '{"tz":"CET"}')),
            chunk(finish="tool_calls"),
            usage_chunk(),
        ]
    )
    assert names(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}},
    }
    partial = [
        e[1]["delta"]["partial_json"]
        for e in events
        if e[1].get("index") == 1 and e[0] == "content_block_delta"
    ]
    assert "".join(partial) == '{"city":"Paris"}'
    assert events[9][1]["index"] == 2
    assert events[9][1]["content_block"]["name"] == "get_time"
    assert events[10][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"tz":"CET"}'}
    assert events[12][1]["delta"]["stop_reason"] == "tool_use"


def _blocks_in_order(events: list[Event]) -> list[tuple[str, str]]:
    """Each block's name and arguments, checking every delta lands in the open block."""
    open_index, blocks = None, []
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
            blocks.append([data["content_block"].get("name", ""), ""])
        elif name == "content_block_delta":
            assert data["index"] == open_index, "a delta to a block that is not open"
            blocks[-1][1] += data["delta"].get("partial_json", "")
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    return [(n, a) for n, a in blocks]


def test_interleaved_parallel_tool_calls_never_delta_a_closed_block() -> None:
    # Some OpenAI-compatible servers start every call before sending any arguments.
    events = run([
        chunk(tool_delta(0, "call_a", "get_weather")),
        chunk(tool_delta(1, "call_b", "get_time")),
        chunk(tool_delta(0, args='{"city":')),
        chunk(tool_delta(1, args='{"tz":')),
        chunk(tool_delta(0, args='"Paris"}')),
        chunk(tool_delta(1, args='"CET"}')),
        chunk(finish="tool_calls"),
        usage_chunk(),
    ])
    assert _blocks_in_order(events) == [("get_weather", '{"city":"Paris"}'), ("get_time", '{"tz":"CET"}')]
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["id"] for s in starts] == ["call_a", "call_b"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_sequential_tool_calls_stream_as_they_come() -> None:
    # A call whose arguments are complete is closed when the next one starts (not held).
    events = run([
        chunk(tool_delta(0, "call_a", "f", '{"x":1}')),
        chunk(tool_delta(1, "call_b", "g")),
        chunk(tool_delta(1, args='{"y":')),
    ])
    assert names(events)[1:] == ["content_block_start", "ping", "content_block_delta", "content_block_stop",
                                 "content_block_start", "content_block_delta", "content_block_stop",
                                 "message_delta", "message_stop"]


def test_held_calls_are_flushed_before_text_that_follows() -> None:
    events = run([
        chunk(tool_delta(0, "call_a", "f")),
        chunk(tool_delta(1, "call_b", "g", '{"y":2}')),
        chunk(tool_delta(0, args='{"x":1}')),
        chunk({"content": "done"}),
        chunk(finish="stop"),
    ])
    assert _blocks_in_order(events) == [("f", '{"x":1}'), ("g", '{"y":2}'), ("", "")]

def test_tool_call_only_starts_at_index_zero() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": None, **tool_delta(0, "call_1", "f")}),
            chunk(tool_delta(0, args="{}")),
            chunk(finish="tool_calls"),
            usage_chunk(),
        ]
    )
    assert events[1][1]["index"] == 0
    assert events[1][1]["content_block"]["type"] == "tool_use"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_length_and_missing_usage() -> None:
    events = run([chunk({"content": "a b"}), chunk(finish="length")])
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 0
    assert names(events)[-1] == "message_stop"


def test_empty_stream_still_completes_the_message() -> None:
    assert names(run([])) == ["message_start", "message_delta", "message_stop"]


def test_error_before_any_content() -> None:
    events = run([RateLimited("slow down")])
    assert names(events) == ["message_start", "error"]
    assert events[1][1] == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_error_mid_stream_ends_without_message_stop() -> None:
    events = run([chunk({"content": "partial"}), UpstreamBadGateway("provider 'x' failed mid-stream: boom")])
    assert names(events) == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert events[-1][1]["error"] == {"type": "api_error", "message": "provider 'x' failed mid-stream: boom"}


def test_other_choices_are_ignored_and_refusal_is_text() -> None:
    other = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 1, "delta": {"content": "ignored"}, "finish_reason": None}],
    }
    events = run([other, chunk({"refusal": "No."}), chunk(finish="content_filter")])
    texts = [e[1]["delta"]["text"] for e in events if e[0] == "content_block_delta"]
    assert texts == ["No."]
    assert events[-2][1]["delta"]["stop_reason"] == "refusal"
