"""The inbound Anthropic Messages API, driven by the official ``anthropic`` SDK.

A gateway started by this module routes models of several provider types to the mock upstream;
the tests that reach an upstream run once per provider type (``PROVIDERS``), the others once.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL = base64.b64encode(
    base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
).decode()
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK = {
    "name": "get_time",
    "description": "Current time in a time zone",
    "input_schema": {
        "type": "object",
        "properties": {"tz": {"type": "string", "enum": ["CET", "UTC"]}},
        "required": ["tz"],
    },
}

MAX_BODY = 1024 * 1024
# provider type -> (provider entry without name, upstream model id)
PROVIDERS: dict[str, tuple[dict[str, Any], str]] = {
    "openai": ({"type": "openai", "api_base": "{mock}/v1", "api_key": "${UPSTREAM_KEY}"}, "gpt-4o-mini"),
    "gemini": ({"type": "gemini", "api_base": "{mock}", "api_key": "${UPSTREAM_KEY}"}, "gemini-2.0-flash"),
    "bedrock": (
        {
            "type": "bedrock",
            "api_base": "{mock}",
            "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": "${UPSTREAM_KEY}",
            "aws_region": "us-east-1",
        },
        "anthropic.claude-3-haiku-20240307-v1:0",
    ),
    "anthropic": (
        {"type": "anthropic", "api_base": "{mock}", "api_key": "${UPSTREAM_KEY}"},
        "claude-3-5-haiku-latest",
    ),
}


def _config(mock: Mock) -> dict[str, Any]:
    providers, models = [], []
    for kind, (entry, upstream_model) in PROVIDERS.items():
        filled = {k: v.replace("{mock}", mock.url) if isinstance(v, str) else v for k, v in entry.items()}
        providers.append({"name": f"up-{kind}", **filled})
        models.append({"name": f"claude-via-{kind}", "provider": f"up-{kind}", "model": upstream_model})
    return {
        "providers": providers,
        "models": models,
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
        "server": {"max_body_bytes": MAX_BODY},
    }


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(_config(mock_upstream), tmp_path_factory.mktemp("anthropic-inbound"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def client(gw: Gateway) -> anthropic.Anthropic:
    # base_url without /v1: the SDK appends /v1/messages itself.
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def upstream_model(model: str) -> str:
    """The upstream's model id of a test model: what both inbound APIs answer with."""
    return PROVIDERS[model.removeprefix("claude-via-")][1]


@pytest.fixture(params=sorted(PROVIDERS))
def model(request: pytest.FixtureRequest) -> str:
    return f"claude-via-{request.param}"


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# -- messages ---------------------------------------------------------------------------------


def test_non_stream_message(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "Say hello to the gateway"}]
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == upstream_model(model)  # named as the OpenAI API names it
    assert "hello to the gateway" in text_of(message)
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert message._request_id  # the SDK reads the request-id header


def test_request_id_is_echoed(client: anthropic.Anthropic, model: str) -> None:
    raw = client.messages.with_raw_response.create(
        model=model,
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "trace-abc-123"},
    )
    assert raw.headers["x-request-id"] == "trace-abc-123"
    assert raw.headers["request-id"] == "trace-abc-123"
    assert raw.parse().content


