"""The Anthropic mock (mock/anthropic.py) in process: strictness, answers, stream events, faults,
and a round trip through the adapter's own request/response translation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from switchboard.config.schema import Timeouts
from switchboard.mock.anthropic import signature_of
from switchboard.mock.app import create_mock_app
from switchboard.providers.anthropic import SPEC, AnthropicOptions
from switchboard.providers.target import Target

KEY = "sk-ant-mock-key"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_mock_app(api_key=KEY)) as c:
        yield c


def post(
    client: TestClient,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> Any:
    return client.post(path, content=orjson.dumps(body), headers=headers if headers is not None else HEADERS)


def ok_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


def assert_error(resp: Any, status: int, kind: str, contains: str = "") -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert contains in body["error"]["message"]
    assert body["request_id"].startswith("req_")


# -- strictness ---------------------------------------------------------------------------------


def test_wrong_and_missing_key(client: TestClient) -> None:
    assert_error(post(client, ok_body(), {**HEADERS, "x-api-key": "nope"}), 401, "authentication_error")
    assert_error(post(client, ok_body(), {"anthropic-version": "2023-06-01"}), 401, "authentication_error")


def test_bearer_key_accepted(client: TestClient) -> None:
    resp = post(client, ok_body(), {"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200


def test_missing_version_header(client: TestClient) -> None:
    assert_error(
        post(client, ok_body(), {"x-api-key": KEY}), 400, "invalid_request_error", "anthropic-version"
    )


@pytest.mark.parametrize(
    ("body", "contains"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens: Field required"),
        (
            ok_body(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}]),
            'Unexpected role "system"',
        ),
        (ok_body(messages=[{"role": "tool", "content": "x"}]), "Input should be 'user' or 'assistant'"),
        (ok_body(messages=[]), "at least one message"),
        (ok_body(n=2), "n: Extra inputs are not permitted"),
        (ok_body(stream_options={"include_usage": True}), "stream_options: Extra inputs"),
        (ok_body(temperature=1.5), "temperature"),
        (ok_body(metadata={"user_id": "u", "x": 1}), "metadata.x"),
        (
            ok_body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            "must be non-empty",
        ),
        (ok_body(messages=[{"role": "user", "content": ""}]), "non-empty content"),
        (
            ok_body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"},
                            }
                        ],
                    }
                ]
            ),
            "media_type",
        ),
        (
            ok_body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "not base64!",
                                },
                            }
                        ],
                    }
                ]
            ),
            "invalid base64",
        ),
        (
            ok_body(
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
            ),
            "'image_url' blocks are not allowed",
        ),
        (
            ok_body(
                messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}]
            ),
            "unexpected `tool_use_id`",
        ),
        (
            ok_body(
                messages=[
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ]
            ),
            "without `tool_result` blocks",
        ),
        (
            ok_body(
                messages=[
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "call.1", "name": "f", "input": {}}],
                    },
                ]
            ),
            "String should match pattern",
        ),
        (ok_body(tools=[{"name": "bad.name", "input_schema": {"type": "object"}}]), "tools.0.custom.name"),
        (ok_body(tools=[{"name": "f", "parameters": {"type": "object"}}]), "input_schema"),
        (ok_body(tool_choice={"type": "any"}), "requires tools"),
        (ok_body(tools=[WEATHER], tool_choice={"type": "tool", "name": "other"}), "not found"),
        (ok_body(output_config={"format": {"type": "json_object"}}), "output_config.format"),
    ],
)
def test_rejects_what_the_real_api_rejects(client: TestClient, body: dict[str, Any], contains: str) -> None:
    assert_error(post(client, body), 400, "invalid_request_error", contains)


def test_invalid_json_body(client: TestClient) -> None:
    resp = client.post("/v1/messages", content=b"{nope", headers=HEADERS)
    assert_error(resp, 400, "invalid_request_error")


# -- answers ------------------------------------------------------------------------------------


def test_text_answer_shape(client: TestClient) -> None:
    resp = post(client, ok_body(system="Be brief."))
    assert resp.status_code == 200
    assert resp.headers["request-id"].startswith("req_")
    body = resp.json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": "Hello from the Switchboard mock. You said: Hi"}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    usage = body["usage"]
    assert usage["output_tokens"] == 8
    assert usage["input_tokens"] > 0
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


def test_stop_sequences_and_max_tokens(client: TestClient) -> None:
    body = post(client, ok_body(stop_sequences=["mock"])).json()
    assert body["content"][0]["text"] == "Hello from the Switchboard "
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "mock")
    body = post(client, ok_body(max_tokens=3)).json()
    assert body["content"][0]["text"] == "Hello from the"
    assert body["stop_reason"] == "max_tokens"


def test_images_are_acknowledged(client: TestClient) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    body = post(client, ok_body(messages=[{"role": "user", "content": content}])).json()
    assert body["content"][0]["text"].endswith("(I see 2 images: image/png, url)")


def test_tool_use_when_tools_present(client: TestClient) -> None:
    body = post(client, ok_body(tools=[WEATHER])).json()
    assert body["stop_reason"] == "tool_use"
    assert body["content"][0] == {"type": "text", "text": "I'll use the get_weather tool."}
    call = body["content"][1]
    assert call["type"] == "tool_use" and call["name"] == "get_weather" and call["input"] == {"city": "Paris"}
    forced = post(client, ok_body(tools=[WEATHER], tool_choice={"type": "any"})).json()
    assert [b["type"] for b in forced["content"]] == ["tool_use"]
    assert (
        post(client, ok_body(tools=[WEATHER], tool_choice={"type": "none"})).json()["stop_reason"]
        == "end_turn"
    )


def test_tool_result_answer(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C sunny"}],
        },
    ]
    body = post(client, ok_body(messages=messages, tools=[WEATHER])).json()
    assert body["stop_reason"] == "end_turn"
    assert body["content"][0]["text"] == "The tool returned: 18C sunny"


def test_structured_output(client: TestClient) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    body = post(client, ok_body(output_config={"format": {"type": "json_schema", "schema": schema}})).json()
    assert orjson.loads(body["content"][0]["text"]) == {"n": 1}


def test_prompt_cache_written_then_read(client: TestClient) -> None:
    system = [
        {
            "type": "text",
            "text": f"Rules {uuid.uuid4()} " + "word " * 50,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    first = post(client, ok_body(system=system)).json()["usage"]
    second = post(client, ok_body(system=system)).json()["usage"]
    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert second["input_tokens"] == first["input_tokens"]


def stream_events(resp: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in resp.text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_stream_event_sequence(client: TestClient) -> None:
    resp = post(client, ok_body(stream=True, max_tokens=3))
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = stream_events(resp)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(n == d["type"] for n, d in events)
    assert events[0][1]["message"]["content"] == [] and events[0][1]["message"]["stop_reason"] is None
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello from the"
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 3


def test_stream_tool_use_events(client: TestClient) -> None:
    events = stream_events(post(client, ok_body(stream=True, tools=[WEATHER], tool_choice={"type": "any"})))
    assert events[1][1]["content_block"] == {
        "type": "tool_use",
        "id": events[1][1]["content_block"]["id"],
        "name": "get_weather",
        "input": {},
    }
    pieces = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert pieces[0] == "" and orjson.loads("".join(pieces)) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


# -- thinking, refusal ---------------------------------------------------------------------------

THINKING = {"type": "enabled", "budget_tokens": 1024}


def test_thinking_block_opens_the_reply_with_a_signature(client: TestClient) -> None:
    body = post(client, ok_body(max_tokens=2000, thinking=THINKING)).json()
    first, second = body["content"]
    assert first["type"] == "thinking" and "Hi" in first["thinking"]
    assert first["signature"] == signature_of(first["thinking"]) and first["signature"].startswith("sig-")
    assert second["type"] == "text" and body["stop_reason"] == "end_turn"
    plain = post(client, ok_body(thinking={"type": "disabled"})).json()
    assert [b["type"] for b in plain["content"]] == ["text"]


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "contains"),
    [
        ({"type": "enabled", "budget_tokens": 500}, 2000, "greater than or equal to 1024"),
        ({"type": "enabled", "budget_tokens": 4000}, 2000, "must be greater than `thinking.budget_tokens`"),
        ({"type": "enabled"}, 2000, "budget_tokens: Field required"),
        ({"type": "sometimes"}, 2000, "expected tags"),
    ],
)
def test_thinking_config_is_checked(
    client: TestClient, thinking: dict[str, Any], max_tokens: int, contains: str
) -> None:
    resp = post(client, ok_body(max_tokens=max_tokens, thinking=thinking))
    assert_error(resp, 400, "invalid_request_error", contains)


def tool_round(first: dict[str, Any], **changes: Any) -> list[dict[str, Any]]:
    """The history answering ``first`` (thinking + tool_use) with a tool result."""
    call = next(b for b in first["content"] if b["type"] == "tool_use")
    replayed = [{**b, **changes} if b["type"] == "thinking" else b for b in first["content"]]
    return [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": replayed},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}]},
    ]


def test_thinking_signature_round_trip(client: TestClient) -> None:
    first = post(
        client,
        ok_body(
            max_tokens=2000,
            thinking=THINKING,
            tools=[WEATHER],
            messages=[{"role": "user", "content": "Weather?"}],
        ),
    ).json()
    assert [b["type"] for b in first["content"]] == ["thinking", "text", "tool_use"]
    ok = post(
        client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER], messages=tool_round(first))
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["content"][-1]["text"] == "The tool returned: 18C"
    tampered = tool_round(first, signature="sig-0000000000000000")
    resp = post(client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER], messages=tampered))
    assert_error(resp, 400, "invalid_request_error", "Invalid `signature`")
    edited = tool_round(first, thinking="something else")
    resp = post(client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER], messages=edited))
    assert_error(resp, 400, "invalid_request_error", "Invalid `signature`")


def test_thinking_must_be_kept_in_a_tool_loop(client: TestClient) -> None:
    first = post(
        client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER],
                        messages=[{"role": "user", "content": "Weather?"}])
    ).json()
    history = tool_round(first)
    history[1]["content"] = [b for b in history[1]["content"] if b["type"] != "thinking"]
    resp = post(client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER], messages=history))
    assert_error(resp, 400, "invalid_request_error", "must start with a thinking block")
    history[1]["content"].insert(0, {"type": "redacted_thinking", "data": "opaque-bytes"})
    resp = post(client, ok_body(max_tokens=2000, thinking=THINKING, tools=[WEATHER], messages=history))
    assert resp.status_code == 200, resp.text


def test_stream_thinking_events(client: TestClient) -> None:
    events = stream_events(post(client, ok_body(max_tokens=2000, thinking=THINKING, stream=True)))
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    text = "".join(d["thinking"] for d in deltas if d["type"] == "thinking_delta")
    assert deltas[-1] == {"type": "signature_delta", "signature": signature_of(text)}
    assert "Hi" in text
    assert events[2 + len(deltas) + 1][1] == {"type": "content_block_stop", "index": 0}
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_refusal_stream_and_non_stream(client: TestClient) -> None:
    messages = [{"role": "user", "content": "Do the bad thing mock:refuse"}]
    body = post(client, ok_body(messages=messages)).json()
    assert body["stop_reason"] == "refusal" and body["stop_sequence"] is None
    assert body["content"] == [{"type": "text", "text": "I can't help with that."}]
    events = stream_events(post(client, ok_body(messages=messages, stream=True)))
    assert events[-2][1]["delta"] == {"stop_reason": "refusal", "stop_sequence": None}


def test_stream_stop_sequence(client: TestClient) -> None:
    events = stream_events(post(client, ok_body(stream=True, stop_sequences=["Switchboard"])))
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Hello from the "
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "Switchboard"}


def test_version_and_beta_headers_are_captured(client: TestClient) -> None:
    marker = f"hdr-{uuid.uuid4().hex[:8]}"
    headers = {**HEADERS, "anthropic-beta": "prompt-caching-2024-07-31", "x-mock-capture": marker}
    assert post(client, ok_body(), headers).status_code == 200
    record = client.get(f"/_mock/captured/{marker}").json()["requests"][0]
    assert record["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert record["headers"]["anthropic-version"] == "2023-06-01"
    assert record["headers"]["x-api-key"] == "<redacted>"


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "kind"),
    [
        ("mock:status=529", 529, "overloaded_error"),
        ("mock:status=500", 500, "api_error"),
        ("mock:status=401", 401, "authentication_error"),
        ("mock:status=413", 413, "request_too_large"),
    ],
)
def test_injected_errors_use_anthropic_format(
    client: TestClient, directive: str, status: int, kind: str
) -> None:
    assert_error(post(client, ok_body(messages=[{"role": "user", "content": directive}])), status, kind)


def test_injected_rate_limit_and_context_length(client: TestClient) -> None:
    resp = post(client, ok_body(messages=[{"role": "user", "content": "mock:status=429 mock:retry_after=9"}]))
    assert_error(resp, 429, "rate_limit_error")
    assert resp.headers["retry-after"] == "9"
    resp = post(
        client,
        ok_body(
            messages=[{"role": "user", "content": "mock:status=400 mock:error_code=context_length_exceeded"}]
        ),
    )
    assert_error(resp, 400, "invalid_request_error", "prompt is too long")


def test_mid_stream_error_event(client: TestClient) -> None:
    events = stream_events(
        post(client, ok_body(stream=True, messages=[{"role": "user", "content": "hello mock:fail_after=3"}]))
    )
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_count_tokens(client: TestClient) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "one two three"}]}
    resp = post(client, body, path="/v1/messages/count_tokens")
    assert resp.status_code == 200
    assert resp.json() == {"input_tokens": 4}
    assert_error(
        post(client, {**body, "max_tokens": 5}, path="/v1/messages/count_tokens"),
        400,
        "invalid_request_error",
        "max_tokens: Extra inputs",
    )
    assert_error(
        post(
            client,
            body,
            {"x-api-key": "bad", "anthropic-version": "2023-06-01"},
            path="/v1/messages/count_tokens",
        ),
        401,
        "authentication_error",
    )


# -- the adapter against the mock ---------------------------------------------------------------


def test_adapter_round_trip_through_the_mock(client: TestClient) -> None:
    target = Target(
        name="claude",
        model="claude-sonnet-4-5",
        provider="p",
        provider_type="anthropic",
        api_base="",
        options=AnthropicOptions(),
        timeouts=Timeouts(),
    )
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
    ]

    def call(request: dict[str, Any]) -> dict[str, Any]:
        upstream = SPEC.adapter.chat_request(request, target)
        resp = client.post(
            upstream.url, content=upstream.body, headers={**upstream.headers, "x-api-key": KEY}
        )
        assert resp.status_code == 200, resp.text
        return SPEC.adapter.chat_response(resp.content, target)

    first = call({"model": "claude", "messages": messages, "tools": [weather]})
    calls = first["choices"][0]["message"]["tool_calls"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    # Answer with two separate tool messages for the same call id set: grouped into one user turn.
    second_call = {**calls[0], "id": "call.second"}
    messages += [
        {
            "role": "assistant",
            "content": first["choices"][0]["message"]["content"],
            "tool_calls": [calls[0], second_call],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
        {"role": "tool", "tool_call_id": "call.second", "content": "25C"},
    ]
    final = call({"model": "claude", "messages": messages, "tools": [weather]})
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["message"]["content"] == "The tool returned: 18C 25C"
