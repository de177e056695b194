"""Provider type 'gemini' end to end: the openai SDK -> the gateway -> the mock's Gemini API."""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel, Field

from switchboard.config.schema import ProviderConfig
from switchboard.providers.registry import check_provider
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

BAD_KEY = "AIza-wrong-key-xyz"
PIXEL = "data:image/png;base64," + base64.b64encode(
    base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
).decode()
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
        "strict": True,
    },
}


def gemini_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "studio", "type": "gemini", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "studio-bad-key", "type": "gemini", "api_base": mock.url, "api_key": BAD_KEY},
            {"name": "openai", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "gemini-flash", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "gemini-3", "provider": "studio", "model": "gemini-3-pro-preview"},
            {"name": "gemini-embed", "provider": "studio", "model": "gemini-embedding-001"},
            # A group mixing providers: a list Gemini cannot take in one call goes to OpenAI's.
            {"name": "mixed-embed", "deployment": "gemini", "provider": "studio",
             "model": "gemini-embedding-001"},
            {"name": "mixed-embed", "deployment": "openai", "provider": "openai",
             "model": "text-embedding-3-small"},
            {"name": "gemini-misconfigured", "provider": "studio-bad-key", "model": "gemini-2.5-flash"},
            {"name": "openai-embed", "provider": "openai", "model": "text-embedding-3-small"},
            {"name": "gemini-or-openai", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "openai-chat", "provider": "openai", "model": "mock-gpt"},
        ],
        "router": {"fallbacks": {"gemini-or-openai": ["openai-chat"]}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def gemini_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(gemini_config(mock_upstream), tmp_path_factory.mktemp("gemini"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gemini_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gemini_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, text: str, model: str = "gemini-flash", **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kwargs)


def test_chat_non_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello Gemini"}],
        temperature=0.2, top_p=0.9, seed=7, stop=["END"], max_completion_tokens=200,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert "You said: Hello Gemini" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_usage_cached_and_reasoning_tokens(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "user", "content": "count me mock:cached_tokens=2 mock:thoughts_tokens=5"}],
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the Switchboard mock. You said: stream please"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))


def test_stream_without_usage_request_hides_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "a long answer please"}], max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "Hello from the"


def test_n_candidates(client: openai.OpenAI) -> None:
    reply = ask(client, "x", n=2)
    assert [c.index for c in reply.choices] == [0, 1]


def test_tool_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="gemini-flash", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert call.id.startswith("call_")
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})})
    final = client.chat.completions.create(model="gemini-flash", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == 'The tool returned: {"temp_c":21}'


def test_tool_round_trip_gemini_3_keeps_thought_signature(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Rome?"}]
    first = client.chat.completions.create(model="gemini-3", messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    dumped = message.model_dump(exclude_none=True)
    assert dumped["tool_calls"][0]["extra_content"]["google"]["thought_signature"]
    call_id = dumped["tool_calls"][0]["id"]
    messages += [dumped, {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]
    final = client.chat.completions.create(model="gemini-3", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == 'The tool returned: {"result":"sunny"}'


def test_gemini_3_history_from_another_model_is_accepted(client: openai.OpenAI) -> None:
    # No thought signature (the history was written elsewhere): the documented skip value is sent.
    messages: list[Any] = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
    ]
    final = client.chat.completions.create(model="gemini-3", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == 'The tool returned: {"result":"cold"}'


def test_tool_call_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].id
    assert calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "no tools"}], tools=[WEATHER_TOOL],
        tool_choice="none")
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"


def test_tool_choice_gemini_cannot_express_is_refused_by_name(client: openai.OpenAI) -> None:
    # A custom tool's choice has no Gemini form: a 400 naming the field, not a free choice.
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, "weather?", tools=[WEATHER_TOOL], tool_choice={"type": "custom", "custom": {"name": "x"}})
    assert exc.value.body["param"] == "tool_choice.type"  # type: ignore[index]
    assert "custom" in exc.value.message
    # allowed_tools is translated: ANY over the names it allows.
    reply = ask(client, "weather?", tools=[WEATHER_TOOL], tool_choice={
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required",
                          "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
    })
    assert reply.choices[0].finish_reason == "tool_calls"
    # A listed tool the request does not offer: a 400 naming the entry.
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, "weather?", tools=[WEATHER_TOOL], tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required",
                              "tools": [{"type": "function", "function": {"name": "nope"}}]},
        })
    assert exc.value.body["param"] == "tool_choice.allowed_tools.tools[0]"  # type: ignore[index]