def test_system_prompt_reaches_the_upstream(client: anthropic.Anthropic, model: str) -> None:
    # The mock obeys directives anywhere in the request, so this one proves the system prompt arrived.
    message = client.messages.create(
        model=model,
        max_tokens=100,
        system="You are terse. mock:reply=from_the_system_prompt",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert text_of(message) == "from the system prompt"
    blocks = client.messages.create(
        model=model,
        max_tokens=100,
        system=[{"type": "text", "text": "mock:reply=system_blocks_work"}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert text_of(blocks) == "system blocks work"


def test_multi_turn_conversation(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
    )
    assert "What is my name?" in text_of(message)


def test_max_tokens_stop_reason(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model, max_tokens=3, messages=[{"role": "user", "content": "tell me a long story please"}]
    )
    assert message.stop_reason == "max_tokens"
    assert 0 < message.usage.output_tokens <= 3


def test_stop_sequences_and_sampling_are_accepted(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=100,
        stop_sequences=["\n\nHuman:", "END"],
        metadata={"user_id": "user-42"},
        # This SDK version has no sampling arguments; the API still takes them.
        extra_body={"temperature": 0.3, "top_p": 0.9},
        messages=[{"role": "user", "content": "count to three"}],
    )
    assert message.stop_reason in ("end_turn", "stop_sequence")
    assert text_of(message)


@pytest.mark.parametrize("stream", [False, True])
def test_a_matched_stop_sequence_reads_as_anthropic_says_it_through_bedrock(
    client: anthropic.Anthropic, stream: bool
) -> None:
    """Bedrock reports which sequence stopped Claude; /v1/messages says so as Anthropic does."""
    kwargs: dict[str, Any] = {"model": "claude-via-bedrock", "max_tokens": 100,
                              "stop_sequences": ["zzz", "mock"],
                              "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "mock"


# -- documents and tool errors, as the upstream received them ----------------------------------

NOTES = {"type": "document", "title": "Notes",
         "source": {"type": "text", "media_type": "text/plain", "data": "The sky is teal today."}}


def leaves(value: Any) -> Iterator[Any]:
    """Every dict and string inside a JSON value (to find a block wherever a dialect puts it)."""
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from leaves(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from leaves(inner)
    else:
        yield value


def upstream_body(mock: Mock, marker: str) -> Any:
    return captured(mock, marker)[-1]["body"]


def test_a_plain_text_document_reaches_every_upstream(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    message = client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": [
        NOTES, {"type": "text", "text": f"What colour is the sky? mock:capture={marker}"},
    ]}])
    assert message.stop_reason == "end_turn"
    found = list(leaves(upstream_body(mock_upstream, marker)))
    if model == "claude-via-anthropic":  # same dialect: the block as sent
        assert {k: v for d in found if isinstance(d, dict) and d.get("type") == "document"
                for k, v in d.items()} == NOTES
    else:  # no document block of their own: the title, then the text
        assert "Notes\n\nThe sky is teal today." in found


def test_a_pdf_reaches_every_upstream_in_its_own_file_block(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    pdf = base64.b64encode(b"%PDF-1.4\n%mock\n").decode()
    marker = new_marker()
    client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "document", "title": "Report", "source": {"type": "base64", "media_type": "application/pdf",
                                                           "data": pdf}},
        {"type": "text", "text": f"Sum it up. mock:capture={marker}"},
    ]}])
    expected = {
        "claude-via-anthropic": {"type": "document", "title": "Report",
                                 "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        "claude-via-bedrock": {"format": "pdf", "name": "Report", "source": {"bytes": pdf}},
        "claude-via-gemini": {"mimeType": "application/pdf", "data": pdf},  # inlineData
        "claude-via-openai": {"file_data": f"data:application/pdf;base64,{pdf}", "filename": "Report"},
    }[model]
    assert expected in list(leaves(upstream_body(mock_upstream, marker)))


def test_a_strict_tool_reaches_every_upstream_strict(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    # strict asks for calls constrained to the schema: dropping it would leave them unchecked.
    marker = new_marker()
    tool: Any = {**WEATHER, "strict": True}
    client.messages.create(model=model, max_tokens=100, tools=[tool], messages=[
        {"role": "user", "content": f"Weather in Rome? mock:capture={marker}"}])
    body = upstream_body(mock_upstream, marker)
    strict = {
        "claude-via-anthropic": lambda: body["tools"][0]["strict"],
        "claude-via-bedrock": lambda: body["toolConfig"]["tools"][0]["toolSpec"]["strict"],
        "claude-via-gemini": lambda: body["toolConfig"]["functionCallingConfig"]["mode"] == "VALIDATED",
        "claude-via-openai": lambda: body["tools"][0]["function"]["strict"],
    }[model]()
    assert strict is True


def test_a_tool_error_reaches_every_upstream_as_an_error(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    client.messages.create(model=model, max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": f"Weather in Atlantis? mock:capture={marker}"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Atlantis"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "no such city", "is_error": True}]},
    ])
    found = list(leaves(upstream_body(mock_upstream, marker)))
    expected = {
        "claude-via-anthropic": {"type": "tool_result", "tool_use_id": "toolu_01", "content": "no such city",
                                 "is_error": True},
        "claude-via-bedrock": {"toolUseId": "toolu_01", "content": [{"text": "no such city"}],
                               "status": "error"},
        "claude-via-gemini": {"result": "Error: no such city"},  # functionResponse.response
        "claude-via-openai": {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: no such city"},
    }[model]
    assert expected in found


def test_max_tokens_reaches_every_upstream_in_its_own_field(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    # OpenAI's reasoning models refuse max_tokens: the limit goes as max_completion_tokens.
    marker = new_marker()
    client.messages.create(model=model, max_tokens=123,
                           messages=[{"role": "user", "content": f"hi mock:capture={marker}"}])
    sent = upstream_body(mock_upstream, marker)
    if model == "claude-via-openai":
        assert sent["max_completion_tokens"] == 123 and "max_tokens" not in sent
    elif model == "claude-via-bedrock":
        assert sent["inferenceConfig"]["maxTokens"] == 123
    elif model == "claude-via-gemini":
        assert sent["generationConfig"]["maxOutputTokens"] == 123
    else:
        assert sent["max_tokens"] == 123

def test_unsigned_thinking_from_another_provider_is_left_out_of_a_translated_replay(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    # /v1/messages answers from Gemini or OpenAI-compatible reasoners carry thinking blocks with
    # an empty signature; a later turn on a translated Claude (Bedrock) must not send them back.
    if model == "claude-via-anthropic":
        return  # passed through untranslated: the client's body as sent
    marker = new_marker()
    message = client.messages.create(model=model, max_tokens=100, messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": ""},
                                          {"type": "text", "text": "hello"}]},
        {"role": "user", "content": f"again mock:capture={marker}"},
    ])
    assert message.stop_reason == "end_turn"
    assert "hmm" not in str(upstream_body(mock_upstream, marker))

