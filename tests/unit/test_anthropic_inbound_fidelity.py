"""``POST /v1/messages`` bodies -> the canonical request, keeping what other dialects need
(docs/providers.md "Canonical extensions"): thinking, every cache_control, system blocks apart,
thinking history with signatures, tool_result.is_error and document blocks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.errors import InvalidRequest
from switchboard.http.anthropic.request import count_tokens_request, messages_request

CACHE = {"type": "ephemeral"}
SIGNED = {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkYIBxgCKkDsig=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDF"}
TOOL = {"name": "f", "input_schema": {"type": "object"}}


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "claude-x")
    body.setdefault("max_tokens", 4096)
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return messages_request(orjson.dumps(body))


def test_thinking_is_carried() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    assert translate(thinking=thinking)["thinking"] == thinking
    assert (
        count_tokens_request(
            orjson.dumps(
                {"model": "m", "thinking": thinking, "messages": [{"role": "user", "content": "hi"}]}
            )
        )["thinking"]
        == thinking
    )


def test_cache_control_on_blocks_tools_and_results() -> None:
    out = translate(
        tools=[{**TOOL, "cache_control": CACHE}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": CACHE}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Calling.", "cache_control": CACHE},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "done",
                        "cache_control": CACHE,
                    },
                ],
            },
        ],
    )
    assert out["tools"][0]["cache_control"] == CACHE
    msgs = out["messages"]
    assert msgs[0] == {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": CACHE}]}
    assert msgs[1]["content"] == [{"type": "text", "text": "Calling.", "cache_control": CACHE}]
    assert msgs[2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": [{"type": "text", "text": "done", "cache_control": CACHE}],
    }


def test_image_block_cache_control() -> None:
    image = {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
        "cache_control": CACHE,
    }
    out = translate(messages=[{"role": "user", "content": [image]}])
    assert out["messages"][0]["content"][0]["cache_control"] == CACHE


def test_thinking_history_and_tool_errors() -> None:
    out = translate(
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    SIGNED,
                    REDACTED,
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": "boom"},
                ],
            },
        ],
    )
    assistant, tool = out["messages"][1], out["messages"][2]
    assert assistant["thinking_blocks"] == [SIGNED, REDACTED]
    assert assistant["reasoning_content"] == "Let me see."
    assert assistant["content"] is None
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": "boom", "is_error": True}


@pytest.mark.parametrize(
    "source",
    [
        {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
        {"type": "url", "url": "https://example.com/paper.pdf"},
        {"type": "content", "content": [{"type": "text", "text": "chunk"}]},
    ],
)
def test_document_blocks_are_carried_as_written(source: dict[str, Any]) -> None:
    block = {"type": "document", "source": source, "title": "Paper", "citations": {"enabled": True}}
    out = translate(messages=[{"role": "user", "content": [block, {"type": "text", "text": "Summarise."}]}])
    assert out["messages"][0]["content"][0] == {
        "type": "document",
        "document": {"source": source, "title": "Paper", "citations": {"enabled": True}},
    }


@pytest.mark.parametrize(
    ("source", "param"),
    [
        (
            {"type": "base64", "media_type": "application/pdf", "data": "!!"},
            "messages.0.content.0.source.data",
        ),
        ({"type": "url", "url": "ftp://x"}, "messages.0.content.0.source.url"),
        ({"type": "nope"}, "messages.0.content.0.source.type"),
    ],
)
def test_bad_documents_are_anthropic_style_400s(source: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        translate(messages=[{"role": "user", "content": [{"type": "document", "source": source}]}])
    assert err.value.param == param


def test_cache_control_inside_a_tool_result_is_kept() -> None:
    out = translate(
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "part one"},
                            {"type": "text", "text": "part two", "cache_control": CACHE},
                        ],
                    }
                ],
            },
        ],
    )
    assert out["messages"][2]["content"] == [
        {"type": "text", "text": "part one\npart two", "cache_control": CACHE}
    ]