def test_tool_name_gemini_refuses_is_a_400_naming_it(client: openai.OpenAI) -> None:
    # Gemini function names start with a letter or underscore and take letters, digits, _ . : -
    # up to 64: what breaks that is refused before sending, naming the tool.
    for name in ("2fa_code", "g" * 65):
        bad: Any = {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        with pytest.raises(openai.BadRequestError) as exc:
            ask(client, "weather?", tools=[WEATHER_TOOL, bad])
        assert exc.value.body["param"] == "tools[1].function.name"  # type: ignore[index]
        assert exc.value.code == "invalid_value" and "gemini" in exc.value.message
    # Dots, colons and dashes are Gemini's own (MCP-style names pass).
    fits: Any = {"type": "function",
                 "function": {"name": "_github.issues:create-1", "parameters": {"type": "object"}}}
    assert ask(client, "hi", tools=[fits]).choices


def test_image_data_url(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]}])
    assert "(attachments: image/png)" in (reply.choices[0].message.content or "")


def test_image_jpg_data_url(client: openai.OpenAI) -> None:
    # OpenAI takes "image/jpg" (a common spelling, not a registered type); Google refuses it. The
    # bytes are a JPEG's (its signature; the mock reads no further).
    jpg = "data:image/jpg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").decode()
    reply = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": jpg}},
    ]}])
    assert "(attachments: image/jpeg)" in (reply.choices[0].message.content or "")


@pytest.mark.parametrize("label", ["image/jpeg", "image/webp"])
def test_an_image_labelled_another_type_is_sent_as_the_type_its_bytes_are(
    client: openai.OpenAI, label: str
) -> None:
    """Clients often label every image image/jpeg; Google refuses bytes of another image type than
    the label ("Unable to process input image"): the type the bytes show is sent instead."""
    mislabelled = PIXEL.replace("data:image/png;", f"data:{label};")
    reply = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": mislabelled}},
    ]}])
    assert "(attachments: image/png)" in (reply.choices[0].message.content or "")


def test_image_http_url_is_inlined(client: openai.OpenAI, mock_upstream: Mock) -> None:
    reply = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
    ]}])
    # The mock only accepts inlineData bytes (it rejects http URLs the way Gemini does).
    assert "(attachments: image/png)" in (reply.choices[0].message.content or "")


def test_pdf_file_part_with_its_filename(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # The openai SDK's way to send a PDF names the file; the Gemini API's Blob has no field for
    # that name (its displayName is Vertex AI's), and Google refuses a field it does not know.
    pdf = base64.b64encode(b"%PDF-1.4 mock").decode()
    marker = new_marker()
    file = {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}
    reply = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"Summarise mock:capture={marker}"},
        {"type": "file", "file": file},
    ]}])
    assert "(attachments: application/pdf)" in (reply.choices[0].message.content or "")
    parts = captured(mock_upstream, marker)[-1]["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "application/pdf", "data": pdf}}


def test_a_file_url_of_no_known_extension_needs_its_media_type(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    """Google does not sniff a fileData URL and Vertex AI needs its mimeType: a file URL whose type
    its path does not tell is a 400 naming the part, not sent as a guessed image/jpeg; the part's
    ``format`` gives the type; a known extension still tells it."""
    url = "https://example.com/report?id=3"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [
            {"type": "text", "text": "Summarise"}, {"type": "file", "file": {"file_data": url}}]}])
    assert exc.value.param == "messages[0].content[1].file.file_data"
    assert exc.value.type == "invalid_request_error"
    assert "data URL" in exc.value.message and "extension" in exc.value.message
    marker = new_marker()
    given: list[Any] = [{"type": "file", "file": {"file_data": url, "format": "application/PDF"}},
                        {"type": "file", "file": {"file_data": "https://example.com/notes.txt?v=2"}}]
    client.chat.completions.create(model="gemini-flash", messages=[
        {"role": "user", "content": [{"type": "text", "text": f"Summarise mock:capture={marker}"}, *given]}])
    sent = captured(mock_upstream, marker)[-1]["body"]["contents"][0]["parts"][1:]
    assert [p["fileData"]["mimeType"] for p in sent] == ["application/pdf", "text/plain"]
    bad: Any = {"type": "file", "file": {"file_data": url, "format": "pdf"}}
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": [bad]}])
    assert exc.value.param == "messages[0].content[0].file.format"


