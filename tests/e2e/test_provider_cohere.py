"""Provider type 'cohere' end to end: the openai SDK -> gateway -> Cohere v2 mock, and back."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.cohere_embeddings import (
    REFUSED_TYPES,
    check_compressed_embeddings,
    check_refused_embedding_types,
)
from tests.e2e.sdk import ask, tool_calls_seen
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BAD_KEY = "co-wrong-key-987654"
MODEL = "command-a-03-2025"
SAID = "Hello from the Switchboard mock. You said: "
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def cohere_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "co", "type": "cohere", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}",
             "embed_input_type": "search_query"},
            {"name": "co-bad-key", "type": "cohere", "api_base": mock.url, "api_key": BAD_KEY},
        ],
        "models": [
            {"name": "command-a", "provider": "co", "model": MODEL},
            {"name": "command-a-lenient", "provider": "co", "model": MODEL, "drop_params": True},
            {"name": "embed-v4", "provider": "co", "model": "embed-v4.0"},
            {"name": "command-a-misconfigured", "provider": "co-bad-key", "model": MODEL},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def cohere_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(cohere_config(mock_upstream), tmp_path_factory.mktemp("cohere"))
    yield gw
    gw.process.stop()


@pytest.fixture
def co(cohere_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=cohere_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)




# ---- chat -------------------------------------------------------------------------------------


def test_non_stream_answer_and_usage(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(
        model="command-a",
        messages=[{"role": "system", "content": "Be brief."}, *ask("hello cohere")],
        temperature=0.3,
        top_p=1.0,  # Cohere's p tops out at 0.99: the adapter clamps it, the strict mock would refuse 1.0
        seed=11,
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == SAID + "hello cohere"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    # Billed units, not Cohere's raw token count (the mock adds 5 unbilled scaffolding tokens).
    assert resp.usage.prompt_tokens == 6
    assert resp.usage.completion_tokens == 9
    assert resp.usage.total_tokens == 15
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 0


def test_stream_text_finish_and_usage(co: openai.OpenAI) -> None:
    stream = co.chat.completions.create(
        model="command-a", messages=ask("stream from cohere"), stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == SAID + "stream from cohere"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == len(text.split(" "))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_without_include_usage_hides_usage(co: openai.OpenAI) -> None:
    chunks = list(co.chat.completions.create(model="command-a", messages=ask("quiet"), stream=True))
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_tool_round_trip(co: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = ask("weather in Paris?")
    first = co.chat.completions.create(model="command-a", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("get_weather_")
    # Cohere's tool_plan arrives as the text accompanying the calls, and goes back as tool_plan.
    assert choice.message.content == "I will use get_weather to answer."
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    final = co.chat.completions.create(model="command-a", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "The tool returned: 18C and sunny"
    assert final.choices[0].message.tool_calls is None


def test_streamed_tool_call_reassembles(co: openai.OpenAI) -> None:
    stream = co.chat.completions.create(
        model="command-a", messages=ask("weather?"), tools=[WEATHER_TOOL], tool_choice="required", stream=True
    )
    ids: list[str] = []
    name, args, plan, finish = "", "", "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        plan += delta.content or ""
        for tc in delta.tool_calls or []:
            assert tc.index == 0
            ids += [tc.id] if tc.id else []
            assert tc.function is not None
            name += tc.function.name or ""
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "Paris"}
    assert len(ids) == 1 and ids[0].startswith("get_weather_")
    assert plan == "I will use get_weather to answer."
    assert finish == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_keeps_the_first_call(
    co: openai.OpenAI, mock_upstream: Mock, stream: bool
) -> None:
    # Cohere has no control: the mock answers with two calls, the gateway passes on the first.
    marker = new_marker()
    request: Any = {"model": "command-a", "tools": [WEATHER_TOOL, TIME_TOOL],
                    "messages": ask(f"weather? mock:parallel_calls=2 mock:capture={marker}")}
    both, _ = tool_calls_seen(co, stream, **request)
    assert both == [(0, "get_weather"), (1, "get_time")]  # without the flag, both calls
    one, finish = tool_calls_seen(co, stream, parallel_tool_calls=False, **request)
    assert one == [(0, "get_weather")] and finish == "tool_calls"
    # The upstream got no control field: the request with the flag is the one without.
    without, with_flag = (c["body"] for c in captured(mock_upstream, marker, count=2))
    assert with_flag == without


def test_named_tool_choice_offers_only_that_tool(co: openai.OpenAI) -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
                                                                                  "properties": {}}}}
    resp = co.chat.completions.create(
        model="command-a", messages=ask("weather?"), tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = resp.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_weather"


def test_allowed_tools_choice_offers_only_those_tools(co: openai.OpenAI) -> None:
    # Cohere has no allowed list: its mode (required -> REQUIRED) over only the allowed tools.
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
                                                                                  "properties": {}}}}
    resp = co.chat.completions.create(
        model="command-a", messages=ask("weather?"), tools=[other, WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "allowed_tools", "allowed_tools": {  # type: ignore[typeddict-item]
            "mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}},
    )
    calls = resp.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    # A listed tool the request does not offer: a 400 naming the entry, not a narrower list.
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(
            model="command-a", messages=ask("weather?"), tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice={"type": "allowed_tools", "allowed_tools": {  # type: ignore[typeddict-item]
                "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}},
                                          {"type": "function", "function": {"name": "get_time"}}]}},
        )
    assert exc.value.body["param"] == "tool_choice.allowed_tools.tools[1]"  # type: ignore[index]


def test_tool_choice_none_answers_in_text(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(model="command-a", messages=ask("no tools"), tools=[WEATHER_TOOL],
                                      tool_choice="none")
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content == SAID + "no tools"


def test_image_data_url(co: openai.OpenAI) -> None:
    image = {"url": f"data:image/png;base64,{PIXEL_PNG}", "detail": "low"}
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": image}]
    resp = co.chat.completions.create(model="command-a", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == SAID + "what is this? [images: 1]"


def test_image_http_url_is_passed_to_cohere(co: openai.OpenAI, mock_upstream: Mock) -> None:
    content = [{"type": "text", "text": "and this?"},
               {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}}]
    resp = co.chat.completions.create(model="command-a", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == SAID + "and this? [images: 1]"


def test_unreachable_image_url_is_refused_by_cohere(co: openai.OpenAI, mock_upstream: Mock) -> None:
    content = [{"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/missing.png"}}]
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=[{"role": "user", "content": content}])
    assert "could not fetch an image" in exc.value.message


def test_malformed_image_data_url_is_the_gateways_400_naming_the_part(co: openai.OpenAI) -> None:
    # Refused before the call (tests/e2e/test_image_urls.py has every provider), not by Cohere.
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}]
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=[{"role": "user", "content": content}])
    assert "not valid base64" in exc.value.message
    assert exc.value.param == "messages[0].content[0].image_url.url"


def test_json_schema_response_format(co: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
              "required": ["city", "days"]}
    resp = co.chat.completions.create(
        model="command-a", messages=ask("plan a trip"),
        response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris", "days": 1}


def test_json_object_response_format(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(model="command-a", messages=ask("json please"),
                                      response_format={"type": "json_object"})
    assert json.loads(resp.choices[0].message.content or "") == {
        "answer": SAID + "json please"}


def test_stop_sequence(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(model="command-a", messages=ask("stop early"), stop="mock.")
    assert resp.choices[0].message.content == "Hello from the Switchboard "
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.choices[0].model_extra or {})["stop_sequence"] == "mock."


def _stops(client: anthropic.Anthropic, stops: list[str], stream: bool) -> tuple[Any, Any, str]:
    """(stop_reason, stop_sequence, text) of a /v1/messages reply or of a stream."""
    params: Any = {"model": "command-a", "max_tokens": 64, "stop_sequences": stops,
                   "messages": [{"role": "user", "content": "stop early"}]}
    if not stream:
        reply = client.messages.create(**params)
        text = "".join(b.text for b in reply.content if b.type == "text")
        return reply.stop_reason, reply.stop_sequence, text
    events = list(client.messages.create(**params, stream=True))
    deltas = [e.delta for e in events if e.type == "message_delta"]
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert len(deltas) == 1
    return deltas[0].stop_reason, deltas[0].stop_sequence, text


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_stop_sequence_is_reported_on_v1_messages(cohere_gateway: Gateway, stream: bool) -> None:
    """Cohere says STOP_SEQUENCE but not which: the caller's only stop sequence is the match;
    with several, stop_reason is still stop_sequence and the sequence unknown (null)."""
    client = anthropic.Anthropic(base_url=cohere_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    assert _stops(client, ["mock."], stream) == ("stop_sequence", "mock.", "Hello from the Switchboard ")
    assert _stops(client, ["zzz", "mock."], stream) == ("stop_sequence", None, "Hello from the Switchboard ")
    assert _stops(client, ["zzz"], stream)[:2] == ("end_turn", None)


@pytest.mark.parametrize("limit", [{"max_tokens": 3}, {"max_completion_tokens": 3}])
def test_max_tokens_maps_and_finishes_with_length(co: openai.OpenAI, limit: dict[str, int]) -> None:
    resp = co.chat.completions.create(model="command-a", messages=ask("long answer"), **limit)
    assert resp.choices[0].message.content == "Hello from the"
    assert resp.choices[0].finish_reason == "length"


def test_logprobs(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(model="command-a", messages=ask("probs"), logprobs=True)
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(e.token for e in logprobs.content) == resp.choices[0].message.content


def test_unsupported_parameter_is_refused_naming_it(co: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("two please"), n=2)
    assert exc.value.param == "n"
    assert "cohere" in exc.value.message


def test_unsupported_parameter_dropped_when_configured(co: openai.OpenAI) -> None:
    resp = co.chat.completions.create(model="command-a-lenient", messages=ask("two please"), n=2,
                                      logit_bias={"1": 1})
    assert len(resp.choices) == 1


def test_function_role_is_refused(co: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(
            model="command-a", messages=[*ask("x"), {"role": "function", "name": "f", "content": "1"}]
        )
    assert exc.value.param == "messages[1].role"


@pytest.mark.parametrize("name", ["get-weather", "github.create_issue", "2fa_code", "ns:tool"])
def test_a_tool_name_cohere_refuses_is_a_400_naming_it_before_the_call(
        co: openai.OpenAI, mock_upstream: Mock, name: str) -> None:
    """Cohere takes A-Za-z0-9_ not starting with a digit: our 400 naming the tool, not Cohere's."""
    marker = new_marker()
    tools: Any = [WEATHER_TOOL, {"type": "function", "function": {"name": name, "parameters": {}}}]
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=ask(f"hi mock:capture={marker}"), tools=tools)
    assert exc.value.param == "tools[1].function.name" and exc.value.code == "invalid_value"
    assert "'cohere'" in exc.value.message and "not starting with a digit" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []  # refused before any call


