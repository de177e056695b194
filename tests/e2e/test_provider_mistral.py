"""Provider type 'mistral' end to end: the openai SDK -> gateway -> strict Mistral mock, and back.

The mock refuses what La Plateforme refuses (``seed``, ``max_completion_tokens``,
``stream_options``, ``user``, ``name`` on messages, tool call ids that are not 9 alphanumerics),
so every passing call here also proves the translation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
BAD_KEY = "mistral-wrong-key-4242"
SAID = "Hello from the Switchboard mock. You said: "
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def mistral_config(mock: Mock) -> dict[str, Any]:
    base = f"{mock.url}/mistral/v1"
    return {
        "providers": [
            {"name": "mi", "type": "mistral", "api_base": base, "api_key": "${UPSTREAM_KEY}"},
            {
                "name": "mi-safe",
                "type": "mistral",
                "api_base": base,
                "api_key": "${UPSTREAM_KEY}",
                "safe_prompt": True,
            },
            {"name": "mi-bad-key", "type": "mistral", "api_base": base, "api_key": BAD_KEY},
        ],
        "models": [
            {"name": "mistral-small", "provider": "mi", "model": "mistral-small-latest"},
            {
                "name": "mistral-lenient",
                "provider": "mi",
                "model": "mistral-small-latest",
                "drop_params": True,
            },
            {"name": "mistral-safe", "provider": "mi-safe", "model": "mistral-small-latest"},
            {"name": "mistral-embed", "provider": "mi", "model": "mistral-embed"},
            {"name": "mistral-misconfigured", "provider": "mi-bad-key", "model": "mistral-small-latest"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def mistral_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(mistral_config(mock_upstream), tmp_path_factory.mktemp("mistral"))
    yield gw
    gw.process.stop()


@pytest.fixture
def mi(mistral_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=mistral_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)




# ---- chat -------------------------------------------------------------------------------------


def test_non_stream_answer_and_usage(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(
        model="mistral-small",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
        seed=7,  # sent as random_seed
        temperature=0.2,
        stop=["\n\n"],
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == SAID + "hello"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == len((SAID + "hello").split(" "))
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 0


def test_max_completion_tokens_becomes_max_tokens(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(
        model="mistral-small", messages=ask("count these words"), max_completion_tokens=3
    )
    assert resp.choices[0].message.content == "Hello from the"
    assert resp.choices[0].finish_reason == "length"


def test_defaults_sent_explicitly_are_not_refused(mi: openai.OpenAI) -> None:
    # Clients that serialise every default send these; Mistral refuses the keys themselves (422).
    resp = mi.chat.completions.create(
        model="mistral-small", messages=ask("hi"), logprobs=False, top_logprobs=0, store=False, n=1,
        extra_body={"service_tier": None, "modalities": None},
    )
    assert resp.choices[0].finish_reason == "stop"

def test_safe_prompt_option_is_accepted(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(model="mistral-safe", messages=ask("be safe"))
    assert resp.choices[0].message.content == SAID + "be safe"


def test_stream_text_finish_and_usage(mi: openai.OpenAI) -> None:
    chunks = list(
        mi.chat.completions.create(
            model="mistral-small",
            messages=ask("stream please"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == SAID + "stream please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    # Mistral puts usage on the finish chunk; the client sees OpenAI's separate final chunk.
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_hides_usage(mi: openai.OpenAI) -> None:
    chunks = list(mi.chat.completions.create(model="mistral-small", messages=ask("quiet"), stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_n_choices(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(model="mistral-small", messages=ask("twice"), n=2)
    assert [c.index for c in resp.choices] == [0, 1]


def test_json_mode(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(
        model="mistral-small", messages=ask("answer in JSON"), response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "") == {"answer": SAID + "answer in JSON"}


def test_json_schema(mi: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    resp = mi.chat.completions.create(
        model="mistral-small",
        messages=ask("structured"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
    )
    assert json.loads(resp.choices[0].message.content or "")["answer"].endswith("structured")


# ---- tools ------------------------------------------------------------------------------------


def test_tool_round_trip(mi: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = ask("weather in Paris?")
    first = mi.chat.completions.create(
        model="mistral-small", messages=messages, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call.id)  # Mistral's own id, passed through
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    final = mi.chat.completions.create(model="mistral-small", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "The tool returned: 18C and sunny"


def test_foreign_tool_call_ids_are_mapped(mi: openai.OpenAI) -> None:
    # A conversation begun with OpenAI: ids like call_... would be a 400 at Mistral.
    messages: list[dict[str, Any]] = [
        *ask("weather in Paris and Rome?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123DEF456ghi789",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_zyx987",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123DEF456ghi789", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_zyx987", "content": "25C"},
    ]
    final = mi.chat.completions.create(model="mistral-small", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 25C"


def test_a_tool_call_without_an_id_still_pairs(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    # An empty id is mapped like any other on both sides, so the call and its result match.
    marker = new_marker()
    messages: list[dict[str, Any]] = [
        *ask(f"weather? mock:capture={marker}"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "", "content": "18C"},
    ]
    final = mi.chat.completions.create(model="mistral-small", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 18C"
    (seen,) = captured(mock_upstream, marker)
    call_id = seen["body"]["messages"][1]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call_id)
    assert seen["body"]["messages"][2]["tool_call_id"] == call_id


def test_a_tool_result_without_its_call_is_refused_naming_it(mi: openai.OpenAI) -> None:
    # La Plateforme refuses the history ("Unexpected tool call id"); the gateway names the message.
    call = {"id": "abcDEF123", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages: list[dict[str, Any]] = [
        *ask("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_never_made", "content": "25C"},
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=messages, tools=[WEATHER_TOOL])
    assert exc.value.param == "messages[3].tool_call_id" and exc.value.code == "invalid_value"
    assert "call_never_made" in exc.value.message and "mistral" in exc.value.message
    # A result sent before its call answers nothing yet: the same refusal.
    with pytest.raises(openai.BadRequestError) as exc:
        early = [messages[0], messages[2], messages[1]]
        mi.chat.completions.create(model="mistral-small", messages=early, tools=[WEATHER_TOOL])
    assert exc.value.param == "messages[1].tool_call_id"



    other: dict[str, Any] = {"type": "function",
                             "function": {"name": "get_time", "parameters": {"type": "object"}}}
    # Mistral has no allowed_tools: its mode ("required" -> "any") over only the allowed tools.
    reply = mi.chat.completions.create(
        model="mistral-small", messages=ask("weather?"), tools=[other, WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "allowed_tools", "allowed_tools": {
            "mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}},
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in reply.choices[0].message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as exc:  # a listed tool the request does not offer
        mi.chat.completions.create(
            model="mistral-small", messages=ask("weather?"), tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice={"type": "allowed_tools", "allowed_tools": {
                "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]}},
        )
    assert exc.value.body["param"] == "tool_choice.allowed_tools.tools[0]"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("weather?"), tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                   tool_choice={"type": "custom", "custom": {"name": "get_weather"}})
    assert exc.value.param == "tool_choice.type" and "mistral" in exc.value.message


def test_tool_name_mistral_refuses_is_a_400_naming_it(mi: openai.OpenAI) -> None:
    # Mistral takes a-z, A-Z, 0-9, underscores and dashes, at most 64: names the gateway takes
    # (dots, colons, up to 128) but Mistral does not are refused before sending.
    for name in ("ns.get_weather", "mcp:weather", "w" * 65):
        bad: Any = {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        with pytest.raises(openai.BadRequestError) as exc:
            mi.chat.completions.create(model="mistral-small", messages=ask("weather?"), tools=[bad])  # type: ignore[list-item]
        assert exc.value.param == "tools[0].function.name" and "mistral" in exc.value.message
        assert exc.value.code == "invalid_value"
    fits: dict[str, Any] = {"type": "function", "function": {"name": "get-weather_" + "w" * 52}}
    assert mi.chat.completions.create(model="mistral-small", messages=ask("hi"), tools=[fits]).choices  # type: ignore[list-item]


def test_streamed_tool_call(mi: openai.OpenAI) -> None:
    chunks = list(
        mi.chat.completions.create(
            model="mistral-small",
            messages=ask("weather?"),
            tools=[WEATHER_TOOL],
            stream=True,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [d.index for d in deltas] == [0]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    assert json.loads(deltas[0].function.arguments or "") == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


# ---- images -----------------------------------------------------------------------------------


def test_image_data_url(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(
        model="mistral-small",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}", "detail": "low"},
                    },
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == SAID + "what is this? [1 image]"


def test_image_http_url(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    resp = mi.chat.completions.create(
        model="mistral-small",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and this?"},
                    {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == SAID + "and this? [1 image]"


# ---- embeddings -------------------------------------------------------------------------------


def test_embeddings(mi: openai.OpenAI) -> None:
    resp = mi.embeddings.create(model="mistral-embed", input=["one", "two"], dimensions=16)
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in resp.data)
    assert resp.usage.prompt_tokens == 2


def test_embeddings_base64_and_float_agree(mi: openai.OpenAI) -> None:
    packed = mi.embeddings.create(model="mistral-embed", input="one")  # the SDK asks for base64 by default
    floats = mi.embeddings.create(model="mistral-embed", input="one", encoding_format="float")
    assert len(floats.data[0].embedding) == 8
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_embeddings_output_dtype_reaches_mistral(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    # Mistral's own output_dtype (int8, uint8, binary, ubinary) is sent, not left out in silence;
    # the integers come back as the vector, packed like any vector when the SDK asks for base64.
    marker = new_marker()
    text = f"squeeze mock:capture={marker}"
    floats = mi.embeddings.create(model="mistral-embed", input=text, encoding_format="float")
    ints = mi.embeddings.create(model="mistral-embed", input=text, encoding_format="float",
                                extra_body={"output_dtype": "int8"})
    packed = mi.embeddings.create(model="mistral-embed", input=text, extra_body={"output_dtype": "int8"})
    sent = [record["body"] for record in captured(mock_upstream, marker, count=3)]
    assert [body.get("output_dtype") for body in sent] == [None, "int8", "int8"]
    assert sent[2].get("encoding_format") != "base64"  # integers are not float32: packed here instead
    vector = ints.data[0].embedding
    assert vector == [max(-128, min(127, round(x * 127))) for x in floats.data[0].embedding]
    assert packed.data[0].embedding == vector
    binary = mi.embeddings.create(model="mistral-embed", input="squeeze", encoding_format="float",
                                  extra_body={"output_dtype": "ubinary"})
    assert len(binary.data[0].embedding) == 1  # 8 dimensions, one bit each


# ---- unsupported parameters -------------------------------------------------------------------


def test_logprobs_is_refused_by_name(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("hi"), logprobs=True)
    assert exc.value.code == "unsupported_parameter"
    assert "logprobs" in exc.value.message and "mistral" in exc.value.message


def test_logprobs_dropped_when_asked(mi: openai.OpenAI) -> None:
    resp = mi.chat.completions.create(
        model="mistral-lenient", messages=ask("hi"), logprobs=True, top_logprobs=2
    )
    assert resp.choices[0].message.content == SAID + "hi"


# A refusal's way out, as each API's callers can take it: only OpenAI-shaped bodies carry drop_params.
_ENTRY_ADVICE = ("set drop_params: true on the model in the gateway's config (this API's requests have "
                 "no drop_params field), to drop it instead")


def test_a_refusal_tells_an_openai_caller_the_request_field_too(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("hi"), extra_body={"top_k": 5})
    assert exc.value.message.endswith(
        'set drop_params: true on the model, or send "drop_params": true, to drop it instead'
    ), exc.value.message


def test_a_refusal_tells_an_anthropic_caller_the_model_entry_key_only(
    mistral_gateway: Gateway, mock_upstream: Mock
) -> None:
    # A Messages body has no drop_params (it is the unknown field's 400): the advice is the model
    # entry's key, which does drop it (mistral-lenient).
    marker = new_marker()
    client = anthropic.Anthropic(base_url=mistral_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    said = [{"role": "user", "content": f"hi mock:capture={marker}"}]
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="mistral-small", max_tokens=64, messages=said, extra_body={"top_k": 5})
    message = exc.value.body["error"]["message"]  # type: ignore[index]
    assert message == ("parameter 'top_k' is not supported by provider type 'mistral' (model "
                       f"'mistral-small'); {_ENTRY_ADVICE}")
    assert captured(mock_upstream, marker, timeout=0.2) == []
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="mistral-small", max_tokens=64, messages=said,
                               extra_body={"top_k": 5, "drop_params": True})
    assert "drop_params" in exc.value.body["error"]["message"]  # type: ignore[index]
    reply = client.messages.create(model="mistral-lenient", max_tokens=64, messages=ask("hi"),
                                   extra_body={"top_k": 5})
    assert reply.content[0].text == SAID + "hi"  # type: ignore[union-attr]


def test_a_refusal_tells_a_gemini_caller_the_model_entry_key_only(
    mistral_gateway: Gateway, mock_upstream: Mock
) -> None:
    # A Gemini body has no drop_params either (Google's 400 for an unknown name).
    marker = new_marker()
    url = f"{mistral_gateway.url}/v1beta/models/{{}}:generateContent"
    headers = {"x-goog-api-key": MASTER_KEY}

    def generate(model: str, **extra: Any) -> httpx.Response:
        body = {"contents": [{"role": "user", "parts": [{"text": f"hi mock:capture={marker}"}]}],
                "generationConfig": {"topK": 5}, **extra}
        return httpx.post(url.format(model), json=body, headers=headers, timeout=30)

    resp = generate("mistral-small")
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["message"] == (
        "parameter 'generationConfig.topK' is not supported by provider type 'mistral' (model "
        f"'mistral-small'); {_ENTRY_ADVICE}"
    ), resp.text
    assert captured(mock_upstream, marker, timeout=0.2) == []
    refused = generate("mistral-small", drop_params=True)
    assert refused.status_code == 400 and "drop_params" in refused.text, refused.text
    assert generate("mistral-lenient").status_code == 200


def test_unknown_fields_are_refused_before_anything_is_sent(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    # A field the gateway does not know is not sent on unread: a 400 naming it, as Mistral's own
    # 422 would (after a round trip), with drop_params too (it drops known features only).
    marker = new_marker()
    for model in ("mistral-small", "mistral-lenient"):
        with pytest.raises(openai.BadRequestError) as exc:
            mi.chat.completions.create(model=model, messages=ask(f"hi mock:capture={marker}"),
                                       extra_body={"document_library_ids": ["lib_someone_elses"]})
        assert exc.value.code == "unknown_parameter" and exc.value.param == "document_library_ids"
        assert "'document_library_ids'" in exc.value.message and "mistral" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


def test_mistral_fields_of_the_request_are_passed(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    mi.chat.completions.create(model="mistral-small", messages=ask(f"hi mock:capture={marker}"),
                               extra_body={"safe_prompt": True, "random_seed": 11})
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["safe_prompt"] is True and seen["body"]["random_seed"] == 11


def test_prediction_given_as_text_parts_reaches_mistral_as_text(
    mi: openai.OpenAI, mock_upstream: Mock
) -> None:
    # OpenAI's predicted output may be text parts; Mistral's Prediction.content is a string only.
    marker = new_marker()
    resp = mi.chat.completions.create(
        model="mistral-small", messages=ask(f"rewrite mock:capture={marker}"),
        prediction={"type": "content", "content": [{"type": "text", "text": "def f():"},
                                                   {"type": "text", "text": "\n    return 1"}]},
    )
    assert resp.choices[0].finish_reason == "stop"
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["prediction"] == {"type": "content", "content": "def f():\n    return 1"}
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("rewrite"),
                                   prediction={"type": "content", "content": [{"type": "image_url"}]})  # type: ignore[list-item]
    assert exc.value.param == "prediction.content[0]"


def test_prompt_mode_reaches_mistral(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    # Mistral's own switch for the reasoning system prompt of its reasoning models (Magistral):
    # passed as written, as safe_prompt and random_seed are, not refused as an unknown field.
    marker = new_marker()
    resp = mi.chat.completions.create(model="mistral-small", messages=ask(f"think mock:capture={marker}"),
                                      extra_body={"prompt_mode": "reasoning"})
    assert resp.choices[0].finish_reason == "stop"
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["prompt_mode"] == "reasoning"


# Mistral's own input moderation (GuardrailConfig): blocks what its categories find unsafe.
BLOCKING_GUARDRAILS = [{"block_on_error": True, "moderation_llm_v2": {
    "custom_category_thresholds": {"violence_and_threats": 0.2}, "action": "block"}}]


def test_guardrails_reach_mistral_as_written(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    resp = mi.chat.completions.create(model="mistral-small", messages=ask(f"hi mock:capture={marker}"),
                                      extra_body={"guardrails": BLOCKING_GUARDRAILS})
    assert resp.choices[0].message.content == SAID + f"hi mock:capture={marker}"
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["guardrails"] == BLOCKING_GUARDRAILS


@pytest.mark.parametrize("stream", [False, True])
def test_an_input_mistrals_guardrails_block_is_a_400_content_filter(mi: openai.OpenAI, stream: bool) -> None:
    """Mistral answers a blocked input 403, as it answers a key it refuses: the caller is told
    its input was filtered (as by Azure's content filter), not that the gateway is misconfigured."""
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("mock:refuse"), stream=stream,
                                   extra_body={"guardrails": BLOCKING_GUARDRAILS})
    assert exc.value.status_code == 400
    assert exc.value.code == "content_filter"
    assert exc.value.type == "invalid_request_error"
    assert exc.value.body["message"] == "Request blocked by guardrail policy (violated: violence_and_threats)"


