"""Canonical request features Converse spells its own way: thinking, prompt caching, parallel tool
calls, strict tools, request metadata, image detail (golden Converse bodies)."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import InvalidRequest, UnsupportedParameter
from tests.unit.test_bedrock_request import TOOLS, build, target, user

NOVA = "us.amazon.nova-2-lite-v1:0"
LLAMA = "meta.llama3-70b-instruct-v1:0"
EPHEMERAL = {"type": "ephemeral"}
CALL = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


# ---- thinking ----

@pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 4096),
                                                ("high", 16384)])
def test_reasoning_effort_is_a_claude_thinking_budget(effort: str, budget: int) -> None:
    _, body, _ = build({"messages": [user("x")], "reasoning_effort": effort})
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": budget}}
    assert body["inferenceConfig"] == {"maxTokens": budget + 4096}


def test_effort_budget_stays_below_max_tokens() -> None:
    _, body, _ = build({"messages": [user("x")], "reasoning_effort": "high", "max_tokens": 8000})
    assert body["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 7999
    assert body["inferenceConfig"]["maxTokens"] == 8000
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x")], "reasoning_effort": "low", "max_tokens": 1000})
    assert err.value.param == "max_tokens"


def test_thinking_is_sent_as_given_and_checked() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    _, body, _ = build({"messages": [user("x")], "thinking": thinking, "reasoning_effort": "high",
                        "max_tokens": 4000})
    assert body["additionalModelRequestFields"] == {"thinking": thinking}
    _, body, _ = build({"messages": [user("x")], "thinking": {"type": "disabled"}})
    assert "additionalModelRequestFields" not in body
    for bad, param in [({"type": "enabled", "budget_tokens": 10}, "thinking.budget_tokens"),
                       ({"type": "sometimes"}, "thinking.type"),
                       ({"type": "enabled", "budget_tokens": 5000}, "max_tokens")]:
        with pytest.raises(InvalidRequest) as err:
            build({"messages": [user("x")], "thinking": bad, "max_tokens": 5000})
        assert err.value.param == param and err.value.code == "invalid_value"
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x")], "reasoning_effort": "extreme"})
    assert err.value.param == "reasoning_effort"


def test_nova_2_gets_reasoning_config_and_other_models_refuse() -> None:
    _, body, _ = build({"messages": [user("x")], "reasoning_effort": "minimal"}, target(model=NOVA))
    assert body["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}
    _, body, _ = build({"messages": [user("x")], "thinking": {"type": "enabled", "budget_tokens": 20000}},
                       target(model=NOVA))
    assert body["additionalModelRequestFields"]["reasoningConfig"]["maxReasoningEffort"] == "high"
    with pytest.raises(UnsupportedParameter) as err:
        build({"messages": [user("x")], "reasoning_effort": "high"}, target(model=LLAMA))
    assert err.value.param == "reasoning_effort" and "drop_params" in err.value.message
    _, body, _ = build({"messages": [user("x")], "reasoning_effort": "high"}, target(True, LLAMA))
    assert "additionalModelRequestFields" not in body


def test_thinking_blocks_are_replayed_first_with_their_signatures() -> None:
    _, body, _ = build({"messages": [user("x"), {
        "role": "assistant", "content": "Answer", "reasoning_content": "Step one.",
        "thinking_blocks": [{"type": "thinking", "thinking": "Step one.", "signature": "c2ln"},
                            {"type": "redacted_thinking", "data": "ZW5j"}],
        "tool_calls": [CALL],
    }, {"role": "tool", "tool_call_id": "c", "content": "ok"}], "tools": TOOLS})
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Step one.", "signature": "c2ln"}}},
        {"reasoningContent": {"redactedContent": "ZW5j"}},
        {"text": "Answer"},
        {"toolUse": {"toolUseId": "c", "name": "get_weather", "input": {}}},
    ]
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x"), {"role": "assistant", "content": "a",
                                        "thinking_blocks": [{"type": "thinking", "thinking": "t"}]}]})
    assert err.value.param == "messages[1].thinking_blocks[0]"



def test_a_thinking_block_gathered_from_a_stream_is_replayed_with_its_text() -> None:
    # A stream sends the text as reasoning_content and the signature in a block whose thinking is
    # "": the one signed block of a message gathered from it gets the text back (Converse refuses a
    # signed block whose text changed). Several such blocks cannot be told apart: sent as they came.
    def replayed(blocks: list[Any], reasoning: str) -> list[Any]:
        _, body, _ = build({"messages": [user("x"), {
            "role": "assistant", "content": None, "reasoning_content": reasoning,
            "thinking_blocks": blocks, "tool_calls": [CALL],
        }, {"role": "tool", "tool_call_id": "c", "content": "ok"}], "tools": TOOLS})
        return [b["reasoningContent"] for b in body["messages"][1]["content"] if "reasoningContent" in b]

    redacted = {"index": 0, "type": "redacted_thinking", "data": "ZW5j"}
    signed = {"index": 1, "type": "thinking", "thinking": "", "signature": "c2ln"}
    assert replayed([redacted, signed], "Step one.") == [
        {"redactedContent": "ZW5j"}, {"reasoningText": {"text": "Step one.", "signature": "c2ln"}}]
    assert replayed([signed, {**signed, "signature": "b3RoZXI="}], "Step one.") == [
        {"reasoningText": {"text": "", "signature": "c2ln"}},
        {"reasoningText": {"text": "", "signature": "b3RoZXI="}}]


# ---- prompt caching ----

def test_cache_control_adds_cache_points_in_system_messages_and_tools() -> None:
    tools = [{**TOOLS[0], "cache_control": EPHEMERAL}]
    _, body, _ = build({"tools": tools, "messages": [
        {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": EPHEMERAL},
                                       {"type": "text", "text": "today"}]},
        {"role": "user", "content": [{"type": "text", "text": "doc",
                                      "cache_control": {**EPHEMERAL, "ttl": "1h"}},
                                     {"type": "text", "text": "question"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok", "cache_control": EPHEMERAL}],
         "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c",
         "content": [{"type": "text", "text": "r", "cache_control": EPHEMERAL}]},
    ]})
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": "long rules"}, point, {"text": "today"}]
    assert body["toolConfig"]["tools"][1] == point and len(body["toolConfig"]["tools"]) == 2
    assert body["messages"][0]["content"] == [
        {"text": "doc"}, {"cachePoint": {"type": "default", "ttl": "1h"}}, {"text": "question"}]
    assert body["messages"][1]["content"][1] == point
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "c", "content": [{"text": "r"}]}}, point]


def test_malformed_cache_control_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": {"type": "forever"}}]}]})
    assert err.value.param == "messages[0].content[0].cache_control"


# ---- tools ----

def test_parallel_tool_calls_false_is_claudes_disable_parallel_tool_use() -> None:
    _, body, _ = build({"messages": [user("x")], "tools": TOOLS, "parallel_tool_calls": False})
    assert body["additionalModelRequestFields"] == {
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}
    choice = {"type": "function", "function": {"name": "get_weather"}}
    _, body, _ = build({"messages": [user("x")], "tools": TOOLS, "tool_choice": choice,
                        "parallel_tool_calls": False})
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert body["additionalModelRequestFields"]["tool_choice"] == {
        "type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    _, body, _ = build({"messages": [user("x")], "tools": TOOLS, "parallel_tool_calls": True})
    assert "additionalModelRequestFields" not in body


def test_parallel_tool_calls_false_is_not_sent_to_other_models() -> None:
    # Converse has no general control: the gateway keeps the first call of the reply instead.
    request: dict[str, Any] = {"messages": [user("x")], "tools": TOOLS, "parallel_tool_calls": False}
    _, body, _ = build(request, target(model=NOVA))
    assert "additionalModelRequestFields" not in body and body["toolConfig"]["tools"]
    _, plain, _ = build({"messages": [user("x")], "tools": TOOLS}, target(model=NOVA))
    assert body == plain


def test_strictness_is_kept_per_tool() -> None:
    loose = {"type": "function", "function": {"name": "loose", "parameters": {"type": "object"}}}
    strict = {"type": "function", "function": {"name": "tight", "strict": True, "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}}
    _, body, _ = build({"messages": [user("x")], "tools": [loose, strict]})
    specs = [t["toolSpec"] for t in body["toolConfig"]["tools"]]
    assert ["strict" in s for s in specs] == [False, True] and specs[1]["strict"] is True


def test_tool_errors_are_error_results() -> None:
    _, body, _ = build({"messages": [*_call(), {"role": "tool", "tool_call_id": "c", "content": "boom",
                                               "is_error": True}]})
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "c", "content": [{"text": "boom"}], "status": "error"}}]


def _call() -> list[dict[str, Any]]:
    return [user("x"), {"role": "assistant", "tool_calls": [
        CALL]}]


# ---- metadata, stop sequences, image detail ----

def test_user_and_metadata_become_request_metadata() -> None:
    _, body, _ = build({"messages": [user("x")], "user": "user-42", "metadata": {"app": "demo", "run": "7"}})
    assert body["requestMetadata"] == {"app": "demo", "run": "7", "user": "user-42"}


@pytest.mark.parametrize(("extra", "param"), [
    ({"metadata": {"app": "x" * 257}}, "metadata.app"),
    ({"metadata": {"app": "ünïcode"}}, "metadata.app"),
    ({"metadata": {"n": 1}}, "metadata.n"),
    ({"metadata": {"user": "a"}, "user": "b"}, "metadata.user"),
    ({"metadata": {f"k{i}": "v" for i in range(16)}, "user": "b"}, "metadata"),
])
def test_metadata_that_does_not_fit_is_a_400(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x")], **extra})
    assert err.value.param == param


@pytest.mark.parametrize("user_id", ["<script>", "x" * 257, '{"device_id":"d1","session_id":"s1"}'])
def test_a_user_that_does_not_fit_is_not_sent(user_id: str) -> None:
    _, body, _ = build({"messages": [user("x")], "user": user_id})
    assert "requestMetadata" not in body
    _, body, _ = build({"messages": [user("x")], "user": user_id, "metadata": {"app": "demo"}})
    assert body["requestMetadata"] == {"app": "demo"}


def test_claude_is_asked_for_the_matched_stop_sequence() -> None:
    _, body, _ = build({"messages": [user("x")], "stop": ["END"]})
    assert body["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    _, body, _ = build({"messages": [user("x")], "stop": ["END"]}, target(model=NOVA))
    assert "additionalModelResponseFieldPaths" not in body


def test_low_image_detail_is_refused_unless_dropped() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    request = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png, "detail": "low"}}]}]}
    with pytest.raises(UnsupportedParameter) as err:
        build(request)
    assert err.value.param == "messages" and "detail" in err.value.message
    _, body, _ = build(request, target(drop_params=True))
    image = {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
    assert body["messages"][0]["content"] == [image]
