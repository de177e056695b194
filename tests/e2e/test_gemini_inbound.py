"""The inbound Gemini API, driven by the official ``google-genai`` SDK.

One gateway for the module routes Gemini-format requests to OpenAI and Anthropic upstreams (the
mock); the tests that reach an upstream run once per provider type. The SDK sends the Switchboard
key (an issued key, not the master key) in ``x-goog-api-key``; ``?key=`` is checked with raw HTTP.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
# provider type -> (provider entry without name, upstream model id)
PROVIDERS: dict[str, tuple[dict[str, Any], str]] = {
    "openai": ({"type": "openai", "api_base": "{mock}/v1", "api_key": "${UPSTREAM_KEY}"}, "gpt-4o-mini"),
    "anthropic": (
        {"type": "anthropic", "api_base": "{mock}", "api_key": "${UPSTREAM_KEY}"},
        "claude-3-5-haiku-latest",
    ),
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
}
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


def _config(mock: Mock) -> dict[str, Any]:
    providers, models = [], []
    for kind, (entry, upstream_model) in PROVIDERS.items():
        filled = {k: v.replace("{mock}", mock.url) if isinstance(v, str) else v for k, v in entry.items()}
        providers.append({"name": f"up-{kind}", **filled})
        models.append({"name": f"gem-via-{kind}", "provider": f"up-{kind}", "model": upstream_model})
    models.append(
        {"name": "text-embedding-3-small", "provider": "up-openai", "model": "text-embedding-3-small"}
    )
    models.append({"name": "gem3", "provider": "up-gemini", "model": "gemini-3-pro-preview"})
    # Embedding models of the types that take retrieval hints: Gemini's own, and Cohere's.
    models.append({"name": "gemini-embedding-001", "provider": "up-gemini", "model": "gemini-embedding-001"})
    providers.append(
        {"name": "up-cohere", "type": "cohere", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    )
    models.append({"name": "embed-v4", "provider": "up-cohere", "model": "embed-v4.0"})
    # As docs/api-gemini.md's Gemini CLI recipe configures them.
    models.append(
        {
            "name": "gemini-2.5-pro",
            "provider": "up-anthropic",
            "model": "claude-sonnet-4-5",
            "drop_params": True,
        }
    )
    models.append(
        {"name": "gemini-2.5-flash", "provider": "up-openai", "model": "gpt-4o-mini", "drop_params": True}
    )
    return {
        "providers": providers,
        "models": models,
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "server": {"max_body_bytes": 256 * 1024},
    }


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(_config(mock_upstream), tmp_path_factory.mktemp("gemini-inbound"))
    yield gateway
    gateway.process.stop()


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    """A Switchboard key issued by the admin API: what a Gemini client is configured with."""
    resp = httpx.post(
        f"{gw.url}/admin/v1/keys",
        json={"name": "gemini client", "models": ["*"]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


@pytest.fixture
def client(gw: Gateway, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": gw.url, "timeout": 30_000})


@pytest.fixture(params=sorted(PROVIDERS))
def model(request: pytest.FixtureRequest) -> str:
    return f"gem-via-{request.param}"


def upstream_model(model: str) -> str:
    return PROVIDERS[model.removeprefix("gem-via-")][1]


# -- generateContent ---------------------------------------------------------------------------


def test_generate_content(client: genai.Client, model: str) -> None:
    response = client.models.generate_content(model=model, contents="Say hello to the gateway")
    assert response.text is not None and "hello to the gateway" in response.text
    [candidate] = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content is not None and candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == upstream_model(model)
    assert response.response_id


def test_system_instruction_and_generation_config_reach_the_upstream(
    client: genai.Client, model: str
) -> None:
    marker = new_marker()
    response = client.models.generate_content(
        model=model,
        contents=f"hi mock:capture={marker}",
        config=types.GenerateContentConfig(
            system_instruction="You are terse. mock:reply=from_the_system_instruction",
            temperature=0.5,
            max_output_tokens=64,
            stop_sequences=["END"],
        ),
    )
    assert response.text == "from the system instruction"


def test_sampling_fields_arrive_translated(client: genai.Client, gw: Gateway, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.models.generate_content(
        model="gem-via-anthropic",
        contents=[types.Content(role="user", parts=[types.Part.from_text(text=f"hi mock:capture={marker}")])],
        config=types.GenerateContentConfig(
            system_instruction="be brief",
            temperature=0.5,
            top_p=0.9,
            max_output_tokens=64,
            stop_sequences=["END"],
        ),
    )
    [record] = captured(mock_upstream, marker)
    sent = record["body"]
    system = sent["system"]
    assert (system[0]["text"] if isinstance(system, list) else system) == "be brief"
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop_sequences"]) == (
        0.5,
        0.9,
        64,
        ["END"],
    )


# fileData URLs whose type only mimeType tells (no extension), or that are not images.
FILE_URIS = [
    ("https://files.example.com/report?id=3", "application/pdf"),
    ("https://files.example.com/talk.mp3", "audio/mpeg"),
]


def test_file_data_keeps_its_mime_type_to_a_gemini_upstream(
    client: genai.Client, mock_upstream: Mock
) -> None:
    """fileData of any type reaches a Gemini upstream as fileData with the caller's mimeType."""
    marker = new_marker()
    parts = [types.Part.from_uri(file_uri=uri, mime_type=mime) for uri, mime in FILE_URIS]
    parts.append(types.Part.from_text(text=f"sum up mock:capture={marker}"))
    response = client.models.generate_content(
        model="gem-via-gemini", contents=[types.Content(role="user", parts=parts)]
    )
    assert "files.example.com/report?id=3" in (response.text or "")
    [record] = captured(mock_upstream, marker)
    sent = [p["fileData"] for p in record["body"]["contents"][0]["parts"] if "fileData" in p]
    assert sent == [{"mimeType": mime, "fileUri": uri} for uri, mime in FILE_URIS]


def test_a_pdf_by_url_reaches_anthropic_as_a_document_url(client: genai.Client, mock_upstream: Mock) -> None:
    """Anthropic fetches PDFs by URL: the fileData's type makes it a document url source."""
    marker = new_marker()
    part = types.Part.from_uri(file_uri=FILE_URIS[0][0], mime_type=FILE_URIS[0][1])
    asked = types.Part.from_text(text=f"mock:capture={marker}")
    client.models.generate_content(
        model="gem-via-anthropic", contents=[types.Content(role="user", parts=[part, asked])]
    )
    [record] = captured(mock_upstream, marker)
    [message] = record["body"]["messages"]
    assert message["content"][0] == {"type": "document", "source": {"type": "url", "url": FILE_URIS[0][0]}}