def test_tool_names_cohere_takes_are_sent(co: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": {}}}
                  for n in ("_lookup", "find_2")]
    resp = co.chat.completions.create(model="command-a", messages=ask("look"), tools=tools,
                                      tool_choice="required")
    assert [c.function.name for c in resp.choices[0].message.tool_calls or []][:1] == ["_lookup"]


def test_a_tool_result_answering_no_earlier_call_is_a_400_naming_it(co: openai.OpenAI,
                                                                     mock_upstream: Mock) -> None:
    """A history trimmed from the front, or a mistyped id: Cohere refuses it ("tool call id not
    found in previous tool calls"), so the gateway does, naming the message, before the call."""
    marker = new_marker()
    call = {"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    answered: Any = [*ask(f"weather? mock:capture={marker}"),
                     {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "get_weather_1", "content": "18C"}]
    mistyped: Any = [*answered, {"role": "user", "content": "and tomorrow?"},
                     {"role": "tool", "tool_call_id": "get_weather_2", "content": "20C"}]
    trimmed: Any = [{"role": "tool", "tool_call_id": "get_weather_1",
                     "content": f"18C mock:capture={marker}"}]
    for messages, index in ((mistyped, 4), (trimmed, 0)):
        with pytest.raises(openai.BadRequestError) as exc:
            co.chat.completions.create(model="command-a", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[list-item]
        assert exc.value.param == f"messages[{index}].tool_call_id" and exc.value.code == "invalid_value"
        assert "'cohere'" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []  # refused before any call
    # A result that answers its call goes through.
    reply = co.chat.completions.create(model="command-a", messages=answered, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    assert reply.choices[0].message.content == "The tool returned: 18C"


# ---- embeddings -------------------------------------------------------------------------------


def test_embeddings_float(co: openai.OpenAI) -> None:
    resp = co.embeddings.create(model="embed-v4", input=["hello world", "goodbye"], dimensions=256)
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 256 for d in resp.data)
    assert resp.usage.prompt_tokens == 3
    assert resp.usage.total_tokens == 3


def test_embeddings_base64_matches_float(co: openai.OpenAI) -> None:
    floats = co.embeddings.create(model="embed-v4", input="pack me", encoding_format="float")
    raw = co.embeddings.with_raw_response.create(model="embed-v4", input="pack me", encoding_format="base64")
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats.data[0].embedding)}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats.data[0].embedding, rel=1e-6)


