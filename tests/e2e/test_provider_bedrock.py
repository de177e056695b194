"""Provider type 'bedrock' end to end: the openai SDK -> gateway (SigV4) -> Bedrock Converse mock, and back.

The mock verifies every SigV4 signature with the secret ``UPSTREAM_KEY``, so each passing request
also proves the signing (model ids with ':' included).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.cohere_embeddings import (
    REFUSED_TYPES,
    check_compressed_embeddings,
    check_refused_embedding_types,
)
from tests.e2e.sdk import ask, finish_reasons, stream_text
from tests.e2e.test_bedrock_fidelity import logged
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
BAD_SECRET = "wrong-secret-access-key-42"
SAID = "Hello from the Switchboard mock. You said: "
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def provider(name: str, mock: Mock, secret: str = "${UPSTREAM_KEY}", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "bedrock", "api_base": mock.url, "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": secret, "aws_region": "us-east-1", **extra}


def bedrock_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            provider("bedrock-mock", mock),
            provider("bedrock-session", mock, aws_session_token="FwoGZXIvYXdzEXAMPLETOKEN"),
            provider("bedrock-bad-key", mock, secret=BAD_SECRET),
        ],
        "models": [
            {"name": "claude", "provider": "bedrock-mock", "model": CLAUDE},
            {"name": "claude-lenient", "provider": "bedrock-mock", "model": CLAUDE, "drop_params": True},
            {"name": "claude-session", "provider": "bedrock-session", "model": CLAUDE},
            {"name": "claude-misconfigured", "provider": "bedrock-bad-key", "model": CLAUDE},
            {"name": "titan-embed", "provider": "bedrock-mock", "model": "amazon.titan-embed-text-v2:0"},
            {"name": "cohere-embed", "provider": "bedrock-mock", "model": "cohere.embed-english-v3"},
            {"name": "cohere-embed-v4", "provider": "bedrock-mock", "model": "cohere.embed-v4:0"},
            # A group of a model that embeds one input per call and one that embeds up to 96.
            {"name": "either-embed", "deployment": "titan", "provider": "bedrock-mock",
             "model": "amazon.titan-embed-text-v2:0"},
            {"name": "either-embed", "deployment": "cohere", "provider": "bedrock-mock",
             "model": "cohere.embed-english-v3"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def bedrock_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(bedrock_config(mock_upstream), Path(tmp_path_factory.mktemp("bedrock")))
    yield gw
    gw.process.stop()


@pytest.fixture
def sdk(bedrock_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=bedrock_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)








def test_chat_non_stream_with_usage(sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, *ask("hello bedrock")],
        temperature=0.5, top_p=0.9,
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == SAID + "hello bedrock"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == CLAUDE
    usage = resp.usage
    assert usage is not None and usage.completion_tokens == 9 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0


def test_blank_user_and_system_text_is_left_out(sdk: openai.OpenAI) -> None:
    # Converse refuses text blocks that are blank ("The text field in the ContentBlock object ...
    # is blank"); OpenAI takes them (a "\n" part between others, a system prompt left empty).
    messages: Any = [
        {"role": "system", "content": "\n"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "\n\n"}]},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": " "},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "bedrock"}]},
    ]
    resp = sdk.chat.completions.create(model="claude", messages=messages)
    assert resp.choices[0].message.content == SAID + "bedrock"


def test_a_prefill_ending_in_whitespace_is_sent_without_it(sdk: openai.OpenAI) -> None:
    # Claude on Bedrock refuses a final assistant turn ending in whitespace ("final assistant
    # content cannot end with trailing whitespace"); a prefill such as "Answer: " is common.
    for prefill in ("Sure: ", [{"type": "text", "text": "Sure:\n", "cache_control": {"type": "ephemeral"}}]):
        messages: Any = [*ask("hi"), {"role": "assistant", "content": prefill}]
        resp = sdk.chat.completions.create(model="claude", messages=messages)
        assert resp.choices[0].message.content


def test_session_token_is_signed_and_accepted(sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(model="claude-session", messages=ask("with a token"))
    assert resp.choices[0].message.content == SAID + "with a token"


def test_chat_stream_matches_non_stream_and_reports_usage(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model="claude", messages=ask("stream me please"))
    chunks = list(sdk.chat.completions.create(
        model="claude", messages=ask("stream me please"), stream=True, stream_options={"include_usage": True}
    ))
    assert stream_text(chunks) == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish_reasons(chunks) == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 10 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + 10


def test_max_tokens_and_stop_sequences(sdk: openai.OpenAI) -> None:
    cut = sdk.chat.completions.create(model="claude", messages=ask("hi"), max_completion_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Hello from", "length")
    chunks = list(sdk.chat.completions.create(model="claude", messages=ask("hi"), max_tokens=3, stream=True))
    assert (stream_text(chunks), finish_reasons(chunks)) == ("Hello from the", ["length"])
    stopped = sdk.chat.completions.create(model="claude", messages=ask("hi"), stop=["mock"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "Hello from the Switchboard ", "stop")


def test_a_whitespace_stop_sequence_is_a_400_naming_stop_or_dropped_for_claude(sdk: openai.OpenAI) -> None:
    # OpenAI takes stop "\n"; Claude on Bedrock refuses it ("each stop sequence must contain
    # non-whitespace"), and Converse refuses an empty one.
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi"), stop=["\n"])
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == "stop"  # type: ignore[index]
    assert exc.value.code == "unsupported_parameter"
    resp = sdk.chat.completions.create(model="claude-lenient", messages=ask("hi"), stop=["\n", "mock"])
    answer = (resp.choices[0].message.content, resp.choices[0].finish_reason)
    assert answer == ("Hello from the Switchboard ", "stop")
    resp = sdk.chat.completions.create(model="claude", messages=ask("hi"), stop=["", "mock"])
    assert resp.choices[0].message.content == "Hello from the Switchboard "


def test_full_tool_round_trip(sdk: openai.OpenAI) -> None:
    messages: list[Any] = ask("What is the weather in Paris?")
    first = sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"},
    ]
    final = sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "The tool returned: 22 degrees and sunny"
    # Clients often drop `tools` once they hold the result; Converse still needs a toolConfig.
    again = sdk.chat.completions.create(model="claude", messages=messages)
    assert again.choices[0].message.content == "The tool returned: 22 degrees and sunny"


def test_a_tool_call_with_no_output_is_answered(sdk: openai.OpenAI) -> None:
    # Converse refuses a toolResult with empty content or blank text; a tool that printed nothing
    # (or failed silently) must not wedge the conversation.
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    blank: Any = [{"type": "text", "text": " "}]
    for content, is_error in (("", False), ("\n", False), (blank, False), ("", True), (blank, True)):
        messages: Any = [
            *ask("Weather?"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": content, "is_error": is_error},
        ]
        resp = sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
        assert resp.choices[0].message.content == "The tool returned: (no content)"


def test_tool_ids_minted_elsewhere_are_made_to_fit_and_still_pair(sdk: openai.OpenAI) -> None:
    # A conversation moved here from other providers: an OpenAI-compatible server's
    # "functions.<name>:<n>" id and a long Responses API-style id. Converse takes only 1-64
    # characters of [a-zA-Z0-9_-] in toolUse and toolResult, and pairs them by id.
    ids = ["functions.get_weather:0", "fc_" + "0123456789abcdef" * 5]
    messages: list[Any] = [
        *ask("Weather in Paris and Rome?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
            for i, city in zip(ids, ("Paris", "Rome"), strict=True)
        ]},
        {"role": "tool", "tool_call_id": ids[0], "content": "22 degrees in Paris"},
        {"role": "tool", "tool_call_id": ids[1], "content": "25 degrees in Rome"},
    ]
    final = sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 25 degrees in Rome"
    # Without an id a result cannot name its call: a 400 naming the field, not a guess.
    messages[1]["tool_calls"][0]["id"] = ""
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert exc.value.body["param"] == "messages[1].tool_calls[0].id"  # type: ignore[index]


def test_forced_tool_choice_without_tools_is_refused(sdk: openai.OpenAI) -> None:
    # Converse's toolChoice needs a toolConfig with tools: without them the choice cannot be sent,
    # so a 400 naming it, as OpenAI gives, instead of a text answer.
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        with pytest.raises(openai.BadRequestError) as exc:
            sdk.chat.completions.create(model="claude", messages=ask("weather?"), tool_choice=choice)  # type: ignore[arg-type]
        assert exc.value.body["param"] == "tool_choice"  # type: ignore[index]
    assert sdk.chat.completions.create(model="claude", messages=ask("hi"), tool_choice="auto").choices


def test_allowed_tools_choice_offers_only_those_tools(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    # Converse has no allowed list: its mode (required -> any, auto) over only the allowed tools.
    other: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    for mode, sent_choice in (("required", {"any": {}}), ("auto", {"auto": {}})):
        marker = new_marker()
        choice: Any = {"type": "allowed_tools", "allowed_tools": {
            "mode": mode, "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}
        resp = sdk.chat.completions.create(model="claude", messages=ask(f"weather? mock:capture={marker}"),
                                           tools=[other, WEATHER_TOOL], tool_choice=choice)
        [record] = captured(mock_upstream, marker)
        config = record["body"]["toolConfig"]
        assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_weather"]
        assert config["toolChoice"] == sent_choice
        if mode == "required":
            assert [c.function.name for c in resp.choices[0].message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]
    # A listed tool the request does not offer: a 400 naming the entry.
    choice["allowed_tools"]["tools"].append({"type": "function", "function": {"name": "get_time"}})
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("weather?"), tools=[WEATHER_TOOL],
                                    tool_choice=choice)
    assert exc.value.body["param"] == "tool_choice.allowed_tools.tools[1]"  # type: ignore[index]


def test_tool_name_converse_refuses_is_a_400_naming_it(sdk: openai.OpenAI) -> None:
    # Converse takes 1-64 characters of [a-zA-Z0-9_-]: a dotted MCP-style name or a long one is
    # refused before sending, naming the tool, instead of an upstream ValidationException.
    for name in ("github.create_issue", "t" * 65):
        bad: Any = {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        with pytest.raises(openai.BadRequestError) as exc:
            sdk.chat.completions.create(model="claude", messages=ask("weather?"), tools=[WEATHER_TOOL, bad])
        assert exc.value.body["param"] == "tools[1].function.name"  # type: ignore[index]
        assert exc.value.code == "invalid_value"
        assert "bedrock" in exc.value.message and name[:20] in exc.value.message
    fits: Any = {"type": "function",
                 "function": {"name": "get-time_2" + "x" * 54, "parameters": {"type": "object"}}}
    assert sdk.chat.completions.create(model="claude", messages=ask("hi"), tools=[fits]).choices


def test_a_tool_result_without_its_call_is_a_400_naming_it(sdk: openai.OpenAI) -> None:
    # Converse refuses a toolResult that answers no toolUse: refused here, naming the field. With
    # tool_choice none the history goes as text, which Converse takes, so it is sent.
    messages: list[Any] = [
        *ask("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_paris", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_pariss", "content": "18C"},
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert exc.value.body["param"] == "messages[2].tool_call_id"  # type: ignore[index]
    assert exc.value.code == "invalid_value"
    assert "call_pariss" in exc.value.message and "bedrock" in exc.value.message
    reply = sdk.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL],
                                        tool_choice="none")
    assert reply.choices[0].message.content


def test_tool_call_stream(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(
        model="claude", messages=ask("weather?"), tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True,
    ))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].index == 0 and calls[0].id and calls[0].function.name == "get_weather"
    assert {tc.index for tc in calls} == {0}
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_streamed_call_without_arguments_has_json_arguments(sdk: openai.OpenAI) -> None:
    # Converse streams no input delta for a call without arguments: the arguments are still
    # "{}", as in the non-stream reply, not "" (which is not JSON).
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    chunks = list(sdk.chat.completions.create(model="claude", messages=ask("time?"), tools=[clock],
                                              tool_choice="required", stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert {tc.index for tc in calls} == {0} and calls[0].function and calls[0].function.name == "get_time"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == "{}"
    assert finish_reasons(chunks) == ["tool_calls"]
    reply = sdk.chat.completions.create(model="claude", messages=ask("time?"), tools=[clock],
                                        tool_choice="required")
    assert reply.choices[0].message.tool_calls[0].function.arguments == "{}"  # type: ignore[index,union-attr]


def test_image_inputs_data_and_http_urls(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}"}},
        {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
    ]
    resp = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == SAID + "What is in these images?"


def test_image_bytes_reach_bedrock(sdk: openai.OpenAI) -> None:
    # The mock's reply does not mention images, but it checks their bytes: bytes of no image type
    # labelled PNG are refused by Bedrock itself, so the data URL's bytes arrived as an image block.
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert "Could not process image at messages.0.content.1" in exc.value.message


def test_an_image_labelled_with_another_type_is_sent_as_what_its_bytes_are(sdk: openai.OpenAI) -> None:
    # Bedrock refuses PNG bytes sent as format jpeg, a label many OpenAI clients put on every
    # image; OpenAI reads the bytes. Unknown bytes keep their label (and Bedrock judges them).
    for url in (f"data:image/jpeg;base64,{PIXEL_PNG}", f"data:application/octet-stream;base64,{PIXEL_PNG}"):
        content = [{"type": "text", "text": "what is this?"},
                   {"type": "image_url", "image_url": {"url": url}}]
        resp = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
        assert resp.choices[0].message.content == SAID + "what is this?"


def test_http_image_is_fetched_by_the_gateway(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    # Converse takes bytes only: the gateway downloads http(s) images, so a missing one is its 400.
    content = [{"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/missing.png"}}]
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert exc.value.param == "messages"
    assert "image URL answered HTTP 404" in exc.value.message


def test_json_schema_response_format(sdk: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
    resp = sdk.chat.completions.create(model="claude", messages=ask("Pick a city"), response_format=fmt)
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}


def test_unsupported_parameters_are_a_clear_400_or_dropped(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi"), seed=7)
    assert exc.value.code == "unsupported_parameter" and "seed" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model="claude", messages=ask("hi"), response_format={"type": "json_object"}
        )
    assert "response_format" in exc.value.message
    resp = sdk.chat.completions.create(model="claude-lenient", messages=ask("hi"), seed=7, presence_penalty=1)
    assert resp.choices[0].message.content == SAID + "hi"


def test_upstream_validation_error_passes_through_as_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi"), temperature=1.5)
    assert "inferenceConfig.temperature" in exc.value.message


def test_embeddings_titan_single_and_cohere_batch(sdk: openai.OpenAI) -> None:
    titan = sdk.embeddings.create(model="titan-embed", input="hello world", dimensions=256)
    assert len(titan.data) == 1 and len(titan.data[0].embedding) == 256
    assert titan.usage.prompt_tokens == 2
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.embeddings.create(model="titan-embed", input=["a", "b"])
    assert "one input per request" in exc.value.message
    cohere = sdk.embeddings.create(model="cohere-embed", input=["a", "b", "c"])
    assert [d.index for d in cohere.data] == [0, 1, 2] and len(cohere.data[0].embedding) == 1024


def test_a_group_embeds_a_list_on_the_deployment_that_takes_it(sdk: openai.OpenAI) -> None:
    # Titan's refusal of several inputs was a 400 whenever the strategy picked it first.
    for _ in range(6):  # whichever deployment the strategy picks first
        raw = sdk.embeddings.with_raw_response.create(model="either-embed", input=["a", "b"])
        assert raw.headers["x-switchboard-deployment"] == "cohere"
        assert len(raw.parse().data) == 2
    # More than Cohere takes in one call (96): refused before the call, naming input.
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="cohere-embed", input=["x"] * 97)
    assert refused.value.param == "input" and refused.value.code == "too_many_inputs"
    assert "at most 96 inputs" in refused.value.message


def test_cohere_embedding_types_are_honoured_as_for_the_cohere_type(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    # Cohere's embedding_types as an extra field: it used to be left out, and float vectors
    # returned without a word. One type is sent and its vectors returned; others are refused.
    check_compressed_embeddings(sdk, "cohere-embed", mock_upstream)
    for types in REFUSED_TYPES:
        check_refused_embedding_types(sdk, "cohere-embed", mock_upstream, types)


def test_cohere_truncate_is_passed_as_for_the_cohere_type(sdk: openai.OpenAI, mock_upstream: Mock) -> None:
    # Cohere's truncate as an extra field: it used to be left out without a word.
    marker = new_marker()
    sdk.embeddings.create(model="cohere-embed", input=f"cut mock:capture={marker}",
                          extra_body={"truncate": "END"})
    [record] = captured(mock_upstream, marker)
    assert record["body"]["truncate"] == "END"
    with pytest.raises(openai.BadRequestError) as exc:  # Bedrock judges the value
        sdk.embeddings.create(model="cohere-embed", input="cut", extra_body={"truncate": "MIDDLE"})
    assert "truncate" in exc.value.message


def test_cohere_embed_v4_takes_dimensions_as_its_output_dimension(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    # Embed v4 on Bedrock has an output dimension: dimensions used to be refused for every Cohere
    # model. Embed v3 has none, so it is still a 400 naming dimensions.
    marker = new_marker()
    resp = sdk.embeddings.create(model="cohere-embed-v4", input=f"small mock:capture={marker}",
                                 dimensions=256)
    assert captured(mock_upstream, marker)[0]["body"]["output_dimension"] == 256
    assert len(resp.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError) as exc:  # Bedrock judges the value
        sdk.embeddings.create(model="cohere-embed-v4", input="small", dimensions=300)
    assert "output_dimension" in exc.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="cohere-embed", input="small", dimensions=256)
    assert refused.value.param == "dimensions"


def test_cohere_embeddings_count_the_tokens_bedrock_reports(
    sdk: openai.OpenAI, bedrock_gateway: Gateway
) -> None:
    # Bedrock reports a Cohere model's input tokens only in X-Amzn-Bedrock-Input-Token-Count: the
    # answer said 0 and the ledger an estimate of its own. The mock counts words (2 + 3 here).
    raw = sdk.embeddings.with_raw_response.create(
        model="cohere-embed", input=["antidisestablishmentarianism floccinaucinihilipilification",
                                     "pneumonoultramicroscopic silicovolcanoconiosis everywhere"])
    usage = raw.parse().usage
    assert (usage.prompt_tokens, usage.total_tokens) == (5, 5)
    record = logged(bedrock_gateway, raw.headers["x-request-id"])
    assert record["prompt_tokens"] == 5 and not record["metadata"].get("estimated")


# ---- errors ----

def test_throttling_is_rate_limit_error_with_retry_after(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi mock:status=429 mock:retry_after=3"))
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "3"


def test_context_length_is_bad_request_with_openai_code(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model="claude", messages=ask("hi mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"
    assert "Input is too long" in exc.value.message


def test_service_unavailable_is_503(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi mock:status=503"))
    assert exc.value.status_code == 503 and exc.value.code == "upstream_overloaded"


def test_internal_server_error_is_502(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        sdk.chat.completions.create(model="claude", messages=ask("hi mock:status=500"))
    assert exc.value.status_code == 502


def test_bad_signature_is_502_without_any_key(sdk: openai.OpenAI, bedrock_gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.chat.completions.create(model="claude-misconfigured", messages=ask("hi"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    for secret in (BAD_SECRET, UPSTREAM_KEY):
        assert secret not in exc.value.message and secret not in exc.value.response.text
        assert secret not in bedrock_gateway.process.output


def test_exception_frame_mid_stream_raises_in_sdk(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="claude", messages=ask("hello there mock:fail_after=3"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    # messageStart and two text deltas went through before the exception frame.
    assert stream_text(received) == "Hello from"
    assert "model error" in exc.value.message


def test_dropped_connection_mid_stream_raises_in_sdk(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model="claude", messages=ask("mock:disconnect_after=2"), stream=True)
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    assert "bedrock-mock" in exc.value.message


def test_the_admin_api_shows_no_aws_credential(bedrock_gateway: Gateway) -> None:
    """The access key id, the secret and the session token are credentials (scrubbed from
    upstream errors as such): a provider's admin answer hides every one of them."""
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    one = httpx.get(f"{bedrock_gateway.url}/admin/v1/providers/bedrock-session", headers=headers, timeout=10)
    assert one.status_code == 200, one.text
    options = one.json()["options"]
    assert options["aws_region"] == "us-east-1"
    for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        assert options[name] == "[hidden]", (name, options)
    listed = httpx.get(f"{bedrock_gateway.url}/admin/v1/providers", headers=headers, timeout=10)
    assert listed.status_code == 200, listed.text
    for text in ("AKIDTEST", UPSTREAM_KEY, "FwoGZXIvYXdzEXAMPLETOKEN"):
        assert text not in one.text and text not in listed.text