@pytest.mark.parametrize(("model", "provider_type"), [
    ("gem-via-openai", "openai"), ("gem-via-anthropic", "anthropic"), ("gem-via-bedrock", "bedrock"),
])
def test_file_data_a_provider_cannot_fetch_is_a_400_naming_it(
    client: genai.Client, model: str, provider_type: str
) -> None:
    """Audio by URL: providers that take it only as bytes (or not at all) refuse it before
    anything is sent, naming themselves, instead of getting an image URL or a file without a type."""
    part = types.Part.from_uri(file_uri=FILE_URIS[1][0], mime_type=FILE_URIS[1][1])
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=model, contents=[types.Content(role="user", parts=[part])])
    assert info.value.code == 400
    assert f"provider type '{provider_type}'" in str(info.value.message)


_HARM, _BLOCK = types.HarmCategory, types.HarmBlockThreshold
SAFETY = [
    types.SafetySetting(category=_HARM.HARM_CATEGORY_HARASSMENT, threshold=_BLOCK.BLOCK_ONLY_HIGH),
    types.SafetySetting(category=_HARM.HARM_CATEGORY_DANGEROUS_CONTENT, threshold=_BLOCK.BLOCK_NONE),
]
SAFETY_WIRE = [
    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"},
]


def _ask_with_safety(client: genai.Client, model: str, marker: str, stream: bool) -> str:
    config = types.GenerateContentConfig(safety_settings=SAFETY)
    contents = f"Say hi mock:capture={marker}"
    if stream:
        chunks = client.models.generate_content_stream(model=model, contents=contents, config=config)
        return "".join(c.text or "" for c in chunks)
    return client.models.generate_content(model=model, contents=contents, config=config).text or ""


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
def test_safety_settings_reach_a_gemini_upstream(
    client: genai.Client, mock_upstream: Mock, stream: bool
) -> None:
    marker = new_marker()
    assert "Say hi" in _ask_with_safety(client, "gem-via-gemini", marker, stream)
    [record] = captured(mock_upstream, marker)
    assert record["body"]["safetySettings"] == SAFETY_WIRE


@pytest.mark.parametrize("model", ["gem-via-openai", "gem-via-anthropic", "gem-via-bedrock"])
def test_safety_settings_are_not_sent_to_other_upstreams(
    client: genai.Client, mock_upstream: Mock, model: str
) -> None:
    """The Gemini CLI sends safetySettings on every request: accepted, and not sent where the
    provider has no per-request thresholds (OpenAI would refuse the unknown field)."""
    marker = new_marker()
    assert "Say hi" in _ask_with_safety(client, model, marker, stream=False)
    [record] = captured(mock_upstream, marker)
    assert "safety" not in orjson.dumps(record["body"]).decode().lower()


def test_image_input(client: genai.Client, model: str) -> None:
    response = client.models.generate_content(
        model=model,
        contents=[
            types.Part.from_bytes(data=base64.b64decode(PIXEL), mime_type="image/png"),
            "What is this?",
        ],
    )
    assert response.text


@pytest.mark.parametrize("mime", ["image/p ng", "image/png; charset=binary", "image/png\n", "text/"])
def test_an_inline_mime_type_that_is_not_a_media_type_is_a_400_naming_it(
    client: genai.Client, model: str, mime: str
) -> None:
    """Refused at the part, as fileData's mimeType is, instead of going on into a data URL that
    the caller never sent and is then told is malformed."""
    part = types.Part.from_bytes(data=base64.b64decode(PIXEL), mime_type=mime)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=model, contents=[types.Content(role="user", parts=[part])])
    assert info.value.code == 400
    message = str(info.value.message)
    assert "'contents[0].parts[0].inlineData.mimeType': " in message and "is not a media type" in message
    assert "data URL" not in message


def _ask_low_resolution(client: genai.Client, model: str, marker: str) -> None:
    client.models.generate_content(
        model=model,
        contents=[types.Part.from_bytes(data=base64.b64decode(PIXEL), mime_type="image/png"),
                  f"What is this? mock:capture={marker}"],
        config=types.GenerateContentConfig(media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW),
    )


def test_a_low_media_resolution_reaches_the_upstream(client: genai.Client, mock_upstream: Mock) -> None:
    """Before: checked and not sent. Now the images' low detail: Gemini's own field again on a
    Gemini upstream, OpenAI's image detail on an OpenAI one."""
    marker = new_marker()
    _ask_low_resolution(client, "gem-via-gemini", marker)
    [record] = captured(mock_upstream, marker)
    assert record["body"]["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    marker = new_marker()
    _ask_low_resolution(client, "gem-via-openai", marker)
    [record] = captured(mock_upstream, marker)
    assert record["body"]["messages"][0]["content"][0]["image_url"]["detail"] == "low"


def test_a_low_media_resolution_is_refused_where_images_have_no_resolution(
    client: genai.Client, mock_upstream: Mock
) -> None:
    marker = new_marker()
    with pytest.raises(errors.ClientError) as refused:
        _ask_low_resolution(client, "gem-via-anthropic", marker)
    assert refused.value.code == 400 and "detail 'low'" in str(refused.value.message)
    assert captured(mock_upstream, marker, timeout=0.5) == []


def _ask_civic(client: genai.Client, model: str, marker: str, enabled: bool = True) -> None:
    client.models.generate_content(
        model=model, contents=f"Who can vote? mock:capture={marker}",
        config=types.GenerateContentConfig(enable_enhanced_civic_answers=enabled),
    )


def test_enhanced_civic_answers_reach_a_gemini_upstream(client: genai.Client, mock_upstream: Mock) -> None:
    """Before: checked and not sent, so Gemini answered without them."""
    marker = new_marker()
    _ask_civic(client, "gem-via-gemini", marker)
    [record] = captured(mock_upstream, marker)
    assert record["body"]["generationConfig"]["enableEnhancedCivicAnswers"] is True


@pytest.mark.parametrize("model", ["gem-via-openai", "gem-via-anthropic"])
def test_enhanced_civic_answers_are_refused_by_name_elsewhere(
    client: genai.Client, mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    with pytest.raises(errors.ClientError) as refused:
        _ask_civic(client, model, marker)
    assert refused.value.code == 400
    assert "generationConfig.enableEnhancedCivicAnswers" in str(refused.value.message)
    assert captured(mock_upstream, marker, timeout=0.5) == []
    # false asks for nothing: served.
    marker = new_marker()
    _ask_civic(client, model, marker, enabled=False)
    [record] = captured(mock_upstream, marker)
    assert "enableEnhancedCivicAnswers" not in str(record["body"])


@pytest.mark.parametrize(
    "model, config, named, canonical",
    [
        ("gem-via-anthropic", {"candidate_count": 2}, "generationConfig.candidateCount", "n"),
        ("gem-via-bedrock", {"seed": 7}, "generationConfig.seed", "seed"),
        ("gem-via-anthropic", {"presence_penalty": 0.5}, "generationConfig.presencePenalty",
         "presence_penalty"),
    ],
)
def test_a_field_the_provider_lacks_is_refused_by_the_name_sent(
    client: genai.Client, model: str, config: dict[str, Any], named: str, canonical: str
) -> None:
    """The refusal names the Gemini field the caller sent, not the gateway's internal (OpenAI) one."""
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=model, contents="hi",
                                       config=types.GenerateContentConfig(**config))
    assert refused.value.code == 400
    message = str(refused.value.message)
    assert f"'{named}'" in message and f"'{canonical}'" not in message


@pytest.mark.parametrize(
    "model, config, named, canonical",
    [
        ("gem-via-anthropic", {"thinking_budget": 512}, ["generationConfig.thinkingConfig.thinkingBudget"],
         ["thinking.budget_tokens"]),
        ("gem-via-bedrock", {"thinking_budget": 512}, ["generationConfig.thinkingConfig.thinkingBudget"],
         ["thinking.budget_tokens"]),
        ("gem-via-anthropic", {"thinking_budget": 2048, "max_output_tokens": 1024},
         ["generationConfig.maxOutputTokens", "generationConfig.thinkingConfig.thinkingBudget"],
         ["max_tokens", "thinking.budget_tokens"]),
    ],
)
def test_a_provider_s_limit_names_the_fields_sent(
    client: genai.Client, model: str, config: dict[str, Any], named: list[str], canonical: list[str]
) -> None:
    """A provider's rule on a value (Anthropic's thinking budget of at least 1024 tokens, below
    max_tokens) is told in the caller's names, not the translated ones."""
    budget = config.pop("thinking_budget")
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=model, contents="hi", config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=budget), **config))
    assert refused.value.code == 400
    message = str(refused.value.message)
    assert all(name in message for name in named), message
    assert not any(name in message.replace("generationConfig.", "") for name in canonical), message


