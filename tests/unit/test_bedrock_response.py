"""Bedrock Converse responses and error answers -> canonical responses and gateway errors."""

from __future__ import annotations

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
from switchboard.providers.bedrock import SPEC, BedrockOptions
from switchboard.providers.target import Target

TARGET = Target("claude", "anthropic.claude-3-haiku-20240307-v1:0", "aws", "bedrock", "http://x",
                BedrockOptions(aws_region="us-east-1"), Timeouts())


def respond(body: dict[str, Any]) -> dict[str, Any]:
    return SPEC.adapter.chat_response(orjson.dumps(body), TARGET)


def converse(content: list[dict[str, Any]], stop: str = "end_turn", usage: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                            "stopReason": stop, "metrics": {"latencyMs": 321}}
    default = {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}
    body["usage"] = usage if usage is not None else default
    return body


def test_text_answer() -> None:
    out = respond(converse([{"text": "Hello"}, {"text": " there"}]))
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    assert out["model"] == "anthropic.claude-3-haiku-20240307-v1:0"
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                               "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                            "prompt_tokens_details": {"cached_tokens": 0}}


def test_tool_use_answer() -> None:
    out = respond(converse([
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
    ], stop="tool_use"))
    message = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [
        {"id": "tooluse_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "tooluse_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]


def test_tool_only_answer_has_null_content_and_other_blocks_are_skipped() -> None:
    out = respond(converse([
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "x"}}},
        {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": [1, 2]}}},
    ], stop="tool_use"))
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a":[1,2]}'


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("malformed_model_output", "stop"),
    ("something_new", "stop"),
])
def test_stop_reason_mapping(stop: str, finish: str) -> None:
    assert respond(converse([{"text": "x"}], stop=stop))["choices"][0]["finish_reason"] == finish


def test_cache_tokens_are_part_of_prompt_tokens() -> None:
    usage = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 1115, "cacheReadInputTokens": 1000,
             "cacheWriteInputTokens": 100}
    assert respond(converse([{"text": "x"}], usage=usage))["usage"] == {
        "prompt_tokens": 1110, "completion_tokens": 5, "total_tokens": 1115,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 100},
    }


def test_missing_usage_is_left_out() -> None:
    body = converse([{"text": "x"}])
    del body["usage"]
    assert "usage" not in respond(body)


@pytest.mark.parametrize("body", [
    b"", b"<html>oops</html>", b"[]", b'{"output": {}}', b'{"output": {"message": 1}}',
])
def test_invalid_bodies_are_a_502(body: bytes) -> None:
    with pytest.raises(UpstreamBadGateway, match="invalid response"):
        SPEC.adapter.chat_response(body, TARGET)


# ---- errors ----

def error(status: int, kind: str | None, message: str, header: bool = True, **extra: str) -> GatewayError:
    namespace = "http://internal.amazon.com/coral/com.amazon.bedrock/"
    headers = {"x-amzn-ErrorType": f"{kind}:{namespace}"} if header else {}
    headers.update(extra)
    body = {"message": message} if header or kind is None else {"__type": f"com.amazon.coral#{kind}",
                                                                  "Message": message}
    return SPEC.adapter.error(status, headers, orjson.dumps(body), TARGET)


def test_throttling_is_a_429_carrying_retry_after() -> None:
    err = error(429, "ThrottlingException", "Too many requests, please wait before trying again.",
                **{"retry-after": "3"})
    assert isinstance(err, UpstreamRateLimited) and err.status == 429
    assert err.headers == {"retry-after": "3", "x-ratelimit-scope": "upstream"}
    assert "Too many requests" in err.message


@pytest.mark.parametrize("message", [
    "Input is too long for requested model.",
    "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum",
    "Malformed input request: too many input tokens",
    "This model's maximum context length is 8192 tokens.",
])
def test_context_length_validation_errors_get_the_openai_code(message: str) -> None:
    err = error(400, "ValidationException", message)
    assert err.status == 400 and err.code == "context_length_exceeded" and err.type == "invalid_request_error"
    assert err.message == message