def test_json_object_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "")["answer"]


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "additionalProperties": False, "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "$defs": {"unused": {"type": "string"}}}
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert set(json.loads(reply.choices[0].message.content or "")) == {"answer"}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Reading(BaseModel):
    city: str
    unit: Unit
    note: str | None


class Forecast(BaseModel):
    readings: list[Reading]
    best: Reading


class Node(BaseModel):
    value: int
    children: list[Node]


def test_parse_with_pydantic_models(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # The SDK's schema: $defs/$ref (Reading twice), an enum, a nullable field, strict.
    marker = new_marker()
    reply = client.chat.completions.parse(
        model="gemini-flash", messages=[{"role": "user", "content": f"forecast mock:capture={marker}"}],
        response_format=Forecast)
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, Forecast) and parsed.best.unit is Unit.CELSIUS
    sent = captured(mock_upstream, marker)[-1]["body"]["generationConfig"]["responseSchema"]
    reading = {
        "type": "OBJECT", "title": "Reading",
        "properties": {
            "city": {"type": "STRING", "title": "City"},
            "unit": {"type": "STRING", "title": "Unit", "enum": ["celsius", "fahrenheit"]},
            "note": {"type": "STRING", "title": "Note", "nullable": True},
        },
        "required": ["city", "unit", "note"],
    }
    assert sent["properties"] == {"readings": {"type": "ARRAY", "title": "Readings", "items": reading},
                                  "best": reading}


def test_recursive_pydantic_model_is_refused_naming_the_ref(client: openai.OpenAI) -> None:
    # Gemini's schema has no references: a recursive model cannot be sent as it is, and is not
    # cut short (a weaker schema) nor expanded without end.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.parse(
            model="gemini-flash", messages=[{"role": "user", "content": "tree"}], response_format=Node)
    assert info.value.code == "unsupported_parameter"
    body: Any = info.value.body
    assert body["param"] == "response_format.json_schema.schema.$defs.Node.properties.children.items.$ref"
    assert "'#/$defs/Node'" in info.value.message and "recursive" in info.value.message


class Order(BaseModel):
    qty: int = Field(gt=0)


def test_strict_schema_constraint_gemini_lacks_is_refused(client: openai.OpenAI) -> None:
    # parse() sends strict: true; Gemini's schema has no exclusiveMinimum, and dropping it would
    # let the answer hold a quantity the model forbids.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.parse(
            model="gemini-flash", messages=[{"role": "user", "content": "order"}], response_format=Order)
    body: Any = info.value.body
    assert body["param"] == "response_format.json_schema.schema.properties.qty.exclusiveMinimum"
    assert info.value.code == "unsupported_parameter" and "strict" in info.value.message


def test_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=1)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == reply.choices[0].message.content


def test_safety_block_is_content_filter(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "something bad mock:safety=1"}])
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.choices[0].message.content is None


MALFORMED = "weather in Paris? mock:malformed_call=1"


def test_a_malformed_function_call_with_nothing_said_is_the_upstreams_failure(client: openai.OpenAI) -> None:
    """Gemini's MALFORMED_FUNCTION_CALL (the model could not form its call) leaves the candidate
    empty: a 502 naming it, not a silent empty "stop", so retries and fallbacks apply."""
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, MALFORMED, tools=[WEATHER_TOOL])
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"
    assert "MALFORMED_FUNCTION_CALL" in info.value.message
    answer = ask(client, MALFORMED, model="gemini-or-openai", tools=[WEATHER_TOOL])
    assert answer.model == "mock-gpt"  # the fallback answered