@pytest.mark.parametrize(
    ("extra", "sent"),
    [
        ({"task_type": "RETRIEVAL_QUERY"}, "search_query"),
        ({"task_type": "CLUSTERING"}, "clustering"),
        ({"task_type": "RETRIEVAL_DOCUMENT", "title": "Guide"}, "search_document"),
        ({"task_type": "RETRIEVAL_QUERY", "input_type": "classification"}, "classification"),  # explicit wins
        ({"task_type": "FACT_VERIFICATION"}, "search_query"),  # no equivalent: embed_input_type
    ],
)
def test_embeddings_task_type_becomes_the_input_type(
    co: openai.OpenAI, mock_upstream: Mock, extra: dict[str, Any], sent: str
) -> None:
    marker = new_marker()
    resp = co.embeddings.create(model="embed-v4", input=f"where? mock:capture={marker}", extra_body=extra)
    assert len(resp.data) == 1
    [record] = captured(mock_upstream, marker)
    assert record["body"]["input_type"] == sent
    assert "task_type" not in record["body"] and "title" not in record["body"]


def test_embeddings_in_a_compressed_type_are_what_cohere_returns(
    co: openai.OpenAI, mock_upstream: Mock
) -> None:
    # Cohere's embedding_types as an extra field: the one type asked for is sent and its vectors
    # come back (they used to be replaced by float vectors without a word).
    check_compressed_embeddings(co, "embed-v4", mock_upstream)