def test_other_validation_errors_pass_through_as_400() -> None:
    err = error(400, "ValidationException", "A conversation must start with a user message.")
    assert err.status == 400 and err.code is None and err.message.startswith("A conversation")


@pytest.mark.parametrize("kind", ["AccessDeniedException", "UnrecognizedClientException",
                                  "InvalidSignatureException", "ExpiredTokenException"])
def test_credential_problems_are_an_upstream_auth_failure(kind: str) -> None:
    err = error(403, kind, "The security token included in the request is invalid.")
    assert isinstance(err, UpstreamAuthFailed) and err.status == 502
    assert "aws" in err.message and "token" not in err.message


def test_error_type_from_the_body_when_the_header_is_missing() -> None:
    err = error(400, "ValidationException", "Input is too long for requested model.", header=False)
    assert err.code == "context_length_exceeded"
    assert isinstance(error(400, "UnrecognizedClientException", "bad", header=False), UpstreamAuthFailed)


@pytest.mark.parametrize(("status", "kind", "cls", "client_status"), [
    (503, "ServiceUnavailableException", UpstreamUnavailable, 503),
    (429, "ModelNotReadyException", UpstreamUnavailable, 503),
    (408, "ModelTimeoutException", UpstreamTimeout, 504),
    (500, "InternalServerException", UpstreamBadGateway, 502),
    (424, "ModelErrorException", UpstreamBadGateway, 502),
    (400, "ServiceQuotaExceededException", UpstreamRateLimited, 429),
])
def test_server_side_errors(status: int, kind: str, cls: type[GatewayError], client_status: int) -> None:
    err = error(status, kind, "details")
    assert isinstance(err, cls) and err.status == client_status


def test_not_found_model() -> None:
    err = error(404, "ResourceNotFoundException", "Could not resolve the foundation model.")
    assert err.status == 404 and err.type == "not_found_error"


def test_html_500_page_is_a_502_without_the_html() -> None:
    page = b"<html><body>Bad gateway</body></html>"
    err = SPEC.adapter.error(500, {"content-type": "text/html"}, page, TARGET)
    assert isinstance(err, UpstreamBadGateway) and "<html>" not in err.message


def test_reasoning_blocks_become_reasoning_content_and_signed_thinking_blocks() -> None:
    out = respond(converse([
        {"reasoningContent": {"reasoningText": {"text": "Step one. ", "signature": "c2lnMQ=="}}},
        {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
        {"text": "Answer"},
    ]))
    message = out["choices"][0]["message"]
    assert message["content"] == "Answer"
    assert message["reasoning_content"] == "Step one. "
    assert message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Step one. ", "signature": "c2lnMQ=="},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
    ]


def test_unsigned_reasoning_is_text_only() -> None:
    out = respond(converse([{"reasoningContent": {"reasoningText": {"text": "hmm"}}}, {"text": "ok"}]))
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "hmm" and "thinking_blocks" not in message


def test_stop_sequence_comes_from_the_additional_response_fields() -> None:
    body = converse([{"text": "Hi"}], stop="stop_sequence")
    # Other families do not say which matched: null (providers/stop_sequences.py may name it).
    assert respond(body)["choices"][0]["stop_sequence"] is None
    assert "stop_sequence" not in respond(converse([{"text": "Hi"}]))["choices"][0]
    body["additionalModelResponseFields"] = {"stop_sequence": "END"}
    choice = respond(body)["choices"][0]
    assert (choice["finish_reason"], choice["stop_sequence"]) == ("stop", "END")


def test_cache_reads_and_writes_are_reported_apart() -> None:
    usage = {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7, "cacheReadInputTokens": 100,
             "cacheWriteInputTokens": 40}
    assert respond(converse([{"text": "x"}], usage=usage))["usage"] == {
        "prompt_tokens": 145, "completion_tokens": 2, "total_tokens": 147,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 40},
    }