def test_an_unknown_field_keeps_the_name_the_caller_wrote(gw: Gateway, key: str) -> None:
    """Its name is the caller's own, even when it is a translated field's canonical name."""
    resp = httpx.post(f"{gw.url}/v1beta/models/gem-via-anthropic:generateContent",
                      json={"contents": [{"parts": [{"text": "hi"}]}], "max_tokens": 5},
                      headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == 400, resp.text
    assert 'Unknown name "max_tokens"' in resp.json()["error"]["message"]


def get_weather(city: str) -> dict[str, float]:
    """Current weather for a city."""
    return {"celsius": 21.5}


def test_a_python_function_with_a_return_annotation_is_called(
    client: genai.Client, mock_upstream: Mock, model: str
) -> None:
    """The SDK declares an annotated Python function with a responseJsonSchema (its return type),
    for the Gemini API too: checked and not sent, so the function is called and its result read."""
    marker = new_marker()
    response = client.models.generate_content(
        model=model, contents=f"weather in Paris? mock:tool_call=get_weather mock:capture={marker}",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )
    history = response.automatic_function_calling_history or []
    answers = [p.function_response for c in history for p in c.parts or () if p.function_response]
    assert answers and answers[0].response == {"result": {"celsius": 21.5}}
    first = captured(mock_upstream, marker)[0]
    assert '"number"' not in orjson.dumps(first["body"]).decode()  # the return type is not sent


def test_a_function_return_schema_must_be_a_schema(gw: Gateway, key: str) -> None:
    declaration = {"name": "get_weather", "response": {"type": "RECORD"}}
    resp = httpx.post(f"{gw.url}/v1beta/models/gem-via-gemini:generateContent",
                      json={"contents": [{"parts": [{"text": "weather?"}]}],
                            "tools": [{"functionDeclarations": [declaration]}]},
                      headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == 400, resp.text
    assert "tools[0].functionDeclarations[0].response" in resp.json()["error"]["message"]


def test_json_response_schema(client: genai.Client, model: str) -> None:
    response = client.models.generate_content(
        model=model,
        contents='mock:reply={"city":"Paris"}',
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
            ),
        ),
    )
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.text


# -- streamGenerateContent ---------------------------------------------------------------------


def test_generate_content_stream(client: genai.Client, model: str) -> None:
    chunks = list(client.models.generate_content_stream(model=model, contents="Stream a greeting to me"))
    assert len(chunks) >= 2
    text = "".join(c.text or "" for c in chunks)
    assert "Stream a greeting to me" in text
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count
    assert {c.response_id for c in chunks} == {chunks[0].response_id}
    assert all(c.model_version == upstream_model(model) for c in chunks)


