"""Chat completions through the gateway with the official openai SDK, sync and async."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.sdk import ask, stream_text
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def upstream_body(mock: Mock, marker: str) -> dict[str, object]:
    """The one request body the mock received for ``mock:capture=<marker>``."""
    (seen,) = captured(mock, marker)
    assert seen["method"] == "POST" and seen["path"] == "/v1/chat/completions"
    body: dict[str, object] = seen["body"]
    return body


def test_non_stream_returns_upstream_answer_and_usage(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=ask("hello gateway"))
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "Hello from the Switchboard mock. You said: hello gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 0


def test_usage_numbers_and_cached_tokens_agree_in_stream(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=ask("count my words"))
    answer = plain.choices[0].message.content or ""
    assert plain.usage is not None and plain.usage.prompt_tokens_details is not None
    assert plain.usage.completion_tokens == len(answer.split(" "))
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    assert plain.usage.prompt_tokens_details.cached_tokens == 0
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("count my words"), stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = chunks[-1].usage
    assert streamed is not None and streamed.prompt_tokens_details is not None
    assert (streamed.prompt_tokens, streamed.completion_tokens, streamed.total_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
        plain.usage.total_tokens,
    )
    assert streamed.prompt_tokens_details.cached_tokens == 0


def test_response_carries_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("id"))
    assert len(raw.headers["x-request-id"]) >= 16
    echoed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("id"), extra_headers={"X-Request-Id": "trace-123"}
    )
    assert echoed.headers["x-request-id"] == "trace-123"


async def test_async_non_stream(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model="gpt-4o-mini", messages=ask("async hello"))
    assert resp.choices[0].message.content == "Hello from the Switchboard mock. You said: async hello"


def test_stream_relays_chunks_in_order(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    prompt = f"stream me mock:capture={marker}"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask(prompt), stream=True)
    chunks = list(stream)
    assert stream_text(chunks) == f"Hello from the Switchboard mock. You said: {prompt}"
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Usage is requested upstream for accounting but not shown unless the client asked for it.
    body = upstream_body(mock_upstream, marker)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_stream_include_usage_yields_final_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("count"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 8


async def test_async_stream(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=ask("async stream"), stream=True
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "Hello from the Switchboard mock. You said: async stream"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tool_round_trip(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    messages: list[dict[str, object]] = [ask(f"weather in Paris? mock:capture={marker}")[0]]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 18C and sunny"
    # Upstream, both turns carried the tool definition unchanged, and the second the whole history.
    asked, answered = (r["body"] for r in captured(mock_upstream, marker, count=2))
    assert asked["tools"] == answered["tools"] == [WEATHER_TOOL]
    assert answered["messages"] == messages


def test_streamed_tool_call_arguments_reassemble(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ask("weather?"),
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
    )
    name, args, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            name += call.function.name or ""
            args += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls"


def test_image_inputs_data_and_http_urls(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    content = [
        {"type": "text", "text": f"two images mock:capture={marker}"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}"}},
        {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
    ]
    messages = [{"role": "user", "content": content}]
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert resp.choices[0].message.content is not None
    # Both images reached OpenAI unchanged (OpenAI fetches http(s) URLs itself, so the gateway
    # does not inline them).
    assert upstream_body(mock_upstream, marker)["messages"] == messages


def test_passthrough_fields_reach_upstream(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    prompt = f"json please mock:capture={marker}"
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ask(prompt),
        n=2,
        seed=7,
        user="user-1",
        stop=["\n\n"],
        logprobs=True,
        response_format={"type": "json_object"},
        extra_body={"vendor_extension": {"kept": True}},
    )
    body = upstream_body(mock_upstream, marker)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": ask(prompt),
        "n": 2,
        "seed": 7,
        "user": "user-1",
        "stop": ["\n\n"],
        "logprobs": True,
        "response_format": {"type": "json_object"},
        "vendor_extension": {"kept": True},
    }
    # And the upstream's answer to those fields comes back.
    assert [c.index for c in resp.choices] == [0, 1]
    for choice in resp.choices:
        assert json.loads(choice.message.content or "") == {
            "answer": f"Hello from the Switchboard mock. You said: {prompt}"
        }
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content


def test_max_tokens_truncates_with_length(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"long answer mock:capture={marker}"), max_tokens=3
    )
    assert upstream_body(mock_upstream, marker)["max_tokens"] == 3
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.content == "Hello from the"


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_paths_with_and_without_v1(gateway: Gateway, mock_upstream: Mock, prefix: str) -> None:
    marker = new_marker()
    c = openai.OpenAI(base_url=gateway.url + prefix, api_key=MASTER_KEY, max_retries=0)
    prompt = f"path {prefix or 'bare'} mock:capture={marker}"
    resp = c.chat.completions.create(model="gpt-4o-mini", messages=ask(prompt))
    assert resp.choices[0].message.content == f"Hello from the Switchboard mock. You said: {prompt}"
    # Either inbound path reaches the provider's one chat path.
    assert upstream_body(mock_upstream, marker)["messages"] == ask(prompt)