def test_a_malformed_function_call_in_a_stream_is_an_error_event(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as info:
        list(ask(client, MALFORMED, tools=[WEATHER_TOOL], stream=True))
    assert "MALFORMED_FUNCTION_CALL" in str(info.value)


@pytest.mark.parametrize("reason", ["UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE",
                                    "NO_IMAGE", "IMAGE_OTHER"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_empty_candidate_of_a_failed_generation_is_the_upstreams_failure(
    client: openai.OpenAI, reason: str, stream: bool
) -> None:
    """Like MALFORMED_FUNCTION_CALL, these reasons mean the model produced nothing usable (a call
    with no tools enabled, too many calls in a row, a malformed response): a 502 naming the
    reason, never a silent empty "stop"."""
    with pytest.raises(openai.APIError) as info:
        reply = ask(client, f"weather in Paris? mock:finish_reason={reason}", stream=stream)
        if stream:
            list(reply)
    assert reason in str(info.value)
    if not stream:
        assert isinstance(info.value, openai.InternalServerError) and info.value.status_code == 502
        assert info.value.code == "upstream_error"


@pytest.mark.parametrize("stream", [False, True])
def test_a_missing_thought_signature_finish_is_the_requests_fault(
    client: openai.OpenAI, stream: bool
) -> None:
    """finishReason MISSING_THOUGHT_SIGNATURE (Google: the request lacks a thought signature) is
    the caller's to fix, not an empty answer nor an upstream failure: a 400 naming the cause."""
    with pytest.raises(openai.APIError) as info:
        reply = ask(client, "weather? mock:finish_reason=MISSING_THOUGHT_SIGNATURE", stream=stream)
        if stream:
            list(reply)
    assert "MISSING_THOUGHT_SIGNATURE" in str(info.value) and "thought_signature" in str(info.value)
    if not stream:
        assert isinstance(info.value, openai.BadRequestError)
        assert info.value.type == "invalid_request_error"
        assert info.value.param == "messages"


@pytest.mark.parametrize("stream", [False, True])
def test_a_missing_thought_signature_after_text_is_still_the_requests_fault(
    client: openai.OpenAI, stream: bool
) -> None:
    """Text came first (in a stream, already sent): the turn still failed for the request's fault,
    so not a "stop" that reads as a whole answer: non-streamed the same 400 as with nothing said,
    streamed the stream's error event after the text."""
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        reply = ask(client, "hello mock:text_finish_reason=MISSING_THOUGHT_SIGNATURE", stream=stream)
        for chunk in reply if stream else ():
            received.extend(c.delta.content or "" for c in chunk.choices if c.finish_reason is None)
            assert all(c.finish_reason is None for c in chunk.choices)
    assert "MISSING_THOUGHT_SIGNATURE" in str(info.value) and "thought_signature" in str(info.value)
    if stream:
        assert "".join(received).startswith("Hello from the Switchboard mock")
    else:
        assert isinstance(info.value, openai.BadRequestError) and info.value.param == "messages"


@pytest.mark.parametrize("reply", ["Sorry", "the_whole_answer_here"])
def test_text_in_the_event_that_ends_with_missing_thought_signature_reaches_the_client(
    client: openai.OpenAI, reply: str
) -> None:
    """The text of the event carrying MISSING_THOUGHT_SIGNATURE (a one-word reply: the whole
    answer) goes out before the stream's error event, not dropped with it."""
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        stream = ask(client, f"hi mock:reply={reply} mock:text_finish_reason=MISSING_THOUGHT_SIGNATURE",
                     stream=True)
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
            assert all(c.finish_reason is None for c in chunk.choices)
    assert "".join(received) == reply.replace("_", " ")
    assert "MISSING_THOUGHT_SIGNATURE" in str(info.value)


def test_blocked_prompt_is_content_filter_in_stream(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "mock:block_prompt=1"}], stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["content_filter"]


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="gemini-embed", input=["one", "two"], dimensions=16)
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in result.data)
    assert result.data[0].embedding != result.data[1].embedding


