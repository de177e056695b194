"""Responses request -> canonical chat request: the mapping and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import InvalidRequest
from switchboard.http.responses.request import account_object, translate


def test_string_input_and_parameters() -> None:
    t = translate(
        {
            "model": "m",
            "input": "hi",
            "instructions": "be brief",
            "max_output_tokens": 100,
            "temperature": 0.2,
            "top_p": 0.5,
            "reasoning": {"effort": "high", "summary": "auto"},
            "user": "u1",
            "store": False,
            "metadata": {"a": "b"},
            "stream": True,
            "include": ["reasoning.encrypted_content"],
        }
    )
    assert t.request == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "top_p": 0.5,
        "max_completion_tokens": 100,
        "reasoning_effort": "high",
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert t.turn == [{"role": "user", "content": "hi"}]
    assert t.store is False
    assert t.echo["metadata"] == {"a": "b"} and t.echo["reasoning"] == {"effort": "high", "summary": "auto"}


def test_items_tools_and_format() -> None:
    t = translate(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": "rules"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                    ],
                },
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "two"}],
                },
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
            },
        }
    )
    assert t.request["messages"] == [
        {"role": "system", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "checking",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert t.request["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert t.request["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert t.request["parallel_tool_calls"] is False
    assert t.request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert len(t.items) == 8  # every item is listed by input_items, reasoning included


def test_mcp_tools_are_kept_for_the_tool_loop() -> None:
    tool = {"type": "mcp", "server_label": "x", "require_approval": "never"}
    t = translate({"model": "m", "input": "x", "tools": [tool], "tool_choice": "required"})
    assert t.request["tools"] == [tool]
    assert t.request["tool_choice"] == "required"


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"tools": [{"type": "web_search_preview"}]}, "tools[0].type", "web_search_preview"),
    ({"tools": [{"type": "image_generation"}]}, "tools[0].type", "image_generation"),
    ({"tools": [{"type": "computer_use_preview"}]}, "tools[0].type", "computer_use_preview"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "item_reference"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0].type",
        "input_file",
    ),
    ({"conversation": "conv_1"}, "conversation", "conversations"),
    ({"truncation": "auto"}, "truncation", "truncation 'auto'"),
    ({"include": ["file_search_call.results"]}, "include[0]", "file_search_call.results"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type", "web_search_preview"),
    ({"nonsense": 1}, "nonsense", "Unknown parameter"),
]


@pytest.mark.parametrize(("extra", "param", "named"), REFUSED)
def test_refused_with_the_feature_named(extra: dict[str, Any], param: str, named: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate({"model": "m", "input": "x", **extra})
    assert info.value.status == 400
    assert info.value.param == param
    assert named in info.value.message


def test_without_unsupported_keeps_what_the_chat_form_carries() -> None:
    from switchboard.http.responses.request import without_unsupported

    body = {
        "model": "m",
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}, {"type": "input_file", "file_id": "f"}],
            },
            {"type": "item_reference", "id": "x"},
        ],
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
        "tool_choice": {"type": "web_search"},
        "include": ["file_search_call.results", "reasoning.encrypted_content"],
        "background": False,
        "conversation": "c",
        "truncation": "auto",
    }
    t = translate(without_unsupported(body))
    assert t.request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert [tool["function"]["name"] for tool in t.request["tools"]] == ["f"]
    assert "tool_choice" not in t.request


def test_history_as_native_input_items() -> None:
    from switchboard.providers.openai_responses import history_items

    history = [
        {"role": "system", "content": "rules"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert history_items(history) == [
        {"type": "message", "role": "system", "content": "rules"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "u", "detail": "auto"},
            ],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]


@pytest.mark.parametrize(("tools", "found"), [
    ([{"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_1"}}],
     ("tools[0].environment.container_id", "a container")),
    ([{"type": "shell", "environment": {"type": "container_auto",
                                        "skills": [{"type": "skill_reference", "skill_id": "skill_1"}]}}],
     ("tools[0].environment.skills[0]", "a skill")),
    ([{"type": "shell", "environment": {"type": "container_snapshot"}}],
     ("tools[0].environment", "a container of unknown type 'container_snapshot' (it may be an object)")),
    ([{"type": "code_interpreter", "container": {"type": "auto", "container_id": "cntr_1"}}],
     ("tools[0].container.container_id", "a container")),
    ([{"type": "code_interpreter", "container": "cntr_1"}], ("tools[0].container", "a container")),
    ([{"type": "shell", "environment": {"type": ["container_auto"]}}],
     ("tools[0].environment", "a container of unknown type '['container_auto']' (it may be an object)")),
    # A new container, the caller's machine, a computer's system: nothing of the account.
    ([{"type": "shell", "environment": {"type": "container_auto", "file_ids": ["file-1"],
                                        "skills": [{"type": "inline", "name": "n"}]}}], None),
    ([{"type": "shell", "environment": {"type": "local", "skills": [{"name": "n", "path": "/p"}]}}], None),
    ([{"type": "shell"}, {"type": "code_interpreter", "container": {"type": "auto"}}], None),
    ([{"type": "computer_use_preview", "environment": "browser"}], None),
])
def test_account_objects_of_tools(tools: list[dict[str, Any]], found: tuple[str, str] | None) -> None:
    assert account_object({"model": "m", "input": "hi", "tools": tools}) == found
    # The same tools loaded by a tool search are refused at their place in the input.
    loaded = account_object({"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"type": "tool_search_output", "execution": "client", "tools": tools}]})
    assert loaded == (None if found is None else (found[0].replace("tools[", "input[1].tools[", 1), found[1]))


def test_a_replayed_call_cut_before_its_arguments_were_whole_is_left_out() -> None:
    made = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "status": "completed"}
    cut = {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"city":',
           "status": "incomplete"}
    t = translate({"model": "m", "input": [{"role": "user", "content": "hi"}, made, cut]})
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert t.request["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]


def test_the_output_of_a_cut_call_left_out_is_not_sent_without_its_call() -> None:
    # An agent runs the call it was given (or reports its arguments unreadable) and sends the
    # output back with the replayed items: a tool message must follow its assistant tool call,
    # or the upstream refuses the conversation (400).
    cut = {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"city":',
           "status": "incomplete"}
    output = {"type": "function_call_output", "call_id": "c2", "output": "error: arguments are not JSON"}
    t = translate({"model": "m", "input": [{"role": "user", "content": "hi"}, cut, output,
                                           {"role": "user", "content": "try again"}]})
    called: set[str] = set()
    for message in t.request["messages"]:
        called.update(c["id"] for c in message.get("tool_calls") or ())
        if message["role"] == "tool":
            assert message["tool_call_id"] in called, t.request["messages"]


def test_a_refused_message_is_named_by_the_input_item_it_came_from() -> None:
    """The chat path an adapter names (messages[k]..., k counting the instructions and the
    continued conversation) -> the Responses field (sources.py)."""
    from switchboard.http.responses.sources import input_param

    translated = translate({"model": "m", "instructions": "be", "input": [
        {"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_image", "image_url": "data:image/png;base64,AA"},
            {"type": "input_text", "text": "t", "prompt_cache_breakpoint": {"type": "ephemeral"}}]},
        {"role": "developer", "content": [{"type": "input_text", "text": "a"},
                                          {"type": "input_image", "image_url": "https://x/y.png"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "a"},
                                     {"type": "refusal", "refusal": "no"}]},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "t", "arguments": "{}",
         "output": "o"},
    ]})
    history = [{"role": "user", "content": "before"}, {"role": "assistant", "content": "reply"}]
    messages = translated.request["messages"]
    messages[1:1] = history  # as the history stage continues a stored conversation
    expected = {
        "messages[0].content": "instructions",
        "messages[2]": "previous_response_id",
        "messages[3].content": "input[0].content",
        "messages[4].tool_calls[1].function.arguments": "input[2].arguments",
        "messages[4].tool_calls[0].id": "input[1].call_id",
        "messages[5].tool_call_id": "input[3].call_id",
        "messages[5].content[0].prompt_cache_breakpoint": "input[3].output[1].prompt_cache_breakpoint",
        "messages[6].content[0].image_url.url": "input[3].output[0]",  # the tool output's image
        "messages[7].content[1].image_url.detail": "input[4].content[1].detail",
        "messages[8].content[1].text": "input[5].content[1].refusal",
        "messages[8].role": "input[5].role",
        "messages[9].tool_calls[0].function.name": "input[6].name",
        "messages[10].tool_call_id": "input[6].id",
        "messages[11]": None,  # not one of the request's
        "messages": None,  # the whole input: api.py's RESPONSES_PARAMS
        # An OpenAI-type upstream's forms of the same paths: OpenAI's, vLLM's.
        "messages.[4].tool_calls.[1].function.arguments": "input[2].arguments",
        "messages.[7].content.[1].image_url.detail": "input[4].content[1].detail",
        "messages.[8].role": "input[5].role",
        "messages.5.tool_call_id": "input[3].call_id",
        "messages.8.content.1.text": "input[5].content[1].refusal",
        "messages.11": None,
        "messages.3x": None,  # no index
    }
    # The upstream forms are read in an upstream's error only (GatewayError.from_upstream).
    assert {p: input_param(p, messages, translated.sources, history, upstream=not p.startswith("messages["))
            for p in expected} == expected
    assert input_param("messages.5.tool_call_id", messages, translated.sources, history) is None
