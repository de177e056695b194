"""Provider type 'anthropic' end to end: the openai SDK -> gateway -> Anthropic Messages mock, and back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.sdk import ask, finish_reasons, stream_text
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
BAD_KEY = "sk-ant-wrong-key-999"
SAID = "Hello from the Switchboard mock. You said: "
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def anthropic_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "anthropic-mock",
                "type": "anthropic",
                "api_base": mock.url,
                "api_key": "${UPSTREAM_KEY}",
                "default_max_tokens": 256,
            },
            {
                "name": "anthropic-json-tool",
                "type": "anthropic",
                "api_base": mock.url,
                "api_key": "${UPSTREAM_KEY}",
                "json_schema_mode": "tool",
            },
            {"name": "anthropic-bad-key", "type": "anthropic", "api_base": mock.url, "api_key": BAD_KEY},
        ],
        "models": [
            {"name": "claude", "provider": "anthropic-mock", "model": "claude-sonnet-4-5"},
            {
                "name": "claude-lenient",
                "provider": "anthropic-mock",
                "model": "claude-sonnet-4-5",
                "drop_params": True,
            },
            {"name": "claude-json-tool", "provider": "anthropic-json-tool", "model": "claude-sonnet-4-5"},
            {"name": "claude-misconfigured", "provider": "anthropic-bad-key", "model": "claude-sonnet-4-5"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def anthropic_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(anthropic_config(mock_upstream), tmp_path_factory.mktemp("anthropic"))
    yield gw
    gw.process.stop()


@pytest.fixture
def claude(anthropic_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=anthropic_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)








# -- chat -----------------------------------------------------------------------------------------


def test_chat_non_stream(claude: openai.OpenAI) -> None:
    resp = claude.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello Claude"},
        ],
    )
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == SAID + "Hello Claude"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 9
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_multi_turn_with_system_and_developer_messages(claude: openai.OpenAI) -> None:
    resp = claude.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "developer", "content": "Rule two."},
            {"role": "user", "content": "Second"},
            {"role": "user", "content": "question"},
        ],
    )
    # A system message after the first turn stays where it was, as user text (providers/turns.py).
    assert resp.choices[0].message.content == SAID + "System: Rule two. Second question"


def test_chat_stream_matches_non_stream_and_reports_usage(claude: openai.OpenAI) -> None:
    plain = claude.chat.completions.create(model="claude", messages=ask("Stream me please"))
    chunks = list(
        claude.chat.completions.create(
            model="claude",
            messages=ask("Stream me please"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert stream_text(chunks) == plain.choices[0].message.content
    assert finish_reasons(chunks) == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and plain.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
    )


def test_stop_sequences_and_max_tokens(claude: openai.OpenAI) -> None:
    resp = claude.chat.completions.create(model="claude", messages=ask("hi"), stop=["mock"])
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == (
        "Hello from the Switchboard ",
        "stop",
    )
    resp = claude.chat.completions.create(model="claude", messages=ask("hi"), max_tokens=3)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("Hello from the", "length")
    chunks = list(
        claude.chat.completions.create(
            model="claude", messages=ask("hi"), max_completion_tokens=2, stream=True
        )
    )
    assert (stream_text(chunks), finish_reasons(chunks)) == ("Hello from", ["length"])


def test_a_whitespace_stop_sequence_is_a_400_naming_stop_or_dropped(claude: openai.OpenAI) -> None:
    # OpenAI takes stop "\n"; Anthropic refuses it ("each stop sequence must contain non-whitespace").
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("hi"), stop=["\n"])
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == "stop"  # type: ignore[index]
    assert exc.value.code == "unsupported_parameter"
    resp = claude.chat.completions.create(model="claude-lenient", messages=ask("hi"), stop=["\n", "mock"])
    answer = (resp.choices[0].message.content, resp.choices[0].finish_reason)
    assert answer == ("Hello from the Switchboard ", "stop")


def test_sampling_parameters_pass(claude: openai.OpenAI) -> None:
    resp = claude.chat.completions.create(
        model="claude", messages=ask("hi"), temperature=0.2, top_p=0.9, user="user-1", extra_body={"top_k": 5}
    )
    assert resp.choices[0].message.content == SAID + "hi"


# -- tools ------------------------------------------------------------------------------------------


def test_tool_round_trip(claude: openai.OpenAI) -> None:
    messages: list[Any] = ask("What is the weather in Paris?")
    first = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll use the get_weather tool."
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    final = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "The tool returned: 18C and sunny"


def test_tool_call_stream(claude: openai.OpenAI) -> None:
    chunks = list(
        claude.chat.completions.create(
            model="claude",
            messages=ask("Weather?"),
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.id or ""
            entry["name"] += (tc.function.name or "") if tc.function else ""
            entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert stream_text(chunks) == ""  # a forced tool call has no text preamble
    assert finish_reasons(chunks) == ["tool_calls"]


def test_named_tool_choice(claude: openai.OpenAI) -> None:
    other = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}},
                "required": ["tz"],
            },
        },
    }
    resp = claude.chat.completions.create(
        model="claude",
        messages=ask("Time?"),
        tools=[WEATHER_TOOL, other],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    calls = resp.choices[0].message.tool_calls
    assert calls is not None
    assert (calls[0].function.name, json.loads(calls[0].function.arguments)) == ("get_time", {"tz": "UTC"})


def allowed(mode: str, *names: str) -> Any:
    return {"type": "allowed_tools", "allowed_tools": {
        "mode": mode, "tools": [{"type": "function", "function": {"name": n}} for n in names]}}


def test_allowed_tools_choice_offers_only_those_tools(claude: openai.OpenAI, mock_upstream: Mock) -> None:
    # Anthropic has no allowed list: its mode (required -> any, auto -> the default) over only the
    # allowed tools, which means the same.
    other: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    for mode, sent_choice in (("required", {"type": "any"}), ("auto", None)):
        marker = new_marker()
        resp = claude.chat.completions.create(
            model="claude", messages=ask(f"weather? mock:capture={marker}"), tools=[other, WEATHER_TOOL],
            tool_choice=allowed(mode, "get_weather"),
        )
        [record] = captured(mock_upstream, marker)
        assert [t["name"] for t in record["body"]["tools"]] == ["get_weather"]
        assert record["body"].get("tool_choice") == sent_choice
        if mode == "required":
            assert [c.function.name for c in resp.choices[0].message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]


def test_allowed_tools_naming_a_tool_not_offered_is_a_400_naming_it(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("weather?"), tools=[WEATHER_TOOL],
                                       tool_choice=allowed("required", "get_weather", "get_time"))
    assert exc.value.body["param"] == "tool_choice.allowed_tools.tools[1]"  # type: ignore[index]
    assert exc.value.code == "invalid_value" and "'get_time'" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("weather?"), tools=[WEATHER_TOOL],
                                       tool_choice=allowed("sometimes", "get_weather"))
    assert exc.value.body["param"] == "tool_choice.allowed_tools.mode"  # type: ignore[index]


def test_parallel_tool_results_grouped_into_one_turn(claude: openai.OpenAI) -> None:
    messages = [
        *ask("Weather in Paris and Rome?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_paris",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call.rome",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris", "content": "18C"},
        {"role": "tool", "tool_call_id": "call.rome", "content": "25C"},
    ]
    resp = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].message.content == "The tool returned: 18C 25C"


def test_a_failed_tool_call_with_no_output_is_answered(claude: openai.OpenAI) -> None:
    # Anthropic refuses a tool_result with is_error true and no content; a tool that failed
    # silently (empty output) must not wedge the conversation.
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    for content in ("", [{"type": "text", "text": ""}]):
        messages: Any = [
            *ask("Weather?"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": content, "is_error": True},
        ]
        resp = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
        assert resp.choices[0].message.content == "The tool returned: (no content)"


def test_an_earlier_reply_of_whitespace_only_is_sent(claude: openai.OpenAI) -> None:
    # Anthropic refuses text blocks that are all whitespace ("text content blocks must contain
    # non-whitespace text"); a model's "\n\n" reply, sent back in the history, must not wedge it.
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    histories: Any = [
        [*ask("Hi"), {"role": "assistant", "content": "\n\n"}, *ask("Weather?")],
        [*ask("Weather?"), {"role": "assistant", "content": "\n", "tool_calls": [call]},
         {"role": "tool", "tool_call_id": "call_1", "content": "18C"}],
    ]
    for messages in histories:
        resp = claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
        assert resp.choices[0].message.content


def test_a_tool_result_without_its_call_is_a_400_naming_it(claude: openai.OpenAI) -> None:
    # Anthropic refuses a tool_result whose tool_use is not in the conversation (a history trimmed
    # from the front, a mistyped id): refused here, naming the tool message's field.
    call = {"id": "call_paris", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages: list[Any] = [
        *ask("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_paris", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_rome", "content": "25C"},
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert exc.value.body["param"] == "messages[3].tool_call_id"  # type: ignore[index]
    assert exc.value.code == "invalid_value"
    assert "call_rome" in exc.value.message and "anthropic" in exc.value.message
    # A result that comes first, before any call, likewise.
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=[messages[2], *ask("and?")],
                                       tools=[WEATHER_TOOL])
    assert exc.value.body["param"] == "messages[0].tool_call_id"  # type: ignore[index]


# -- images, structured output, usage ----------------------------------------------------------------


def test_image_inputs_data_and_http_urls(claude: openai.OpenAI, mock_upstream: Mock) -> None:
    content = [
        {"type": "text", "text": "Describe these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}"}},
        {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
    ]
    resp = claude.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == SAID + "Describe these (I see 2 images: image/png, url)"


def test_an_image_labelled_with_another_type_is_sent_as_what_its_bytes_are(claude: openai.OpenAI) -> None:
    # Anthropic answers 400 "Image does not match the provided media type" for PNG bytes sent as
    # image/jpeg, a label many OpenAI clients put on every image.
    content = [
        {"type": "text", "text": "Describe this"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PIXEL_PNG}"}},
    ]
    resp = claude.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == SAID + "Describe this (I see 1 image: image/png)"


def test_unsupported_image_type_is_400(claude: openai.OpenAI) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert "image/tiff" in exc.value.message


def test_strict_json_schema_native(claude: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": CITY_SCHEMA}}
    resp = claude.chat.completions.create(model="claude", messages=ask("Pick a city"), response_format=fmt)
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "stop"


def test_json_schema_through_forced_tool(claude: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": CITY_SCHEMA}}
    resp = claude.chat.completions.create(
        model="claude-json-tool", messages=ask("Pick a city"), response_format=fmt
    )
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None
    chunks = list(
        claude.chat.completions.create(
            model="claude-json-tool", messages=ask("Pick a city"), response_format=fmt, stream=True
        )
    )
    assert json.loads(stream_text(chunks)) == {"city": "Paris"}
    assert finish_reasons(chunks) == ["stop"]


def test_json_mode_emulated_with_a_tool_refuses_a_forced_tool_choice(claude: openai.OpenAI) -> None:
    # JSON mode through a forced tool of the gateway's own: a caller's forced choice (without
    # tools) cannot be kept beside it, so a 400 naming it rather than replaced in silence.
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}}
    for model, format_ in (("claude-json-tool", fmt), ("claude", {"type": "json_object"})):
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            with pytest.raises(openai.BadRequestError) as exc:
                claude.chat.completions.create(model=model, messages=ask("Pick a city"),
                                               response_format=format_, tool_choice=choice)  # type: ignore[arg-type]
            assert exc.value.body["param"] == "tool_choice"  # type: ignore[index]
            assert "response_format" in exc.value.message
    resp = claude.chat.completions.create(model="claude-json-tool", messages=ask("Pick a city"),
                                          response_format=fmt, tool_choice="auto")
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}


def test_forced_tool_choice_without_tools_is_the_gateways_400(claude: openai.OpenAI) -> None:
    # Nothing to call: the gateway's own 400 naming tool_choice, the same Bedrock gives, not
    # Anthropic's refusal in its words; also beside a natively sent response_format.
    strict: Any = {"type": "json_schema",
                   "json_schema": {"name": "city", "strict": True, "schema": CITY_SCHEMA}}
    for extra in ({}, {"response_format": strict}):
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            with pytest.raises(openai.BadRequestError) as exc:
                claude.chat.completions.create(model="claude", messages=ask("weather?"),
                                               tool_choice=choice, **extra)  # type: ignore[arg-type]
            assert exc.value.body["param"] == "tool_choice"  # type: ignore[index]
            assert exc.value.type == "invalid_request_error"
            assert "has no tools" in exc.value.message and "'anthropic'" in exc.value.message
    assert claude.chat.completions.create(model="claude", messages=ask("hi"), tool_choice="auto").choices
    assert claude.chat.completions.create(model="claude", messages=ask("hi"), tool_choice="none").choices


def test_json_object(claude: openai.OpenAI) -> None:
    resp = claude.chat.completions.create(
        model="claude", messages=ask("Reply in JSON"), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)
    assert resp.choices[0].finish_reason == "stop"


def test_prompt_caching_usage(claude: openai.OpenAI) -> None:
    rules = f"House rules {uuid.uuid4()}: " + "be precise " * 40
    messages: Any = [
        {
            "role": "system",
            "content": [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "Question"},
    ]
    first = claude.chat.completions.create(model="claude", messages=messages).usage
    second = claude.chat.completions.create(model="claude", messages=messages).usage
    assert first is not None and second is not None
    assert first.prompt_tokens_details is not None and second.prompt_tokens_details is not None
    written = (first.prompt_tokens_details.model_extra or {})["cache_creation_tokens"]
    assert written > 40
    assert first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details.cached_tokens == written
    assert (second.prompt_tokens_details.model_extra or {})["cache_creation_tokens"] == 0
    assert first.prompt_tokens == second.prompt_tokens  # cached tokens still count as prompt tokens


# -- parameters and errors ---------------------------------------------------------------------------


def test_unsupported_parameter_is_400_or_dropped(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("hi"), seed=7)
    assert exc.value.param == "seed"
    assert "anthropic" in exc.value.message
    dropped = claude.chat.completions.create(
        model="claude", messages=ask("hi"), seed=7, extra_body={"drop_params": True}
    )
    assert dropped.choices[0].message.content == SAID + "hi"
    lenient = claude.chat.completions.create(model="claude-lenient", messages=ask("hi"), presence_penalty=0.5)
    assert lenient.choices[0].message.content == SAID + "hi"


def test_rate_limit_with_retry_after(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("mock:status=429 mock:retry_after=7"))
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "7"


def test_context_length_exceeded(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        claude.chat.completions.create(
            model="claude", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"
    assert "prompt is too long" in exc.value.message


def test_overloaded_is_503(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("mock:status=529"))
    assert exc.value.status_code == 503
    assert exc.value.code == "upstream_overloaded"


def test_upstream_500_is_502(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        claude.chat.completions.create(model="claude", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502


def test_upstream_auth_failure_is_502_without_key(claude: openai.OpenAI, anthropic_gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        claude.chat.completions.create(model="claude-misconfigured", messages=ask("hi"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    assert BAD_KEY not in exc.value.message and BAD_KEY not in exc.value.response.text
    assert (
        BAD_KEY not in anthropic_gateway.process.output
        and UPSTREAM_KEY not in anthropic_gateway.process.output
    )


def test_error_event_mid_stream_raises_in_sdk(claude: openai.OpenAI) -> None:
    stream = claude.chat.completions.create(
        model="claude", messages=ask("hello there mock:fail_after=4"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    # message_start, content_block_start, ping, one text delta went through: the role chunk and "Hello".
    assert stream_text(received) == "Hello"
    assert "overloaded" in exc.value.message


def test_dropped_connection_mid_stream_raises_in_sdk(claude: openai.OpenAI) -> None:
    stream = claude.chat.completions.create(
        model="claude", messages=ask("mock:disconnect_after=4"), stream=True
    )
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    assert "provider 'anthropic-mock'" in exc.value.message


def test_embeddings_unsupported(claude: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        claude.embeddings.create(model="claude", input="hello")
    assert "embeddings" in exc.value.message and "anthropic" in exc.value.message


def test_config_rejects_unknown_anthropic_option(mock_upstream: Mock, tmp_path: Path) -> None:
    config = anthropic_config(mock_upstream)
    config["providers"][0]["anthropic_verison"] = "2023-06-01"
    with pytest.raises(RuntimeError) as exc:
        start_gateway(config, tmp_path)
    assert "anthropic_verison" in str(exc.value)
