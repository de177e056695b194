"""openai-compatible responses, streams and errors from the various servers -> canonical form.

Golden events are shaped as each server sends them: vLLM/Ollama (OpenAI's chunks and usage
chunk), Groq (usage in ``x_groq.usage`` on the final chunk), Together (usage on the finish
chunk), DeepSeek (``prompt_cache_hit_tokens``), OpenRouter (SSE comments as keep-alives, errors
inside a chunk), TGI (``{"error": "...", "error_type": ...}``).
"""

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
)
from switchboard.providers.openai_compatible import SPEC, Options, is_context_length, normalise_usage
from switchboard.providers.target import Target

TARGET = Target(
    name="m",
    model="llama3",
    provider="local",
    provider_type="openai-compatible",
    api_base="http://localhost:8000/v1",
    options=Options(preset="vllm"),
    timeouts=Timeouts(),
)
ADAPTER = SPEC.adapter
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
CANONICAL = {**USAGE, "prompt_tokens_details": {"cached_tokens": 0}}


def sse(data: dict[str, Any] | str) -> bytes:
    return b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "llama3",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
    )


def decode(*parts: bytes, object_name: str = "chat") -> list[dict[str, Any]]:
    decoder = (ADAPTER.chat_stream if object_name == "chat" else ADAPTER.completions_stream)({}, TARGET)
    out = []
    for part in parts:
        out.extend(decoder.feed(part))
    return out + decoder.close()


# ---- non-stream -------------------------------------------------------------------------------


def test_non_stream_usage_normalised() -> None:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "total_tokens": 12,
            "prompt_cache_hit_tokens": 8,
            "prompt_cache_miss_tokens": 2,
        },
    }
    out = ADAPTER.chat_response(orjson.dumps(body), TARGET)
    assert out["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    assert out["choices"] == body["choices"]


def test_usage_normalisation() -> None:
    assert normalise_usage({"prompt_tokens": 3, "completion_tokens": 4}) == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    details = {"reasoning_tokens": 9}
    assert (
        normalise_usage({**USAGE, "completion_tokens_details": details})["completion_tokens_details"]
        == details
    )
    assert normalise_usage(None) is None
    assert normalise_usage({"prompt_tokens": True})["prompt_tokens"] == 0  # type: ignore[index]


@pytest.mark.parametrize("body", [b"", b"not json", b'{"object": "chat.completion"}', b"<html>500</html>"])
def test_invalid_bodies(body: bytes) -> None:
    with pytest.raises(UpstreamBadGateway):
        ADAPTER.chat_response(body, TARGET)


# ---- streams ----------------------------------------------------------------------------------


def test_openai_style_usage_chunk() -> None:
    chunks = decode(
        chunk({"role": "assistant", "content": ""}, usage=None),
        chunk({"content": "Hi"}, usage=None),
        chunk({}, "stop", usage=None),
        sse(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "llama3",
                "choices": [],
                "usage": USAGE,
            }
        ),
        sse("[DONE]"),
    )
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
    ]
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1] == {
        "id": "c1",
        "created": 1,
        "model": "llama3",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": CANONICAL,
    }


def test_usage_on_the_finish_chunk_is_split_off() -> None:  # Together, Mistral
    chunks = decode(chunk({"content": "Hi"}), chunk({}, "stop", usage=USAGE), sse("[DONE]"))
    assert chunks[1]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[1]
    assert chunks[2]["choices"] == [] and chunks[2]["usage"] == CANONICAL


def test_groq_usage_in_x_groq() -> None:
    chunks = decode(
        chunk({"content": "Hi"}, x_groq={"id": "req_01"}),
        chunk({}, "stop", x_groq={"id": "req_01", "usage": {**USAGE, "queue_time": 0.01}}),
        sse("[DONE]"),
    )
    assert chunks[-1]["usage"] == CANONICAL