def test_adaptive_thinking_reaches_every_provider_as_its_own_control(
    client: anthropic.Anthropic, mock_upstream: Mock, model: str
) -> None:
    # Claude takes it on Anthropic and on Bedrock (additionalModelRequestFields.thinking); Gemini
    # as its dynamic thinking; OpenAI as Anthropic's default effort, high.
    marker = new_marker()
    ask: dict[str, Any] = {"model": model, "max_tokens": 2048,
                           "messages": [{"role": "user", "content": f"hi mock:capture={marker}"}],
                           "extra_body": {"thinking": {"type": "adaptive"}}}
    assert client.messages.create(**ask).stop_reason == "end_turn"
    sent = upstream_body(mock_upstream, marker)
    if model == "claude-via-anthropic":
        assert sent["thinking"] == {"type": "adaptive"}
    elif model == "claude-via-bedrock":
        assert sent["additionalModelRequestFields"]["thinking"] == {"type": "adaptive"}
    elif model == "claude-via-gemini":
        assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": -1, "includeThoughts": True}
    else:
        assert sent["reasoning_effort"] == "high" and "thinking" not in sent


# -- streaming ---------------------------------------------------------------------------------


def test_provider_refusals_of_a_tool_are_named_as_sent(client: anthropic.Anthropic) -> None:
    # Gemini takes no function name starting with a digit, nor a $ref it cannot copy in: the
    # refusals name the tool as this API spells it (tools.N.name, tools.N.input_schema...), not
    # by the gateway's internal OpenAI-style path.
    ask: dict[str, Any] = {"model": "claude-via-gemini", "max_tokens": 64,
                           "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(**ask, tools=[CLOCK, {**CLOCK, "name": "2fa_code"}])
    assert "'tools.1.name'" in err.value.message and "gemini" in err.value.message
    assert "function" not in err.value.message.split(":")[0]
    broken = {"type": "object", "properties": {"tz": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(**ask, tools=[{**CLOCK, "input_schema": broken}])
    assert "'tools.0.input_schema.properties.tz.$ref'" in err.value.message
    assert "tools[0]" not in err.value.message


def test_stream_helper(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "stream this back"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == text_of(final)
    assert "stream this back" in text_of(final)
    assert final.model == upstream_model(model)
    assert final.stop_reason == "end_turn"
    # input_tokens is 0 in message_start and filled in from message_delta.
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


def test_raw_stream_event_sequence(client: anthropic.Anthropic, model: str) -> None:
    events = list(
        client.messages.create(
            model=model, max_tokens=200, stream=True, messages=[{"role": "user", "content": "events please"}]
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    start = events[0]
    assert start.type == "message_start"
    assert start.message.content == []
    assert start.message.stop_reason is None
    block_start = events[1]
    assert block_start.type == "content_block_start"
    assert block_start.index == 0
    assert block_start.content_block.type == "text"
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert "events please" in text
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0
    assert delta.usage.input_tokens


def test_raw_sse_wire_format(gw: Gateway, model: str) -> None:
    """The bytes on the wire: named events, ping after the first block start, no [DONE]."""
    with httpx.stream(
        "POST",
        gw.url + "/v1/messages",
        timeout=30,
        headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
        json={
            "model": model,
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "wire"}],
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    names = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "[DONE]" not in body


# -- tools -------------------------------------------------------------------------------------


def test_tool_round_trip(client: anthropic.Anthropic, model: str) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=[question])
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert isinstance(call.input, dict)
    assert isinstance(call.input.get("city"), str)
    assert call.id
    final = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, sunny"}],
            },
        ],
    )
    assert final.stop_reason == "end_turn"
    assert "18 degrees" in text_of(final)


def test_streamed_tool_round_trip(client: anthropic.Anthropic, model: str) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=[question]) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    with client.messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, sunny"}],
            },
        ],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert "".join(pieces) == text_of(final)
    assert "18 degrees" in text_of(final)
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_consecutive_messages_of_one_role_are_one_turn(
    client: anthropic.Anthropic, model: str, mock_upstream: Mock
) -> None:
    """Anthropic combines consecutive messages of one role into a single turn: calls made over two
    assistant messages may be answered over two user messages."""
    marker = new_marker()
    paris = {"type": "tool_use", "id": "toolu_paris", "name": "get_weather", "input": {"city": "Paris"}}
    rome = {"type": "tool_use", "id": "toolu_rome", "name": "get_weather", "input": {"city": "Rome"}}
    hot = {"type": "tool_result", "tool_use_id": "toolu_paris", "content": "hot"}
    message = client.messages.create(
        model=model,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": f"Weather in Paris and Rome? mock:capture={marker}"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking both."}, paris]},
            {"role": "assistant", "content": [rome]},
            {"role": "user", "content": [hot]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_rome", "content": "raining"},
                    {"type": "text", "text": "Which is warmer?"},
                ],
            },
        ],
    )
    assert message.type == "message"
    sent = captured(mock_upstream, marker)[0]["body"]
    text = str(sent)
    assert "hot" in text and "raining" in text and "Which is warmer?" in text
    if model == "claude-via-openai":  # one assistant turn with both calls, then their results
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "tool", "tool", "user"]
        assert [c["id"] for c in sent["messages"][1]["tool_calls"]] == ["toolu_paris", "toolu_rome"]


