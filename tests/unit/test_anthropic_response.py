"""Anthropic Message / error bodies -> canonical responses and gateway errors.

Bodies follow https://platform.claude.com/docs/en/api/messages/create (Message object, usage with
cache fields) and https://platform.claude.com/docs/en/api/errors (error shape, 529 overloaded).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import (
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
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
SECRET = "sk-ant-api03-SECRET"


def parse(body: dict[str, Any] | bytes) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return SPEC.adapter.chat_response(raw, TARGET)


def message(
    content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 6},
    }


def test_text_response_golden() -> None:
    body = message(
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
        input_tokens=10,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
        output_tokens=7,
    )
    out = parse(body)
    assert isinstance(out.pop("created"), int)
    assert out == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": 130,
            "completion_tokens": 7,
            "total_tokens": 137,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 20},
        },
    }


def test_tool_use_response() -> None:
    out = parse(
        message(
            [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
            ],
            "tool_use",
        )
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]


def test_tool_use_only_has_null_content() -> None:
    out = parse(message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}], "tool_use"))
    assert out["choices"][0]["message"]["content"] is None


def test_emulated_json_tool_becomes_content() -> None:
    out = parse(
        message(
            [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"answer": "yes"}}], "tool_use"
        )
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert orjson.loads(choice["message"]["content"]) == {"answer": "yes"}
    assert "tool_calls" not in choice["message"]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("some_future_reason", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    assert (
        parse(message([{"type": "text", "text": "x"}], stop_reason))["choices"][0]["finish_reason"] == finish
    )


def test_thinking_blocks_are_skipped_and_thinking_tokens_reported() -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xxx"},
            {"type": "text", "text": "42"},
        ]
    )
    body["usage"] = {"input_tokens": 3, "output_tokens": 50, "output_tokens_details": {"thinking_tokens": 40}}
    out = parse(body)
    assert out["choices"][0]["message"]["content"] == "42"
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


def test_missing_usage_counts_zero() -> None:
    body = message([{"type": "text", "text": "x"}])
    del body["usage"]
    assert parse(body)["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0},
    }


def test_empty_content_is_empty_string() -> None:
    assert parse(message([], "max_tokens"))["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(
    "raw", [b"<html><body>502 Bad Gateway</body></html>", b"[]", b'{"type": "message"}', b""]
)
def test_invalid_bodies_are_502(raw: bytes) -> None:
    with pytest.raises(UpstreamBadGateway):
        parse(raw)


# -- errors -------------------------------------------------------------------------------------


def err(kind: str, msg: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": msg}, "request_id": "req_011"})


def convert(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return SPEC.adapter.error(status, headers or {}, body, TARGET)


def test_rate_limit_keeps_retry_after() -> None:
    e = convert(
        429,
        err("rate_limit_error", "Number of request tokens has exceeded your rate limit"),
        {"retry-after": "17", "anthropic-ratelimit-tokens-remaining": "0"},
    )
    assert isinstance(e, UpstreamRateLimited)
    assert e.status == 429
    assert e.headers == {"retry-after": "17", "x-ratelimit-scope": "upstream"}


@pytest.mark.parametrize(
    "msg",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000, decrease input length "
        "or `max_tokens` and try again",
    ],
)
def test_context_length(msg: str) -> None:
    e = convert(400, err("invalid_request_error", msg))
    assert (e.status, e.type, e.code) == (400, "invalid_request_error", "context_length_exceeded")
    assert e.message == msg


def test_plain_invalid_request() -> None:
    e = convert(400, err("invalid_request_error", "messages.0.role: Input should be 'user' or 'assistant'"))
    assert (e.status, e.type, e.code) == (400, "invalid_request_error", None)


@pytest.mark.parametrize(
    ("status", "kind"), [(529, "overloaded_error"), (500, "overloaded_error"), (503, "api_error")]
)
def test_overloaded_is_503(status: int, kind: str) -> None:
    e = convert(status, err(kind, "Overloaded"))
    assert isinstance(e, UpstreamUnavailable)
    assert e.status == 503


def test_server_error_and_html_page_are_502() -> None:
    assert convert(500, err("api_error", "Internal server error")).status == 502
    e = convert(500, b"<!DOCTYPE html><html><h1>500 Internal Server Error</h1></html>")
    assert isinstance(e, UpstreamBadGateway)
    assert "500" in e.message and "<html" not in e.message


def test_timeout_error_is_504() -> None:
    assert convert(504, err("timeout_error", "Request timed out")).status == 504


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_502_without_the_key(status: int) -> None:
    e = convert(status, err("authentication_error", f"invalid x-api-key {SECRET}"))
    assert isinstance(e, UpstreamAuthFailed)
    assert e.status == 502
    assert SECRET not in e.message


@pytest.mark.parametrize(
    ("status", "kind", "msg", "code"),
    [
        (404, "not_found_error", "model: claude-nope", "model_not_found"),
        (404, "not_found_error", "Not found", None),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            "request_too_large",
        ),
        (402, "billing_error", "Your credit balance is too low.", "billing_error"),
    ],
)
def test_other_client_errors_keep_status(status: int, kind: str, msg: str, code: str | None) -> None:
    e = convert(status, err(kind, msg))
    assert (e.status, e.code, e.message) == (status, code, msg)


def test_count_tokens_response() -> None:
    assert SPEC.adapter.count_tokens_response(b'{"input_tokens": 14}', TARGET) == {  # type: ignore[attr-defined]
        "input_tokens": 14
    }
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.count_tokens_response(b"{}", TARGET)  # type: ignore[attr-defined]
