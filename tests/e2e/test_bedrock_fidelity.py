"""Bedrock translation fidelity end to end: what the Converse mock received for each canonical
feature, and what the client got back (openai and anthropic SDKs through one gateway)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
OPUS = "us.anthropic.claude-opus-4-6-v1"
NOVA = "us.amazon.nova-2-lite-v1:0"
LLAMA = "meta.llama3-70b-instruct-v1:0"
COMMAND_R = "cohere.command-r-plus-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}


# Bedrock's Claude prices with its cache-write tiers: 1.25x input for 5 minutes, 2x for an hour.
CACHE_PRICES = {"input_cost_per_mtok": 3.0, "output_cost_per_mtok": 15.0, "cached_input_cost_per_mtok": 0.3,
                "cache_write_5m_cost_per_mtok": 3.75, "cache_write_1h_cost_per_mtok": 6.0}


def _config(mock: Mock) -> dict[str, Any]:
    provider = {"name": "aws", "type": "bedrock", "api_base": mock.url, "aws_access_key_id": "AKIDTEST",
                "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1"}
    return {
        "providers": [provider],
        "models": [
            {"name": "claude", "provider": "aws", "model": CLAUDE},
            {"name": "claude-priced", "provider": "aws", "model": CLAUDE, "info": CACHE_PRICES},
            {"name": "opus", "provider": "aws", "model": OPUS},
            {"name": "nova", "provider": "aws", "model": NOVA},
            {"name": "llama", "provider": "aws", "model": LLAMA},
            {"name": "command-r", "provider": "aws", "model": COMMAND_R},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
    }


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(_config(mock_upstream), Path(tmp_path_factory.mktemp("bedrock-fidelity")))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def sent(mock: Mock, marker: str, count: int = 1) -> dict[str, Any]:
    """The Converse body the mock received last under ``marker``."""
    body: dict[str, Any] = captured(mock, marker, count=count)[-1]["body"]
    return body


def extra(model: Any) -> dict[str, Any]:
    return model.model_extra or {}


def tool_history(text: str) -> list[Any]:
    return [
        *ask(text),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees"},
        {"role": "user", "content": "thanks, and tomorrow?"},
    ]


# ---- 1. tool_choice none ----

def test_tool_choice_none_offers_no_tools_even_with_tool_history(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    history = tool_history(f"weather mock:capture={marker}")
    resp = sdk.chat.completions.create(model="claude", messages=history, tools=[TOOL], tool_choice="none")
    assert resp.choices[0].finish_reason == "stop" and not resp.choices[0].message.tool_calls
    body = sent(mock_upstream, marker)
    assert "toolConfig" not in body
    assert body["messages"][1]["content"] == [{"text": '[tool call get_weather (call_1): {"city":"Rome"}]'}]
    assert body["messages"][2]["content"][0] == {"text": "[tool result (call_1): 22 degrees]"}


def test_anthropic_tool_choice_none_offers_no_tools(claude: anthropic.Anthropic, mock_upstream: Mock) -> None:
    marker = new_marker()
    reply = claude.messages.create(
        model="claude", max_tokens=100, tool_choice={"type": "none"},
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": f"weather? mock:capture={marker}"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    )
    assert reply.stop_reason == "end_turn" and [b.type for b in reply.content] == ["text"]
    assert "toolConfig" not in sent(mock_upstream, marker)


# ---- 2. parallel_tool_calls false ----

def test_parallel_tool_calls_false_reaches_claude(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = sdk.chat.completions.create(model="claude", messages=ask(f"weather mock:capture={marker}"),
                                       tools=[TOOL], tool_choice="required", parallel_tool_calls=False)
    assert len(resp.choices[0].message.tool_calls or []) == 1
    body = sent(mock_upstream, marker)
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert body["additionalModelRequestFields"]["tool_choice"] == {
        "type": "any", "disable_parallel_tool_use": True}


def test_anthropic_disable_parallel_tool_use_reaches_claude(
    claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    marker = new_marker()
    claude.messages.create(
        model="claude", max_tokens=100, messages=[{"role": "user", "content": f"hi mock:capture={marker}"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    extra_fields = sent(mock_upstream, marker)["additionalModelRequestFields"]
    assert extra_fields["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_parallel_tool_calls_false_is_not_sent_where_converse_has_no_control(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    # No control for other families: the request goes without it, the gateway keeps the first call.
    marker = new_marker()
    resp = sdk.chat.completions.create(model="llama", messages=ask(f"hi mock:capture={marker}"), tools=[TOOL],
                                       parallel_tool_calls=False)
    assert len(resp.choices[0].message.tool_calls or []) == 1
    body = sent(mock_upstream, marker)
    assert "additionalModelRequestFields" not in body and body["toolConfig"]["tools"]


# ---- 3. thinking ----

def test_reasoning_effort_thinks_and_the_signature_survives_a_round_trip(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    messages: list[Any] = ask(f"why is the sky blue? mock:capture={marker}")
    resp = sdk.chat.completions.create(model="claude", messages=messages, reasoning_effort="medium")
    assert sent(mock_upstream, marker)["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 4096}}
    message = extra(resp.choices[0].message)
    assert message["reasoning_content"]
    [block] = message["thinking_blocks"]
    assert block["type"] == "thinking" and block["signature"]
    assert block["thinking"] == message["reasoning_content"]
    messages += [
        {"role": "assistant", "content": resp.choices[0].message.content,
         "thinking_blocks": message["thinking_blocks"]},
        {"role": "user", "content": "and at night?"},
    ]
    again = sdk.chat.completions.create(model="claude", messages=messages, reasoning_effort="medium")
    assert again.choices[0].message.content
    replayed = sent(mock_upstream, marker, count=2)["messages"][1]["content"][0]
    assert replayed == {"reasoningContent": {"reasoningText": {"text": block["thinking"],
                                                               "signature": block["signature"]}}}
    messages[1]["thinking_blocks"] = [{**block, "signature": "Zm9yZ2Vk"}]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=messages, reasoning_effort="medium")
    assert "signature" in err.value.message


def test_effort_above_high_is_claudes_adaptive_thinking_with_its_effort(
    sdk: openai.OpenAI, claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    # reasoning_effort (OpenAI) and output_config.effort (Anthropic) xhigh / max: Claude's own
    # effort control, as the anthropic provider type sends it.
    marker = new_marker()
    resp = sdk.chat.completions.create(model="opus", messages=ask(f"prove it mock:capture={marker}"),
                                       reasoning_effort="max")  # type: ignore[arg-type]
    body = sent(mock_upstream, marker)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"},
                                                    "output_config": {"effort": "max"}}
    assert body["inferenceConfig"]["maxTokens"] == 16384 + 4096  # the room "high" gives the answer
    assert resp.choices[0].message.content and extra(resp.choices[0].message)["reasoning_content"]
    marker = new_marker()
    message = claude.messages.create(
        model="opus", max_tokens=2000, extra_body={"output_config": {"effort": "xhigh"}},
        messages=[{"role": "user", "content": f"and this mock:capture={marker}"}],
    )
    body = sent(mock_upstream, marker)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"},
                                                    "output_config": {"effort": "xhigh"}}
    assert body["inferenceConfig"]["maxTokens"] == 2000
    assert [b.type for b in message.content] == ["thinking", "text"]
    # Nova has no such level: a 400 naming the parameter, as for any unknown level.
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="nova", messages=ask("hi"), reasoning_effort="xhigh")  # type: ignore[arg-type]
    assert err.value.param == "reasoning_effort" and err.value.status_code == 400


@pytest.mark.parametrize("effort", ["xhigh", "max"])
def test_an_anthropic_effort_nova_does_not_take_is_advised_in_anthropic_values(
    claude: anthropic.Anthropic, mock_upstream: Mock, effort: str
) -> None:
    # Nova 2's levels in output_config.effort's values: low and medium (high, Anthropic's
    # default, asks for none), not the chat API's none and minimal, which the caller cannot send.
    marker = new_marker()
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="nova", max_tokens=256, extra_body={"output_config": {"effort": effort}},
                               messages=[{"role": "user", "content": f"hi mock:capture={marker}"}])
    error = err.value.body["error"]  # type: ignore[index]
    assert error["message"] == (
        f"'output_config.effort' '{effort}' has no Converse thinking budget: send 'low' or 'medium', or "
        "leave 'output_config.effort' out (xhigh, max: Claude models only)")
    assert captured(mock_upstream, marker, timeout=0.2) == []


def test_thinking_streams_reasoning_content_then_the_signature(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(
        model="claude", messages=ask("think it through"), stream=True,
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 2048}},
    ))
    deltas = [extra(c.choices[0].delta) for c in chunks if c.choices]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    signatures = [b["signature"] for d in deltas for b in d.get("thinking_blocks") or ()]
    assert reasoning.startswith("The user wrote: think it through") and len(signatures) == 1


def test_nova_reasoning_config_and_refusal_elsewhere(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = sdk.chat.completions.create(model="nova", messages=ask(f"hi mock:capture={marker}"),
                                       reasoning_effort="high")
    assert sent(mock_upstream, marker)["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}
    assert extra(resp.choices[0].message)["reasoning_content"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="llama", messages=ask("hi"), reasoning_effort="high")
    assert err.value.param == "reasoning_effort"


def test_top_k_goes_where_each_family_reads_it(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    """Nova reads topK in its own inferenceConfig (AWS: "placed within an additional
    inferenceConfig object within the additionalModelRequestFields"); Claude reads top_k."""
    for model, expected in (("nova", {"inferenceConfig": {"topK": 7}}), ("claude", {"top_k": 7})):
        marker = new_marker()
        sdk.chat.completions.create(model=model, messages=ask(f"hi mock:capture={marker}"),
                                    extra_body={"top_k": 7})
        assert sent(mock_upstream, marker)["additionalModelRequestFields"] == expected, model
    marker = new_marker()  # with Nova 2's reasoning control beside it
    sdk.chat.completions.create(model="nova", messages=ask(f"hi mock:capture={marker}"),
                                reasoning_effort="low", extra_body={"top_k": 3})
    assert sent(mock_upstream, marker)["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}, "inferenceConfig": {"topK": 3}}


def test_top_k_is_k_for_command_r_and_refused_where_the_family_has_none(
        sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    """Cohere Command R reads its top-k as ``k``; Meta Llama's parameters have no top-k at all,
    so top_k there is a 400 naming it (nothing sent), or dropped with drop_params."""
    marker = new_marker()
    sdk.chat.completions.create(model="command-r", messages=ask(f"hi mock:capture={marker}"),
                                extra_body={"top_k": 40})
    assert sent(mock_upstream, marker)["additionalModelRequestFields"] == {"k": 40}
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="llama", messages=ask(f"hi mock:capture={marker}"),
                                    extra_body={"top_k": 40})
    assert err.value.code == "unsupported_parameter" and err.value.param == "top_k"
    assert not captured(mock_upstream, marker, count=0)
    marker = new_marker()
    resp = sdk.chat.completions.create(model="llama", messages=ask(f"hi mock:capture={marker}"),
                                       extra_body={"top_k": 40, "drop_params": True})
    assert resp.choices[0].message.content
    assert "additionalModelRequestFields" not in sent(mock_upstream, marker)


THINKING = {  # the budget path and the adaptive path
    "budget": ("claude", {"reasoning_effort": "medium"}),
    "adaptive": ("opus", {"reasoning_effort": "max"}),
}


@pytest.mark.parametrize("path", THINKING)
def test_sampling_settings_claude_refuses_while_thinking_are_ours_to_refuse_or_drop(
    sdk: openai.OpenAI, mock_upstream: Mock, path: str
) -> None:
    model, think = THINKING[path]
    for name, value in (("temperature", 0.5), ("top_k", 5)):
        marker = new_marker()
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model=model, messages=ask(f"hi mock:capture={marker}"),
                                        extra_body={**think, name: value})
        assert err.value.param == name and err.value.code == "unsupported_parameter"
        assert "thinking on provider type 'bedrock'" in err.value.message
        assert captured(mock_upstream, marker, timeout=0) == []  # refused before any call
    marker = new_marker()
    resp = sdk.chat.completions.create(model=model, messages=ask(f"hi mock:capture={marker}"),
                                       extra_body={**think, "temperature": 0.5, "top_k": 5,
                                                   "drop_params": True})
    assert resp.choices[0].message.content
    body = sent(mock_upstream, marker)
    assert "temperature" not in body["inferenceConfig"]
    assert "top_k" not in body["additionalModelRequestFields"]
    assert body["additionalModelRequestFields"]["thinking"]["type"] in ("enabled", "adaptive")


@pytest.mark.parametrize("path", THINKING)
def test_a_forced_tool_choice_is_refused_while_claude_thinks(
    sdk: openai.OpenAI, mock_upstream: Mock, path: str
) -> None:
    model, think = THINKING[path]
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice in ("required", named):
        marker = new_marker()
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model=model, messages=ask(f"weather? mock:capture={marker}"),
                                        tools=[TOOL], tool_choice=choice, extra_body=think)  # type: ignore[arg-type]
        assert err.value.status_code == 400 and err.value.param == "tool_choice"
        assert "provider type 'bedrock' does not allow with thinking" in err.value.message
        assert captured(mock_upstream, marker, timeout=0) == []
    # The model choosing its tools is fine while thinking.
    marker = new_marker()
    resp = sdk.chat.completions.create(model=model, messages=ask(f"weather? mock:capture={marker}"),
                                       tools=[TOOL], tool_choice="auto", extra_body=think)
    assert resp.choices[0].message.content or resp.choices[0].message.tool_calls
    assert sent(mock_upstream, marker)["toolConfig"]["toolChoice"] == {"auto": {}}


