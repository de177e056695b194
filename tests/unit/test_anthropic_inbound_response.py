"""Canonical chat.completion -> Anthropic Message, and gateway errors -> Anthropic error bodies.

Shapes follow https://docs.anthropic.com/en/api/messages and https://docs.anthropic.com/en/api/errors.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.context import RequestContext
from switchboard.errors import (
    AuthenticationFailed,
    GatewayError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    UnsupportedMediaType,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.http.anthropic import MESSAGES

USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 7,
    "total_tokens": 37,
    "prompt_tokens_details": {"cached_tokens": 10},
}


def ctx(model: str = "claude-via-gateway") -> RequestContext:
    c = RequestContext("rid-1", "chat", MESSAGES, {}, b"", 0.0)
    c.request = {"model": model, "messages": []}
    return c


def completion(
    message: dict[str, Any], finish: str | None, usage: dict[str, Any] | None = USAGE
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-id",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def encode(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(MESSAGES.encode(ctx(), body))
    return out


def test_text_reply() -> None:
    msg = encode(completion({"role": "assistant", "content": "Hello!"}, "stop"))
    assert msg["id"].startswith("msg_")
    assert msg["type"] == "message"
    assert msg["role"] == "assistant"
    assert msg["model"] == "upstream-id"  # the upstream's model id, as the OpenAI API answers
    assert msg["content"] == [{"type": "text", "text": "Hello!"}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["stop_sequence"] is None
    assert msg["usage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
    }


def test_tool_calls_become_tool_use_blocks() -> None:
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            {
                "id": "call_3",
                "type": "function",
                "function": {"name": "broken", "arguments": '{"city": "Par'},
            },
            {"type": "function", "function": {"name": "listy", "arguments": "[1, 2]"}},
        ],
    }
    msg = encode(completion(message, "tool_calls"))
    assert msg["stop_reason"] == "tool_use"
    text, *tools = msg["content"]
    assert text == {"type": "text", "text": "Checking."}
    assert tools[0] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    assert tools[1]["input"] == {}
    assert tools[2]["input"] == {"_raw_arguments": '{"city": "Par'}
    assert tools[3]["input"] == {"_raw_arguments": "[1, 2]"}
    assert tools[3]["id"].startswith("toolu_")


@pytest.mark.parametrize(
    ("finish", "has_tools", "expected"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("stop", True, "tool_use"),  # an upstream that says "stop" although it called tools
        (None, False, "end_turn"),
        ("something_new", False, "end_turn"),
    ],
)
def test_stop_reason(finish: str | None, has_tools: bool, expected: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if has_tools:
        message["tool_calls"] = [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    assert encode(completion(message, finish))["stop_reason"] == expected


def test_refusal_and_empty_and_content_parts() -> None:
    refused = encode(completion({"role": "assistant", "content": None, "refusal": "I can't help."}, "stop"))
    assert refused["content"] == [{"type": "text", "text": "I can't help."}]
    assert refused["stop_reason"] == "refusal"
    empty = encode(completion({"role": "assistant", "content": ""}, "stop"))
    assert empty["content"] == []
    parts = encode(
        completion(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url"},
                    {"type": "text", "text": "b"},
                ],
            },
            "stop",
        )
    )
    assert parts["content"] == [{"type": "text", "text": "ab"}]


def test_missing_usage_and_missing_choices_do_not_crash() -> None:
    msg = encode(completion({"role": "assistant", "content": "x"}, "stop", usage=None))
    assert msg["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    weird = encode({"choices": [], "usage": "nonsense"})
    assert weird["content"] == []
    assert weird["stop_reason"] == "end_turn"


def test_cache_creation_tokens_when_an_adapter_reports_them() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 50, "cache_creation_tokens": 30},
    }
    msg = encode(completion({"role": "assistant", "content": "x"}, "stop", usage))
    assert msg["usage"]["input_tokens"] == 20
    assert msg["usage"]["cache_read_input_tokens"] == 50
    assert msg["usage"]["cache_creation_input_tokens"] == 30


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (AuthenticationFailed("no key"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (ModelNotFound("no model"), 404, "not_found_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (UnsupportedMediaType("xml"), 415, "invalid_request_error"),
        (GatewayError("conflict", status=409), 409, "invalid_request_error"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (InternalError("oops"), 500, "api_error"),
        (UpstreamBadGateway("bad upstream"), 502, "api_error"),
        (UpstreamAuthFailed("creds"), 502, "api_error"),
        (UpstreamUnavailable("busy"), 503, "overloaded_error"),
        (UpstreamTimeout("slow"), 504, "timeout_error"),
    ],
)
def test_error_bodies(error: GatewayError, status: int, kind: str) -> None:
    assert error.status == status
    assert orjson.loads(MESSAGES.encode_error(error)) == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
    }