def test_groq_error_in_x_groq() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(chunk({"content": "Hi"}), chunk({}, None, x_groq={"error": "over capacity"}))
    assert "over capacity" in exc.value.message


def test_openrouter_comments_and_error_chunk() -> None:
    keepalive = b": OPENROUTER PROCESSING\n\n"
    assert decode(keepalive, chunk({"content": "ok"}), keepalive, chunk({}, "stop"), sse("[DONE]"))[0][
        "choices"
    ]
    error = sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "x",
            "error": {"code": 502, "message": "Provider disconnected"},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
    )
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(chunk({"content": "partial"}), error)
    assert "Provider disconnected" in exc.value.message


@pytest.mark.parametrize("object_name", ["chat", "completions"])
def test_stream_of_done_alone_is_an_error_not_an_empty_answer(object_name: str) -> None:
    with pytest.raises(UpstreamBadGateway, match="without sending any of the answer"):
        decode(b": ping\n\n", sse("[DONE]"), object_name=object_name)
    with pytest.raises(UpstreamBadGateway, match="without sending any of the answer"):
        decode(b"data: [DONE]", object_name=object_name)  # read at the end, without its blank line
    # Azure's leading prompt filter results carry no choices: no answer either.
    filtered = sse({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})
    with pytest.raises(UpstreamBadGateway, match="without sending any of the answer"):
        decode(filtered, sse("[DONE]"), object_name=object_name)


def test_done_in_a_later_read_than_the_chunks_is_complete() -> None:
    """A chunk in one read, [DONE] alone in the next: an answer (even with no finish_reason)."""
    chunks = decode(chunk({"content": "a"}), sse("[DONE]"))
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a"]
    # A usage chunk alone is a chunk too (re-emitted at the end).
    assert decode(sse({"id": "c1", "choices": [], "usage": USAGE}), sse("[DONE]"))[-1]["usage"] == CANONICAL


def test_tgi_error_event() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(
            sse(
                {
                    "error": "Request failed during generation: Server error: CUDA out of memory",
                    "error_type": "generation",
                }
            )
        )
    assert "CUDA out of memory" in exc.value.message


def test_choices_less_chunks_without_usage_are_dropped() -> None:  # Azure's prompt filter results
    first = sse(
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        }
    )
    chunks = decode(first, chunk({"content": "Hi"}), chunk({}, "stop"), sse("[DONE]"))
    assert len(chunks) == 2 and all(c["choices"] for c in chunks)


def test_missing_metadata_is_filled_in() -> None:
    chunks = decode(
        sse({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}), sse("[DONE]")
    )
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["model"] == "llama3"


def test_tool_call_deltas_pass_through() -> None:
    start = {
        "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
        ]
    }
    more = {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}
    chunks = decode(chunk(start), chunk(more), chunk({}, "tool_calls"), sse("[DONE]"))
    assert chunks[0]["choices"][0]["delta"] == start
    assert chunks[1]["choices"][0]["delta"] == more


def test_legacy_completion_stream() -> None:
    def text(piece: str, finish: str | None = None) -> bytes:
        return sse(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "llama3",
                "choices": [{"text": piece, "index": 0, "finish_reason": finish}],
            }
        )

    chunks = decode(
        text("Hel"),
        text("lo", "stop"),
        sse(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "llama3",
                "choices": [],
                "usage": USAGE,
            }
        ),
        sse("[DONE]"),
        object_name="completions",
    )
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["Hel", "lo"]
    assert chunks[-1]["object"] == "text_completion" and chunks[-1]["usage"] == CANONICAL


def test_last_event_without_blank_line() -> None:
    chunks = decode(
        chunk({"content": "Hi"}),
        b'data: {"id": "c1", "choices": [{"index": 0, "delta": {}, '
        b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 1}}',
    )
    assert chunks[-1]["usage"]["total_tokens"] == 1


