"""Gemini and Vertex fidelity end to end: what the openai SDK asks for is what the mock's Gemini
API receives (read back from the mock's captures), or a clear 400 naming what has no equivalent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from switchboard.mock.gemini import signature
from tests.e2e.sdk import ask as ask_text
from tests.e2e.sdk import tool_calls_seen
from tests.e2e.test_provider_gemini import PIXEL, WEATHER_TOOL
from tests.e2e.test_provider_vertex import EMAIL, write_service_account
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

LOOSE_TOOL: Any = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def fidelity_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("gemini-fidelity")
    key_file: Path = folder / "sa.json"
    write_service_account(key_file, mock_upstream, EMAIL, publish=True)
    config = {
        "providers": [
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "vertex", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "credentials_file": str(key_file)},
        ],
        "models": [
            {"name": "gemini-flash", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "gemini-3", "provider": "studio", "model": "gemini-3-pro-preview"},
            {"name": "vertex-flash", "provider": "vertex", "model": "gemini-2.5-flash"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, folder)
    yield gw
    gw.process.stop()


@pytest.fixture
def client(fidelity_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=fidelity_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def sent(mock: Mock, marker: str, count: int = 1) -> dict[str, Any]:
    """The last body the mock received for ``marker``."""
    body: dict[str, Any] = captured(mock, marker, count=count)[-1]["body"]
    return body


def ask(client: openai.OpenAI, marker: str, model: str = "gemini-flash", **kwargs: Any) -> Any:
    messages = [{"role": "user", "content": f"hello mock:capture={marker}"}]
    return client.chat.completions.create(model=model, messages=messages, **kwargs)  # type: ignore[arg-type]


def refused(client: openai.OpenAI, param: str, model: str = "gemini-flash", **kwargs: Any) -> str:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, new_marker(), model, **kwargs)
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == param, error
    assert error["code"] == "unsupported_parameter"
    return str(error["message"])


def test_top_k_reaches_gemini(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask(client, marker, extra_body={"top_k": 40})
    assert sent(mock_upstream, marker)["generationConfig"]["topK"] == 40


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gemini-flash", "vertex-flash"])
def test_parallel_tool_calls_false_keeps_the_first_call(
    client: openai.OpenAI, mock_upstream: Mock, model: str, stream: bool
) -> None:
    # Gemini has no control: the mock answers with two calls, the gateway passes on the first.
    marker = new_marker()
    text = f"weather? mock:parallel_calls=2 mock:capture={marker}"
    loose = {k: v for k, v in WEATHER_TOOL["function"].items() if k != "strict"}
    weather = {"type": "function", "function": loose}
    request: Any = {"model": model, "tools": [weather, LOOSE_TOOL], "messages": ask_text(text)}
    both, _ = tool_calls_seen(client, stream, **request)
    assert both == [(0, "get_weather"), (1, "get_time")]  # without the flag, both calls
    one, finish = tool_calls_seen(client, stream, parallel_tool_calls=False, **request)
    assert one == [(0, "get_weather")] and finish == "tool_calls"
    # The upstream got no control field: the request with the flag is the one without.
    without, with_flag = (c["body"] for c in captured(mock_upstream, marker, count=2))
    assert with_flag == without and "toolConfig" not in with_flag


def test_disable_parallel_tool_use_keeps_the_first_call(fidelity_gateway: Gateway) -> None:
    # Anthropic's spelling through /v1/messages, streamed as Claude Code does.
    claude = anthropic.Anthropic(base_url=fidelity_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    tools: Any = [{"name": n, "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
                  for n in ("get_weather", "get_time")]
    with claude.messages.stream(
        model="gemini-flash", max_tokens=200, tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "weather? mock:parallel_calls=2"}],
    ) as events:
        message = events.get_final_message()
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]
    assert message.stop_reason == "tool_use"


def test_reasoning_effort_asks_for_thoughts(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    reply = ask(client, marker, reasoning_effort="low")
    assert sent(mock_upstream, marker)["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024, "includeThoughts": True}
    assert (reply.choices[0].message.model_extra or {})["reasoning_content"] == "Thinking it over."
    assert reply.choices[0].message.content and "Thinking" not in reply.choices[0].message.content
    chunks = list(ask(client, new_marker(), reasoning_effort="high", stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
                        for c in chunks if c.choices)
    assert reasoning == "Thinking it over."


@pytest.mark.parametrize(("effort", "level"), [
    ("none", "low"), ("minimal", "low"), ("low", "low"), ("medium", "high"), ("high", "high")])
def test_reasoning_effort_on_gemini_3_pro_is_a_level_it_takes(
    client: openai.OpenAI, mock_upstream: Mock, effort: str, level: str
) -> None:
    """Gemini 3 Pro takes thinkingLevel low and high only (it refuses minimal and medium): each
    effort is sent as the nearest of those, and the model answers."""
    marker = new_marker()
    reply = ask(client, marker, model="gemini-3", reasoning_effort=effort)
    assert reply.choices[0].message.content
    assert sent(mock_upstream, marker)["generationConfig"]["thinkingConfig"]["thinkingLevel"] == level


@pytest.mark.parametrize("effort", ["xhigh", "max"])
@pytest.mark.parametrize(("model", "thinking"), [
    ("gemini-3", {"thinkingLevel": "high", "includeThoughts": True}),
    ("gemini-flash", {"thinkingBudget": 24576, "includeThoughts": True}),
])
def test_efforts_above_high_are_gemini_s_highest(
    client: openai.OpenAI, mock_upstream: Mock, effort: str, model: str, thinking: dict[str, Any]
) -> None:
    """xhigh and max (Anthropic's levels, the openai SDK's xhigh) have no Gemini level of their
    own: they ask for the most thinking, and get Gemini's most, high."""
    marker = new_marker()
    reply = ask(client, marker, model=model, reasoning_effort=effort)
    assert reply.choices[0].message.content
    assert sent(mock_upstream, marker)["generationConfig"]["thinkingConfig"] == thinking