@pytest.mark.parametrize("path", THINKING)
def test_a_tool_loop_whose_calls_kept_no_signed_thinking_goes_on_without_thinking(
    sdk: openai.OpenAI, mock_upstream: Mock, path: str
) -> None:
    # Claude refuses thinking on a turn answering tool calls whose assistant turn does not open
    # with its signed thinking: that turn goes without it, as on the anthropic provider type.
    model, think = THINKING[path]
    marker = new_marker()
    messages: list[Any] = ask(f"weather in Rome? mock:capture={marker}")
    first = sdk.chat.completions.create(model=model, messages=messages, tools=[TOOL], extra_body=think)
    message = first.choices[0].message
    assert message.tool_calls and extra(message)["thinking_blocks"]
    call = message.tool_calls[0]
    turn = {"role": "assistant", "content": message.content, "tool_calls": [call.model_dump()]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"}
    # With its thinking kept, the loop thinks on.
    kept = sdk.chat.completions.create(model=model, tools=[TOOL], extra_body=think, messages=[
        *messages, {**turn, "thinking_blocks": extra(message)["thinking_blocks"]}, result])
    assert kept.choices[0].message.content
    assert "thinking" in sent(mock_upstream, marker, count=2)["additionalModelRequestFields"]
    # Without it (the calls came from another provider, or the client kept none): no thinking,
    # no maxTokens made room for it; an effort level stays.
    lost = sdk.chat.completions.create(model=model, tools=[TOOL], extra_body=think,
                                       messages=[*messages, turn, result])
    assert lost.choices[0].message.content
    body = sent(mock_upstream, marker, count=3)
    assert "thinking" not in body.get("additionalModelRequestFields", {})
    assert "maxTokens" not in body.get("inferenceConfig", {})
    if path == "adaptive":
        assert body["additionalModelRequestFields"] == {"output_config": {"effort": "max"}}
    # A tool loop answered by text (tool_choice none) needs no thinking block: it thinks.
    text = sdk.chat.completions.create(model=model, tools=[TOOL], tool_choice="none", extra_body=think,
                                       messages=[*messages, turn, result])
    assert text.choices[0].message.content
    assert "thinking" in sent(mock_upstream, marker, count=4)["additionalModelRequestFields"]


def test_canonical_adaptive_thinking_is_claudes_adaptive_thinking(
    sdk: openai.OpenAI, claude: anthropic.Anthropic, mock_upstream: Mock
) -> None:
    # thinking: {type: adaptive} (the model sets its own budget), as Bedrock documents it for
    # Claude and as the anthropic provider type sends it; no effort level is added.
    marker = new_marker()
    resp = sdk.chat.completions.create(model="opus", messages=ask(f"prove it mock:capture={marker}"),
                                       extra_body={"thinking": {"type": "adaptive"}})
    body = sent(mock_upstream, marker)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}}
    assert body["inferenceConfig"]["maxTokens"] == 16384 + 4096  # the room xhigh gets
    assert resp.choices[0].message.content and extra(resp.choices[0].message)["reasoning_content"]
    marker = new_marker()
    message = claude.messages.create(
        model="opus", max_tokens=2000, extra_body={"thinking": {"type": "adaptive"}},
        messages=[{"role": "user", "content": f"and this mock:capture={marker}"}],
    )
    body = sent(mock_upstream, marker)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}}
    assert body["inferenceConfig"]["maxTokens"] == 2000
    assert [b.type for b in message.content] == ["thinking", "text"]
    # Nova's reasoning control takes an effort, never adaptive: a 400 naming the field.
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="nova", messages=ask("hi"),
                                    extra_body={"thinking": {"type": "adaptive"}})
    assert err.value.param == "thinking.type" and err.value.code == "invalid_value"


