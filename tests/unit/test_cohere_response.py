"""Cohere v2 responses and errors -> canonical form (https://docs.cohere.com/reference/chat, /embed)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.providers.cohere import SPEC, CohereOptions
from switchboard.providers.embedding_encoding import apply_encoding_format
from switchboard.providers.target import Target

TARGET = Target(name="command-a", model="command-a-03-2025", provider="co", provider_type="cohere",
                api_base="https://api.cohere.com", options=CohereOptions(), timeouts=Timeouts())

ANSWER = "LLMs are large language models."
# The documented non-stream example, token counts as Cohere sends them (JSON numbers, some 18.0).
TEXT_RESPONSE = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "finish_reason": "COMPLETE",
    "message": {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
    "usage": {"billed_units": {"input_tokens": 18.0, "output_tokens": 6.0},
              "tokens": {"input_tokens": 1661.0, "output_tokens": 19.0}, "cached_tokens": 12},
}

TOOL_RESPONSE = {
    "id": "r2",
    "finish_reason": "TOOL_CALL",
    "message": {
        "role": "assistant",
        "tool_plan": "I will look up the weather.",
        "tool_calls": [
            {"id": "get_weather_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "get_time_def", "type": "function", "function": {"name": "get_time"}},
        ],
    },
    "usage": {"billed_units": {"input_tokens": 10, "output_tokens": 5}},
}


def parse(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = SPEC.adapter.chat_response(orjson.dumps(obj), TARGET)
    return result


def test_text_response_golden() -> None:
    out = parse(TEXT_RESPONSE)
    assert isinstance(out.pop("created"), int)
    assert out == {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "object": "chat.completion",
        "model": "command-a-03-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 18, "completion_tokens": 6, "total_tokens": 24,
                  "prompt_tokens_details": {"cached_tokens": 12}},
    }


def test_tool_call_response_plan_becomes_content() -> None:
    message = parse(TOOL_RESPONSE)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"] == {
        "role": "assistant", "content": "I will look up the weather.", "refusal": None,
        "tool_calls": [
            {"id": "get_weather_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "get_time_def", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def test_tool_calls_without_plan_have_null_content() -> None:
    calls = TOOL_RESPONSE["message"]["tool_calls"]
    body = {**TOOL_RESPONSE, "message": {"role": "assistant", "tool_calls": calls}}
    assert parse(body)["choices"][0]["message"]["content"] is None


def test_thinking_blocks_are_skipped_and_text_joined() -> None:
    body = {**TEXT_RESPONSE, "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "a"},
        {"type": "text", "text": "b"}]}}
    assert parse(body)["choices"][0]["message"]["content"] == "ab"


def test_empty_message_has_empty_content() -> None:
    body = {"id": "x", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": []}}
    assert parse(body)["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(("reason", "expected"), [
    ("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls"),
    ("SOMETHING_NEW", "stop"), (None, "stop"),
])
def test_finish_reasons(reason: str | None, expected: str) -> None:
    assert parse({**TEXT_RESPONSE, "finish_reason": reason})["choices"][0]["finish_reason"] == expected


def test_finish_error_and_timeout_raise() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        parse({**TEXT_RESPONSE, "finish_reason": "ERROR"})
    assert "provider 'co'" in exc.value.message
    with pytest.raises(UpstreamTimeout):
        parse({**TEXT_RESPONSE, "finish_reason": "TIMEOUT"})


def test_missing_usage_is_omitted_and_raw_tokens_are_the_fallback() -> None:
    assert "usage" not in parse({k: v for k, v in TEXT_RESPONSE.items() if k != "usage"})
    tokens_only = {**TEXT_RESPONSE, "usage": {"tokens": {"input_tokens": 7, "output_tokens": 3}}}
    assert parse(tokens_only)["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                                           "prompt_tokens_details": {"cached_tokens": 0}}
    assert "usage" not in parse({**TEXT_RESPONSE, "usage": {"billed_units": {}}})


def test_logprobs_map_to_openai_entries() -> None:
    body = {**TEXT_RESPONSE, "logprobs": [{"text": "LL", "token_ids": [1, 2], "logprobs": [-0.5, -0.25]},
                                          {"text": "Ms", "token_ids": [3], "logprobs": [-1.0]}]}
    assert parse(body)["choices"][0]["logprobs"] == {"refusal": None, "content": [
        {"token": "LL", "logprob": -0.75, "bytes": [76, 76], "top_logprobs": []},
        {"token": "Ms", "logprob": -1.0, "bytes": [77, 115], "top_logprobs": []},
    ]}


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b"[]", b'{"id": "x"}', b""])
def test_invalid_bodies_are_bad_gateway(body: bytes) -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        SPEC.adapter.chat_response(body, TARGET)
    assert exc.value.status == 502


# ---- embeddings -------------------------------------------------------------------------------

EMBED_RESPONSE = {
    "id": "e1", "texts": ["hello", "goodbye"], "response_type": "embeddings_by_type",
    "embeddings": {"float": [[0.25, -0.5], [1.0, 0.125]]},
    "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
}


def test_embeddings_float() -> None:
    out = SPEC.adapter.embeddings_response(orjson.dumps(EMBED_RESPONSE), TARGET)
    assert out == {"object": "list", "model": "command-a-03-2025",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]},
                            {"object": "embedding", "index": 1, "embedding": [1.0, 0.125]}],
                   "usage": {"prompt_tokens": 2, "total_tokens": 2}}


def test_embeddings_base64_is_packed_from_floats() -> None:
    out = SPEC.adapter.embeddings_response(orjson.dumps(EMBED_RESPONSE), TARGET)
    assert out["data"][0]["embedding"] == [0.25, -0.5]
    packed = apply_encoding_format({"encoding_format": "base64"}, out)
    first = base64.b64decode(packed["data"][0]["embedding"])
    assert struct.unpack("<2f", first) == (0.25, -0.5)


def test_embeddings_usage_fallback_and_invalid() -> None:
    body = {**EMBED_RESPONSE, "meta": {"tokens": {"input_tokens": 4}}}
    assert SPEC.adapter.embeddings_response(orjson.dumps(body), TARGET)["usage"]["prompt_tokens"] == 4
    no_meta = {k: v for k, v in EMBED_RESPONSE.items() if k != "meta"}
    assert SPEC.adapter.embeddings_response(orjson.dumps(no_meta), TARGET)["usage"]["prompt_tokens"] == 0
    # The type asked for is the one Cohere returns (an extra embedding_types names it).
    ints = SPEC.adapter.embeddings_response(b'{"embeddings": {"int8": [[1]]}}', TARGET)
    assert ints["data"][0]["embedding"] == [1]
    for broken in (b'{"embeddings": {"base64": ["AAAA"]}}', b'{"embeddings": {"float": "x"}}', b"{}"):
        with pytest.raises(UpstreamBadGateway):
            SPEC.adapter.embeddings_response(broken, TARGET)


# ---- errors -----------------------------------------------------------------------------------


def err(status: int, body: Any, headers: dict[str, str] | None = None) -> GatewayError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return SPEC.adapter.error(status, headers or {}, raw, TARGET)


def test_rate_limit_carries_retry_after() -> None:
    message = "You are using a Trial key, which is limited to 40 API calls / minute."
    e = err(429, {"id": "x", "message": message}, {"retry-after": "7"})
    assert isinstance(e, UpstreamRateLimited)
    assert (e.status, e.code) == (429, "rate_limit_exceeded")
    assert e.headers == {"retry-after": "7", "x-ratelimit-scope": "upstream"}
    assert "Trial key" in e.message


@pytest.mark.parametrize("message", [
    "too many tokens: size limit exceeded by 11326 tokens. Try using shorter or fewer inputs.",
    "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292.",
])
def test_context_length_errors(message: str) -> None:
    e = err(400, {"id": "x", "message": message})
    assert (e.status, e.code, e.param, e.type) == (400, "context_length_exceeded", "messages",
                                                   "invalid_request_error")
    assert e.message == message


def test_context_length_by_error_type() -> None:
    assert err(400, {"message": "prompt is too long", "error_type": "TOO_MANY_TOKENS"}).code == (
        "context_length_exceeded")


def test_max_tokens_limit_is_not_context_length() -> None:
    e = err(400, {"message": "too many tokens: max tokens must be less than or equal to 4096, the maximum "
                             "output for this model - received 8192."})
    assert e.status == 400 and e.code is None


def test_other_4xx_keep_status_and_message() -> None:
    e = err(404, {"id": "x", "message": "model 'nope' not found"})
    assert (e.status, e.type, e.message) == (404, "not_found_error", "model 'nope' not found")
    assert err(422, {"message": "invalid request: bad"}).status == 422


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_502_without_the_message(status: int) -> None:
    e = err(status, {"id": "x", "message": "invalid api token: co-secret-123"})
    assert isinstance(e, UpstreamAuthFailed)
    assert e.status == 502
    assert "co-secret-123" not in e.message


def test_server_errors() -> None:
    html = err(500, b"<html><h1>500 Internal Server Error</h1></html>")
    assert isinstance(html, UpstreamBadGateway) and html.status == 502
    assert "HTTP 500" in html.message
    overloaded = err(503, {"message": "service unavailable"}, {"retry-after": "2"})
    assert isinstance(overloaded, UpstreamUnavailable)
    assert (overloaded.status, overloaded.headers) == (503, {"retry-after": "2"})
    assert isinstance(err(504, {"message": "gateway timeout"}), UpstreamTimeout)


def test_cohere_specific_statuses() -> None:
    blocked = err(498, {"message": "blocked token"})
    assert (blocked.status, blocked.code) == (400, "content_filter")
    cancelled = err(499, {"message": "request cancelled"})
    assert isinstance(cancelled, UpstreamBadGateway)