@pytest.mark.parametrize(
    ("method", "extra", "where"),
    [
        ("generateContent",
         {"safetySettings": [{"category": "HARM_CATEGORY_HARRASMENT", "threshold": "BLOCK_NONE"}]},
         "safetySettings[0].category"),
        ("generateContent",
         {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_SOME"}]},
         "safetySettings[0].threshold"),
        ("generateContent", {"generationConfig": {"mediaResolution": "HIGH"}},
         "generationConfig.mediaResolution"),
        ("generateContent", {"serviceTier": "cheapest"}, "serviceTier"),
        ("streamGenerateContent?alt=sse", {"serviceTier": "FLEXIBLE"}, "serviceTier"),
        ("embedContent", {"taskType": "SEARCH"}, "taskType"),
    ],
)
def test_enum_values_google_does_not_define_are_400(
    gw: Gateway, key: str, mock_upstream: Mock, method: str, extra: dict[str, Any], where: str
) -> None:
    # Read but not sent on (or sent only to Google): a misspelt value is Google's 400 on every
    # provider, never silently accepted; nothing reaches the upstream.
    marker = new_marker()
    content = {"parts": [{"text": f"hi mock:capture={marker}"}]}
    body = {"content": content} if method == "embedContent" else {"contents": [content]}
    model = "text-embedding-3-small" if method == "embedContent" else "gem-via-openai"
    resp = httpx.post(f"{gw.url}/v1beta/models/{model}:{method}", json={**body, **extra},
                      headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert f"Invalid value at '{where}' (TYPE_ENUM)" in error["message"]
    assert captured(mock_upstream, marker, timeout=0.5) == []
    # Google's own values go through.
    good = {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
            "generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"}, "serviceTier": "FLEX"}
    ok = httpx.post(f"{gw.url}/v1beta/models/gem-via-openai:generateContent",
                    json={"contents": [{"parts": [{"text": "hi"}]}], **good},
                    headers={"x-goog-api-key": key}, timeout=10)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("model", ["gem-via-openai", "gem-via-gemini"])
@pytest.mark.parametrize("value", ["--5", "\u00b2", "\u0665", "99999999999999999999", "2147483648",
                                   2147483648, -2147483649])
def test_an_int32_field_takes_only_an_int32_or_its_decimal_text(
    gw: Gateway, key: str, mock_upstream: Mock, model: str, value: Any
) -> None:
    """'--5', '²' and a number past 64 bits in text were 500s; U+0665 (an Arabic-Indic 5) and
    2**31, no int32, were sent on. Each is Google's wrong value of the type; nothing is sent."""
    marker = new_marker()
    body = {"contents": [{"parts": [{"text": f"hi mock:capture={marker}"}]}],
            "generationConfig": {"maxOutputTokens": value}}
    resp = httpx.post(f"{gw.url}/v1beta/models/{model}:generateContent", json=body,
                      headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid value at 'generationConfig.maxOutputTokens' (TYPE_INT32), ")
    assert captured(mock_upstream, marker, timeout=0.5) == []
    # Proto JSON's decimal text of an int32 is one.
    body["generationConfig"] = {"maxOutputTokens": "100", "seed": "-2147483648"}
    assert httpx.post(f"{gw.url}/v1beta/models/{model}:generateContent", json=body,
                      headers={"x-goog-api-key": key}, timeout=10).status_code == 200


def test_stream_without_alt_sse_is_refused(gw: Gateway, key: str) -> None:
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:streamGenerateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "alt=sse" in resp.json()["error"]["message"]


# -- function calling --------------------------------------------------------------------------


def test_function_call_round_trip(client: genai.Client, model: str) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    first = client.models.generate_content(model=model, contents=[question], config=config)
    [call] = first.function_calls or []
    assert call.name == "get_weather" and isinstance((call.args or {}).get("city"), str)
    assert call.id  # the upstream's call id, so the answer can name it
    assert first.candidates and first.candidates[0].finish_reason == types.FinishReason.STOP
    model_turn = first.candidates[0].content
    assert model_turn is not None
    answer = types.Content(
        role="user",
        parts=[
            types.Part(
                function_response=types.FunctionResponse(
                    id=call.id, name="get_weather", response={"output": "18 degrees, sunny"}
                )
            )
        ],
    )
    second = client.models.generate_content(
        model=model, contents=[question, model_turn, answer], config=config
    )
    assert second.text and "18 degrees, sunny" in second.text
    assert not second.function_calls


def test_validated_mode_calls_only_the_allowed_functions(client: genai.Client, model: str) -> None:
    """Mode VALIDATED with allowedFunctionNames (Google: "should only be set when the mode is ANY or
    VALIDATED"): text, or a call of an allowed function only."""
    time = types.FunctionDeclaration(name="get_time", description="The local time in a city",
                                     parameters=WEATHER.parameters)
    calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.VALIDATED,
                                          allowed_function_names=["get_time"])
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, time])],
        tool_config=types.ToolConfig(function_calling_config=calling),
        automatic_function_calling=NO_AUTO_CALLS,
    )
    response = client.models.generate_content(model=model, contents="Weather or time in Paris?",
                                              config=config)
    assert [call.name for call in response.function_calls or []] == ["get_time"]


def test_function_response_paired_by_name(client: genai.Client, model: str) -> None:
    """Clients that send no call ids (the Gemini API does not require them) are paired by name."""
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")]),
        types.Content(
            role="model", parts=[types.Part.from_function_call(name="get_weather", args={"city": "Paris"})]
        ),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"output": "rainy"})],
        ),
    ]
    response = client.models.generate_content(model=model, contents=contents, config=config)
    assert response.text and "rainy" in response.text


def test_streamed_function_call_comes_whole(client: genai.Client, model: str) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_weather"]
            )
        ),
        automatic_function_calling=NO_AUTO_CALLS,
    )
    chunks = list(
        client.models.generate_content_stream(model=model, contents="Weather in Rome?", config=config)
    )
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance((calls[0].args or {}).get("city"), str)
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini_upstreams_malformed_function_call_is_an_error_not_an_empty_answer(
    client: genai.Client, stream: bool
) -> None:
    """Gemini's MALFORMED_FUNCTION_CALL with nothing in the candidate reaches a Gemini client as
    the upstream's failure naming it (a 502, in Google's shape; a stream's error event), not as
    an empty candidate finished with STOP."""
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    ask: Any = {"model": "gem-via-gemini", "config": config,
                "contents": "Weather in Paris? mock:malformed_call=1"}
    with pytest.raises(errors.APIError) as info:
        if stream:
            list(client.models.generate_content_stream(**ask))
        else:
            client.models.generate_content(**ask)
    assert "MALFORMED_FUNCTION_CALL" in str(info.value.message)
    if not stream:
        assert info.value.code == 502


def test_thought_signatures_survive_the_round_trip(client: genai.Client, mock_upstream: Mock) -> None:
    """Gemini 3 refuses a replayed function call without its thought signature: the signature the
    upstream gave comes back to the client, and from the client's replay to the upstream."""
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Oslo?")])
    first = client.models.generate_content(model="gem3", contents=[question], config=config)
    assert first.candidates and first.candidates[0].content and first.candidates[0].content.parts
    [part] = first.candidates[0].content.parts
    assert part.function_call is not None and part.thought_signature
    marker = new_marker()
    answer = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(
                name="get_weather", response={"output": f"cold mock:capture={marker}"}
            )
        ],
    )
    second = client.models.generate_content(
        model="gem3", contents=[question, first.candidates[0].content, answer], config=config
    )
    assert second.text and "cold" in second.text
    [record] = captured(mock_upstream, marker)
    replayed = record["body"]["contents"][1]["parts"][0]
    assert replayed["thoughtSignature"] == base64.b64encode(part.thought_signature).decode()


def test_thinking_tokens_are_reported(client: genai.Client) -> None:
    response = client.models.generate_content(model="gem-via-gemini", contents="think mock:thoughts_tokens=7")
    usage = response.usage_metadata
    assert usage is not None and usage.thoughts_token_count == 7
    assert (
        usage.total_token_count == (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0) + 7
    )


# -- countTokens and embeddings ----------------------------------------------------------------


def test_count_tokens(client: genai.Client, model: str) -> None:
    short = client.models.count_tokens(model=model, contents="hello")
    long = client.models.count_tokens(model=model, contents="hello " * 50)
    assert short.total_tokens and long.total_tokens and long.total_tokens > short.total_tokens


def test_count_tokens_of_a_whole_request(gw: Gateway, key: str) -> None:
    contents = [{"role": "user", "parts": [{"text": "hello there"}]}]
    bare = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:countTokens",
        json={"contents": contents},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    whole = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:countTokens",
        json={
            "generateContentRequest": {
                "model": "models/gem-via-openai",
                "contents": contents,
                "systemInstruction": {"parts": [{"text": "a long system prompt " * 5}]},
            }
        },
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert bare.status_code == whole.status_code == 200
    assert whole.json()["totalTokens"] > bare.json()["totalTokens"] > 0


