"""Anthropic across dialects, end to end (issue 13 §2.3, 2.4, 2.6, 2.7): the openai SDK to an
``anthropic`` upstream keeps prompt caching, extended thinking (reasoning_content, signed thinking
blocks that survive a tool round trip) and stop sequences; the anthropic SDK's ``/v1/messages``
to a non-Anthropic upstream reads a refusal the same way streamed and not. One gateway for the
module; each test reads what the mock upstream received where that is the point."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "anthropic-mock",
                "type": "anthropic",
                "api_base": mock.url,
                "api_key": "${UPSTREAM_KEY}",
                "default_max_tokens": 1024,
            },
            {"name": "gemini-mock", "type": "gemini", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "claude", "provider": "anthropic-mock", "model": "claude-sonnet-4-5"},
            {
                "name": "claude-lenient",
                "provider": "anthropic-mock",
                "model": "claude-sonnet-4-5",
                "drop_params": True,
            },
            {"name": "gemini", "provider": "gemini-mock", "model": "gemini-2.0-flash"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(_config(mock_upstream), tmp_path_factory.mktemp("anthropic-fidelity"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def claude_sdk(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def extra(model: Any) -> dict[str, Any]:
    """The fields the openai SDK keeps beyond its own (the canonical extensions)."""
    return dict(model.model_extra or {})


# -- prompt caching from OpenAI format ------------------------------------------------------------


def test_cached_system_prompt_reports_cache_write_then_read(oai: openai.OpenAI, mock_upstream: Mock) -> None:
    manual = f"Manual {uuid.uuid4().hex}: " + " ".join(f"rule{i}" for i in range(300))
    system: Any = [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}},
    ]
    marker = new_marker()
    usages = []
    for question in ("First?", f"Second? mock:capture={marker}"):
        resp = oai.chat.completions.create(
            model="claude",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        )
        assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
        usages.append(resp.usage)
    first, second = usages
    assert first.prompt_tokens_details is not None and second.prompt_tokens_details is not None
    assert extra(first.prompt_tokens_details)["cache_creation_tokens"] > 300
    assert first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens
    assert cached is not None and cached > 300
    assert second.prompt_tokens > cached  # prompt_tokens includes the cached part, as OpenAI counts
    upstream = captured(mock_upstream, marker)[0]["body"]
    assert upstream["system"] == system  # two blocks, the breakpoint on the second


# -- extended thinking ----------------------------------------------------------------------------


def test_reasoning_effort_returns_reasoning_content(oai: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = oai.chat.completions.create(
        model="claude",
        reasoning_effort="low",
        max_tokens=2048,
        messages=[{"role": "user", "content": f"Think about it mock:capture={marker}"}],
    )
    assert captured(mock_upstream, marker)[0]["body"]["thinking"] == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
    message = extra(resp.choices[0].message)
    # The mock thinks aloud about the prompt, as it was sent.
    thought = f"Let me think it through. The user said: Think about it mock:capture={marker}"
    assert message["reasoning_content"] == thought
    [block] = message["thinking_blocks"]
    assert block["type"] == "thinking" and block["thinking"] == message["reasoning_content"]
    assert block["signature"].startswith("sig-")
    assert resp.choices[0].message.content


def test_streamed_reasoning_matches_the_whole_reply(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Stream your thoughts"}]
    whole = extra(
        oai.chat.completions.create(model="claude", reasoning_effort="low", messages=messages)
        .choices[0]
        .message
    )
    chunks = list(
        oai.chat.completions.create(model="claude", reasoning_effort="low", messages=messages, stream=True)
    )
    deltas = [extra(c.choices[0].delta) for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == whole["reasoning_content"]
    signatures = [b["signature"] for d in deltas for b in d.get("thinking_blocks") or ()]
    assert signatures == [whole["thinking_blocks"][0]["signature"]]


def test_a_stream_of_several_thinking_blocks_is_accumulated_by_the_openai_sdk(oai: openai.OpenAI) -> None:
    # A redacted block before the signed one: each thinking_blocks delta names its block by index,
    # as tool_calls deltas do, so the SDK's stream helper gathers them (without an index it raises
    # on the second one).
    messages: Any = [{"role": "user", "content": "Think twice mock:redacted_thinking=1"}]
    whole = extra(oai.chat.completions.create(model="claude", reasoning_effort="low", messages=messages)
                  .choices[0].message)
    with oai.chat.completions.stream(model="claude", reasoning_effort="low", messages=messages) as stream:
        streamed = extra(stream.get_final_completion().choices[0].message)
    assert [b["type"] for b in whole["thinking_blocks"]] == ["redacted_thinking", "thinking"]
    blocks = streamed["thinking_blocks"]
    assert [(b["index"], b["type"]) for b in blocks] == [(0, "redacted_thinking"), (1, "thinking")]
    assert blocks[0]["data"] == whole["thinking_blocks"][0]["data"]
    assert blocks[1]["signature"] == whole["thinking_blocks"][1]["signature"]
    assert streamed["reasoning_content"] == whole["reasoning_content"]


def test_thinking_blocks_survive_a_tool_round_trip(oai: openai.OpenAI, mock_upstream: Mock) -> None:
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    first = oai.chat.completions.create(
        model="claude", reasoning_effort="low", tools=[WEATHER], messages=[question]
    )
    message = first.choices[0].message
    assert message.tool_calls
    thinking = extra(message)["thinking_blocks"]
    marker = new_marker()
    assistant: Any = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [c.model_dump() for c in message.tool_calls],
        "reasoning_content": extra(message)["reasoning_content"],
        "thinking_blocks": thinking,
    }
    result: Any = {
        "role": "tool",
        "tool_call_id": message.tool_calls[0].id,
        "content": f"lookup failed mock:capture={marker}",
        "is_error": True,
    }
    # The mock refuses a changed signature, and a tool-result turn whose thinking went missing.
    second = oai.chat.completions.create(
        model="claude", reasoning_effort="low", tools=[WEATHER], messages=[question, assistant, result]
    )
    assert second.choices[0].message.content
    sent = captured(mock_upstream, marker)[0]["body"]["messages"]
    assert sent[1]["content"][0] == thinking[0]
    assert sent[2]["content"][0]["is_error"] is True
    assert sent[2]["content"][0]["content"].startswith("lookup failed")


def test_thinking_gathered_from_a_stream_survives_a_tool_round_trip(
    oai: openai.OpenAI, mock_upstream: Mock
) -> None:
    # A streamed block's text comes as reasoning_content, its signature in a thinking_blocks delta
    # whose thinking is "": the message the SDK's stream helper gathers carries the text beside
    # the block. Sent back as gathered, the block goes to Anthropic with its text (Anthropic
    # refuses a signed block whose text was changed, and the mock does too).
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    with oai.chat.completions.stream(
        model="claude", reasoning_effort="low", tools=[WEATHER], messages=[question]
    ) as stream:
        message = stream.get_final_completion().choices[0].message
    assert message.tool_calls
    gathered = extra(message)
    assert [b["thinking"] for b in gathered["thinking_blocks"]] == [""]
    assistant: Any = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [{"id": c.id, "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments}}
                       for c in message.tool_calls],
        "reasoning_content": gathered["reasoning_content"],
        "thinking_blocks": gathered["thinking_blocks"],
    }
    marker = new_marker()
    result: Any = {"role": "tool", "tool_call_id": message.tool_calls[0].id,
                   "content": f"18 degrees mock:capture={marker}"}
    second = oai.chat.completions.create(
        model="claude", reasoning_effort="low", tools=[WEATHER], messages=[question, assistant, result]
    )
    assert second.choices[0].message.content
    sent = captured(mock_upstream, marker)[0]["body"]["messages"][1]["content"][0]
    assert sent["type"] == "thinking" and sent["thinking"] == gathered["reasoning_content"]


# -- stop sequences and refusals ------------------------------------------------------------------


def test_stop_sequence_is_reported_to_openai_clients(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Say the words"}]
    choice = oai.chat.completions.create(model="claude", stop=["mock"], messages=messages).choices[0]
    assert choice.finish_reason == "stop"
    assert extra(choice)["stop_sequence"] == "mock"
    chunks = list(oai.chat.completions.create(model="claude", stop=["mock"], messages=messages, stream=True))
    finish = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert extra(finish[0])["stop_sequence"] == "mock"


def test_image_detail_low_is_refused_unless_dropped(oai: openai.OpenAI) -> None:
    png = "data:image/png;base64," + PIXEL
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="claude", messages=messages)
    assert "image_url.detail 'low'" in err.value.message
    assert oai.chat.completions.create(model="claude-lenient", messages=messages).choices[0].message.content


def test_refusal_reads_alike_streamed_and_not_on_messages_api(claude_sdk: anthropic.Anthropic) -> None:
    # Gemini blocks the answer (finishReason SAFETY): a refusal, whichever way it is read.
    kwargs: Any = {
        "model": "gemini",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Something unsafe mock:safety=1"}],
    }
    whole = claude_sdk.messages.create(**kwargs)
    with claude_sdk.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    assert whole.stop_reason == streamed.stop_reason == "refusal"


def test_anthropic_refusal_reaches_openai_clients_alike(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Help me with mock:refuse"}]
    whole = oai.chat.completions.create(model="claude", messages=messages).choices[0]
    chunks = list(oai.chat.completions.create(model="claude", messages=messages, stream=True))
    assert whole.finish_reason == "content_filter"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]


def test_a_bad_thinking_budget_is_an_invalid_value_naming_it(oai: openai.OpenAI) -> None:
    ask: dict[str, Any] = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(**ask, extra_body={"thinking": {"type": "enabled", "budget_tokens": 10}})
    assert exc.value.param == "thinking.budget_tokens" and exc.value.code == "invalid_value"
    assert "1024" in exc.value.message
    # A budget the max_tokens sent leaves no room for: the same code, naming max_tokens.
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(**ask, max_tokens=2000,
                                    extra_body={"thinking": {"type": "enabled", "budget_tokens": 4000}})
    assert exc.value.param == "max_tokens" and exc.value.code == "invalid_value"


# What Claude refuses while it thinks, as (setting sent, the name an error must give): the
# Messages API's fields, a forced tool choice among them.
_WHILE_THINKING: list[tuple[dict[str, Any], str]] = [
    ({"temperature": 0.5}, "temperature"),
    ({"top_p": 0.5}, "top_p"),
    ({"top_k": 5}, "top_k"),
    ({"tool_choice": {"type": "any"}, "tools": [
        {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]},
    ]}, "tool_choice"),
]
_THINK = {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(("setting", "name"), _WHILE_THINKING, ids=[n for _, n in _WHILE_THINKING])
def test_the_mock_refuses_what_claude_refuses_while_thinking(
    mock_upstream: Mock, setting: dict[str, Any], name: str
) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2048, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}
    for thinking in (_THINK, {"type": "adaptive"}):
        resp = httpx.post(f"{mock_upstream.url}/v1/messages", headers=headers, timeout=30,
                          json={**body, **setting, "thinking": thinking})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and name in error["message"].replace("Thinking", "")
    # The same setting without thinking, and thinking with the values it allows, are served.
    assert httpx.post(f"{mock_upstream.url}/v1/messages", headers=headers, timeout=30,
                      json={**body, **setting}).status_code == 200
    allowed = {"temperature": 1, "top_p": 0.95}
    assert httpx.post(f"{mock_upstream.url}/v1/messages", headers=headers, timeout=30,
                      json={**body, **allowed, "thinking": _THINK}).status_code == 200


@pytest.mark.parametrize(("setting", "name"), _WHILE_THINKING, ids=[n for _, n in _WHILE_THINKING])
def test_openai_callers_get_a_400_naming_what_claude_refuses_while_thinking(
    oai: openai.OpenAI, mock_upstream: Mock, setting: dict[str, Any], name: str
) -> None:
    openai_setting = ({"tool_choice": "required", "tools": [WEATHER]} if name == "tool_choice"
                      else setting)
    ask: dict[str, Any] = {"model": "claude", "max_tokens": 2048, "reasoning_effort": "low",
                           "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(**ask, extra_body=openai_setting)
    assert exc.value.param == name and name in exc.value.message and "thinking" in exc.value.message
    if name != "tool_choice":  # drop_params drops a sampling setting, and thinking goes on
        marker = new_marker()
        turn = {"role": "user", "content": f"mock:capture={marker}"}
        lenient = {**ask, "model": "claude-lenient", "messages": [turn]}
        resp = oai.chat.completions.create(**lenient, extra_body=setting)
        assert extra(resp.choices[0].message)["reasoning_content"]
        assert name not in captured(mock_upstream, marker)[0]["body"]


@pytest.mark.parametrize(("setting", "name"), _WHILE_THINKING, ids=[n for _, n in _WHILE_THINKING])
def test_messages_api_callers_get_a_400_naming_what_claude_refuses_while_thinking(
    claude_sdk: anthropic.Anthropic, setting: dict[str, Any], name: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude_sdk.messages.create(model="claude", max_tokens=2048, thinking=_THINK,  # type: ignore[arg-type]
                                   messages=[{"role": "user", "content": "hi"}], extra_body=setting)
    assert exc.value.status_code == 400
    body: Any = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert name in body["error"]["message"].replace("Thinking", "")


# -- content block keys on /v1/messages -----------------------------------------------------------

_CALL = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
_RESULT = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"}
_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
_TOOL = {"name": "get_weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
_SERVER_CALLER = {"type": "code_execution_20250825", "tool_id": "srvtoolu_1"}


def _tool_turns(call: dict[str, Any], result: dict[str, Any]) -> list[Any]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]


@pytest.mark.parametrize("model", ["claude", "gemini"], ids=["native", "translated"])
@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (_tool_turns({**_CALL, "caller": _SERVER_CALLER}, _RESULT),
         "messages.1.content.0.caller"),
        (_tool_turns({**_CALL, "toolset_name": "mcp_github"}, _RESULT), "messages.1.content.0.toolset_name"),
        (_tool_turns(_CALL, {**_RESULT, "toolset_name": "mcp_github"}), "messages.2.content.0.toolset_name"),
        ([{"role": "user", "content": [{**_IMAGE, "transformations": {"oversized_image": "error"}}]}],
         "messages.0.content.0.transformations"),
        ([{"role": "user", "content": [{"type": "text", "text": "hi", "priority": "high"}]}],
         "messages.0.content.0.priority"),
    ],
    ids=["server-tool-caller", "tool-use-toolset", "tool-result-toolset", "image-transformations",
         "unknown-key"],
)
def test_a_block_key_without_a_counterpart_is_refused_by_name(
    claude_sdk: anthropic.Anthropic, mock_upstream: Mock, model: str, messages: list[Any], param: str
) -> None:
    marker = new_marker()
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude_sdk.messages.create(model=model, max_tokens=50, tools=[_TOOL], messages=messages,
                                   system=f"mock:capture={marker}")
    error = refused.value.body
    assert isinstance(error, dict) and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{param}: ")
    assert captured(mock_upstream, marker, count=0) == []  # nothing went upstream


def test_a_reply_echoed_back_with_its_default_keys_is_accepted(claude_sdk: anthropic.Anthropic) -> None:
    """What a reply's blocks carry when sent back as they came: a direct caller, no toolset, the
    citations of a text block, an empty transformations object."""
    call = {**_CALL, "caller": {"type": "direct"}, "toolset_name": None}
    messages = _tool_turns(call, {**_RESULT, "toolset_name": None})
    text = {"type": "text", "text": "Weather in Paris?", "citations": None}
    messages[0] = {"role": "user", "content": [text, {**_IMAGE, "transformations": {}}]}
    reply = claude_sdk.messages.create(model="gemini", max_tokens=50, tools=[_TOOL], messages=messages)
    assert reply.content and reply.stop_reason in ("end_turn", "tool_use")


def test_a_whitespace_system_message_is_left_out(oai: openai.OpenAI, mock_upstream: Mock) -> None:
    """Anthropic refuses a text block of whitespace only; a blank system prompt says nothing."""
    for system in (" \n ", [{"type": "text", "text": "\t"}]):
        marker = new_marker()
        reply = oai.chat.completions.create(model="claude", messages=[
            {"role": "system", "content": system}, {"role": "user", "content": f"hi mock:capture={marker}"}])
        assert reply.choices[0].message.content
        assert "system" not in captured(mock_upstream, marker)[0]["body"]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "   "}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": [{"type": "text", "text": "\n"}]}],
    [{"role": "system", "content": "Be brief."}],
], ids=["blank-user", "system-and-blank-part", "system-only"])
def test_a_conversation_with_nothing_to_send_is_a_400_naming_messages(
    oai: openai.OpenAI, messages: Any
) -> None:
    """As on Bedrock: blank text is left out, and no turn left is the gateway's 400 naming
    messages, not Anthropic's about its own fields."""
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="claude", messages=messages)
    assert err.value.param == "messages", err.value.body
    assert err.value.code == "invalid_value"
    assert "nothing to send" in err.value.message


@pytest.mark.parametrize("field", ["user", "safety_identifier"])
def test_an_end_user_id_longer_than_anthropic_takes_is_a_400_naming_it(
    oai: openai.OpenAI, mock_upstream: Mock, field: str
) -> None:
    """Anthropic's metadata.user_id is at most 256 characters: a longer id is refused naming the
    caller's field before anything is sent; one of 256 goes as it is."""
    marker = new_marker()
    messages: Any = [{"role": "user", "content": f"hi mock:capture={marker}"}]
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="claude", messages=messages, extra_body={field: "u" * 257})
    assert err.value.param == field, err.value.body
    assert err.value.code == "invalid_value" and "256" in err.value.message
    assert captured(mock_upstream, marker, count=0) == []
    oai.chat.completions.create(model="claude", messages=messages, extra_body={field: "u" * 256})
    assert captured(mock_upstream, marker)[0]["body"]["metadata"] == {"user_id": "u" * 256}
