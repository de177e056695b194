"""Canonical chunks -> Responses events: the order, the items, sequence numbers, the end."""

from __future__ import annotations

import json
from typing import Any

from switchboard.config.schema import ResponsesConfig
from switchboard.context import RequestContext
from switchboard.http.errors import ServerShuttingDown
from switchboard.http.responses.api import ResponsesAPI
from switchboard.http.responses.request import translate
from switchboard.http.responses.response import assistant_messages, from_chat, skeleton
from switchboard.http.responses.state import Responses
from switchboard.http.responses.stream import StreamEncoder

BASE = skeleton("resp_1", 1, "m", {"instructions": None})


def _events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            name, payload = block.split("\n")
            event = json.loads(payload.removeprefix("data: "))
            assert name == f"event: {event['type']}"
            out.append(event)
    return out


def _chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        chunk = {"choices": [], "usage": usage}
    return chunk


def test_reasoning_text_and_calls_in_order() -> None:
    enc = StreamEncoder(BASE)
    data = enc.start()
    for chunk in (
        _chunk({"reasoning_content": "think"}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),
        _chunk(finish="tool_calls"),
        _chunk(
            usage={
                "prompt_tokens": 3,
                "completion_tokens": 4,
                "total_tokens": 7,
                "completion_tokens_details": {"reasoning_tokens": 2},
            }
        ),
    ):
        data += enc.feed(chunk)
    data += enc.end()
    events = _events(data)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["arguments"] == '{"a":1}' and final["output"][2]["call_id"] == "c1"
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2, 3]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 2
    assert final["status"] == "completed" and enc.final == final


def test_length_ends_incomplete_and_failure_ends_failed() -> None:
    enc = StreamEncoder(BASE)
    events = _events(enc.start() + enc.feed(_chunk({"content": "cut"}, "length")) + enc.end())
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    enc = StreamEncoder(BASE)
    events = _events(
        enc.start() + enc.feed(_chunk({"content": "par"})) + enc.failed("upstream_error", "boom")
    )
    assert [e["type"] for e in events][-3:] == [
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    # The SDK's ResponseError.code allows none of the gateway's codes: the nearest, and it in the message.
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream_error: boom"}
    enc = StreamEncoder(BASE)
    error = _events(enc.start() + enc.failed("rate_limit_exceeded", "slow down"))[-1]["response"]["error"]
    assert error == {"code": "rate_limit_exceeded", "message": "slow down"}


def test_complete_response_items_and_usage() -> None:
    body = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }
    response = from_chat(body, BASE)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message", "function_call"]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert response["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }
    assert response["status"] == "completed"