def test_count_tokens_of_an_image_whose_size_cannot_be_read(gw: Gateway, key: str) -> None:
    # A BMP (no header the counter reads) counts as a remote image does, 1024 x 1024: on the
    # gpt-4o-mini upstream of gem-via-openai, OpenAI's own cost for that size on that model
    # (2,833 + 4 tiles x 5,667), not a bound of the standard costs (docs/tokens.md).
    def count(parts: list[dict[str, Any]]) -> int:
        resp = httpx.post(
            f"{gw.url}/v1beta/models/gem-via-openai:countTokens",
            json={"contents": [{"role": "user", "parts": parts}]},
            headers={"x-goog-api-key": key},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return int(resp.json()["totalTokens"])

    text = {"text": "what is this?"}
    bmp = count([text, {"inlineData": {"mimeType": "image/bmp", "data": "aGk="}}])
    remote = count([text, {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}])
    assert bmp == remote == count([text]) + 2833 + 4 * 5667


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%"}}]}]},
            "Invalid value at 'generateContentRequest.contents[0].parts[0].inlineData.data': "
            "is not valid base64",
        ),
        (
            {"contents": [{"parts": [{"text": "hi"}]}],
             "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PIXEL}}]}},
            "generateContentRequest.systemInstruction.parts[0]",
        ),
        (
            {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": 3}},
            "generateContentRequest.generationConfig.temperature",
        ),
        (
            {"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"googleSearch": {}}]},
            "generateContentRequest.tools[0].googleSearch",
        ),
        (
            {"contents": [{"parts": [{"text": "hi"}]}], "bogus": 1},
            "Unknown name \"bogus\" at 'generateContentRequest'",
        ),
    ],
)
def test_count_tokens_of_a_whole_request_names_the_field_sent(
    gw: Gateway, key: str, inner: dict[str, Any], message: str
) -> None:
    # A refusal inside generateContentRequest names the path the caller wrote, not the one the
    # same field has at the top of a generateContent body.
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:countTokens",
        json={"generateContentRequest": inner},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]["message"]


def test_embed_content(client: genai.Client) -> None:
    result = client.models.embed_content(
        model="text-embedding-3-small",
        contents=["first text", "second text"],
        config=types.EmbedContentConfig(output_dimensionality=16, task_type="RETRIEVAL_DOCUMENT"),
    )
    assert result.embeddings is not None and len(result.embeddings) == 2
    assert all(len(e.values or []) == 16 for e in result.embeddings)
    assert result.embeddings[0].values != result.embeddings[1].values


def test_embed_content_sends_task_type_and_title_to_gemini(client: genai.Client, mock_upstream: Mock) -> None:
    # The SDK's task_type and title reach Gemini on every request of the batch, and change the
    # vectors, as Google's do.
    marker = new_marker()
    texts = [f"the manual mock:capture={marker}", "the appendix"]
    hinted = client.models.embed_content(
        model="gemini-embedding-001", contents=texts,
        config=types.EmbedContentConfig(
            task_type="RETRIEVAL_DOCUMENT", title="Guide", output_dimensionality=8
        ),
    )
    [record] = captured(mock_upstream, marker)
    sent = [(r.get("taskType"), r.get("title")) for r in record["body"]["requests"]]
    assert sent == [("RETRIEVAL_DOCUMENT", "Guide"), ("RETRIEVAL_DOCUMENT", "Guide")]
    plain = client.models.embed_content(
        model="gemini-embedding-001", contents=texts, config=types.EmbedContentConfig(output_dimensionality=8)
    )
    assert hinted.embeddings is not None and plain.embeddings is not None
    assert hinted.embeddings[0].values != plain.embeddings[0].values


@pytest.mark.parametrize(("task_type", "input_type"), [("RETRIEVAL_QUERY", "search_query"),
                                                       ("CLUSTERING", "clustering"),
                                                       ("SEMANTIC_SIMILARITY", "search_document")])
def test_embed_content_task_type_is_cohere_input_type(
    client: genai.Client, mock_upstream: Mock, task_type: str, input_type: str
) -> None:
    marker = new_marker()
    result = client.models.embed_content(
        model="embed-v4", contents=f"where? mock:capture={marker}",
        config=types.EmbedContentConfig(task_type=task_type),
    )
    assert result.embeddings is not None and len(result.embeddings) == 1
    [record] = captured(mock_upstream, marker)
    assert record["body"]["input_type"] == input_type


def test_embed_content_hints_are_not_sent_to_openai(client: genai.Client, mock_upstream: Mock) -> None:
    # OpenAI's embeddings take no such hint (and refuse unknown fields): accepted, not sent.
    marker = new_marker()
    result = client.models.embed_content(
        model="text-embedding-3-small", contents=f"a document mock:capture={marker}",
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Guide"),
    )
    assert result.embeddings is not None and len(result.embeddings) == 1
    [record] = captured(mock_upstream, marker)
    assert set(record["body"]) <= {"model", "input", "encoding_format", "dimensions"}


def test_embed_content_title_needs_a_document_task_type(client: genai.Client, mock_upstream: Mock) -> None:
    marker = new_marker()
    with pytest.raises(errors.ClientError) as info:
        client.models.embed_content(
            model="gemini-embedding-001", contents=f"a query mock:capture={marker}",
            config=types.EmbedContentConfig(task_type="RETRIEVAL_QUERY", title="Guide"),
        )
    assert info.value.code == 400 and "RETRIEVAL_DOCUMENT" in str(info.value.message)
    assert captured(mock_upstream, marker, timeout=0.5) == []


def test_embed_content_single(gw: Gateway, key: str) -> None:
    resp = httpx.post(
        f"{gw.url}/v1beta/models/text-embedding-3-small:embedContent",
        json={"content": {"parts": [{"text": "one text"}]}, "output_dimensionality": 8},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["embedding"]["values"]) == 8


@pytest.mark.parametrize("method", ["embedContent", "batchEmbedContents"])
def test_embed_content_auto_truncate_takes_a_boolean(gw: Gateway, key: str, method: str) -> None:
    """Vertex AI's autoTruncate is checked, not sent: a value of another type is a 400 naming it."""
    def ask(value: Any) -> httpx.Response:
        request = {"content": {"parts": [{"text": "one text"}]}, "autoTruncate": value}
        body = request if method == "embedContent" else {"requests": [request]}
        return httpx.post(f"{gw.url}/v1beta/models/text-embedding-3-small:{method}", json=body,
                          headers={"x-goog-api-key": key}, timeout=10)

    for value in ("yes", {}, 1):
        resp = ask(value)
        assert resp.status_code == 400, resp.text
        assert "autoTruncate' (TYPE_BOOL)" in resp.json()["error"]["message"]
    assert ask(False).status_code == 200