def test_claude_code_s_max_effort_reaches_gemini_as_high(
    fidelity_gateway: Gateway, mock_upstream: Mock
) -> None:
    """Claude Code sends adaptive thinking with output_config.effort through /v1/messages."""
    marker = new_marker()
    claude = anthropic.Anthropic(base_url=fidelity_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    reply = claude.messages.create(
        model="gemini-3", max_tokens=200, messages=[{"role": "user", "content": f"hi mock:capture={marker}"}],
        extra_body={"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}})
    assert reply.content
    assert sent(mock_upstream, marker)["generationConfig"]["thinkingConfig"]["thinkingLevel"] == "high"


def test_empty_stop_sequences_are_left_out(client: openai.OpenAI, mock_upstream: Mock) -> None:
    """An empty stop sequence stops nothing (clients send stop=[""] from an unset field): it is
    not sent; whitespace ones ("\\n") are real stop sequences and are."""
    marker = new_marker()
    assert ask(client, marker, stop=["", "\n", "END"]).choices[0].message.content
    assert sent(mock_upstream, marker)["generationConfig"]["stopSequences"] == ["\n", "END"]
    marker = new_marker()
    assert ask(client, marker, stop=[""]).choices[0].message.content
    assert "stopSequences" not in sent(mock_upstream, marker).get("generationConfig", {})


def test_thinking_budget_reaches_gemini(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask(client, marker, extra_body={"thinking": {"type": "enabled", "budget_tokens": 3000}})
    assert sent(mock_upstream, marker)["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 3000, "includeThoughts": True}
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, new_marker(), extra_body={"thinking": {"type": "enabled"}})
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "thinking.budget_tokens"
    assert info.value.body["code"] == "invalid_value"


def test_thought_signature_survives_a_tool_round_trip(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    messages: list[Any] = [{"role": "user", "content": f"Weather in Rome? mock:capture={marker}"}]
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    first = client.chat.completions.create(
        model="gemini-flash", messages=messages, tools=[WEATHER_TOOL], extra_body=thinking)
    call = first.choices[0].message.model_dump(exclude_none=True)["tool_calls"][0]
    signature = call["extra_content"]["google"]["thought_signature"]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    final = client.chat.completions.create(
        model="gemini-flash", messages=messages, tools=[WEATHER_TOOL], extra_body=thinking)
    assert final.choices[0].message.content == 'The tool returned: {"result":"sunny"}'
    replayed = sent(mock_upstream, marker, count=2)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in replayed if "functionCall" in p] == [signature]
    # An altered signature is the upstream's 400, not a silent success.
    messages[1]["tool_calls"][0]["extra_content"]["google"]["thought_signature"] = "YWx0ZXJlZA=="
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini-flash", messages=messages, tools=[WEATHER_TOOL])
    assert "thought signature" in str(info.value)


def claude_turn(claude: anthropic.Anthropic, stream: bool, **params: Any) -> Any:
    if not stream:
        return claude.messages.create(**params)
    with claude.messages.stream(**params) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
def test_thought_signature_survives_a_tool_loop_through_v1_messages(
    fidelity_gateway: Gateway, mock_upstream: Mock, stream: bool
) -> None:
    # Claude Code's loop against Gemini 3: the tool_use id it replays is all it keeps of a call,
    # so the model's own signature must come back from it (not the skip value).
    claude = anthropic.Anthropic(base_url=fidelity_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    marker = new_marker()
    tools: Any = [{"name": "get_weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    messages: list[Any] = [{"role": "user", "content": f"Weather in Rome? mock:capture={marker}"}]
    params: Any = {"model": "gemini-3", "max_tokens": 200, "tools": tools}
    first = claude_turn(claude, stream, messages=messages, **params)
    call = next(b for b in first.content if b.type == "tool_use")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", call.id)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [result]}]
    final = claude_turn(claude, stream, messages=messages, **params)
    assert final.content[0].text == 'The tool returned: {"result":"sunny"}'
    first_sent, replay = (c["body"] for c in captured(mock_upstream, marker, count=2))
    replayed = [p for p in replay["contents"][1]["parts"] if "functionCall" in p]
    assert [p["thoughtSignature"] for p in replayed] == [signature("get_weather")]
    # The canonical call id went upstream, the same in the call and in its answer.
    response = replay["contents"][2]["parts"][0]["functionResponse"]
    assert response["name"] == "get_weather" and "sunny" in str(response["response"])
    assert first_sent["contents"][0]["parts"][0]["text"].startswith("Weather in Rome?")


def test_an_untyped_tool_property_is_sent_with_a_type(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # Gemini refuses a property without a type (the mock too); JSON Schema reads it as any value.
    tool: Any = {"type": "function", "function": {"name": "remember", "parameters": {
        "type": "object", "properties": {"key": {"type": "string"}, "value": {"description": "anything"},
                                         "extra": {}}}}}
    marker = new_marker()
    reply = ask(client, marker, tools=[tool])
    assert reply.choices[0].finish_reason == "tool_calls"
    declaration = sent(mock_upstream, marker)["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"]["properties"] == {
        "key": {"type": "STRING"}, "value": {"type": "STRING", "description": "anything"},
        "extra": {"type": "STRING"}}


def test_strict_tools_ask_for_validated_calls(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    ask(client, marker, tools=[WEATHER_TOOL])
    assert sent(mock_upstream, marker)["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert "strict on some tools only" in refused(client, "tools", tools=[WEATHER_TOOL, LOOSE_TOOL])


def test_a_structured_output_schema_gemini_cannot_hold_is_named_as_the_caller_sent_it(
    fidelity_gateway: Gateway,
) -> None:
    # Anthropic's output_config.format (always strict) through /v1/messages: the refusal of a node
    # Gemini's schema lacks names it under output_config.format.schema, not the canonical
    # response_format.json_schema.schema an Anthropic caller never sends.
    claude = anthropic.Anthropic(base_url=fidelity_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                        "uniqueItems": True}}}
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="gemini-flash", max_tokens=64,
                               messages=[{"role": "user", "content": "hi"}],
                               output_config={"format": {"type": "json_schema", "schema": schema}})
    message = err.value.body["error"]["message"]  # type: ignore[index]
    node = "output_config.format.schema.properties.tags.uniqueItems"
    assert message.startswith(f"'{node}': 'uniqueItems'"), message


def test_user_and_metadata(client: openai.OpenAI, mock_upstream: Mock) -> None:
    refused(client, "metadata", metadata={"team": "search"})
    marker = new_marker()
    ask(client, marker, user="user-7")  # no end-user field on the Gemini API: accepted, not sent
    assert "user-7" not in str(sent(mock_upstream, marker))
    marker = new_marker()
    ask(client, marker, "vertex-flash", user="user-7", metadata={"team": "search"})
    assert sent(mock_upstream, marker)["labels"] == {"team": "search", "user": "user-7"}
    assert "label" in refused(client, "metadata", "vertex-flash", metadata={"Team": "Search"})


def test_low_image_detail_lowers_media_resolution(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"what is it? mock:capture={marker}"},
        {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
    ]}])
    assert sent(mock_upstream, marker)["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_LOW"


def test_a_later_system_message_keeps_its_place(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.chat.completions.create(model="gemini-flash", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"hi mock:capture={marker}"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "how are you?"},
    ])
    body = sent(mock_upstream, marker)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"] == [{"text": "System: Answer in French."}, {"text": "how are you?"}]