def test_shapes_validate_against_the_openai_sdk_types() -> None:
    """Strict validation (not the SDK's lenient construction) of every event and response."""
    import typing

    from openai.types.responses import Response, ResponseStreamEvent

    members = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
    by_type = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}

    class _Strict:
        @staticmethod
        def validate_python(event: dict[str, Any]) -> None:
            by_type[event["type"]].model_validate(event)

    events_type = _Strict()
    from switchboard.http.responses.request import translate

    echo = translate(
        {
            "model": "m",
            "input": "x",
            "instructions": "be brief",
            "metadata": {"a": "b"},
            "max_output_tokens": 100,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "text": {
                "format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}},
                "verbosity": "low",
            },
            "reasoning": {"effort": "low", "summary": "auto"},
            "user": "u",
        }
    ).echo
    base = skeleton("resp_1", 1, "m", echo)
    enc = StreamEncoder(base)
    data = enc.start()
    for chunk in (
        _chunk({"reasoning_content": "think"}),
        _chunk({"content": "Hi"}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}),
        _chunk(finish="tool_calls"),
        _chunk(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ):
        data += enc.feed(chunk)
    data += enc.end()
    for event in _events(data):
        events_type.validate_python(event)
    failed = StreamEncoder(base)
    for event in _events(
        failed.start() + failed.feed(_chunk({"content": "x"})) + failed.failed("server_error", "boom")
    ):
        events_type.validate_python(event)
    body = {
        "choices": [
            {
                "finish_reason": "length",
                "message": {"role": "assistant", "content": "cut", "reasoning_content": "r"},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    response = Response.model_validate(from_chat(body, base))
    assert response.output_text == "cut" and response.status == "incomplete"


def test_a_call_cut_by_max_output_tokens_is_incomplete_and_not_carried_over() -> None:
    cut_call = [
        _chunk({"content": "Sure."}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        _chunk(finish="length"),
    ]
    enc = StreamEncoder(BASE)
    data = enc.start() + b"".join(enc.feed(chunk) for chunk in cut_call) + enc.end()
    streamed = _events(data)[-1]["response"]
    body = {
        "choices": [
            {
                "finish_reason": "length",
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city":'}}
                    ],
                },
            }
        ]
    }
    for response in (streamed, from_chat(body, BASE)):
        assert response["status"] == "incomplete"
        assert [(item["type"], item["status"]) for item in response["output"]] == [
            ("message", "completed"),
            ("function_call", "incomplete"),
        ]
        assert assistant_messages(response["output"]) == [{"role": "assistant", "content": "Sure."}]


def test_a_call_a_failure_cut_is_not_carried_over() -> None:
    enc = StreamEncoder(BASE)
    enc.start()
    enc.feed(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}))
    cut = {"index": 1, "id": "c2", "function": {"name": "g", "arguments": '{"a'}}
    enc.feed(_chunk({"tool_calls": [cut]}))
    events = _events(enc.failed("upstream_error", "boom"))
    output = events[-1]["response"]["output"]
    assert [item["status"] for item in output] == ["completed", "incomplete"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert assistant_messages(output) == [{"role": "assistant", "content": None, "tool_calls": [call]}]


def test_a_function_name_in_a_later_chunk_names_the_call() -> None:
    """A call's first chunk without its name (the id only), the name in the next: the item was
    left named "" in its done events and in the final response."""
    enc = StreamEncoder(BASE)
    data = enc.start()
    for chunk in (
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"name": "ignored", "arguments": "1}"}}]}),
        _chunk(finish="tool_calls"),
    ):
        data += enc.feed(chunk)
    events = _events(data + enc.end())
    [args_done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    [item_done] = [e for e in events if e["type"] == "response.output_item.done"]
    assert args_done["name"] == item_done["item"]["name"] == "get_weather"
    assert args_done["arguments"] == '{"a":1}'
    assert events[-1]["response"]["output"][0]["name"] == "get_weather"


async def test_an_error_event_written_apart_continues_the_numbering() -> None:
    """A stream cut at shutdown while a send waits on its client: the encoder is closed, and the
    endpoint writes the API's error event apart from it. It was numbered 0 after numbered events."""
    api = ResponsesAPI(Responses(ResponsesConfig(), lambda: None))
    ctx = RequestContext("rid", "chat", api, {}, b"", 0.0)
    translated = translate({"model": "m", "input": "hi", "stream": True})
    ctx.request = translated.request
    api.responses.begin(ctx, translated)

    async def batches() -> Any:
        for text in ("Hel", "lo", "there"):
            yield [{"model": "m", **_chunk({"content": text})}]

    stream = api.encode_stream(ctx, batches())
    sent = _events(await anext(stream) + await anext(stream))
    await stream.aclose()  # as the endpoint's cancelled send leaves it
    [error] = _events(api.encode_stream_error(ServerShuttingDown("the server is shutting down"), ctx))
    assert error["type"] == "error" and error["code"] == "server_shutting_down"
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    assert error["sequence_number"] == len(sent)
    # Without the stream's request (no numbered events known): the first number.
    assert _events(api.encode_stream_error(ServerShuttingDown("stop")))[0]["sequence_number"] == 0


def test_interleaved_calls_are_written_one_at_a_time_and_whole() -> None:
    """Call 0, call 1 (without its id yet), call 0 again, text, call 1's id: each call's events
    in one run, done after its last delta; the call without an id until the end is given one."""
    enc = StreamEncoder(BASE)
    data = enc.start()
    for chunk in (
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": '{"b":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"arguments": "2}"}}]}),
        _chunk({"tool_calls": [{"index": 2, "function": {"name": "h", "arguments": "{}"}}]}),
        _chunk(finish="tool_calls"),
    ):
        data += enc.feed(chunk)
    events = _events(data + enc.end())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    items = [e for e in events if e.get("output_index") is not None]
    runs = [e["output_index"] for e in items]
    assert runs == sorted(runs)  # one item at a time
    output = events[-1]["response"]["output"]
    assert [(i["call_id"], i["arguments"]) for i in output[:2]] == [("c1", '{"a":1}'), ("c2", '{"b":2}')]
    assert output[2]["call_id"].startswith("call_") and all(i["status"] == "completed" for i in output)
    for index, item in enumerate(output):
        own = [e for e in items if e["output_index"] == index]
        assert own[0]["item"]["call_id"] == item["call_id"] and own[0]["item"]["name"] == item["name"]
        assert "".join(e.get("delta", "") for e in own) == own[-2]["arguments"] == item["arguments"]


def test_a_failure_with_held_calls_cuts_the_last_one_written_to() -> None:
    enc = StreamEncoder(BASE)
    enc.start()
    enc.feed(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}]}))
    enc.feed(_chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]}))
    enc.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a'}}]}))
    events = _events(enc.failed("upstream_error", "boom"))
    output = events[-1]["response"]["output"]
    assert [(i["call_id"], i["status"]) for i in output] == [("c1", "incomplete"), ("c2", "completed")]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1]


def test_a_native_stream_failing_after_an_item_writes_only_response_failed() -> None:
    """The items a native deployment streamed were passed on as sent: a gateway failure after
    them adds no events of its own for them."""
    enc = StreamEncoder(BASE, {"id": "resp_own"})
    item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}]}
    data = enc.feed({"native": {"type": "response.created", "sequence_number": 0, "response": BASE}})
    data += enc.feed({"native": {"type": "response.output_item.done", "sequence_number": 5,
                                 "output_index": 0, "item": item}})
    events = _events(data + enc.failed("upstream_timeout", "slow"))
    assert [e["type"] for e in events] == ["response.created", "response.output_item.done", "response.failed"]
    assert events[-1]["response"]["output"] == [item]