def test_embed_content_refuses_a_chat_model(gw: Gateway, key: str) -> None:
    # gemini-2.5-flash is served by gpt-4o-mini, a chat model in the catalog: never sent.
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gemini-2.5-flash:embedContent",
        json={"content": {"parts": [{"text": "one text"}]}},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "is a chat model" in error["message"]


# -- keys ----------------------------------------------------------------------------------------


def test_key_in_the_query_string(gw: Gateway, key: str) -> None:
    body = {"contents": [{"parts": [{"text": "hello by query key"}]}]}
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:generateContent?key={key}", json=body, timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert "hello by query key" in resp.json()["candidates"][0]["content"]["parts"][0]["text"]
    streamed = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:streamGenerateContent?alt=sse&key={key}",
        json=body,
        timeout=10,
    )
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.startswith("data: {") and '"finishReason":"STOP"' in streamed.text


@pytest.mark.parametrize("name", ["%6Bey", "%6b%65%79", "k%65y"])
def test_a_percent_encoded_key_name_is_the_key(gw: Gateway, key: str, name: str) -> None:
    """The query is decoded as a form is: an encoded ``key`` is the same parameter."""
    body = {"contents": [{"parts": [{"text": "hello by encoded name"}]}]}
    resp = httpx.post(f"{gw.url}/v1beta/models/gem-via-openai:generateContent?{name}={key}", json=body,
                      timeout=10)
    assert resp.status_code == 200, resp.text
    assert "hello by encoded name" in resp.json()["candidates"][0]["content"]["parts"][0]["text"]


@pytest.mark.parametrize("query", ["key={key}&key=sk-sb-other", "key={key}&%6Bey={key}",
                                   "alt=sse&key=&key={key}"])
def test_a_key_given_twice_is_400_naming_it(gw: Gateway, key: str, query: str) -> None:
    resp = httpx.post(f"{gw.url}/v1beta/models/gem-via-openai:streamGenerateContent?{query.format(key=key)}",
                      json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "'key' is given 2 times" in error["message"] and key not in resp.text


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent"])
@pytest.mark.parametrize("query", ["alt=sse&alt=json", "alt=json&key={key}&alt=sse", "alt=sse&%61lt=sse"])
def test_an_alt_given_twice_is_400_naming_it(gw: Gateway, key: str, method: str, query: str) -> None:
    """Which answer format was meant is not guessed (neither the first nor the last wins), as
    with a key given twice."""
    resp = httpx.post(f"{gw.url}/v1beta/models/gem-via-openai:{method}?{query.format(key=key)}",
                      json={"contents": [{"parts": [{"text": "hi"}]}]}, headers={"x-goog-api-key": key},
                      timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "the query parameter 'alt' is given 2 times; give it once"


@pytest.mark.parametrize(
    "headers, url_key",
    [({}, None), ({"x-goog-api-key": "sk-sb-not-a-real-key"}, None), ({}, "AIzaSyNotAGatewayKey")],
)
def test_no_or_wrong_key_is_401_in_google_format(
    gw: Gateway, headers: dict[str, str], url_key: str | None
) -> None:
    query = f"?key={url_key}" if url_key else ""
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-openai:generateContent{query}",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=headers,
        timeout=10,
    )
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED" and error["message"]
    if not headers and not url_key:  # the hint names what a Gemini client sends
        assert "x-goog-api-key" in error["message"] and "Authorization" not in error["message"]


def test_sdk_sees_a_client_error_without_key(gw: Gateway) -> None:
    anonymous = genai.Client(api_key="wrong-key", http_options={"base_url": gw.url})
    with pytest.raises(errors.ClientError) as info:
        anonymous.models.generate_content(model="gem-via-openai", contents="hi")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, status, phrase",
    [
        (
            "/v1beta/models/bad%20name:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}]},
            400,
            "malformed",
        ),
        ("/v1beta/models/:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}, 400, "malformed"),
        (
            "/v1beta/models/no-such-model:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}]},
            404,
            "no-such-model",
        ),
        ("/v1beta/models/gem-via-openai:summonDragons", {}, 404, "summonDragons"),
        ("/v1beta/models/gem-via-openai", {}, 404, "not served"),
        ("/v1beta/models/gem-via-openai:generateContent", {"contents": []}, 400, "contents is not specified"),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}},
            400,
            "generationConfig.temperature' (TYPE_FLOAT)",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 3}},
            400,
            "out of range",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "bogus": 1},
            400,
            'Unknown name "bogus"',
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"txt": "x"}]}]},
            400,
            "contents[0].parts[0]",
        ),
        ("/v1beta/models/gem-via-openai:generateContent", {"contents": "hello"}, 400, "TYPE_ARRAY"),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"role": "robot", "parts": [{"text": "x"}]}]},
            400,
            "valid role",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]},
            400,
            "googleSearch",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]},
            400,
            "base64",
        ),
        (  # padding past the data, and data of only spaces: refused at the part, not downstream
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA="}}]}]},
            400,
            "'contents[0].parts[0].inlineData.data': is not valid base64",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"inlineData": {"mimeType": "text/plain", "data": "  "}}]}]},
            400,
            "'contents[0].parts[0].inlineData.data': is not valid base64",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"parts": [{"fileData": {"fileUri": "gs://bucket/cat.png"}}]}]},
            400,
            "fileUri",
        ),
        (
            "/v1beta/models/gem-via-openai:generateContent",
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
            400,
            "answers no functionCall",
        ),
        (
            "/v1beta/models/text-embedding-3-small:batchEmbedContents",
            {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]},
            400,
            "not the model",
        ),
    ],
)
def test_bad_requests_answer_in_google_format(
    gw: Gateway, key: str, path: str, body: Any, status: int, phrase: str
) -> None:
    resp = httpx.post(f"{gw.url}{path}", json=body, headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == status
    assert error["status"] == {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}[status]
    assert phrase in error["message"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1beta/models", 404),  # listing models: not served
    ("GET", "/v1beta/models/gem-via-openai", 404),
    ("POST", "/v1beta/cachedContents", 404),
    ("POST", "/v1beta/files", 404),
    ("GET", "/v1beta/models/gem-via-openai:generateContent", 405),
    ("PUT", "/v1beta/models/gem-via-openai:streamGenerateContent", 405),
])
def test_what_is_not_served_under_v1beta_answers_in_google_format(
    gw: Gateway, key: str, method: str, path: str, status: int
) -> None:
    resp = httpx.request(method, f"{gw.url}{path}", headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == status, resp.text
    assert set(resp.json()) == {"error"}
    error = resp.json()["error"]
    assert error["code"] == status and error["status"] == "NOT_FOUND" and error["message"]
    if status == 405:
        assert resp.headers["allow"] == "POST"
    # OpenAI's model read under /v1/models/ is not Gemini's to answer.
    openai_read = httpx.get(f"{gw.url}/v1/models/gem-via-openai", headers={"Authorization": f"Bearer {key}"},
                            timeout=10)
    assert openai_read.status_code == 200 and openai_read.json()["object"] == "model"


def test_malformed_json_and_content_type(gw: Gateway, key: str) -> None:
    url = f"{gw.url}/v1beta/models/gem-via-openai:generateContent"
    bad = httpx.post(
        url, content=b"{nope", headers={"x-goog-api-key": key, "content-type": "application/json"}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    text = httpx.post(
        url, content=b"hi", headers={"x-goog-api-key": key, "content-type": "text/plain"}, timeout=10
    )
    assert text.status_code == 415 and text.json()["error"]["code"] == 415
    big = httpx.post(url, content=b"x" * (300 * 1024), headers={"x-goog-api-key": key}, timeout=10)
    assert big.status_code == 413 and big.json()["error"]["code"] == 413
    # The server keeps serving.
    ok = httpx.post(
        url,
        json={"contents": [{"parts": [{"text": "still here"}]}]},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert ok.status_code == 200


def test_sdk_raises_client_error_for_bad_fields(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(
            model="gem-via-openai", contents="hi", config=types.GenerateContentConfig(candidate_count=99)
        )
    assert info.value.code == 400 and "candidateCount" in (info.value.message or "")


# -- upstream errors -----------------------------------------------------------------------------


def test_upstream_rate_limit(client: genai.Client, model: str) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=model, contents="mock:status=429 mock:retry_after=7")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    assert info.value.details["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    ]


def test_upstream_failure_mid_stream(client: genai.Client, model: str) -> None:
    received: list[str] = []
    with pytest.raises(errors.APIError) as info:
        for chunk in client.models.generate_content_stream(
            model=model, contents="a longer answer please mock:fail_after=4"
        ):
            received.append(chunk.text or "")
    assert received  # text arrived before the failure
    assert info.value.code >= 500


# -- the chain -----------------------------------------------------------------------------------


def _issue(gw: Gateway, **body: Any) -> str:
    resp = httpx.post(
        f"{gw.url}/admin/v1/keys", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def test_the_keys_limits_and_model_rules_apply(gw: Gateway) -> None:
    limited = genai.Client(
        api_key=_issue(gw, models=["gem-via-openai"], rpm_limit=1), http_options={"base_url": gw.url}
    )
    assert limited.models.generate_content(model="gem-via-openai", contents="first").text
    with pytest.raises(errors.ClientError) as slow:
        limited.models.generate_content(model="gem-via-openai", contents="second")
    assert slow.value.code == 429 and slow.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ClientError) as denied:
        limited.models.count_tokens(model="gem-via-anthropic", contents="not mine")
    assert denied.value.code == 403 and denied.value.status == "PERMISSION_DENIED"


# -- the Gemini CLI ------------------------------------------------------------------------------

# The shapes the Gemini CLI sends (through the JS SDK): its chat generation config, function
# declarations as parametersJsonSchema, call ids echoed in the function responses, thoughts and
# signatures in the replayed history, and streaming with ?alt=sse and x-goog-api-key.
CLI_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "read_file",
                "description": "Reads a file",
                "parametersJsonSchema": {
                    "type": "object",
                    "properties": {"absolute_path": {"type": "string"}},
                    "required": ["absolute_path"],
                },
            },
            {
                "name": "run_shell_command",
                "description": "Runs a command",
                "parametersJsonSchema": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
            },
        ]
    }
]
CLI_CONFIG = {
    "temperature": 1,
    "topP": 0.95,
    "topK": 64,
    "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192},
}