def test_embeddings_send_the_retrieval_hints(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # task_type and title, extra fields of /v1/embeddings, reach Gemini on each request of the
    # batch, and change the vectors, as Google's do.
    marker = new_marker()
    texts = [f"the manual mock:capture={marker}", "the appendix"]
    hinted = client.embeddings.create(
        model="gemini-embed", input=texts, dimensions=8,
        extra_body={"task_type": "RETRIEVAL_DOCUMENT", "title": ["Manual", None]},
    )
    [record] = captured(mock_upstream, marker)
    sent = [(r.get("taskType"), r.get("title")) for r in record["body"]["requests"]]
    assert sent == [("RETRIEVAL_DOCUMENT", "Manual"), ("RETRIEVAL_DOCUMENT", None)]
    plain = client.embeddings.create(model="gemini-embed", input=texts, dimensions=8)
    assert hinted.data[0].embedding != plain.data[0].embedding
    query = client.embeddings.create(model="gemini-embed", input=texts[1], dimensions=8,
                                     extra_body={"task_type": "RETRIEVAL_QUERY"})
    assert query.data[0].embedding != plain.data[1].embedding


def test_the_retrieval_hints_are_not_sent_to_openai(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # OpenAI's embeddings take no such hint and refuse unknown fields: accepted, not sent.
    marker = new_marker()
    result = client.embeddings.create(
        model="openai-embed", input=[f"the manual mock:capture={marker}"],
        extra_body={"task_type": "RETRIEVAL_DOCUMENT", "title": "Guide"},
    )
    assert len(result.data) == 1
    [record] = captured(mock_upstream, marker)
    assert "task_type" not in record["body"] and "title" not in record["body"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"task_type": "SEARCH_QUERY"}, "task_type"),
        ({"task_type": ["RETRIEVAL_QUERY"]}, "task_type"),
        ({"task_type": "RETRIEVAL_QUERY", "title": "t"}, "title"),
        ({"task_type": "RETRIEVAL_DOCUMENT", "title": ["a", "b"]}, "title"),
        ({"task_type": "RETRIEVAL_DOCUMENT", "title": {"t": 1}}, "title"),
    ],
)
def test_bad_retrieval_hints_are_a_400_before_any_call(
    client: openai.OpenAI, mock_upstream: Mock, extra: dict[str, Any], param: str
) -> None:
    marker = new_marker()
    for model in ("gemini-embed", "mixed-embed"):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model=model, input=f"a mock:capture={marker}", extra_body=extra)
        assert (info.value.param, info.value.code) == (param, "invalid_value")
    assert captured(mock_upstream, marker, timeout=0.5) == []


def test_embeddings_of_a_full_batch(client: openai.OpenAI) -> None:
    # 100 inputs: the most batchEmbedContents takes in one call (the mock refuses more, as Google).
    result = client.embeddings.create(model="gemini-embed", input=[f"text {i}" for i in range(100)],
                                      dimensions=8)
    assert [d.index for d in result.data] == list(range(100))


def test_more_embeddings_inputs_than_gemini_takes_are_a_400_naming_input(
    client: openai.OpenAI, mock_upstream: Mock,
) -> None:
    marker = new_marker()
    inputs = [f"mock:capture={marker}", *(f"text {i}" for i in range(100))]
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemini-embed", input=inputs)
    error = info.value
    assert error.param == "input" and error.code == "too_many_inputs"
    assert "at most 100 inputs" in error.message and "101" in error.message
    assert captured(mock_upstream, marker, timeout=0.5) == []  # refused before any call


def test_a_context_window_bounds_each_embeddings_input_not_the_list(client: openai.OpenAI) -> None:
    # gemini-embedding-001's window is 2,048 tokens: 40 inputs of some 300 tokens each are far
    # more than that together, and each fits.
    inputs = [f"text {i} " + "word " * 300 for i in range(40)]
    result = client.embeddings.create(model="gemini-embed", input=inputs, dimensions=8)
    assert [d.index for d in result.data] == list(range(40))
    # One input larger than the window is refused before the call, naming the input.
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemini-embed", input=["short", "word " * 3000])
    assert info.value.code == "context_length_exceeded" and info.value.param == "input"
    assert "an input of this request needs" in info.value.message