def test_a_stray_tool_result_in_a_later_message_of_a_turn_names_it(client: anthropic.Anthropic) -> None:
    """A user turn of two messages whose second answers no call: the 400 names the second message
    (the one holding the stray tool_result), not the turn's first."""
    paris = {"type": "tool_use", "id": "toolu_paris", "name": "get_weather", "input": {"city": "Paris"}}
    hot = {"type": "tool_result", "tool_use_id": "toolu_paris", "content": "hot"}
    stray = {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="claude-via-openai",
            max_tokens=5,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [paris]},
                {"role": "user", "content": [hot]},
                {"role": "user", "content": [stray]},
            ],
        )
    payload = info.value.body
    assert isinstance(payload, dict)
    assert payload["error"]["message"].startswith(
        "messages.3.content: unexpected tool_use_id found in tool_result blocks: toolu_x")


def test_tool_choice_named_tool(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "What time is it?"}],
    )
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_time"]
    assert calls[0].input == {"tz": "CET"}


def test_streamed_tool_use(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert any(e.type == "input_json" for e in events)  # the helper's event for input_json_delta
    assert final.stop_reason == "tool_use"
    tool_use = [b for b in final.content if b.type == "tool_use"]
    assert len(tool_use) == 1
    assert tool_use[0].name == "get_weather"
    assert isinstance(tool_use[0].input.get("city"), str)


# -- images --------------------------------------------------------------------------------------


def test_image_base64_and_url(client: anthropic.Anthropic, model: str, mock_upstream: Mock) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe these images"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": mock_upstream.url + "/images/pixel.png"},
                    },
                ],
            }
        ],
    )
    assert "Describe these images" in text_of(message)
    assert message.stop_reason == "end_turn"


# -- count_tokens ---------------------------------------------------------------------------------


def test_count_tokens(client: anthropic.Anthropic, model: str) -> None:
    short = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    longer = client.messages.count_tokens(
        model=model,
        system="You are a helpful assistant. " * 20,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Paris today? " * 10}],
    )
    assert short.input_tokens > 0
    assert longer.input_tokens > short.input_tokens + 100