def _cli_stream(gw: Gateway, key: str, model: str, contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = {
        "contents": contents,
        "systemInstruction": {"role": "user", "parts": [{"text": "You are a CLI agent."}]},
        "tools": CLI_TOOLS,
        "generationConfig": CLI_CONFIG,
    }
    resp = httpx.post(
        f"{gw.url}/v1beta/models/{model}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": key, "User-Agent": "GeminiCLI/0.20.0/gemini-2.5-pro (linux; x64)"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    events = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events and all("candidates" in e for e in events)
    return events


@pytest.mark.parametrize("model", ["gemini-2.5-pro", "gemini-2.5-flash"])
def test_gemini_cli_request_shapes(gw: Gateway, key: str, model: str) -> None:
    ask = {"role": "user", "parts": [{"text": "Show me README.md"}]}
    first = _cli_stream(gw, key, model, [ask])
    # What the CLI checks: a finish reason, and a whole function call with an id to answer.
    assert first[-1]["candidates"][0]["finishReason"] == "STOP"
    calls = [
        p["functionCall"]
        for e in first
        for p in e["candidates"][0]["content"]["parts"]
        if "functionCall" in p
    ]
    assert len(calls) == 1 and calls[0]["name"] == "read_file" and calls[0]["id"]
    history = [
        ask,
        {
            "role": "model",
            "parts": [
                {"text": "Let me look.", "thought": True},
                {"functionCall": calls[0], "thoughtSignature": "c2lnbmF0dXJl"},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": calls[0]["id"],
                        "name": "read_file",
                        "response": {"output": "# Switchboard"},
                    }
                }
            ],
        },
    ]
    second = _cli_stream(gw, key, model, history)
    text = "".join(p.get("text", "") for e in second for p in e["candidates"][0]["content"]["parts"])
    assert "# Switchboard" in text
    assert second[-1]["candidates"][0]["finishReason"] == "STOP"
    assert second[-1]["usageMetadata"]["promptTokenCount"] > 0


# -- labels, thought-only turns, v1alpha -------------------------------------------------------


@pytest.mark.parametrize("labels", [{"team": 1}, {"team": "search", "cost": None}, {"a": ["x"]}, ["team"]])
def test_labels_take_only_strings(gw: Gateway, key: str, labels: Any) -> None:
    """Google's labels are a map of strings: another value is Google's 400, though labels are not sent."""
    resp = httpx.post(
        f"{gw.url}/v1beta/models/gem-via-gemini:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}], "labels": labels},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "Invalid value at 'labels" in error["message"]


def test_string_labels_are_accepted_and_not_sent(client: genai.Client, mock_upstream: Mock) -> None:
    marker = new_marker()
    response = client.models.generate_content(
        model="gem-via-gemini", contents=f"hi mock:capture={marker}",
        config=types.GenerateContentConfig(labels={"team": "search"}),
    )
    assert response.text
    [record] = captured(mock_upstream, marker)
    assert "labels" not in record["body"]


def test_a_request_of_only_thoughts_is_400_naming_contents(gw: Gateway, key: str, model: str) -> None:
    resp = httpx.post(
        f"{gw.url}/v1beta/models/{model}:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi", "thought": True}]},
                           {"role": "model", "parts": [{"text": "hmm", "thought": True}]}]},
        headers={"x-goog-api-key": key},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid value at 'contents'") and "thought" in error["message"]


