"""Canonical results -> Gemini's GenerateContentResponse, errors and routing (http/gemini/)."""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.errors import (
    AuthenticationFailed,
    InvalidRequest,
    RateLimited,
    UpstreamBadGateway,
    UpstreamRateLimited,
)
from switchboard.http.gemini.api import split_path
from switchboard.http.gemini.embeddings import batch_embed_response, embed_response
from switchboard.http.gemini.errors import error_body, stream_error
from switchboard.http.gemini.response import count_tokens_response, generate_content_response
from switchboard.http.gemini.routes import move_query_key

USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 30,
    "total_tokens": 40,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 12},
}


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
        **extra,
    }


def test_text_reasoning_and_usage() -> None:
    body = completion({"role": "assistant", "content": "hi", "reasoning_content": "let me think"})
    assert generate_content_response(body, "up", include_thoughts=True) == {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "let me think", "thought": True}, {"text": "hi"}],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 18,
            "totalTokenCount": 40,
            "cachedContentTokenCount": 4,
            "thoughtsTokenCount": 12,
        },
        "modelVersion": "up",
        "responseId": "abc",
    }
    hidden = generate_content_response(body, "up", include_thoughts=False)
    assert hidden["candidates"][0]["content"]["parts"] == [{"text": "hi"}]


def test_tool_calls_become_function_calls() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a": 1}'},
            "extra_content": {"google": {"thought_signature": "sig"}},
        },
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    out = generate_content_response(
        completion({"content": None, "tool_calls": calls}, "tool_calls"), "up", False
    )
    assert out["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"},
        {"functionCall": {"id": "call_2", "name": "g", "args": {}}},
    ]
    assert out["candidates"][0]["finishReason"] == "STOP"
    broken = [{"id": "c", "function": {"name": "f", "arguments": '{"a": '}}]
    bad = generate_content_response(completion({"tool_calls": broken}, "tool_calls"), "up", False)
    assert bad["candidates"][0]["finishReason"] == "MALFORMED_FUNCTION_CALL"
    assert bad["candidates"][0]["content"] == {"role": "model"}


def test_finish_reasons_and_candidates() -> None:
    for finish, expected in [("length", "MAX_TOKENS"), ("content_filter", "SAFETY"), ("weird", "OTHER")]:
        out = generate_content_response(completion({"content": "x"}, finish), "up", False)
        assert out["candidates"][0]["finishReason"] == expected
    refusal = generate_content_response(
        completion({"content": None, "refusal": "no"}, "content_filter"), "up", False
    )
    assert refusal["candidates"][0]["content"]["parts"] == [{"text": "no"}]
    two = {
        "choices": [
            {"index": 0, "message": {"content": "a"}, "finish_reason": "stop"},
            {"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
        ]
    }
    out = generate_content_response(two, "up", False)
    assert [(c["index"], c["finishReason"]) for c in out["candidates"]] == [(0, "STOP"), (1, "MAX_TOKENS")]
    assert "usageMetadata" not in out and out["responseId"]


def test_count_tokens_and_embeddings() -> None:
    assert count_tokens_response({"input_tokens": 7}) == {"totalTokens": 7}
    body = {"data": [{"index": 1, "embedding": [0.2]}, {"index": 0, "embedding": [0.1]}]}
    assert batch_embed_response(body) == {"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}
    assert embed_response(body) == {"embedding": {"values": [0.1]}}


def test_errors_in_google_format() -> None:
    assert error_body(InvalidRequest("bad")) == {
        "error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}
    }
    assert error_body(AuthenticationFailed("who"))["error"]["status"] == "UNAUTHENTICATED"
    limited = error_body(RateLimited("slow down", headers={"Retry-After": "7"}))
    assert limited["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    ]
    # An upstream's Retry-After is carried over as read (latin-1): a superscript two is no delay.
    odd = error_body(UpstreamRateLimited("slow down", headers={"retry-after": "\u00b2"}))
    assert odd["error"]["status"] == "RESOURCE_EXHAUSTED" and "details" not in odd["error"]
    assert error_body(UpstreamBadGateway("x"))["error"] == {
        "code": 502,
        "message": "x",
        "status": "UNAVAILABLE",
    }
    event = stream_error(InvalidRequest("mid"))
    assert event.startswith(b"data: ") and event.endswith(b"\r\n\r\n")
    assert orjson.loads(event[6:])["error"]["code"] == 400


def test_paths() -> None:
    assert split_path("/v1beta/models/gemini-2.5-pro:generateContent") == (
        "gemini-2.5-pro",
        "generateContent",
    )
    assert split_path("/v1/models/anthropic.claude-v2:1:countTokens") == (
        "anthropic.claude-v2:1",
        "countTokens",
    )
    assert split_path("/v1beta/models/openai/gpt-4o:streamGenerateContent") == (
        "openai/gpt-4o",
        "streamGenerateContent",
    )
    assert split_path("/v1beta/models/plain") == ("plain", "")


def test_query_key_moves_into_the_header() -> None:
    scope: dict[str, Any] = {"query_string": b"alt=sse&key=sk-sb-1", "headers": [(b"host", b"x")]}
    move_query_key(scope)
    assert scope["query_string"] == b"alt=sse"
    assert scope["headers"] == [(b"host", b"x"), (b"x-goog-api-key", b"sk-sb-1")]
    given: dict[str, Any] = {"query_string": b"key=sk-sb-2", "headers": [(b"x-goog-api-key", b"sk-sb-3")]}
    move_query_key(given)
    assert given["query_string"] == b""  # taken out of the URL either way
    assert given["headers"] == [(b"x-goog-api-key", b"sk-sb-3")]  # the header wins
    empty: dict[str, Any] = {"query_string": b"key=sk-sb-4", "headers": [(b"x-goog-api-key", b"")]}
    move_query_key(empty)
    assert empty["headers"] == [(b"x-goog-api-key", b"sk-sb-4")]
    untouched: dict[str, Any] = {"query_string": b"alt=sse", "headers": []}
    move_query_key(untouched)
    assert untouched == {"query_string": b"alt=sse", "headers": []}