def test_guardrails_mistral_refuses_are_its_422_naming_the_field(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("hi"),
                                   extra_body={"guardrails": [{"moderation_llm_v3": {}}]})
    assert exc.value.status_code == 422
    assert "guardrails.0.moderation_llm_v3" in exc.value.message


def test_reasoning_effort_mistral_takes_reaches_it(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    for effort in ("high", "none"):
        mi.chat.completions.create(model="mistral-small", messages=ask(f"think mock:capture={marker}"),
                                   reasoning_effort=effort)  # type: ignore[arg-type]
    assert [seen["body"]["reasoning_effort"] for seen in captured(mock_upstream, marker)] == ["high", "none"]


@pytest.mark.parametrize("effort", ["low", "medium", "minimal", "xhigh"])
def test_reasoning_effort_mistral_does_not_take_is_a_400_naming_it(
    mi: openai.OpenAI, mock_upstream: Mock, effort: str
) -> None:
    # Mistral's ReasoningEffort is none or high: OpenAI's other levels are refused before any call.
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask(f"think mock:capture={marker}"),
                                   reasoning_effort=effort)  # type: ignore[arg-type]
    assert exc.value.code == "invalid_value" and exc.value.param == "reasoning_effort"
    assert f"'{effort}'" in exc.value.message and "'none' or 'high'" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