@pytest.mark.parametrize("model", ["gem-via-openai", "gem-via-anthropic", "gem-via-gemini"])
def test_a_user_content_of_only_thoughts_is_no_turn(
    client: genai.Client, mock_upstream: Mock, model: str
) -> None:
    """As a model content of only thoughts: dropped, not sent as an empty user turn."""
    marker = new_marker()
    first, last = f"hi mock:capture={marker}", "and one more thing"
    response = client.models.generate_content(model=model, contents=[
        types.Content(role="user", parts=[types.Part.from_text(text=first)]),
        types.Content(role="user", parts=[types.Part(text="pondering", thought=True)]),
        types.Content(role="user", parts=[types.Part.from_text(text=last)]),
    ])
    assert response.text
    [record] = captured(mock_upstream, marker)
    body = orjson.dumps(record["body"]).decode()
    assert "pondering" not in body and "(no content)" not in body and '"text":""' not in body
    assert first in body and last in body
    if model == "gem-via-openai":
        sent = record["body"]["messages"]
        assert sent == [{"role": "user", "content": first}, {"role": "user", "content": last}]


def test_v1alpha_is_served_as_v1beta(gw: Gateway, key: str) -> None:
    """The SDK's api_version='v1alpha' carries the same bodies for these methods."""
    client = genai.Client(api_key=key, http_options={"base_url": gw.url, "api_version": "v1alpha",
                                                     "timeout": 30_000})
    response = client.models.generate_content(model="gem-via-openai", contents="Say hello to v1alpha")
    assert response.text and "hello to v1alpha" in response.text
    assert client.models.count_tokens(model="gem-via-openai", contents="hi").total_tokens
    # What is not served there answers in Google's shape, as under /v1beta/.
    with pytest.raises(errors.ClientError) as info:
        client.models.list()
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    resp = httpx.get(f"{gw.url}/v1alpha/models/gem-via-openai:generateContent",
                     headers={"x-goog-api-key": key}, timeout=10)
    assert resp.status_code == 405 and resp.json()["error"]["status"] == "NOT_FOUND"


def test_thought_signatures_are_not_sent_to_openai(client: genai.Client, mock_upstream: Mock) -> None:
    """A history a Gemini model wrote, continued on OpenAI: the calls' signatures (Google's
    extension of OpenAI's format) are not sent there, where unknown message keys may be refused."""
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AUTO_CALLS
    )
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Oslo?")])
    first = client.models.generate_content(model="gem3", contents=[question], config=config)
    assert first.candidates and first.candidates[0].content and first.candidates[0].content.parts
    assert first.candidates[0].content.parts[0].thought_signature
    marker = new_marker()
    answer = types.Content(role="user", parts=[
        types.Part.from_function_response(
            name="get_weather", response={"output": f"cold mock:capture={marker}"}
        )
    ])
    second = client.models.generate_content(
        model="gem-via-openai", contents=[question, first.candidates[0].content, answer], config=config
    )
    assert second.text
    [record] = captured(mock_upstream, marker)
    [call] = record["body"]["messages"][1]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and set(call) == {"id", "type", "function"}



@pytest.mark.parametrize(
    ("level", "sent"), [("MINIMAL", "low"), ("LOW", "low"), ("MEDIUM", "high"), ("HIGH", "high")]
)
def test_a_thinking_level_gemini_3_pro_lacks_is_sent_as_the_nearest_it_takes(
    client: genai.Client, mock_upstream: Mock, level: str, sent: str
) -> None:
    """Gemini 3 Pro takes thinkingLevel LOW and HIGH only (Google answers 400 for MINIMAL and
    MEDIUM): a client's own level goes through the same mapping as reasoning_effort does
    (docs/providers.md), so the caller gets an answer, not Google's 400."""
    marker = new_marker()
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_level=level))
    question = f"hi mock:capture={marker}"
    reply = client.models.generate_content(model="gem3", contents=[question], config=config)
    assert reply.text
    thinking = captured(mock_upstream, marker)[0]["body"]["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingLevel"] == sent


@pytest.mark.parametrize(("model", "thinking"), [
    ("gem3", types.ThinkingConfig(thinking_level="LOW")),
    ("gem-via-gemini", types.ThinkingConfig(thinking_budget=2048)),
    ("gem-via-gemini", types.ThinkingConfig(thinking_budget=2048, include_thoughts=False)),
], ids=["level", "budget", "include-false"])
def test_thinking_without_include_thoughts_asks_google_for_no_summaries(
    client: genai.Client, mock_upstream: Mock, model: str, thinking: types.ThinkingConfig
) -> None:
    """A client that sets how much to think but not includeThoughts gets no thought parts: the
    gateway does not ask Google to write (and bill) summaries the reply would leave out."""
    marker = new_marker()
    config = types.GenerateContentConfig(thinking_config=thinking)
    reply = client.models.generate_content(model=model, contents=[f"hi mock:capture={marker}"], config=config)
    assert reply.text
    assert not any(part.thought for part in reply.candidates[0].content.parts)
    sent = captured(mock_upstream, marker)[0]["body"]["generationConfig"]["thinkingConfig"]
    assert "includeThoughts" not in sent, sent
    assert "switchboard_thoughts" not in captured(mock_upstream, marker)[0]["body"]


@pytest.mark.parametrize(("model", "thinking"), [
    ("gem-via-gemini", types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)),
    ("gem3", types.ThinkingConfig(include_thoughts=True)),
], ids=["budget", "include-only"])
def test_include_thoughts_is_passed_on_and_the_thoughts_come_back(
    client: genai.Client, mock_upstream: Mock, model: str, thinking: types.ThinkingConfig
) -> None:
    """includeThoughts is the client's own switch: sent to Google as given (alone too: Gemini 3
    models think by default), and the thought summary comes back as a thought part."""
    marker = new_marker()
    config = types.GenerateContentConfig(thinking_config=thinking)
    reply = client.models.generate_content(model=model, contents=[f"hi mock:capture={marker}"], config=config)
    sent = captured(mock_upstream, marker)[0]["body"]["generationConfig"]["thinkingConfig"]
    assert sent["includeThoughts"] is True, sent
    assert any(part.thought for part in reply.candidates[0].content.parts)