def test_count_tokens_errors(client: anthropic.Anthropic, gw: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "the model 'no-such-model' does not exist or you do not have access to it",
        },
    }
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.count_tokens(model="claude-via-openai", messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as bad_cache:
        client.messages.count_tokens(
            model="claude-via-openai", messages=USER_HI, extra_body={"cache_control": "on"}
        )
    assert bad_cache.value.body["error"]["message"] == "cache_control.type: Input should be 'ephemeral'"
    anonymous = anthropic.Anthropic(base_url=gw.url, api_key="wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anonymous.messages.count_tokens(
            model="claude-via-openai", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.body["error"]["type"] == "authentication_error"


# -- authentication ----------------------------------------------------------------------------


def test_x_api_key_and_bearer_auth(gw: Gateway) -> None:
    by_key = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    by_token = anthropic.Anthropic(base_url=gw.url, auth_token=MASTER_KEY, max_retries=0)
    for client in (by_key, by_token):
        message = client.messages.create(
            model="claude-via-openai", max_tokens=20, messages=[{"role": "user", "content": "auth"}]
        )
        assert message.content


def test_wrong_and_missing_key(gw: Gateway) -> None:
    wrong = anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        wrong.messages.create(
            model="claude-via-openai", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 401
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
    response = httpx.post(
        gw.url + "/v1/messages",
        json={"model": "claude-via-openai", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_missing_key_is_told_as_the_anthropic_api_takes_it(gw: Gateway) -> None:
    # The anthropic SDK sends its key as x-api-key: the hint names that header (Bearer works too).
    response = httpx.post(
        gw.url + "/v1/messages",
        json={"model": "claude-via-openai", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 401
    assert response.json() == {"type": "error", "error": {
        "type": "authentication_error",
        "message": "missing API key: send it as 'x-api-key: <key>' (or 'Authorization: Bearer <key>')"}}
    assert response.headers["request-id"] == response.headers["x-request-id"]
    counted = httpx.post(gw.url + "/v1/messages/count_tokens",
                         json={"model": "claude-via-openai", "messages": [{"role": "user", "content": "x"}]})
    assert counted.status_code == 401
    assert counted.json()["error"]["message"].startswith("missing API key: send it as 'x-api-key: <key>'")
    # The OpenAI paths keep their own hint.
    chat = httpx.post(gw.url + "/v1/chat/completions",
                      json={"model": "claude-via-openai", "messages": [{"role": "user", "content": "x"}]})
    assert chat.json()["error"]["message"] == "missing API key: send 'Authorization: Bearer <key>'"


def test_an_error_before_the_body_is_read_carries_the_request_id(gw: Gateway) -> None:
    wrong = anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        wrong.messages.create(
            model="claude-via-openai", max_tokens=20, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-request-id": "req-auth-anth2"},
        )
    assert info.value.request_id == "req-auth-anth2"
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as too_large:
        client.messages.count_tokens(model="claude-via-openai",
                                     messages=[{"role": "user", "content": "x" * (MAX_BODY + 1)}])
    assert too_large.value.status_code == 413
    assert too_large.value.request_id


@pytest.mark.parametrize(
    ("method", "path", "status", "kind", "allow"),
    [
        ("GET", "/v1/messages", 405, "invalid_request_error", "POST"),
        ("DELETE", "/v1/messages", 405, "invalid_request_error", "POST"),
        ("GET", "/v1/messages/count_tokens", 405, "invalid_request_error", "POST"),
        ("POST", "/v1/messages/foo", 404, "not_found_error", None),
        ("GET", "/v1/messages/msg_123/bar", 404, "not_found_error", None),
    ],
)
def test_unrouted_requests_under_messages_answer_in_anthropic_shape(
    gw: Gateway, method: str, path: str, status: int, kind: str, allow: str | None
) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.request(httpx.Response, anthropic._models.FinalRequestOptions.construct(
            method=method.lower(), url=path, json_data={} if method == "POST" else None,
            headers={"x-request-id": "req-unrouted-anth2"}))
    err = info.value
    assert err.status_code == status
    assert err.body == {"type": "error", "error": {"type": kind, "message": err.body["error"]["message"]}}
    assert path in err.body["error"]["message"]
    assert err.request_id == "req-unrouted-anth2"
    assert err.response.headers.get("allow") == allow


def test_unrouted_anthropic_models_requests_answer_in_anthropic_shape(gw: Gateway) -> None:
    response = httpx.post(gw.url + "/v1/models",
                          headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    # Without the Anthropic header it is the OpenAI API's path: OpenAI's shape.
    plain = httpx.post(gw.url + "/v1/models", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert plain.status_code == 405
    assert plain.json()["error"]["code"] == "method_not_allowed"


# -- bad input -----------------------------------------------------------------------------------

USER_HI = [{"role": "user", "content": "hi"}]
BAD_INPUT: list[tuple[str, dict[str, Any], type[anthropic.APIStatusError], int, str]] = [
    (
        "missing max_tokens",
        {"model": "claude-via-openai", "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "max_tokens: Field required",
    ),
    (
        "zero max_tokens",
        {"model": "claude-via-openai", "max_tokens": 0, "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "max_tokens: Input should be an integer of at least 1",
    ),
    (
        "missing model",
        {"max_tokens": 5, "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "model: Field required",
    ),
    (
        "empty messages",
        {"model": "claude-via-openai", "max_tokens": 5, "messages": []},
        anthropic.BadRequestError,
        400,
        "messages: at least one message is required",
    ),
    (
        "empty string content",
        {"model": "claude-via-openai", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]},
        anthropic.BadRequestError,
        400,
        "messages.0: all messages must have non-empty content except for the optional final assistant",
    ),
    (
        "empty string content of an assistant turn before the last",
        {
            "model": "claude-via-bedrock",
            "max_tokens": 5,
            "messages": [*USER_HI, {"role": "assistant", "content": ""}, *USER_HI],
        },
        anthropic.BadRequestError,
        400,
        "messages.1: all messages must have non-empty content except for the optional final assistant",
    ),
    (
        "system role in messages",
        {"model": "claude-via-openai", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
        anthropic.BadRequestError,
        400,
        "messages.0.role",
    ),
    (
        "bad image media type",
        {
            "model": "claude-via-openai",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/tiff", "data": PIXEL},
                        }
                    ],
                }
            ],
        },
        anthropic.BadRequestError,
        400,
        "messages.0.content.0.source.media_type",
    ),
    (
        "orphan tool_result",
        {
            "model": "claude-via-openai",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}],
                }
            ],
        },
        anthropic.BadRequestError,
        400,
        "unexpected tool_use_id found in tool_result blocks: toolu_x",
    ),
    (
        "temperature too high",
        {"model": "claude-via-openai", "max_tokens": 5, "temperature": 1.7, "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "temperature: Input should be between 0 and 1",
    ),
    (
        "unknown parameter",
        {"model": "claude-via-openai", "max_tokens": 5, "frequency_penalty": 1, "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "frequency_penalty: Extra inputs are not permitted",
    ),
    (
        "server tool",
        {
            "model": "claude-via-openai",
            "max_tokens": 5,
            "messages": USER_HI,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        },
        anthropic.BadRequestError,
        400,
        "server tool 'web_search_20250305' is not supported",
    ),
    (
        "files api document",
        {
            "model": "claude-via-openai",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "file", "file_id": "file_011"}}],
                }
            ],
        },
        anthropic.BadRequestError,
        400,
        "names a file of the Anthropic Files API, which provider type 'openai' cannot read",
    ),
    (
        "top-level cache_control with a ttl Anthropic has not",
        {"model": "claude-via-openai", "max_tokens": 5, "cache_control": {"type": "ephemeral", "ttl": "2h"},
         "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "cache_control.ttl: Input should be '5m' or '1h'",
    ),
    (
        "top-level cache_control of another type, on the pass-through",
        {"model": "claude-via-anthropic", "max_tokens": 5, "cache_control": {"type": "persistent"},
         "messages": USER_HI},
        anthropic.BadRequestError,
        400,
        "cache_control.type: Input should be 'ephemeral'",
    ),
    (
        "unknown model",
        {"model": "claude-nope", "max_tokens": 5, "messages": USER_HI},
        anthropic.NotFoundError,
        404,
        "the model 'claude-nope' does not exist",
    ),
]


@pytest.mark.parametrize(
    ("body", "error", "status", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input(
    client: anthropic.Anthropic,
    body: dict[str, Any],
    error: type[anthropic.APIStatusError],
    status: int,
    message: str,
) -> None:
    with pytest.raises(error) as info:
        client.post("/v1/messages", body=body, cast_to=object)
    assert type(info.value) is error
    assert info.value.status_code == status
    payload = info.value.body
    assert isinstance(payload, dict)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert message in payload["error"]["message"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "kind"),
    [
        (b"{not json", "application/json", 400, "invalid_request_error"),
        (b"", "application/json", 400, "invalid_request_error"),
        (b"model=x", "application/x-www-form-urlencoded", 415, "invalid_request_error"),
    ],
)
def test_unparseable_body(gw: Gateway, content: bytes, content_type: str, status: int, kind: str) -> None:
    response = httpx.post(
        gw.url + "/v1/messages",
        content=content,
        headers={"x-api-key": MASTER_KEY, "content-type": content_type},
    )
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind


def test_body_too_large(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    huge = "x" * (MAX_BODY + 1)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="claude-via-openai", max_tokens=5, messages=[{"role": "user", "content": huge}]
        )
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"


# -- upstream errors -----------------------------------------------------------------------------


def test_upstream_rate_limit(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=model,
            max_tokens=20,
            messages=[{"role": "user", "content": "mock:status=429 mock:retry_after=7"}],
        )
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "7"


def test_an_upstream_429_asking_for_an_hour_is_not_retried_by_the_sdk(
    client: anthropic.Anthropic, model: str
) -> None:
    """The SDK sleeps however long Retry-After says before a retry: a wait longer than two minutes
    comes with x-should-retry: false, and the SDK (with its retries on) raises at once."""
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.with_options(max_retries=2).messages.create(
                model=model, max_tokens=20,
                messages=[{"role": "user", "content": "mock:status=429 mock:retry_after=3600"}])
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(20)
    assert outcome and isinstance(outcome[0], anthropic.RateLimitError), outcome
    assert outcome[0].response.headers["retry-after"] == "3600"
    assert outcome[0].response.headers["x-should-retry"] == "false"


def test_upstream_server_error(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "mock:status=500"}]
        )
    assert info.value.status_code == 502
    assert info.value.body["error"]["type"] == "api_error"


def test_upstream_413_is_request_too_large(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "mock:status=413"}]
        )
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"


