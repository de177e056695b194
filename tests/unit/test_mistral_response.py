"""Mistral responses, embeddings and error bodies -> canonical form.

Golden bodies follow mistralai/client-python's response models (ChatCompletionResponse,
ChatCompletionChoice with finish reasons stop/length/model_length/error/tool_calls, UsageInfo)
and error bodies seen from api.mistral.ai (pydantic ``detail`` lists, ``code`` "3280", ...).
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
    error_class,
)
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
ADAPTER = SPEC.adapter


def response(*choices: dict[str, Any], usage: Any = None) -> bytes:
    body: dict[str, Any] = {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-small-latest",
        "created": 1702256327,
        "choices": list(choices),
    }
    if usage is not None:
        body["usage"] = usage
    return orjson.dumps(body)


def choice(message: dict[str, Any], finish: str = "stop", index: int = 0) -> dict[str, Any]:
    return {"index": index, "message": message, "finish_reason": finish}


USAGE = {"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50}


def test_text_answer() -> None:
    out = ADAPTER.chat_response(
        response(choice({"role": "assistant", "content": "Hello!", "tool_calls": None}), usage=USAGE), TARGET
    )
    assert out == {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "created": 1702256327,
        "model": "mistral-small-latest",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 16,
            "completion_tokens": 34,
            "total_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


@pytest.mark.parametrize(
    "usage, cached",
    [
        ({**USAGE, "prompt_tokens_details": {"cached_tokens": 8}}, 8),
        ({**USAGE, "prompt_token_details": {"cached_tokens": 4}}, 4),
        ({**USAGE, "num_cached_tokens": 2}, 2),
    ],
)
def test_cached_tokens(usage: dict[str, Any], cached: int) -> None:
    out = ADAPTER.chat_response(response(choice({"role": "assistant", "content": "x"}), usage=usage), TARGET)
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": cached}


def test_missing_usage_is_left_out() -> None:
    out = ADAPTER.chat_response(response(choice({"role": "assistant", "content": "x"})), TARGET)
    assert "usage" not in out


def test_content_chunks_joined_and_thinking_is_reasoning_content() -> None:
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
        {"type": "text", "text": "The answer"},
        {"type": "text", "text": " is 4."},
    ]
    out = ADAPTER.chat_response(response(choice({"role": "assistant", "content": content})), TARGET)
    assert out["choices"][0]["message"]["content"] == "The answer is 4."
    assert out["choices"][0]["message"]["reasoning_content"] == "hmm"  # was left out


def test_tool_calls_with_object_arguments() -> None:
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "D681PevKs",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            },
            {"id": "x9Yq2LmNo", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}, "index": 1},
        ],
    }
    out = ADAPTER.chat_response(response(choice(message, "tool_calls")), TARGET)
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "D681PevKs",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "x9Yq2LmNo",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
            },
        ],
    }
    assert out["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    "mistral, canonical",
    [("stop", "stop"), ("length", "length"), ("model_length", "length"), ("tool_calls", "tool_calls")],
)
def test_finish_reasons(mistral: str, canonical: str) -> None:
    out = ADAPTER.chat_response(response(choice({"role": "assistant", "content": "x"}, mistral)), TARGET)
    assert out["choices"][0]["finish_reason"] == canonical


def test_finish_reason_error_raises() -> None:
    with pytest.raises(UpstreamBadGateway):
        ADAPTER.chat_response(response(choice({"role": "assistant", "content": "x"}, "error")), TARGET)


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"id": "x"}', b"[]"])
def test_invalid_bodies(body: bytes) -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        ADAPTER.chat_response(body, TARGET)
    assert "invalid response" in exc.value.message


# ---- embeddings -------------------------------------------------------------------------------


def test_embeddings_response() -> None:
    body = {
        "id": "embd-aad6fc62b17349b192ef09225058bc45",
        "object": "list",
        "model": "mistral-embed",
        "data": [
            {"object": "embedding", "embedding": [0.1, -0.2], "index": 0},
            {"object": "embedding", "embedding": [0.3, 0.4], "index": 1},
        ],
        "usage": {"prompt_tokens": 9, "total_tokens": 9, "completion_tokens": 0},
    }
    assert ADAPTER.embeddings_response(orjson.dumps(body), TARGET) == {
        "object": "list",
        "model": "mistral-embed",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }


def test_embeddings_invalid_body() -> None:
    with pytest.raises(UpstreamBadGateway):
        ADAPTER.embeddings_response(b'{"object": "list"}', TARGET)


# ---- errors -----------------------------------------------------------------------------------


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ADAPTER.error(status, headers or {}, raw, TARGET)


def test_extra_forbidden_422() -> None:
    err = error(
        422,
        {
            "object": "error",
            "message": {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "seed"],
                        "msg": "Extra inputs are not permitted",
                        "input": 1,
                    }
                ]
            },
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
    )
    assert err.status == 422
    assert err.message == "seed: Extra inputs are not permitted"
    assert err.param == "seed"
    assert err.type == "invalid_request_error"


def test_message_as_json_string_and_numeric_code() -> None:
    detail = {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "messages", 0, "user", "name"],
                "msg": "Extra inputs are not permitted",
            }
        ]
    }
    err = error(
        422,
        {
            "object": "error",
            "message": orjson.dumps(detail).decode(),
            "type": "internal_error_proxy",
            "param": None,
            "code": "1000",
        },
    )
    assert err.message == "messages.0.user.name: Extra inputs are not permitted"
    assert err.code is None  # Mistral's internal numbers are not OpenAI codes


def test_detail_list_at_top_level() -> None:
    err = error(
        422,
        {
            "object": "Error",
            "detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}],
            "code": 3001,
        },
    )
    assert err.message == "model: Field required"
    assert err.param == "model"


def test_tool_call_id_error() -> None:
    err = error(
        400,
        {
            "object": "error",
            "message": "Tool call id was call_1 but must be a-z, A-Z, 0-9, with a length of 9.",
            "type": "invalid_function_call",
            "param": None,
            "code": "3280",
        },
    )
    assert err.status == 400
    assert err.type == "invalid_function_call"
    assert "length of 9" in err.message


def test_context_length_gets_openai_code() -> None:
    err = error(
        400,
        {
            "object": "error",
            "message": "Prompt contains 40960 tokens and 0 draft tokens, too large "
            "for model with 32768 maximum context length",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
    )
    assert err.status == 400
    assert err.code == "context_length_exceeded"


def test_rate_limit_keeps_retry_after() -> None:
    err = error(
        429,
        {
            "object": "error",
            "message": "Requests rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        },
        {"retry-after": "3"},
    )
    assert isinstance(err, UpstreamRateLimited)
    assert err.headers == {"retry-after": "3", "x-ratelimit-scope": "upstream"}
    assert err.code == "rate_limit_exceeded"


def test_unauthorized_hides_details() -> None:
    err = error(401, {"message": "Unauthorized", "request_id": "0a1b"})
    assert isinstance(err, UpstreamAuthFailed)
    assert err.status == 502


# As api.mistral.ai answers a request whose ``guardrails`` found its input unsafe.
GUARDRAIL_BLOCK = {
    "object": "error", "message": "Request blocked by guardrail policy", "type": "guardrail_violation",
    "param": None, "code": "1920", "raw_status_code": 403,
    "guardrails": [{"moderation_llm_v2": {"action": "block", "categories": {
        "sexual": {"violated": True}, "hate_and_discrimination": {"violated": False},
        "selfharm": {"violated": False}, "jailbreaking": {"violated": True}}}}],
}


def test_a_guardrail_block_is_the_callers_content_filter_not_a_credential_refused() -> None:
    err = error(403, GUARDRAIL_BLOCK)
    assert not isinstance(err, UpstreamAuthFailed)
    assert (err.status, err.type, err.code) == (400, "invalid_request_error", "content_filter")
    assert err.message == "Request blocked by guardrail policy (violated: sexual, jailbreaking)"
    assert error_class(err) == "content_policy"  # not retried; falls back as other content filters
    bare = error(403, {"object": "error", "message": "Request blocked by guardrail policy",
                       "type": "guardrail_violation", "param": None, "code": "1920"})
    assert (bare.status, bare.code) == (400, "content_filter")
    assert bare.message == "Request blocked by guardrail policy"
    for odd in (5, "x", {"a": 1}, [5, {"m": 5}, {"m": {"categories": [1]}}]):  # not Mistral's shape
        odd_block = error(403, {**GUARDRAIL_BLOCK, "guardrails": odd})
        assert odd_block.message == "Request blocked by guardrail policy"


def test_a_403_of_another_type_is_still_the_credentials_refused() -> None:
    for body in ({"message": "Forbidden"}, {"object": "error", "message": "This key cannot use this model",
                                            "type": "authentication_error", "param": None, "code": None}):
        err = error(403, body)
        assert isinstance(err, UpstreamAuthFailed)
        assert err.status == 502


def test_overloaded() -> None:
    assert isinstance(error(503, {"detail": "Service unavailable"}), UpstreamUnavailable)


def test_html_500_page() -> None:
    err = error(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>")
    assert isinstance(err, UpstreamBadGateway)
    assert err.status == 502
    assert "HTTP 500" in err.message


@pytest.mark.parametrize(("message", "calls"), [
    (5, None),
    ({"role": "assistant", "content": "", "tool_calls": 5}, None),
    ({"role": "assistant", "content": "", "tool_calls": ["x", {"id": "c1", "function": 5}]},
     [{"id": "c1", "type": "function", "function": {"name": "", "arguments": ""}}]),
    ({"role": "assistant", "content": "",
      "tool_calls": [{"id": "c1", "function": {"name": "now", "arguments": None}}]},
     [{"id": "c1", "type": "function", "function": {"name": "now", "arguments": ""}}]),
], ids=["message-int", "tool-calls-int", "call-and-function-of-the-wrong-type", "null-arguments"])
def test_members_of_the_wrong_type_are_read_as_missing(message: Any, calls: Any) -> None:
    # A reply whose members have the wrong JSON types is read, not an AttributeError (a 500).
    out = ADAPTER.chat_response(response(choice(message), usage=USAGE), TARGET)
    assert out["choices"][0]["message"].get("tool_calls") == calls
    assert out["usage"]["total_tokens"] == 50


@pytest.mark.parametrize("reason", [5, ["stop"], {"type": "stop"}])
def test_a_finish_reason_that_is_not_a_string_is_read_as_absent(reason: Any) -> None:
    body = {"id": "x", "object": "chat.completion", "model": "mistral-small-latest", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": reason}]}
    assert ADAPTER.chat_response(orjson.dumps(body), TARGET)["choices"][0]["finish_reason"] is None


@pytest.mark.parametrize(("index", "read"), [(1, 1), (1.0, 1), (1.5, 0), (True, 0), ([1], 0)])
def test_a_choice_index_is_a_whole_number_else_0(index: Any, read: int) -> None:
    body = {"id": "x", "object": "chat.completion", "model": "mistral-small-latest", "choices": [
        {"index": index, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]}
    out = ADAPTER.chat_response(orjson.dumps(body), TARGET)["choices"][0]["index"]
    assert out == read and out.__class__ is int