@pytest.mark.parametrize("level", ["MINIMAL", "LOW", "MEDIUM"])
def test_a_gemini_thinking_level_mistral_does_not_take_is_named_as_sent(
    mistral_gateway: Gateway, mock_upstream: Mock, level: str
) -> None:
    # A Gemini-API caller sent thinkingLevel, not reasoning_effort: the refusal names its field,
    # the level as sent, and the advice in its values (HIGH is Mistral's high; none has no level).
    marker = new_marker()
    body = {"contents": [{"role": "user", "parts": [{"text": f"think mock:capture={marker}"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": level}}}
    resp = httpx.post(f"{mistral_gateway.url}/v1beta/models/mistral-small:generateContent", json=body,
                      headers={"x-goog-api-key": MASTER_KEY}, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT", resp.text
    field = "'generationConfig.thinkingConfig.thinkingLevel'"
    assert error["message"] == (f"{field} '{level}' is not one provider type 'mistral' takes: send 'HIGH', "
                                f"or leave {field} out"), resp.text
    assert "reasoning_effort" not in resp.text
    assert captured(mock_upstream, marker, timeout=0.2) == []


@pytest.mark.parametrize("effort", ["low", "medium", "max"])
def test_an_anthropic_effort_mistral_does_not_take_is_named_as_sent(
    mistral_gateway: Gateway, mock_upstream: Mock, effort: str
) -> None:
    marker = new_marker()
    client = anthropic.Anthropic(base_url=mistral_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="mistral-small", max_tokens=64,
                               messages=[{"role": "user", "content": f"think mock:capture={marker}"}],
                               extra_body={"output_config": {"effort": effort}})
    # output_config.effort asks for neither of Mistral's levels ("high", the default, asks for none):
    # the only advice in the caller's terms is to leave it out, not to send 'none' or 'high'.
    message = exc.value.body["error"]["message"]  # type: ignore[index]
    assert message == (f"'output_config.effort' '{effort}' is not one provider type 'mistral' takes: "
                       "leave 'output_config.effort' out")
    assert "reasoning_effort" not in message
    assert captured(mock_upstream, marker, timeout=0.2) == []


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "xhigh"])
def test_a_responses_effort_mistral_does_not_take_is_named_as_sent(
    mi: openai.OpenAI, mock_upstream: Mock, effort: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        mi.responses.create(model="mistral-small", input=f"think mock:capture={marker}",
                            reasoning={"effort": effort})  # type: ignore[typeddict-item]
    assert exc.value.code == "invalid_value" and exc.value.param == "reasoning.effort"
    assert (f"'reasoning.effort' '{effort}' is not one provider type 'mistral' takes: send 'none' or 'high'"
            in exc.value.message) and "reasoning_effort" not in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


# ---- errors -----------------------------------------------------------------------------------


def test_rate_limit(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("mock:status=429 mock:retry_after=7"))
    assert exc.value.response.headers.get("retry-after") == "7"
    assert "rate limit" in exc.value.message.lower()


def test_context_length(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(
            model="mistral-small", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"
    assert "maximum context length" in exc.value.message


def test_upstream_server_error(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502


def test_upstream_overloaded(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        mi.chat.completions.create(model="mistral-small", messages=ask("mock:status=503"))
    assert exc.value.status_code == 503
    assert exc.value.code == "upstream_overloaded"


def test_upstream_auth_failure_hides_key(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        mi.chat.completions.create(model="mistral-misconfigured", messages=ask("hi"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    assert BAD_KEY not in exc.value.response.text


def test_mid_stream_failure(mi: openai.OpenAI) -> None:
    stream = mi.chat.completions.create(
        model="mistral-small", messages=ask("mock:fail_after=3 go"), stream=True
    )
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    assert "mid-stream" in str(exc.value)


def test_unsupported_content_part(mi: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        mi.chat.completions.create(
            model="mistral-small",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ],
        )
    assert exc.value.param == "messages[0].content[0].type"


def test_user_is_accepted_and_not_sent(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    # Mistral has no end-user field (and refuses unknown ones); an end-user id does not change the
    # output, so it is accepted and left out (capability table), without drop_params.
    marker = new_marker()
    mi.chat.completions.create(model="mistral-small", messages=ask(f"hi mock:capture={marker}"),
                               user="end-user-1")
    (seen,) = captured(mock_upstream, marker)
    assert "user" not in seen["body"]


def test_image_detail_reaches_mistral(mi: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    image = {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
    mi.chat.completions.create(model="mistral-small", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"what? mock:capture={marker}"},
        {"type": "image_url", "image_url": image},
    ]}])
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["messages"][0]["content"][1]["image_url"] == image
