"""Anthropic Messages request -> canonical (OpenAI) request: translation and strict validation.

Shapes follow https://docs.anthropic.com/en/api/messages.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from switchboard.errors import InvalidRequest
from switchboard.http.anthropic.content import Noted
from switchboard.http.anthropic.request import count_tokens_request, messages_request

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "claude-x")
    body.setdefault("max_tokens", 64)
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return messages_request(orjson.dumps(body))


def test_minimal_request() -> None:
    assert translate() == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 64,
    }


def test_sampling_stop_user_and_stream() -> None:
    out = translate(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", "###"],
        metadata={"user_id": "u-1"},
        stream=True,
    )
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert out["top_k"] == 40
    assert out["stop"] == ["END", "###"]
    assert out["user"] == "u-1"
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_system_string_and_blocks_become_first_message() -> None:
    assert translate(system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [
        {"type": "text", "text": "One."},
        {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}},
    ]
    # The blocks stay apart, each with its prompt-caching breakpoint.
    assert translate(system=blocks)["messages"][0] == {"role": "system", "content": blocks}
    assert translate(system="")["messages"] == [{"role": "user", "content": "hi"}]


def test_text_and_image_blocks() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    msg = translate(messages=[{"role": "user", "content": content}])["messages"][0]
    assert msg == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ],
    }


def test_single_text_block_becomes_plain_string() -> None:
    msg = translate(messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}])["messages"][
        0
    ]
    assert msg == {"role": "user", "content": "hello"}


def test_tool_round_trip_translation() -> None:
    out = translate(
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Lyon"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "timeout"}],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    )
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert out["tool_choice"] == "auto"
    msgs = out["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": "Let me check.",
        "reasoning_content": "hmm",
        "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
            },
        ],
    }
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    # The error flag is kept as such; adapters without one add the "Error: " prefix.
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "timeout", "is_error": True}
    assert msgs[4] == {"role": "user", "content": "Summarise."}
    assert len(msgs) == 5


def test_tool_strict_is_carried() -> None:
    # Anthropic's strict tools (calls constrained to input_schema) keep their strictness.
    out = translate(tools=[{**WEATHER, "strict": True}, {**WEATHER, "name": "loose", "strict": False}])
    assert [t["function"].get("strict") for t in out["tools"]] == [True, False]
    assert "strict" not in translate(tools=[WEATHER])["tools"][0]["function"]


def test_assistant_with_only_tool_use_has_null_content() -> None:
    msgs = translate(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ]
    )["messages"]
    assert msgs[1]["content"] is None
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": ""}
    assert len(msgs) == 3


def test_tool_result_images_move_to_a_user_message() -> None:
    msgs = translate(
        messages=[
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "done"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                    }
                ],
            },
        ]
    )["messages"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": "done"}
    assert msgs[3]["role"] == "user"
    assert msgs[3]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            None,
        ),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any, parallel: bool | None) -> None:
    out = translate(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert out.get("parallel_tool_calls") == parallel


def test_document_thinking_and_dropped_fields() -> None:
    out = translate(
        thinking={"type": "enabled", "budget_tokens": 2048},
        max_tokens=4096,
        service_tier="auto",
        cache_control={"type": "ephemeral"},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "Notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is green."},
                    },
                    {"type": "text", "text": "What colour is the sky?"},
                ],
            }
        ],
    )
    assert out["messages"][0]["content"][0] == {
        "type": "document",
        "document": {
            "title": "Notes",
            "source": {"type": "text", "media_type": "text/plain", "data": "The sky is green."},
        },
    }
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "service_tier" not in out


@pytest.mark.parametrize("effort", ["low", "medium", "xhigh", "max"])
def test_output_config_effort_becomes_reasoning_effort(effort: str) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = translate(output_config={"effort": effort, "format": {"type": "json_schema", "schema": schema}})
    assert out["reasoning_effort"] == effort
    assert out["response_format"]["json_schema"]["schema"] == schema


def test_output_config_effort_high_is_the_default_and_not_carried() -> None:
    assert "reasoning_effort" not in translate(output_config={"effort": "high"})


def test_count_tokens_validates_effort_without_carrying_it() -> None:
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"effort": "low"}}
    assert "reasoning_effort" not in count_tokens_request(orjson.dumps(body))
    with pytest.raises(InvalidRequest, match=r"output_config\.effort"):
        count_tokens_request(orjson.dumps({**body, "output_config": {"effort": "extreme"}}))


def test_output_config_format_becomes_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = translate(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def test_final_assistant_prefill_may_be_empty() -> None:
    msgs = translate(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": []}])[
        "messages"
    ]
    assert msgs[1] == {"role": "assistant", "content": ""}


def test_files_api_sources_are_carried_and_their_paths_noted() -> None:
    """Whether the file may be sent is each attempt's to decide (its account: pipeline/native.py);
    the decoder carries the sources and notes where they are."""
    image = {"type": "image", "source": {"type": "file", "file_id": "file_1"},
             "cache_control": {"type": "ephemeral"}}
    document = {"type": "document", "title": "Q3", "source": {"type": "file", "file_id": "file_2"}}
    result = {"type": "tool_result", "tool_use_id": "t1",
              "content": [{"type": "image", "source": {"type": "file", "file_id": "file_3"}}]}
    found = Noted()
    out = messages_request(orjson.dumps({"model": "claude-x", "max_tokens": 64, "messages": [
        {"role": "user", "content": [image, document]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [result]},
    ]}), found)
    assert out["messages"][0]["content"] == [
        {"type": "image_file", "image_file": {"file_id": "file_1"}, "cache_control": {"type": "ephemeral"}},
        {"type": "document", "document": {"title": "Q3", "source": {"type": "file", "file_id": "file_2"}}},
    ]
    assert out["messages"][-1]["content"] == [{"type": "image_file", "image_file": {"file_id": "file_3"}}]
    assert found.files == ["messages.0.content.0.source.file_id", "messages.0.content.1.source.file_id",
                           "messages.2.content.0.content.0.source.file_id"]
    plain = Noted()
    messages_request(orjson.dumps({"model": "claude-x", "max_tokens": 64, "messages": _user(
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}})}), plain)
    assert plain == Noted()


def test_url_sources_go_with_their_scheme_in_lower_case_in_the_body_too() -> None:
    """The canonical parts and the body a pass-through sends alike; a body with nothing to
    rewrite is not written again."""
    image = {"type": "image", "source": {"type": "url", "url": "HTTPS://x.example/A.png"}}
    document = {"type": "document", "source": {"type": "url", "url": "Http://x.example/B.pdf"}}
    found = Noted()
    out = messages_request(orjson.dumps({"model": "claude-x", "max_tokens": 64,
                                         "messages": _user(image, document)}), found)
    assert out["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.example/A.png"}},
        {"type": "document", "document": {"source": {"type": "url", "url": "http://x.example/B.pdf"}}},
    ]
    assert found.rewritten and found.body is not None
    assert [b["source"]["url"] for b in orjson.loads(found.body)["messages"][0]["content"]] == [
        "https://x.example/A.png", "http://x.example/B.pdf"]
    lower = Noted()
    messages_request(orjson.dumps({"model": "claude-x", "max_tokens": 64, "messages": _user(
        {"type": "image", "source": {"type": "url", "url": "https://x.example/A.png"}})}), lower)
    assert lower == Noted()


def _user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("max_tokens missing", {"max_tokens": None}, "max_tokens: Field required"),
    ("max_tokens zero", {"max_tokens": 0}, "max_tokens: Input should be an integer of at least 1"),
    ("max_tokens bool", {"max_tokens": True}, "max_tokens: Input should be an integer"),
    ("model missing", {"model": None}, "model: Field required"),
    ("model not str", {"model": 7}, "model: Input should be a non-empty string"),
    ("messages missing", {"messages": None}, "messages: Field required"),
    ("messages empty", {"messages": []}, "messages: at least one message is required"),
    ("messages not list", {"messages": "hi"}, "messages: Input should be a valid list"),
    ("system role", {"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be"),
    ("bad role", {"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ("content missing", {"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
    ("content empty", {"messages": [{"role": "user", "content": []}]}, "messages.0.content: all messages"),
    (
        "empty text block",
        {"messages": _user({"type": "text", "text": ""})},
        "text content blocks must be non-empty",
    ),
    ("block no type", {"messages": _user({"text": "x"})}, "messages.0.content.0.type: Field required"),
    ("unknown block", {"messages": _user({"type": "video"})}, "'video' is not supported"),
    (
        "image bad media",
        {
            "messages": _user(
                {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}
            )
        },
        "source.media_type",
    ),
    (
        "image bad base64",
        {
            "messages": _user(
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}
            )
        },
        "source.data: is not valid base64",
    ),
    (
        "image file source without an id",
        {"messages": _user({"type": "image", "source": {"type": "file"}})},
        "messages.0.content.0.source.file_id",
    ),
    (
        "image ftp url",
        {"messages": _user({"type": "image", "source": {"type": "url", "url": "ftp://x"}})},
        "source.url",
    ),
    (
        "file document with an empty id",
        {"messages": _user({"type": "document", "source": {"type": "file", "file_id": ""}})},
        "messages.0.content.0.source.file_id",
    ),
    (
        "bad cache_control",
        {"messages": _user({"type": "text", "text": "x", "cache_control": {"type": "forever"}})},
        "cache_control.type",
    ),
    (
        "bad cache ttl",
        {"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]},
        "cache_control.ttl",
    ),
    (
        "unsigned thinking",
        {"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
        ]},
        "signature",
    ),
    (
        "tool_use from user",
        {"messages": _user({"type": "tool_use", "id": "t", "name": "f", "input": {}})},
        "only allowed in assistant messages",
    ),
    (
        "orphan tool_result",
        {"messages": _user({"type": "tool_result", "tool_use_id": "nope"})},
        "unexpected tool_use_id found in tool_result blocks: nope",
    ),
    (
        "unanswered tool_use",
        {
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {"role": "user", "content": "what now"},
            ]
        },
        "tool_use ids were found without tool_result blocks immediately after: t1",
    ),
    (
        "tool_use input not object",
        {
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": "x"}],
                },
            ]
        },
        "messages.1.content.0.input: Input should be an object",
    ),
    ("temperature range", {"temperature": 1.5}, "temperature: Input should be between 0 and 1"),
    ("top_p type", {"top_p": "high"}, "top_p: Input should be a valid number"),
    ("top_k negative", {"top_k": -1}, "top_k"),
    ("stop_sequences type", {"stop_sequences": "END"}, "stop_sequences: Input should be a list"),
    ("stream type", {"stream": "yes"}, "stream: Input should be a valid boolean"),
    ("metadata extra", {"metadata": {"tenant": "x"}}, "metadata.tenant: Extra inputs are not permitted"),
    ("unknown field", {"n": 2}, "n: Extra inputs are not permitted"),
    ("server tool", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tool"),
    ("tool no schema", {"tools": [{"name": "f"}]}, "tools.0.input_schema: Field required"),
    ("tool bad name", {"tools": [{"name": "a b", "input_schema": {"type": "object"}}]}, "tools.0.name"),
    ("tool dup names", {"tools": [WEATHER, WEATHER]}, "Tool names must be unique"),
    ("tool strict type", {"tools": [{**WEATHER, "strict": "yes"}]}, "tools.0.strict: Input should be"),
    ("tool_choice type", {"tools": [WEATHER], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    (
        "tool_choice unknown tool",
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "x"}},
        "no tool named 'x'",
    ),
    ("tool_choice any no tools", {"tool_choice": {"type": "any"}}, "requires 'tools'"),
    ("thinking budget", {"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
    (
        "thinking over max",
        {"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 4000}},
        "max_tokens: must be greater than thinking.budget_tokens",
    ),
    ("output_config format", {"output_config": {"format": {"type": "xml"}}}, "output_config.format"),
    ("output_config effort", {"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ("output_config unknown", {"output_config": {"verbosity": "low"}}, "output_config.verbosity"),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in BAD], ids=[n for n, _, _ in BAD])
def test_rejected_with_clear_message(body: dict[str, Any], expected: str) -> None:
    base = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    merged = {**base, **body}
    assert expected in messages_request_error({k: v for k, v in merged.items() if v is not None})


def messages_request_error(body: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as info:
        messages_request(orjson.dumps(body))
    return info.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_unparseable_bodies(raw: bytes, expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        messages_request(raw)
    assert expected in info.value.message


def test_count_tokens_request_has_no_max_tokens_and_rejects_sampling() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": "s", "tools": [WEATHER]}
    out = count_tokens_request(orjson.dumps(body))
    assert out["messages"][0] == {"role": "system", "content": "s"}
    assert "max_tokens" not in out
    with pytest.raises(InvalidRequest) as info:
        count_tokens_request(orjson.dumps({**body, "max_tokens": 10}))
    assert info.value.message.startswith("max_tokens: Extra inputs are not permitted")