@pytest.mark.parametrize("tail", [b"", b'data: {"id": "c1", "choi'])
def test_truncated_streams_raise(tail: bytes) -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(chunk({"content": "Hel"}), tail)
    assert "before it was complete" in exc.value.message


def test_invalid_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(sse("{not json"))
    assert "invalid stream event" in exc.value.message


# ---- errors -----------------------------------------------------------------------------------


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> GatewayError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ADAPTER.error(status, headers or {}, raw, TARGET)


def test_openai_shaped_error() -> None:
    err = error(
        404,
        {
            "error": {
                "message": 'model "llama9" not found, try pulling it first',
                "type": "api_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert err.status == 404 and err.type == "api_error" and "llama9" in err.message


@pytest.mark.parametrize(("message", "given", "param"), [
    # Older OpenAI and Azure refusals: no param, the path at the end of the message.
    ("'content' is a required property - 'messages.2'", None, "messages.2"),
    ("None is not of type 'string' - 'messages.1.content'", None, "messages.1.content"),
    ("[] is too short - 'messages'", None, "messages"),
    # A param given is the upstream's own; other paths, or one inside the text, are not read.
    ("'content' is a required property - 'messages.2'", "messages.[2]", "messages.[2]"),
    ("'x' is not valid under any of the given schemas - 'tools.0'", None, None),
    ("'messages.2' lacks 'content'", None, None),
])
def test_the_path_ending_an_openai_shaped_message_is_its_param(
        message: str, given: str | None, param: str | None) -> None:
    err = error(400, {"error": {"message": message, "type": "invalid_request_error", "param": given,
                                "code": None}})
    assert (err.param, err.message) == (param, message)


def test_vllm_context_length() -> None:
    err = error(
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, "
            "you requested 5000 tokens (4000 in the messages, 1000 in the completion).",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    )
    assert err.status == 400 and err.code == "context_length_exceeded"


def test_tgi_string_error_with_context_length() -> None:
    err = error(
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
            "Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
            "error_type": "validation",
        },
    )
    assert err.status == 400 and err.code == "context_length_exceeded"


def test_rate_limit() -> None:
    err = error(
        429,
        {
            "error": {
                "message": "Rate limit reached for model",
                "type": "tokens",
                "code": "rate_limit_exceeded",
            }
        },
        {"retry-after": "2"},
    )
    assert isinstance(err, UpstreamRateLimited)
    assert err.headers == {"retry-after": "2", "x-ratelimit-scope": "upstream"}


def test_auth_and_timeouts() -> None:
    assert isinstance(
        error(401, {"error": {"message": "Invalid API Key", "code": "invalid_api_key"}}), UpstreamAuthFailed
    )
    assert isinstance(error(504, b"upstream request timeout"), UpstreamTimeout)


def test_html_error_page() -> None:
    err = error(502, b"<html><head><title>502 Bad Gateway</title></head></html>")
    assert isinstance(err, UpstreamBadGateway) and "HTTP 502" in err.message


def test_context_length_detection() -> None:
    assert is_context_length("This model's maximum context length is 8192 tokens")
    assert is_context_length("prompt is too long: 210000 tokens > 200000 maximum")
    assert is_context_length("Input tokens exceed the configured limit of 272000 tokens.")
    assert is_context_length("the request exceeds the available context size. try increasing it")
    assert not is_context_length("Invalid value for 'temperature'")
    assert not is_context_length(None)


def test_error_after_good_chunks_in_one_read_is_raised_next() -> None:
    decoder = ADAPTER.chat_stream({}, TARGET)
    out = decoder.feed(
        chunk({"content": "Hi"}) + sse({"error": {"message": "boom"}}) + chunk({"content": "x"})
    )
    assert [c["choices"][0]["delta"] for c in out] == [{"content": "Hi"}]
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.feed(chunk({}, "stop"))
    assert "boom" in exc.value.message
    with pytest.raises(UpstreamBadGateway):
        decoder.close()


def test_error_in_the_final_flush_is_raised() -> None:
    decoder = ADAPTER.chat_stream({}, TARGET)
    decoder.feed(chunk({"content": "Hi"}))
    decoder.feed(chunk({}, "stop") + b'data: {"error": {"message": "late failure"}}')
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.close()
    assert "late failure" in exc.value.message


def test_reasoning_is_read_as_reasoning_content() -> None:
    # OpenRouter and Ollama name it "reasoning"; the canonical name is reasoning_content.
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "4", "reasoning": "2 + 2"}}]}
    message = ADAPTER.chat_response(orjson.dumps(body), TARGET)["choices"][0]["message"]
    assert message["reasoning_content"] == "2 + 2" and "reasoning" not in message
    chunks = decode(chunk({"role": "assistant", "reasoning": "2 + 2"}), chunk({"content": "4"}, "stop"),
                    sse("[DONE]"))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "2 + 2"}


