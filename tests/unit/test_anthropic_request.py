"""Canonical request -> Anthropic Messages request (providers/anthropic/request.py).

Expected shapes follow https://platform.claude.com/docs/en/api/messages/create, the tool-use
guides (tool_result blocks first in the next user turn) and the structured-outputs guide.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import registry
from switchboard.providers.anthropic import SPEC, AnthropicOptions
from switchboard.providers.anthropic.request import JSON_TOOL
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def target(drop_params: bool = False, **options: Any) -> Target:
    return Target(
        name="claude",
        model="claude-sonnet-4-5",
        provider="anthropic-main",
        provider_type="anthropic",
        api_base="https://api.anthropic.com",
        options=AnthropicOptions(**options),
        timeouts=Timeouts(),
        drop_params=drop_params,
    )


def build(request: dict[str, Any], tgt: Target | None = None) -> tuple[UpstreamRequest, dict[str, Any]]:
    upstream = SPEC.adapter.chat_request(request, tgt or target())
    assert upstream.body is not None
    return upstream, orjson.loads(upstream.body)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_full_conversation_golden() -> None:
    request = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in these places?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/a.jpg", "detail": "high"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call.1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call.1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "unknown"}]},
            {"role": "user", "content": "Thanks, summarise."},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": "END",
        "user": "user-42",
        "stream_options": None,
    }
    upstream, body = build(request)
    assert upstream.method == "POST"
    assert upstream.url == "https://api.anthropic.com/v1/messages"
    assert upstream.headers == {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    assert upstream.stream is False
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in these places?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "unknown"}],
                    },
                    {"type": "text", "text": "Thanks, summarise."},
                ],
            },
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_streaming_request_and_headers() -> None:
    upstream, body = build(
        {
            "model": "claude",
            "messages": [user("hi")],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        target(anthropic_beta="a-2025-01-01, b-2025-02-02", anthropic_version="2024-01-01"),
    )
    assert upstream.stream is True
    assert body["stream"] is True
    assert "stream_options" not in body
    assert upstream.headers["Accept"] == "text/event-stream"
    assert upstream.headers["anthropic-beta"] == "a-2025-01-01,b-2025-02-02"
    assert upstream.headers["anthropic-version"] == "2024-01-01"


@pytest.mark.parametrize(
    ("request_extra", "options", "expected"),
    [
        ({}, {}, 4096),
        ({}, {"default_max_tokens": 512}, 512),
        ({"max_tokens": 33}, {}, 33),
        ({"max_tokens": 33, "max_completion_tokens": 44}, {}, 44),
    ],
)
def test_max_tokens_always_set(request_extra: dict[str, Any], options: dict[str, Any], expected: int) -> None:
    _, body = build({"model": "claude", "messages": [user("hi")], **request_extra}, target(**options))
    assert body["max_tokens"] == expected


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, None),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
        ("required", None, {"type": "any"}),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any] | None) -> None:
    request: dict[str, Any] = {"model": "claude", "messages": [user("hi")], "tools": [WEATHER_TOOL]}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    _, body = build(request)
    assert body.get("tool_choice") == expected


def test_tool_without_parameters_and_strict() -> None:
    tool = {"type": "function", "function": {"name": "now", "strict": True}}
    _, body = build({"model": "claude", "messages": [user("time?")], "tools": [tool]})
    assert body["tools"] == [{"name": "now", "input_schema": {"type": "object"}, "strict": True}]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("seed", 7),
        ("n", 2),
        ("logprobs", True),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.1),
        ("logit_bias", {"1": 2}),
        ("metadata", {"app": "demo"}),
    ],
)
def test_unsupported_parameters_are_named(param: str, value: Any) -> None:
    with pytest.raises(UnsupportedParameter) as err:
        build({"model": "claude", "messages": [user("hi")], param: value})
    assert err.value.param == param
    assert "anthropic" in err.value.message


def test_unsupported_parameters_dropped_on_request() -> None:
    _, body = build({"model": "claude", "messages": [user("hi")], "seed": 7, "n": 1, "drop_params": True})
    assert "seed" not in body and "drop_params" not in body and "n" not in body


def test_unsupported_parameters_dropped_by_model_entry() -> None:
    _, body = build(
        {"model": "claude", "messages": [user("hi")], "presence_penalty": 1}, target(drop_params=True)
    )
    assert "presence_penalty" not in body


STRICT_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_strict_json_schema_uses_native_structured_outputs() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": STRICT_SCHEMA}}
    _, body = build({"model": "claude", "messages": [user("hi")], "response_format": fmt})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": STRICT_SCHEMA}}
    assert "tools" not in body


def test_strict_json_schema_with_tools_stays_native() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": STRICT_SCHEMA}}
    _, body = build(
        {"model": "claude", "messages": [user("hi")], "response_format": fmt, "tools": [WEATHER_TOOL]}
    )
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert [t["name"] for t in body["tools"]] == ["get_weather"]


@pytest.mark.parametrize(
    ("fmt", "mode", "schema"),
    [
        ({"type": "json_object"}, "auto", {"type": "object"}),
        ({"type": "json_object"}, "native", {"type": "object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": STRICT_SCHEMA}},
            "auto",
            STRICT_SCHEMA,
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": STRICT_SCHEMA}},
            "tool",
            STRICT_SCHEMA,
        ),
    ],
)
def test_json_mode_emulated_with_forced_tool(fmt: dict[str, Any], mode: str, schema: dict[str, Any]) -> None:
    _, body = build(
        {"model": "claude", "messages": [user("hi")], "response_format": fmt}, target(json_schema_mode=mode)
    )
    assert "output_config" not in body
    assert body["tools"] == [
        {
            "name": JSON_TOOL,
            "description": "Reply with the answer as this tool's input.",
            "input_schema": schema,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_native_mode_for_non_strict_schema() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": STRICT_SCHEMA}}
    _, body = build(
        {"model": "claude", "messages": [user("hi")], "response_format": fmt},
        target(json_schema_mode="native"),
    )
    assert body["output_config"]["format"]["schema"] == STRICT_SCHEMA


def test_text_response_format_is_a_no_op() -> None:
    _, body = build({"model": "claude", "messages": [user("hi")], "response_format": {"type": "text"}})
    assert "output_config" not in body and "tools" not in body


def test_emulated_json_mode_with_tools_is_a_clear_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build(
            {
                "model": "claude",
                "messages": [user("hi")],
                "response_format": {"type": "json_object"},
                "tools": [WEATHER_TOOL],
            }
        )
    assert err.value.param == "response_format"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                ],
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
                ],
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}],
            },
            "messages[1].content[0].image_url.url",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
            },
            "messages[1].content[0].image_url.url",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://host/a.png"}}]},
            "messages[1].content[0].image_url.url",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
            },
            "messages[1].content[0].type",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages[1].role"),
        ({"role": "tool", "tool_call_id": "", "content": "x"}, "messages[1].tool_call_id"),
    ],
)
def test_invalid_messages_are_400_with_param(message: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        build({"model": "claude", "messages": [user("hi"), message]})
    assert err.value.status == 400
    assert err.value.param == param


@pytest.mark.parametrize("name", ["ns.tool", "a:b", "x" * 65, JSON_TOOL])
def test_tool_names_anthropic_rejects_are_400(name: str) -> None:
    tool = {"type": "function", "function": {"name": name}}
    with pytest.raises(InvalidRequest) as err:
        build({"model": "claude", "messages": [user("hi")], "tools": [tool]})
    assert err.value.param == "tools[0].function.name" and err.value.code == "invalid_value"


def test_non_function_tools_are_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build(
            {
                "model": "claude",
                "messages": [user("hi")],
                "tools": [{"type": "custom", "custom": {"name": "x"}}],
            }
        )
    assert err.value.param == "tools[0].type"


def test_system_with_image_is_400() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with pytest.raises(InvalidRequest):
        build({"model": "claude", "messages": [{"role": "system", "content": [image]}, user("hi")]})


def test_consecutive_messages_merge_and_an_empty_assistant_turn_keeps_its_place() -> None:
    _, body = build(
        {
            "model": "claude",
            "messages": [
                user("one"),
                user("two"),
                {"role": "assistant", "content": ""},
                user("three"),
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                user("four"),
                {"role": "assistant", "content": ""},
            ],
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": t} for t in ("one", "two")]},
        {"role": "assistant", "content": [{"type": "text", "text": "(no content)"}]},
        {"role": "user", "content": [{"type": "text", "text": "three"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "four"}]},
    ]


def test_a_system_message_after_the_first_turn_stays_in_place() -> None:
    _, body = build(
        {
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                user("one"),
                {"role": "assistant", "content": "a"},
                {"role": "system", "content": [{"type": "text", "text": "Now answer in French.",
                                                "cache_control": {"type": "ephemeral"}}]},
                user("two"),
            ],
        }
    )
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "text", "text": "System: Now answer in French.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "two"},
    ]}


def test_prefill_trailing_whitespace_is_stripped() -> None:
    _, body = build(
        {"model": "claude", "messages": [user("Say hi"), {"role": "assistant", "content": "Answer: "}]}
    )
    assert body["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "Answer:"}]}
    _, body = build(
        {"model": "claude", "messages": [user("Say hi"), {"role": "assistant", "content": "   "}]}
    )
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]


def test_tool_result_goes_before_user_text_in_a_merged_turn() -> None:
    _, body = build(
        {
            "model": "claude",
            "messages": [
                user("go"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                user("(note before the result)"),
                {"role": "tool", "tool_call_id": "c1", "content": ""},
            ],
        }
    )
    assert body["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1"},
        {"type": "text", "text": "(note before the result)"},
    ]


def test_cache_control_on_parts_and_pdf_files() -> None:
    _, body = build(
        {
            "model": "claude",
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "a.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                            },
                        },
                        {"type": "text", "text": "Summarise"},
                    ],
                },
            ],
        }
    )
    assert body["system"] == [{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0]["content"][0] == {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }


def test_image_jpg_alias_and_safety_identifier() -> None:
    _, body = build(
        {
            "model": "claude",
            "safety_identifier": "hash-1",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/"}}],
                }
            ],
        }
    )
    assert body["messages"][0]["content"][0]["source"]["media_type"] == "image/jpeg"
    assert body["metadata"] == {"user_id": "hash-1"}


@pytest.mark.parametrize(
    ("url", "sent_as"),
    [
        (f"data:image/jpeg;base64,{PNG_B64}", "image/png"),  # PNG bytes labelled jpeg
        ("data:image/png;base64,/9j/4AAQSkZJRgABAQ==", "image/jpeg"),
        ("data:image/jpeg;base64,R0lGODlhAQABAAAAACw=", "image/gif"),
        ("data:image/png;base64,UklGRiQAAABXRUJQVlA4IA==", "image/webp"),
        (f"data:application/octet-stream;base64,{PNG_B64}", "image/png"),
        ("data:image/png;base64,AAAA", "image/png"),  # bytes of no known type: the label stands
    ],
)
def test_a_data_url_image_is_sent_as_the_type_its_bytes_are(url: str, sent_as: str) -> None:
    # Anthropic refuses an image whose bytes are not its media_type; OpenAI reads the bytes.
    part = {"type": "image_url", "image_url": {"url": url}}
    _, body = build({"model": "claude", "messages": [{"role": "user", "content": [part]}]})
    assert body["messages"][0]["content"][0]["source"]["media_type"] == sent_as


def test_stop_sequences_anthropic_refuses_are_never_sent() -> None:
    # Anthropic: "each stop sequence must be non-empty" / "must contain non-whitespace".
    request = {"model": "claude", "messages": [user("hi")], "stop": ["", "END"]}
    assert build(request)[1]["stop_sequences"] == ["END"]  # an empty one asks for nothing
    with pytest.raises(UnsupportedParameter) as exc:
        build({**request, "stop": ["\n", "END"]})
    assert exc.value.param == "stop"
    assert build({**request, "stop": "\n\n"}, target(drop_params=True))[1].get("stop_sequences") is None
    assert build({**request, "stop": [" ", "END"], "drop_params": True})[1]["stop_sequences"] == ["END"]
    assert build({**request, "stop": ["\nEND"]})[1]["stop_sequences"] == ["\nEND"]


def test_tool_result_content_anthropic_refuses_is_not_sent() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}

    def result(**tool: Any) -> Any:
        messages = [user("hi"), {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "c1", **tool}]
        return build({"model": "claude", "messages": messages})[1]["messages"][2]["content"][0]

    # No content at all rather than an empty list.
    assert result(content=[{"type": "text", "text": ""}]) == {"type": "tool_result", "tool_use_id": "c1"}
    # "content cannot be empty if `is_error` is true"
    for empty in ("", [], [{"type": "text", "text": ""}]):
        assert result(content=empty, is_error=True) == {
            "type": "tool_result", "tool_use_id": "c1", "content": "(no content)", "is_error": True}
    assert result(content="boom", is_error=True)["content"] == "boom"


def test_assistant_text_of_whitespace_only_is_not_sent() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages: Any = [user("hi"), {"role": "assistant", "content": "\n\n", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "c1", "content": "18C"}]
    sent = build({"model": "claude", "messages": messages})[1]["messages"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use"]
    messages = [user("hi"), {"role": "assistant", "content": [{"type": "text", "text": " "}]}, user("again")]
    sent = build({"model": "claude", "messages": messages})[1]["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"type": "text", "text": "(no content)"}]}
    # Whitespace beside other text is kept as written.
    messages = [user("hi"), {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                               {"type": "text", "text": " "}]}, user("again")]
    assert build({"model": "claude", "messages": messages})[1]["messages"][1]["content"][1]["text"] == " "


def test_count_tokens_request() -> None:
    request = {
        "model": "claude",
        "messages": [user("hi")],
        "max_tokens": 5,
        "stream": True,
        "temperature": 0.1,
    }
    upstream = SPEC.adapter.count_tokens_request(request, target())  # type: ignore[attr-defined]
    assert upstream.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert orjson.loads(upstream.body) == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


async def test_auth_sends_x_api_key() -> None:
    config = ProviderConfig(name="a", type="anthropic", api_key="sk-ant-secret")
    auth = SPEC.make_auth(config, AnthropicOptions())
    upstream, _ = build({"model": "claude", "messages": [user("hi")]})
    await auth.apply(upstream)
    assert upstream.headers["x-api-key"] == "sk-ant-secret"
    assert "Authorization" not in upstream.headers
    assert "sk-ant-secret" not in repr(auth)


def test_config_options_are_validated() -> None:
    good = ProviderConfig(name="a", type="anthropic", default_max_tokens=100, anthropic_beta=["x", "y"])
    assert registry.check_provider(good) == []
    assert registry.options_for(good) == AnthropicOptions(default_max_tokens=100, anthropic_beta=("x", "y"))
    assert SPEC.api_base(good, registry.options_for(good)) == "https://api.anthropic.com"
    bad = ProviderConfig(name="a", type="anthropic", anthropic_verison="2023-06-01", json_schema_mode="magic")
    problems = registry.check_provider(bad)
    assert "anthropic_verison: unknown key" in problems
    assert any(p.startswith("json_schema_mode:") for p in problems)
