"""Canonical extensions <-> provider type 'anthropic' (issue 13 §2.3, 2.4, 2.6, 2.9 for
Anthropic): thinking and reasoning_effort, prompt-caching breakpoints, thinking blocks with their
signatures, tool errors, documents, image detail, and the capability table driving the refusals.

Anthropic's shapes: https://platform.claude.com/docs/en/build-with-claude/extended-thinking,
.../prompt-caching, .../streaming.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import capabilities
from switchboard.providers.anthropic import SPEC, AnthropicOptions
from switchboard.providers.anthropic.thinking import dropped_while_thinking
from switchboard.providers.target import Target

CACHE = {"type": "ephemeral"}
SIGNED = {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkYIBxgCKkDsig=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDF"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def target(drop_params: bool = False) -> Target:
    return Target(
        name="claude",
        model="claude-sonnet-4-5",
        provider="anthropic-main",
        provider_type="anthropic",
        api_base="https://api.anthropic.com",
        options=AnthropicOptions(default_max_tokens=4096),
        timeouts=Timeouts(),
        drop_params=drop_params,
    )


def build(drop_params: bool = False, **request: Any) -> dict[str, Any]:
    request.setdefault("model", "claude")
    request.setdefault("messages", [{"role": "user", "content": "hi"}])
    upstream = SPEC.adapter.chat_request(request, target(drop_params))
    assert upstream.body is not None
    body: dict[str, Any] = orjson.loads(upstream.body)
    return body


# -- thinking and reasoning_effort ---------------------------------------------------------------


def test_thinking_is_sent() -> None:
    body = build(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=8000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 8000
    assert build(thinking={"type": "disabled"})["thinking"] == {"type": "disabled"}


def test_thinking_without_max_tokens_keeps_room_for_the_answer() -> None:
    body = build(thinking={"type": "enabled", "budget_tokens": 6000})
    assert body["max_tokens"] == 4096 + 6000


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 4096), ("high", 16384)]
)
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    body = build(reasoning_effort=effort, max_tokens=20000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 20000


@pytest.mark.parametrize("effort", ["xhigh", "max"])
def test_reasoning_effort_above_high_is_anthropics_effort_level(effort: str) -> None:
    # Anthropic's own levels of the same names, with the thinking that sets its own budget.
    body = build(reasoning_effort=effort, max_tokens=20000)
    assert body["output_config"] == {"effort": effort}
    assert body["thinking"] == {"type": "adaptive"} and body["max_tokens"] == 20000
    assert build(reasoning_effort=effort)["max_tokens"] == 4096 + 16384  # the room "high" gives
    # thinking wins over reasoning_effort, as for the other levels.
    given = build(reasoning_effort=effort, thinking={"type": "enabled", "budget_tokens": 2000},
                  max_tokens=9000)
    assert "output_config" not in given and given["thinking"]["type"] == "enabled"


def test_reasoning_effort_above_high_joins_a_json_schema_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    spec = {"name": "a", "schema": schema, "strict": True}
    body = build(reasoning_effort="max", max_tokens=20000,
                 response_format={"type": "json_schema", "json_schema": spec})
    assert body["output_config"]["effort"] == "max"
    assert body["output_config"]["format"]["type"] == "json_schema"


def test_reasoning_effort_budget_stays_below_max_tokens() -> None:
    assert build(reasoning_effort="high", max_tokens=5000)["thinking"]["budget_tokens"] == 4999
    assert build(reasoning_effort="high")["max_tokens"] == 4096 + 16384


def test_reasoning_effort_none_thinks_not() -> None:
    assert "thinking" not in build(reasoning_effort="none")


def test_thinking_wins_over_reasoning_effort() -> None:
    body = build(
        thinking={"type": "enabled", "budget_tokens": 1500}, reasoning_effort="high", max_tokens=9000
    )
    assert body["thinking"]["budget_tokens"] == 1500


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "low", "max_tokens": 1024}, "reasoning_effort"),
        ({"thinking": {"type": "on"}}, "thinking"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048}, "max_tokens"),
    ],
)
def test_bad_thinking_is_a_clear_400(request_fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        build(**request_fields)
    assert err.value.param == param


def test_temperature_with_thinking_is_refused_or_dropped() -> None:
    with pytest.raises(UnsupportedParameter) as err:
        build(reasoning_effort="low", temperature=0.2, max_tokens=4000)
    assert err.value.param == "temperature"
    assert "thinking" in err.value.message
    body = build(True, reasoning_effort="low", temperature=0.2, top_k=5, max_tokens=4000)
    assert "temperature" not in body and "top_k" not in body
    assert build(reasoning_effort="low", temperature=1, max_tokens=4000)["temperature"] == 1


# -- prompt caching ------------------------------------------------------------------------------


def test_cache_control_on_system_parts_messages_and_tools() -> None:
    body = build(
        messages=[
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Rules."},
                    {"type": "text", "text": "A long manual.", "cache_control": CACHE},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {**CACHE, "ttl": "1h"}}],
            },
        ],
        tools=[{**TOOL, "cache_control": CACHE}],
    )
    # System parts stay separate blocks, each with its own breakpoint.
    assert body["system"] == [
        {"type": "text", "text": "Rules."},
        {"type": "text", "text": "A long manual.", "cache_control": CACHE},
    ]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["tools"][0]["cache_control"] == CACHE


@pytest.mark.parametrize("cache", [{"type": "forever"}, "ephemeral", {"type": "ephemeral", "ttl": "2h"}])
def test_malformed_cache_control_is_a_clear_400(cache: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        build(
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": cache}]}]
        )
    assert err.value.param == "messages[0].content[0].cache_control"


# -- history: thinking blocks, tool errors, documents ---------------------------------------------


def test_thinking_blocks_open_the_assistant_turn_signatures_unchanged() -> None:
    body = build(
        thinking={"type": "enabled", "budget_tokens": 2048},
        max_tokens=4096,
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": "Calling.",
                "reasoning_content": "Let me see.",
                "thinking_blocks": [SIGNED, REDACTED],
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "boom", "is_error": True},
        ],
    )
    assistant = body["messages"][1]["content"]
    assert assistant[:2] == [SIGNED, REDACTED]
    assert [b["type"] for b in assistant[2:]] == ["text", "tool_use"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True}
    ]


def test_unsigned_reasoning_is_not_sent_to_anthropic() -> None:
    body = build(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": "ok",
                "reasoning_content": "from another provider",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "from another provider", "signature": ""}
                ],
            },
            {"role": "user", "content": "and?"},
        ]
    )
    assert body["messages"][1]["content"] == [{"type": "text", "text": "ok"}]


def test_malformed_thinking_blocks_are_a_clear_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build(
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "ok", "thinking_blocks": [{"type": "thinking"}]},
            ]
        )
    assert err.value.param == "messages[1].thinking_blocks[0]"


def test_tool_is_error_must_be_a_boolean() -> None:
    with pytest.raises(InvalidRequest):
        build(
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "t", "content": "x", "is_error": "yes"},
            ],
            tools=[TOOL],
        )


def test_document_part_becomes_a_document_block() -> None:
    document = {
        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is green."},
        "title": "Notes",
        "context": "field notes",
        "citations": {"enabled": True},
    }
    body = build(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "document", "document": document, "cache_control": CACHE},
                    {"type": "text", "text": "What colour is the sky?"},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"][0] == {"type": "document", **document, "cache_control": CACHE}
    with pytest.raises(InvalidRequest):
        build(messages=[{"role": "user", "content": [{"type": "document", "document": {"title": "x"}}]}])


# -- capability table ----------------------------------------------------------------------------


def low_detail_image(detail: str) -> list[dict[str, Any]]:
    url = "data:image/png;base64,iVBORw0KGgo="
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": detail}}]}]


def test_image_detail_low_is_refused_unless_dropped() -> None:
    with pytest.raises(UnsupportedParameter) as err:
        build(messages=low_detail_image("low"))
    assert err.value.param == "messages"
    assert "detail" in err.value.message
    assert build(True, messages=low_detail_image("low"))["messages"][0]["content"][0]["type"] == "image"
    for detail in ("high", "auto"):
        assert build(messages=low_detail_image(detail))["messages"][0]["content"][0]["type"] == "image"


def test_refusals_come_from_the_capability_table() -> None:
    cells = capabilities.table("anthropic")
    assert cells["thinking"].to == "thinking"
    assert cells["reasoning_effort"].to == "thinking.budget_tokens"
    assert cells["metadata"].kind == "refused"
    with pytest.raises(UnsupportedParameter) as err:
        build(metadata={"app": "demo"})
    assert err.value.param == "metadata"
    assert "metadata" not in build(True, metadata={"app": "demo"})


def test_a_forced_tool_with_thinking_is_a_clear_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build(reasoning_effort="low", tools=[TOOL], tool_choice="required")
    assert err.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as err:
        build(reasoning_effort="low", response_format={"type": "json_object"})
    assert err.value.param == "response_format"
    assert build(reasoning_effort="low", tools=[TOOL], tool_choice="auto")["thinking"]["type"] == "enabled"


def test_a_forced_tool_choice_without_tools_is_refused_not_dropped() -> None:
    # The gateway's 400, as Bedrock's; auto and none without tools ask for nothing.
    for choice in ("required", {"type": "function", "function": {"name": "f"}}):
        with pytest.raises(InvalidRequest) as err:
            build(tool_choice=choice)
        assert err.value.param == "tool_choice"
    assert "tool_choice" not in build(tool_choice="none")


def test_thinking_is_not_sent_when_the_tool_loop_has_no_signed_thinking_to_continue() -> None:
    """The calls came from another provider (no thinking_blocks): Anthropic would refuse thinking
    on the turn that answers them, so this turn goes without; a fresh turn thinks again."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    loop = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    body = build(messages=loop, tools=[TOOL], reasoning_effort="low")
    assert "thinking" not in body
    default = build(messages=loop, tools=[TOOL])["max_tokens"]
    assert body["max_tokens"] == default  # no thinking budget added
    signed = {**loop[1], "thinking_blocks": [SIGNED]}
    body = build(messages=[loop[0], signed, loop[2]], tools=[TOOL], reasoning_effort="low")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    fresh = [*loop, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}]
    assert build(messages=fresh, tools=[TOOL], reasoning_effort="low")["thinking"]["type"] == "enabled"


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        ({"temperature": 0.2, "top_p": 0.5, "top_k": 5}, set()),
        ({"temperature": 1, "top_p": 0.95}, {"temperature", "top_p"}),
        # Not numbers: invalid whether or not the model thinks, left for Anthropic's own 400.
        ({"temperature": True, "top_p": True, "top_k": "5"}, {"temperature", "top_p", "top_k"}),
        ({"top_p": "0.5"}, {"top_p"}),
    ],
)
def test_a_pass_through_drops_only_the_numbers_thinking_refuses(
    fields: dict[str, Any], kept: set[str]
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = {"model": "m", "max_tokens": 4000, "thinking": thinking, **fields}
    out = dropped_while_thinking(body)
    assert {k for k in fields if k in out} == kept
    assert dropped_while_thinking({**body, "thinking": {"type": "disabled"}}) == {
        **body, "thinking": {"type": "disabled"}}