def test_upstream_overloaded(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "mock:status=503"}]
        )
    assert info.value.status_code == 503
    assert info.value.body["error"]["type"] == "overloaded_error"


def test_upstream_error_before_stream_starts(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model=model, max_tokens=20, stream=True, messages=[{"role": "user", "content": "mock:status=429"}]
        )


@pytest.mark.parametrize("model", ["claude-via-openai", "claude-via-anthropic"])  # mocks with stream_json
def test_stream_answered_200_with_a_json_error_is_that_error(client: anthropic.Anthropic, model: str) -> None:
    # A translated stream and a pass-through one (pipeline/native.py): the error in the body.
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=model, max_tokens=20, stream=True, messages=[
            {"role": "user", "content": "mock:status=429 mock:stream_json=1"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=model, max_tokens=20, stream=True, messages=[
            {"role": "user", "content": "mock:status=400 mock:stream_json=1"}])
    assert bad.value.body["error"] == {"type": "invalid_request_error", "message": "mock: injected error 400"}


def test_upstream_failure_mid_stream(client: anthropic.Anthropic, model: str) -> None:
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        stream = client.messages.create(
            model=model,
            max_tokens=200,
            stream=True,
            messages=[{"role": "user", "content": "a longer answer please mock:fail_after=4"}],
        )
        received.extend(event.type for event in stream)
    assert received[0] == "message_start"
    assert "message_stop" not in received
    assert info.value.body["type"] == "error"
    # The mocks fail as their provider does: a generic error, or Anthropic's overloaded_error event.
    assert info.value.body["error"]["type"] in ("api_error", "overloaded_error")


def test_a_gemini_refusal_names_the_fields_as_the_caller_sent_them(client: anthropic.Anthropic) -> None:
    """Gemini takes one thinking setting: thinking and output_config.effort together are refused,
    and the refusal names output_config.effort (the canonical reasoning_effort), in param and
    message alike."""
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model="claude-via-gemini", max_tokens=4096, messages=[{"role": "user", "content": "hi"}],
            thinking={"type": "enabled", "budget_tokens": 2048},
            extra_body={"output_config": {"effort": "low"}})
    assert "'output_config.effort'" in err.value.message, err.value.body
    assert "reasoning_effort" not in err.value.message
