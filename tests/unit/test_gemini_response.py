"""Gemini responses, errors and embeddings -> canonical OpenAI shapes (golden bodies)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import (
    InvalidRequest,
    UpstreamAuthFailed,
    UpstreamBadGateway,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from switchboard.providers.embedding_encoding import apply_encoding_format
from switchboard.providers.gemini import SPEC, GeminiOptions
from switchboard.providers.target import Target

TARGET = Target(
    "g", "gemini-2.5-flash", "studio", "gemini", "https://example.test", GeminiOptions(), Timeouts()
)


def parse(obj: Any) -> dict[str, Any]:
    return SPEC.adapter.chat_response(orjson.dumps(obj), TARGET)


def test_text_answer_golden() -> None:
    body = parse(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "thinking...", "thought": True},
                            {"text": "Hello"},
                            {"text": " there"},
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 5,
                "cachedContentTokenCount": 4,
                "totalTokenCount": 17,
            },
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "abc",
        }
    )
    assert isinstance(body.pop("created"), int)
    assert body == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gemini-2.5-flash-001",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Hello there",
                    "refusal": None,
                    "reasoning_content": "thinking...",
                },
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }


def test_function_calls() -> None:
    body = parse(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "c2ln"},
                            {"functionCall": {"name": "b"}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ]
        }
    )
    message = body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    first, second = message["tool_calls"]
    assert first["id"].startswith("call_") and first["id"] != second["id"]
    assert first["function"] == {"name": "a", "arguments": '{"x":1}'}
    assert first["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert second["function"] == {"name": "b", "arguments": "{}"} and "extra_content" not in second


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, expected: str) -> None:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": "x"}]}}
    if reason:
        candidate["finishReason"] = reason
    assert parse({"candidates": [candidate]})["choices"][0]["finish_reason"] == expected


def test_safety_stop_without_content() -> None:
    choice = parse({"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}]})["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None


def test_blocked_prompt() -> None:
    body = parse({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}})
    assert body["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "content_filter",
            "message": {"role": "assistant", "content": None, "refusal": None},
        }
    ]
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["total_tokens"] == 3


def test_missing_usage_and_several_candidates() -> None:
    body = parse(
        {
            "candidates": [
                {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
                {"index": 1, "content": {"parts": [{"text": ""}]}, "finishReason": "STOP"},
            ]
        }
    )
    assert [c["message"]["content"] for c in body["choices"]] == ["a", ""]
    assert body["usage"]["total_tokens"] == 0


def test_logprobs() -> None:
    choice = parse(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "Hi!"}]},
                    "finishReason": "STOP",
                    "logprobsResult": {
                        "chosenCandidates": [
                            {"token": "Hi", "logProbability": -0.1},
                            {"token": "!", "logProbability": -0.2},
                        ],
                        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}]}],
                    },
                }
            ]
        }
    )["choices"][0]
    assert choice["logprobs"]["content"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
        },
        {"token": "!", "logprob": -0.2, "bytes": [33], "top_logprobs": []},
    ]


@pytest.mark.parametrize("raw", [
    b"<html>oops</html>", b"[]", b'{"candidates": "x"}', b"{}", b'{"candidates": 5}',
    b'{"promptFeedback": "x"}', b'{"candidates": 0, "promptFeedback": ["x"]}',
])
def test_invalid_bodies(raw: bytes) -> None:
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.chat_response(raw, TARGET)


# -- errors --------------------------------------------------------------------------------------


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return SPEC.adapter.error(status, headers or {}, raw, TARGET)


def google(code: int, status: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def test_invalid_api_key_is_an_upstream_auth_failure() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    err = error(
        400, google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
    )
    assert isinstance(err, UpstreamAuthFailed) and err.status == 502
    assert "API key" not in err.message  # the shared mapping words it without echoing anything
    assert isinstance(error(403, google(403, "PERMISSION_DENIED", "denied")), UpstreamAuthFailed)
    assert isinstance(error(401, google(401, "UNAUTHENTICATED", "no")), UpstreamAuthFailed)


def test_rate_limit_retry_info_becomes_retry_after() -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.5s"}
    err = error(429, [google(429, "RESOURCE_EXHAUSTED", "quota", [retry])])  # list-wrapped, as streams send
    assert isinstance(err, UpstreamRateLimited)
    assert err.headers == {"retry-after": "37", "x-ratelimit-scope": "upstream"}
    header_wins = error(429, google(429, "RESOURCE_EXHAUSTED", "q", [retry]), {"Retry-After": "5"})
    assert header_wins.headers == {"retry-after": "5", "x-ratelimit-scope": "upstream"}
    for garbage in ("soon", "-5", ""):  # dropped: the RetryInfo is the hint all the same
        kept = error(429, google(429, "RESOURCE_EXHAUSTED", "q", [retry]), {"Retry-After": garbage})
        assert kept.headers == {"retry-after": "37", "x-ratelimit-scope": "upstream"}, garbage


def test_context_length() -> None:
    msg = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    err = error(400, google(400, "INVALID_ARGUMENT", msg))
    assert err.status == 400 and err.code == "context_length_exceeded" and err.message == msg
    plain = error(400, google(400, "INVALID_ARGUMENT", "* contents is not specified"))
    assert plain.status == 400 and plain.code == "invalid_argument" and plain.type == "invalid_request_error"


def test_server_errors() -> None:
    assert isinstance(error(503, google(503, "UNAVAILABLE", "The model is overloaded.")), UpstreamUnavailable)
    html = error(500, b"<html><body>Internal error</body></html>")
    assert isinstance(html, UpstreamBadGateway) and html.status == 502
    assert error(404, google(404, "NOT_FOUND", "models/x is not found")).status == 404


# -- embeddings ----------------------------------------------------------------------------------


def test_embeddings_request_and_response() -> None:
    t = Target(
        "e",
        "models/gemini-embedding-001",
        "studio",
        "gemini",
        "https://example.test",
        GeminiOptions(),
        Timeouts(),
    )
    upstream = SPEC.adapter.embeddings_request({"model": "e", "input": ["a", "b"], "dimensions": 4}, t)
    assert upstream.url == "https://example.test/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert orjson.loads(upstream.body or b"") == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 4,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 4,
            },
        ]
    }
    body = SPEC.adapter.embeddings_response(
        b'{"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25]}]}', t
    )
    assert body == {
        "object": "list",
        "model": "models/gemini-embedding-001",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25]},
        ],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    packed = apply_encoding_format({"encoding_format": "base64"}, body)["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -1.0)


def test_embeddings_send_the_retrieval_hints_on_each_request() -> None:
    # task_type -> taskType on every request; title (one per input, or one for all) -> title.
    upstream = SPEC.adapter.embeddings_request(
        {"model": "e", "input": ["a", "b"], "task_type": "RETRIEVAL_DOCUMENT", "title": ["A", None]}, TARGET
    )
    requests = orjson.loads(upstream.body or b"")["requests"]
    assert [(r.get("taskType"), r.get("title")) for r in requests] == [
        ("RETRIEVAL_DOCUMENT", "A"), ("RETRIEVAL_DOCUMENT", None)
    ]
    for task, sent in [("CODE_RETRIEVAL_QUERY", "CODE_RETRIEVAL_QUERY"), ("TASK_TYPE_UNSPECIFIED", None)]:
        upstream = SPEC.adapter.embeddings_request({"model": "e", "input": "q", "task_type": task}, TARGET)
        # Unspecified asks for nothing: nothing is sent.
        assert orjson.loads(upstream.body or b"")["requests"][0].get("taskType") == sent


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"task_type": "retrieval_query"}, "task_type"),
        ({"task_type": 3}, "task_type"),
        ({"task_type": "RETRIEVAL_QUERY", "title": "t"}, "title"),  # a title only for documents
        ({"title": "t"}, "title"),
        ({"task_type": "RETRIEVAL_DOCUMENT", "title": ["only one"]}, "title"),  # two inputs
        ({"task_type": "RETRIEVAL_DOCUMENT", "title": 5}, "title"),
    ],
)
def test_bad_retrieval_hints_are_a_400_naming_them(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SPEC.adapter.embeddings_request({"model": "e", "input": ["a", "b"], **extra}, TARGET)
    assert (refused.value.param, refused.value.code) == (param, "invalid_value")


def test_embeddings_refuse_token_arrays() -> None:
    with pytest.raises(InvalidRequest, match="token arrays") as refused:
        SPEC.adapter.embeddings_request({"model": "e", "input": [[1, 2]]}, TARGET)
    assert (refused.value.param, refused.value.code) == ("input", "invalid_value")
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.embeddings_response(b'{"embeddings": [{}]}', TARGET)


@pytest.mark.parametrize(("index", "read"), [(1, 1), (1.0, 1), (True, 0), (1.5, 0), (-1, 0), ("1", 0)])
def test_a_candidate_index_is_a_whole_number_else_its_place(index: Any, read: int) -> None:
    choice = parse({"candidates": [{"index": index, "content": {"parts": [{"text": "x"}]}}]})["choices"][0]
    assert choice["index"] == read and choice["index"].__class__ is int


@pytest.mark.parametrize("value", [5, ["x"], "x", True])
def test_a_function_name_or_args_of_the_wrong_type_is_read_as_absent(value: Any) -> None:
    # Arguments are the JSON of an object, a name is a string: never the value as it came.
    part = {"functionCall": {"name": value if not isinstance(value, str) else 5, "args": value}}
    body = parse({"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}]})
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "", "arguments": "{}"}