@pytest.mark.parametrize("index", [[0], {"i": 0}])
def test_indices_of_the_wrong_type_are_read_as_missing(index: Any) -> None:
    # A list is no dict key: a choice's or a call's index of the wrong type is no TypeError (a 500).
    first = {"index": index, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    more = {"index": index, "function": {"arguments": "{}"}}
    data = b"".join([
        sse({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "llama3",
             "choices": [{"index": index, "delta": {"role": "assistant", "tool_calls": [first]}}]}),
        chunk({"tool_calls": [more]}), chunk({}, "tool_calls"), sse("[DONE]"),
    ])
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in decode(data)
             if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert [call["index"] for call in calls] == [0, 0]
    assert calls[1]["function"]["arguments"] == "{}"


def test_a_whole_number_float_tool_call_index_names_its_call() -> None:
    # A server writing its numbers as floats: 1.0 is call 1, so an arguments fragment without an
    # id continues the call its index names, not the last call started.
    def start(index: float, call_id: str) -> dict[str, Any]:
        return {"index": index, "id": call_id, "type": "function", "function": {"name": "f", "arguments": ""}}

    def piece(index: float, arguments: str) -> dict[str, Any]:
        return {"index": index, "function": {"arguments": arguments}}

    chunks = decode(chunk({"role": "assistant", "tool_calls": [start(0.0, "call_a")]}),
                    chunk({"tool_calls": [start(1.0, "call_b")]}),
                    chunk({"tool_calls": [piece(0.0, '{"x": 1}')]}),
                    chunk({"tool_calls": [piece(1.0, "{}")]}),
                    chunk({}, "tool_calls"), sse("[DONE]"))
    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(call["index"], call["function"]["arguments"]) for call in calls] == [
        (0, ""), (1, ""), (0, '{"x": 1}'), (1, "{}")]
    assert all(call["index"].__class__ is int for call in calls)


@pytest.mark.parametrize("index", [True, 1.5, -1])
def test_a_tool_call_index_that_is_no_whole_number_is_read_as_missing(index: Any) -> None:
    # No id and no index: each call starts a call of its own, numbered by the gateway.
    calls = [{"index": index, "function": {"name": "f", "arguments": "{}"}}]
    chunks = decode(chunk({"role": "assistant", "tool_calls": calls}), chunk({}, "tool_calls"), sse("[DONE]"))
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0


@pytest.mark.parametrize("reason", [5, ["stop"], {"type": "stop"}, True])
def test_a_finish_reason_that_is_not_a_string_is_read_as_absent(reason: Any) -> None:
    # Null, as any member of the wrong JSON type is read, not relayed as it came.
    chunks = decode(chunk({"role": "assistant", "content": "a"}), chunk({"content": "b"}, reason),
                    chunk({}, "stop"), sse("[DONE]"))
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, "stop"]
    with pytest.raises(UpstreamBadGateway, match="before it was complete"):  # and it ends nothing
        decode(chunk({"role": "assistant", "content": "a"}), chunk({"content": "b"}, reason))