def test_a_mixed_group_embeds_token_arrays_where_they_are_taken(client: openai.OpenAI) -> None:
    # Token arrays (LangChain's OpenAIEmbeddings sends them): Gemini embeds text only, OpenAI takes
    # them. They were a 400 whenever the strategy picked Gemini first.
    for _ in range(6):  # whichever deployment the strategy picks first
        raw = client.embeddings.with_raw_response.create(model="mixed-embed", input=[[1, 2, 3], [4, 5]])
        assert raw.headers["x-switchboard-deployment"] == "openai"
        assert len(raw.parse().data) == 2
    with pytest.raises(openai.BadRequestError) as alone:  # Gemini alone: its refusal, naming input
        client.embeddings.create(model="gemini-embed", input=[[1, 2, 3]])
    assert alone.value.param == "input" and alone.value.code == "invalid_value"


def test_a_mixed_group_embeds_a_long_list_where_it_fits(client: openai.OpenAI) -> None:
    for _ in range(3):  # whichever deployment the strategy picks first
        raw = client.embeddings.with_raw_response.create(
            model="mixed-embed", input=[f"text {i}" for i in range(150)])
        assert raw.headers["x-switchboard-deployment"] == "openai"
        assert len(raw.parse().data) == 150


def test_unsupported_parameter_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gemini-flash", messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 5})
    assert "logit_bias" in info.value.message and "gemini" in info.value.message


# -- errors --------------------------------------------------------------------------------------


def test_rate_limit_carries_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "mock:status=429 mock:retry_after=7")
    assert info.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("header", "expected"), [("soon", "7"), ("-3", "7"), ("4", "4")])
def test_a_retry_info_is_the_hint_unless_a_valid_retry_after_header_came(
        client: openai.OpenAI, header: str, expected: str) -> None:
    """Google's RetryInfo (7 s here) is the hint whenever no valid Retry-After header remains: a
    garbage one (dropped) does not take it away; a valid one is the hint."""
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, f"mock:status=429 mock:retry_after=7 mock:retry_header={header}")
    assert info.value.response.headers["retry-after"] == expected


def test_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini-flash", messages=[
            {"role": "user", "content": "mock:status=400 mock:error_code=context_length_exceeded"}])
    assert info.value.code == "context_length_exceeded"
    assert "exceeds the maximum number of tokens" in info.value.message


def test_overloaded_is_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "mock:status=503")
    assert info.value.status_code == 503


def test_upstream_500_is_bad_gateway(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "mock:status=500")
    assert info.value.status_code == 502


def test_invalid_upstream_key_is_502_without_the_key(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "hi", model="gemini-misconfigured")
    assert info.value.status_code == 502
    assert info.value.code == "upstream_authentication_failed"
    assert BAD_KEY not in info.value.response.text
    assert UPSTREAM_KEY not in info.value.response.text


@pytest.mark.parametrize("shape", ["list", "bare"])
def test_an_error_body_in_another_of_googles_shapes_gives_its_message(
        client: openai.OpenAI, shape: str) -> None:
    """Google's error as a one-element array, or as a bare google.rpc.Status (gRPC code number,
    no ``error`` member, as its API proxies answer): the caller reads Google's words, not
    "returned HTTP 400"."""
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, f"mock:status=400 mock:error_shape={shape} mock:error_code=context_length_exceeded")
    assert info.value.code == "context_length_exceeded"
    assert "exceeds the maximum number of tokens" in info.value.message


@pytest.mark.parametrize("shape", ["list", "bare"])
def test_a_rate_limit_in_another_of_googles_shapes_keeps_its_retry_info(
        client: openai.OpenAI, shape: str) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, f"mock:status=429 mock:retry_after=9 mock:error_shape={shape}")
    assert "Resource has been exhausted" in info.value.message
    assert info.value.response.headers["retry-after"] == "9"


def test_mid_stream_failure_raises(client: openai.OpenAI) -> None:
    stream = ask(client, "mock:fail_after=2 long answer", stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2
    assert "mid-stream failure" in str(info.value)


def test_cut_stream_raises(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "mock:disconnect_after=3 long answer"}],
        stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_config_check_rejects_unknown_key() -> None:
    config = ProviderConfig(name="g", type="gemini", api_key=UPSTREAM_KEY, vertex_project="x")
    assert check_provider(config) == ["vertex_project: unknown key"]