@pytest.mark.parametrize("effort", ["high", "xhigh", "max"])
def test_every_effort_is_dropped_or_refused_alike_where_converse_has_no_control(
    sdk: openai.OpenAI, mock_upstream: Mock, effort: str
) -> None:
    # Llama has no reasoning control: a level above high is no invalid value there, only one
    # more level of a parameter the model cannot take.
    marker = new_marker()
    resp = sdk.chat.completions.create(model="llama", messages=ask(f"hi mock:capture={marker}"),
                                       reasoning_effort=effort,  # type: ignore[arg-type]
                                       extra_body={"drop_params": True})
    assert resp.choices[0].message.content
    assert "additionalModelRequestFields" not in sent(mock_upstream, marker)
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="llama", messages=ask("hi"), reasoning_effort=effort)  # type: ignore[arg-type]
    assert err.value.status_code == 400 and err.value.param == "reasoning_effort"
    assert err.value.code == "unsupported_parameter" and "drop_params" in err.value.message


# ---- 4. prompt caching ----

def _cached_request(marker: str) -> dict[str, Any]:
    return {
        "model": "claude",
        "tools": [{**TOOL, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": f"You are a weather bot with long rules {marker}",
                 "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": f"hello mock:capture={marker}"},
        ],
    }


def test_cache_control_becomes_cache_points_and_writes_then_reads_are_reported(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    first = sdk.chat.completions.create(**_cached_request(marker))
    body = sent(mock_upstream, marker)
    assert body["system"][1] == {"cachePoint": {"type": "default"}}
    assert body["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    written = extra(first.usage.prompt_tokens_details)["cache_creation_tokens"]
    assert written > 0 and first.usage.prompt_tokens_details.cached_tokens == 0
    chunks = list(sdk.chat.completions.create(**_cached_request(marker), stream=True,
                                              stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == written
    assert usage.prompt_tokens >= written + 1


@pytest.mark.parametrize("ttl", ["5m", "1h"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_cache_writes_are_priced_by_their_ttl(sdk: openai.OpenAI, gw: Gateway, mock_upstream: Mock,
                                               ttl: str, stream: bool) -> None:
    """Bedrock says how many of the tokens written to the cache were written for an hour
    (``cacheDetails``): those cost the 1-hour write price, the others the 5-minute one."""
    marker = new_marker()
    request = {"model": "claude-priced", "max_tokens": 20, "messages": [
        {"role": "system", "content": [{"type": "text", "text": f"Rules {marker} " + "word " * 40,
                                        "cache_control": {"type": "ephemeral", "ttl": ttl}}]},
        {"role": "user", "content": f"hello mock:capture={marker}"}]}
    if stream:
        with sdk.chat.completions.with_streaming_response.create(
                **request, stream=True, stream_options={"include_usage": True}) as raw:
            rid = raw.headers["x-request-id"]
            usage = [c for c in raw.parse() if c.usage is not None][-1].usage
    else:
        raw = sdk.chat.completions.with_raw_response.create(**request)
        rid, usage = raw.headers["x-request-id"], raw.parse().usage
    assert sent(mock_upstream, marker)["system"][1] == {"cachePoint": {"type": "default", "ttl": ttl}}
    assert usage is not None and usage.prompt_tokens_details is not None
    details = extra(usage.prompt_tokens_details)
    written = details["cache_creation_tokens"]
    assert written > 0 and details.get("cache_creation_1h_tokens", 0) == (written if ttl == "1h" else 0)
    write_price = Decimal("6") if ttl == "1h" else Decimal("3.75")
    expected = ((usage.prompt_tokens - written) * 3 + written * write_price
                + usage.completion_tokens * 15) / Decimal(1_000_000)
    if not stream:
        assert Decimal(raw.headers["x-switchboard-cost-usd"]) == expected
    record = logged(gw, rid)
    assert (record["cache_write_5m_tokens"], record["cache_write_1h_tokens"]) == (
        (0, written) if ttl == "1h" else (written, 0))
    assert Decimal(record["cost_usd"]) == expected


def logged(gw: Gateway, rid: str) -> dict[str, Any]:
    """The request log's record of request ``rid``, once the ledger has it."""
    deadline = time.monotonic() + 20
    while True:
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": rid},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
        assert resp.status_code == 200, resp.text
        if resp.json()["data"]:
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"no record of {rid}"
        time.sleep(0.1)


# ---- 5. stop sequences ----

def test_the_matched_stop_sequence_is_reported(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = sdk.chat.completions.create(model="claude", messages=ask(f"hi mock:capture={marker}"),
                                       stop=["zzz", "Switchboard"])
    assert sent(mock_upstream, marker)["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert resp.choices[0].finish_reason == "stop"
    assert extra(resp.choices[0])["stop_sequence"] == "Switchboard"
    chunks = list(sdk.chat.completions.create(model="claude", messages=ask("hi"), stop=["mock"], stream=True))
    finish = [extra(c.choices[0]) for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[0]["stop_sequence"] == "mock"


def _stops(client: anthropic.Anthropic, model: str, stops: list[str], stream: bool) -> tuple[Any, Any]:
    """(stop_reason, stop_sequence) of a /v1/messages reply, or of a stream's message_delta."""
    params: Any = {"model": model, "max_tokens": 64, "stop_sequences": stops,
                   "messages": [{"role": "user", "content": "hi"}]}
    if not stream:
        reply = client.messages.create(**params)
        return reply.stop_reason, reply.stop_sequence
    deltas = [e.delta for e in client.messages.create(**params, stream=True) if e.type == "message_delta"]
    assert len(deltas) == 1
    return deltas[0].stop_reason, deltas[0].stop_sequence


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_a_stop_sequence_stop_of_another_family_is_stop_sequence_on_v1_messages(
        claude: anthropic.Anthropic, sdk: openai.OpenAI, stream: bool) -> None:
    """Llama's Converse reply says stopReason stop_sequence but not which: the caller's only
    stop sequence is the match; with several, which one is unknown (null), the reason still
    stop_sequence. The OpenAI shape keeps finish_reason stop."""
    assert _stops(claude, "llama", ["Switchboard"], stream) == ("stop_sequence", "Switchboard")
    assert _stops(claude, "llama", ["zzz", "Switchboard"], stream) == ("stop_sequence", None)
    assert _stops(claude, "llama", ["zzz"], stream) == ("end_turn", None)
    resp = sdk.chat.completions.create(model="llama", messages=ask("hi"), stop=["Switchboard"])
    assert resp.choices[0].finish_reason == "stop"
    assert extra(resp.choices[0])["stop_sequence"] == "Switchboard"


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_an_empty_stop_sequence_does_not_hide_which_one_matched(sdk: openai.OpenAI, stream: bool) -> None:
    """["", "Switchboard"] sends only "Switchboard" (an empty one asks for nothing), so that is the
    match Llama's stopReason stop_sequence reports."""
    params: Any = {"model": "llama", "messages": ask("hi"), "stop": ["", "Switchboard"]}
    if stream:
        chunks = list(sdk.chat.completions.create(**params, stream=True))
        finish = [extra(c.choices[0]) for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish[0]["stop_sequence"] == "Switchboard"
    else:
        assert extra(sdk.chat.completions.create(**params).choices[0])["stop_sequence"] == "Switchboard"


# ---- 6. strict tools ----

def test_strictness_is_kept_per_tool(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    strict: Any = {"type": "function", "function": {"name": "lookup", "strict": True, "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}}
    sdk.chat.completions.create(model="claude", messages=ask(f"hi mock:capture={marker}"),
                                tools=[TOOL, strict])
    specs = [t["toolSpec"] for t in sent(mock_upstream, marker)["toolConfig"]["tools"]]
    assert [s.get("strict") for s in specs] == [None, True]


# ---- 7. user and metadata ----

def test_user_and_metadata_become_request_metadata(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    sdk.chat.completions.create(model="claude", messages=ask(f"hi mock:capture={marker}"), user="user-42",
                                metadata={"app": "demo"})
    assert sent(mock_upstream, marker)["requestMetadata"] == {"app": "demo", "user": "user-42"}
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=ask("hi"), metadata={"app": "d\u00e9mo"})
    assert err.value.param == "metadata.app" and "requestMetadata" in err.value.message


def test_a_user_id_that_does_not_fit_request_metadata_is_served_without_it(
    claude: anthropic.Anthropic, mock_upstream: Mock,
) -> None:
    # Claude Code (2.1.78 and later) sends metadata.user_id as a JSON text, which requestMetadata
    # cannot hold: the request is served and the id not sent, as Vertex does with its label.
    marker = new_marker()
    user_id = '{"device_id":"d1","account_uuid":"","session_id":"s1"}'
    message = claude.messages.create(model="claude", max_tokens=64, metadata={"user_id": user_id},
                                     messages=[{"role": "user", "content": f"hi mock:capture={marker}"}])
    assert message.content and message.stop_reason == "end_turn"
    assert "requestMetadata" not in sent(mock_upstream, marker)
    marker = new_marker()
    claude.messages.create(model="claude", max_tokens=64, metadata={"user_id": "user-42"},
                           messages=[{"role": "user", "content": f"hi mock:capture={marker}"}])
    assert sent(mock_upstream, marker)["requestMetadata"] == {"user": "user-42"}


# ---- 8. image detail ----

def test_low_image_detail_is_refused_unless_dropped(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    def image(text: str) -> list[Any]:
        return [{"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        ]}]

    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=image("what is it?"))
    assert err.value.code == "unsupported_parameter" and "detail" in err.value.message
    marker = new_marker()
    sdk.chat.completions.create(model="claude", messages=image(f"what? mock:capture={marker}"),
                                extra_body={"drop_params": True})
    assert sent(mock_upstream, marker)["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": PNG}}}


# ---- 9. turns ----

def test_late_system_message_and_empty_assistant_keep_their_place(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    sdk.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"first mock:capture={marker}"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "second"},
        {"role": "system", "content": "Answer in French from now on."},
        {"role": "user", "content": "third"},
    ])
    body = sent(mock_upstream, marker)
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": f"first mock:capture={marker}"}]},
        {"role": "assistant", "content": [{"text": "(no content)"}]},
        {"role": "user", "content": [{"text": "second"}, {"text": "System: Answer in French from now on."},
                                     {"text": "third"}]},
    ]


@pytest.mark.parametrize("late", [False, True], ids=["leading", "after-a-turn"])
def test_a_non_text_system_part_is_refused_naming_the_part(
    sdk: openai.OpenAI, mock_upstream: Mock, late: bool
) -> None:
    marker = new_marker()
    system: Any = {"role": "system", "content": [
        {"type": "text", "text": "Be brief."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}
    turns: list[Any] = [{"role": "user", "content": f"hi mock:capture={marker}"}]
    messages = [*turns, {"role": "assistant", "content": "hello"}, system, *ask("and?")] if late else [
        system, *turns]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=messages)
    index = 2 if late else 0
    # The part's type, as every other part Converse cannot take is named.
    assert err.value.param == f"messages[{index}].content[1].type", err.value.body
    assert "image_url" in err.value.message and "system message" in err.value.message
    assert captured(mock_upstream, marker, count=0) == []  # nothing went upstream


@pytest.mark.parametrize("arguments", ["null", "[1]", "5", '"text"'])
@pytest.mark.parametrize("model", ["claude", "nova"])
def test_tool_call_arguments_that_are_not_an_object_are_a_400_naming_them(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, arguments: str
) -> None:
    """Converse's toolUse.input must be an object (Claude refuses anything else): another JSON value
    in a replayed call is the caller's 400, as on the anthropic provider type."""
    marker = new_marker()
    messages: Any = [
        *ask(f"weather mock:capture={marker}"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees"},
    ]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model=model, messages=messages, tools=[TOOL])
    assert err.value.param == "messages[1].tool_calls[0].function.arguments", err.value.body
    assert "JSON object" in err.value.message
    assert captured(mock_upstream, marker, count=0) == []


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "   "}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": [{"type": "text", "text": "\n"}]}],
    [{"role": "system", "content": "Be brief."}],
], ids=["blank-user", "system-and-blank-part", "system-only"])
def test_a_conversation_with_nothing_to_send_is_a_400_naming_messages(
    sdk: openai.OpenAI, messages: Any
) -> None:
    """Blank text is left out (Converse refuses it); a conversation left with no turn is the
    gateway's 400 naming messages, not Bedrock's "The messages field is required"."""
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=messages)
    assert err.value.param == "messages", err.value.body
    assert err.value.code == "invalid_value"
    assert "nothing to send" in err.value.message


@pytest.mark.parametrize("first", [
    {"role": "user", "content": "  "},
    {"role": "system", "content": "Be brief."},
], ids=["blank-user", "system"])
def test_a_conversation_starting_with_an_assistant_turn_is_a_400_naming_it(
    sdk: openai.OpenAI, mock_upstream: Mock, first: Any
) -> None:
    """Converse refuses a conversation whose first turn is not a user turn ("A conversation must
    start with a user message"); a blank user message is left out, so the assistant message after
    it would open the conversation: the gateway's 400 naming that message, nothing sent."""
    marker = new_marker()
    messages: Any = [first, {"role": "assistant", "content": "How can I help?"},
                     {"role": "user", "content": f"hi mock:capture={marker}"}]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="claude", messages=messages)
    assert err.value.param == "messages[1]", err.value.body
    assert err.value.code == "invalid_value"
    assert "must start with a user message" in err.value.message
    assert captured(mock_upstream, marker, count=0) == []
