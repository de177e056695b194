"""Canonical (OpenAI) requests -> Mistral chat and embedding bodies.

Field names and shapes follow mistralai/client-python's request models (ChatCompletionRequest,
AssistantMessage, ToolMessage, Function, EmbeddingRequest).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
import pytest

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import registry
from switchboard.providers.mistral import SPEC, Options, embeddings_body, tool_call_id
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


def body_of(request: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    upstream = ADAPTER.chat_request(request, target)
    assert upstream.body is not None
    return dict(orjson.loads(upstream.body))


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "mistral-small", "messages": list(messages), **params}


USER = {"role": "user", "content": "hi"}


def test_url_headers_and_model() -> None:
    upstream = ADAPTER.chat_request(chat(USER), TARGET)
    assert upstream.method == "POST"
    assert upstream.url == "https://api.mistral.ai/v1/chat/completions"
    assert upstream.headers["Content-Type"] == "application/json"
    assert not upstream.stream
    assert body_of(chat(USER)) == {"model": "mistral-small-latest", "messages": [USER]}


def test_stream_request_has_no_stream_options() -> None:
    upstream = ADAPTER.chat_request(chat(USER, stream=True, stream_options={"include_usage": True}), TARGET)
    assert upstream.stream
    assert upstream.headers["Accept"] == "text/event-stream"
    body = orjson.loads(upstream.body or b"")
    assert body["stream"] is True
    assert "stream_options" not in body  # Mistral refuses it and always streams usage


def test_renamed_parameters() -> None:
    body = body_of(
        chat(
            USER,
            seed=42,
            max_completion_tokens=100,
            temperature=0.3,
            top_p=0.9,
            stop=["END"],
            presence_penalty=0.1,
            frequency_penalty=0.2,
            n=2,
            parallel_tool_calls=False,
        )
    )
    assert body["random_seed"] == 42 and "seed" not in body
    assert body["max_tokens"] == 100 and "max_completion_tokens" not in body
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "n": 2,
        "parallel_tool_calls": False,
    }.items():
        assert body[key] == value


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert body_of(chat(USER, max_tokens=10, max_completion_tokens=20))["max_tokens"] == 20


def test_user_is_accepted_and_not_sent() -> None:
    # Mistral has no end-user field (and refuses unknown ones); an end-user id does not change
    # the output, so it is accepted and left out (capability table).
    assert body_of(chat(USER, user="u-1")) == body_of(chat(USER))


@pytest.mark.parametrize("param", ["safety_identifier", "top_k", "thinking"])
def test_fields_mistral_lacks_are_refused_not_dropped(param: str) -> None:
    # safety_identifier used to vanish in silence; Mistral has no field for it.
    value = {"type": "enabled", "budget_tokens": 2048} if param == "thinking" else "u-1"
    with pytest.raises(UnsupportedParameter) as exc:
        body_of(chat(USER, **{param: value}))
    assert exc.value.param == param
    body = body_of(chat(USER, drop_params=True, **{param: value}))
    assert not {param, "drop_params"} & set(body)


def test_canonical_extensions_in_the_history() -> None:
    body = body_of(chat(
        {"role": "user",
         "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": None, "reasoning_content": "r",
         "thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": "s"}],
         "tool_calls": [{"id": "abcdefghi", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "boom", "is_error": True},
    ))
    assert body["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert not {"reasoning_content", "thinking_blocks"} & set(body["messages"][1])
    assert body["messages"][2] == {"role": "tool", "content": "Error: boom", "tool_call_id": "abcdefghi",
                                   "name": "f"}


def test_mistral_extensions_pass_through() -> None:
    body = body_of(chat(USER, safe_prompt=True, random_seed=5))
    assert body["safe_prompt"] is True
    assert body["random_seed"] == 5


def test_safe_prompt_option() -> None:
    target = dataclasses.replace(TARGET, options=Options(safe_prompt=True))
    assert body_of(chat(USER), target)["safe_prompt"] is True
    assert body_of(chat(USER, safe_prompt=False), target)["safe_prompt"] is False  # the request wins


@pytest.mark.parametrize(
    "param, value",
    [
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"1": 2}),
        ("store", True),
        ("service_tier", "auto"),
        ("modalities", ["text", "audio"]),
        ("functions", [{"name": "f"}]),
    ],
)
def test_unsupported_parameters_are_named(param: str, value: Any) -> None:
    with pytest.raises(UnsupportedParameter) as exc:
        ADAPTER.chat_request(chat(USER, **{param: value}), TARGET)
    assert exc.value.param == param
    assert "mistral" in exc.value.message


def test_unsupported_parameters_dropped_on_request() -> None:
    body = body_of(chat(USER, logprobs=True, top_logprobs=2, drop_params=True))
    assert not {"logprobs", "top_logprobs", "drop_params"} & set(body)


def test_message_roles_and_fields() -> None:
    body = body_of(
        chat(
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            },
            {"role": "system", "content": "Stay polite."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi there", "refusal": None, "annotations": []},
            {"role": "user", "content": "and?"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
        )
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Stay polite."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": "I can't."},
    ]


def test_message_names_are_refused_or_dropped() -> None:
    # Mistral has no participant names: a 400 naming the first, not a silent removal.
    named = chat({"role": "system", "content": "Stay polite.", "name": "rules"},
                 {"role": "user", "content": "hello", "name": "ann"})
    with pytest.raises(UnsupportedParameter) as exc:
        ADAPTER.chat_request(named, TARGET)
    assert exc.value.param == "messages[0].name"
    body = body_of({**named, "drop_params": True})
    assert body["messages"] == [{"role": "system", "content": "Stay polite."},
                                {"role": "user", "content": "hello"}]


def test_function_role_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        ADAPTER.chat_request(chat({"role": "function", "name": "f", "content": "x"}), TARGET)
    assert exc.value.param == "messages[0].role"


def test_images_data_and_http() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    body = body_of(
        chat(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        )
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},  # ImageURL.detail
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    assert not ADAPTER.inline_images  # Mistral fetches http(s) URLs itself


def test_unknown_content_part_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        ADAPTER.chat_request(
            chat({"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}), TARGET
        )
    assert exc.value.param == "messages[0].content[0].type"


# ---- tools ------------------------------------------------------------------------------------


def test_tool_call_id_rules() -> None:
    assert tool_call_id("D681PevKs") == "D681PevKs"  # already valid: unchanged
    mapped = tool_call_id("call_abc123DEF456ghi789")
    assert re.fullmatch(r"[A-Za-z0-9]{9}", mapped)
    assert tool_call_id("call_abc123DEF456ghi789") == mapped  # stable across requests
    assert tool_call_id("call_abc123DEF456ghi780") != mapped
    assert re.fullmatch(r"[A-Za-z0-9]{9}", tool_call_id(""))


def test_tool_conversation() -> None:
    weather = {"type": "function", "function": {"name": "get_weather"}}  # no parameters: allowed by OpenAI
    body = body_of(
        chat(
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "abcDEF123",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
            {"role": "tool", "tool_call_id": "abcDEF123", "content": "noon"},
            tools=[weather],
            tool_choice="required",
        )
    )
    mapped = tool_call_id("call_1")
    assert body["messages"][1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": mapped,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "abcDEF123", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": "18C",
        "tool_call_id": mapped,
        "name": "get_weather",
    }
    assert body["messages"][3] == {
        "role": "tool",
        "content": "noon",
        "tool_call_id": "abcDEF123",
        "name": "get_time",
    }
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    assert body["tool_choice"] == "any"


@pytest.mark.parametrize("choice", ["auto", "none", {"type": "function", "function": {"name": "f"}}])
def test_other_tool_choices_pass_through(choice: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert body_of(chat(USER, tools=tools, tool_choice=choice))["tool_choice"] == choice


def test_non_function_tools_are_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        ADAPTER.chat_request(chat(USER, tools=[{"type": "custom", "custom": {"name": "x"}}]), TARGET)
    assert exc.value.param == "tools[0].type"


def test_response_formats_pass_through() -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True},
    }
    assert body_of(chat(USER, response_format=schema))["response_format"] == schema
    assert body_of(chat(USER, response_format={"type": "json_object"}))["response_format"] == {
        "type": "json_object"
    }


# ---- embeddings -------------------------------------------------------------------------------


def test_embeddings_body() -> None:
    upstream = ADAPTER.embeddings_request(
        {"model": "e", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64", "user": "u"},
        TARGET,
    )
    assert upstream.url == "https://api.mistral.ai/v1/embeddings"
    assert orjson.loads(upstream.body or b"") == {
        "model": "mistral-small-latest",
        "input": ["a", "b"],
        "output_dimension": 256,
        "encoding_format": "base64",
    }


def test_embeddings_token_arrays_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        embeddings_body({"model": "e", "input": [[1, 2, 3]]}, TARGET)
    assert (exc.value.param, exc.value.code) == ("input", "invalid_value")


def test_legacy_completions_unsupported() -> None:
    with pytest.raises(InvalidRequest) as exc:
        ADAPTER.completions_request({"model": "m", "prompt": "x"}, TARGET)
    assert exc.value.code == "unsupported_operation"


# ---- config -----------------------------------------------------------------------------------


def test_config_defaults_and_typos() -> None:
    config = ProviderConfig(name="mi", type="mistral", api_key="k")
    assert registry.check_provider(config) == []
    assert SPEC.api_base(config, Options()) == "https://api.mistral.ai/v1"
    typo = ProviderConfig.model_validate({"name": "mi", "type": "mistral", "safe_promt": True})
    assert registry.check_provider(typo) == ["safe_promt: unknown key"]