@pytest.mark.parametrize("types", REFUSED_TYPES)
def test_embedding_types_that_make_no_single_vector_are_refused(
    co: openai.OpenAI, mock_upstream: Mock, types: Any
) -> None:
    check_refused_embedding_types(co, "embed-v4", mock_upstream, types)


def test_cohere_embed_fields_of_the_request_are_passed(co: openai.OpenAI, mock_upstream: Mock) -> None:
    # Cohere's own embed fields, as truncate is: they used to be left out without a word.
    marker = new_marker()
    co.embeddings.create(model="embed-v4", input=f"cut mock:capture={marker}",
                         extra_body={"truncate": "END", "max_tokens": 128, "priority": 5})
    [record] = captured(mock_upstream, marker)
    assert {k: record["body"].get(k) for k in ("truncate", "max_tokens", "priority")} == {
        "truncate": "END", "max_tokens": 128, "priority": 5}


def test_embeddings_token_arrays_are_refused(co: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.embeddings.create(model="embed-v4", input=[[1, 2, 3]])
    assert exc.value.param == "input"


# ---- errors -----------------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(co: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("mock:status=429 mock:retry_after=7"))
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "7"
    assert "Trial key" in exc.value.message


def test_stream_rate_limit_before_first_byte(co: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        list(co.chat.completions.create(model="command-a", messages=ask("mock:status=429"), stream=True))


def test_context_length_is_bad_request_with_code(co: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(
            model="command-a", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"
    assert "too many tokens: size limit exceeded" in exc.value.message


def test_other_bad_request_keeps_cohere_message(co: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("mock:status=400"))
    assert exc.value.code is None
    assert "injected error 400" in exc.value.message


def test_upstream_overloaded_is_503(co: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("mock:status=503"))
    assert exc.value.status_code == 503
    assert exc.value.code == "upstream_overloaded"


def test_upstream_500_is_bad_gateway(co: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_error"


def test_upstream_auth_failure_is_502_without_key(co: openai.OpenAI, cohere_gateway: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        co.chat.completions.create(model="command-a-misconfigured", messages=ask("x"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    assert BAD_KEY not in exc.value.message and UPSTREAM_KEY not in exc.value.message
    assert BAD_KEY not in cohere_gateway.process.output


def test_mid_stream_failure_raises_in_sdk(co: openai.OpenAI) -> None:
    stream = co.chat.completions.create(model="command-a", messages=ask("mock:fail_after=3"), stream=True)
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    # message-start, content-start and one content-delta went through: the role chunk and "Hello".
    assert "".join(c.choices[0].delta.content or "" for c in received) == "Hello"
    assert "mid-stream failure" in exc.value.message


def test_dropped_connection_mid_stream_raises_in_sdk(co: openai.OpenAI) -> None:
    stream = co.chat.completions.create(model="command-a", messages=ask("mock:disconnect_after=3"),
                                        stream=True)
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    assert "provider 'co'" in exc.value.message


def test_config_rejects_unknown_cohere_option(mock_upstream: Mock, tmp_path: Path) -> None:
    config = cohere_config(mock_upstream)
    config["providers"][0]["embed_input_typ"] = "search_query"
    with pytest.raises(RuntimeError) as exc:
        start_gateway(config, tmp_path)
    assert "embed_input_typ" in str(exc.value)


# ---- translation fidelity: what Cohere received ------------------------------------------------

STRICT_TOOL = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
                                                                                  "properties": {}}}}


def sent_to_cohere(mock: Mock, marker: str) -> dict[str, Any]:
    (seen,) = captured(mock, marker)
    assert seen["path"] == "/v2/chat"
    body: dict[str, Any] = seen["body"]
    return body


def test_one_strict_tool_no_longer_makes_every_tool_strict(co: openai.OpenAI, mock_upstream: Mock) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("weather?"),
                                   tools=[STRICT_TOOL, TIME_TOOL])
    assert exc.value.param == "tools"
    assert "get_weather" in exc.value.message and "get_time" in exc.value.message
    marker = new_marker()
    co.chat.completions.create(model="command-a-lenient", messages=ask(f"weather? mock:capture={marker}"),
                               tools=[STRICT_TOOL, TIME_TOOL])
    assert "strict_tools" not in sent_to_cohere(mock_upstream, marker)


def test_all_strict_tools_turn_strict_tools_on(co: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    co.chat.completions.create(model="command-a", messages=ask(f"weather? mock:capture={marker}"),
                               tools=[STRICT_TOOL])
    assert sent_to_cohere(mock_upstream, marker)["strict_tools"] is True


def test_user_is_accepted_and_not_sent(co: openai.OpenAI, mock_upstream: Mock) -> None:
    # Cohere has no end-user field; an end-user id does not change the output (capability table).
    marker = new_marker()
    co.chat.completions.create(model="command-a", messages=ask(f"hi mock:capture={marker}"),
                               user="end-user-7")
    assert "end-user-7" not in str(sent_to_cohere(mock_upstream, marker))


@pytest.mark.parametrize(("param", "value"), [
    ("metadata", {"app": "demo"}),
])
def test_fields_cohere_lacks_are_refused_or_dropped_on_request(
    co: openai.OpenAI, mock_upstream: Mock, param: str, value: Any
) -> None:
    # These used to vanish in silence: Cohere's v2 chat has no field for them.
    extra: dict[str, Any] = {param: value, "tools": [WEATHER_TOOL]}
    with pytest.raises(openai.BadRequestError) as exc:
        co.chat.completions.create(model="command-a", messages=ask("hi"), extra_body=extra)
    assert exc.value.param == param and "drop_params" in exc.value.message
    marker = new_marker()
    co.chat.completions.create(model="command-a", messages=ask(f"hi mock:capture={marker}"),
                               extra_body={**extra, "drop_params": True})
    assert param not in sent_to_cohere(mock_upstream, marker)


def test_reasoning_effort_becomes_cohere_thinking_and_reasoning_comes_back(
    co: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    resp = co.chat.completions.create(model="command-a", messages=ask(f"think mock:capture={marker}"),
                                      reasoning_effort="low")
    assert sent_to_cohere(mock_upstream, marker)["thinking"] == {"type": "enabled", "token_budget": 1024}
    reasoning = (resp.choices[0].message.model_extra or {}).get("reasoning_content")
    assert isinstance(reasoning, str) and reasoning.startswith("Thinking about")


@pytest.mark.parametrize("effort", ["xhigh", "max"])
def test_an_anthropic_effort_cohere_does_not_take_is_advised_in_anthropic_values(
    cohere_gateway: Gateway, mock_upstream: Mock, effort: str
) -> None:
    # Cohere's budgets in output_config.effort's values: low and medium ("high", Anthropic's
    # default, asks for none), not the chat API's none and minimal, which the caller cannot send.
    marker = new_marker()
    client = anthropic.Anthropic(base_url=cohere_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="command-a", max_tokens=256,
                               extra_body={"output_config": {"effort": effort}},
                               messages=[{"role": "user", "content": f"think mock:capture={marker}"}])
    assert err.value.body["error"]["message"] == (  # type: ignore[index]
        f"'output_config.effort' '{effort}' has no Cohere thinking budget: send 'low' or 'medium', or leave "
        "'output_config.effort' out")
    assert captured(mock_upstream, marker, timeout=0.2) == []


def test_canonical_thinking_budget_reaches_cohere(co: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    co.chat.completions.create(model="command-a", messages=ask(f"think mock:capture={marker}"),
                               extra_body={"thinking": {"type": "enabled", "budget_tokens": 3000}})
    assert sent_to_cohere(mock_upstream, marker)["thinking"] == {"type": "enabled", "token_budget": 3000}
