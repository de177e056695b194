"""Provider type 'vertex' end to end: service-account auth against the mock's token endpoint,
then the Gemini API on Vertex AI paths, driven through the gateway with the openai SDK."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.test_provider_gemini import PIXEL, WEATHER_TOOL
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

EMAIL = "switchboard-e2e@mock-project.iam.gserviceaccount.com"
ROGUE_EMAIL = "rogue@mock-project.iam.gserviceaccount.com"
BOM_EMAIL = "bom@mock-project.iam.gserviceaccount.com"
DOWN_EMAIL = "down@mock-project.iam.gserviceaccount.com"


def write_service_account(path: Path, mock: Mock, email: str, publish: bool, token_query: str = ""
                          ) -> rsa.RSAPrivateKey:
    """A service-account key file whose token_uri is the mock (with ``token_query``, directives
    for the token endpoint); ``publish`` registers its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = secrets.token_hex(20)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "mock-project", "private_key_id": kid, "private_key": pem,
        "client_email": email, "client_id": "1234567890",
        "token_uri": f"{mock.url}/vertex/token{token_query}",
    }))
    if publish:
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        answer = httpx.post(f"{mock.url}/vertex/keys",
                            json={"client_email": email, "private_key_id": kid, "public_key_pem": public})
        assert answer.status_code == 204
    return key


@pytest.fixture(scope="module")
def key_files(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vertex-keys")
    good, rogue, bom = folder / "sa.json", folder / "rogue.json", folder / "bom.json"
    down = folder / "down.json"
    write_service_account(good, mock_upstream, EMAIL, publish=True)
    # Its token endpoint is down (HTTP 503): Google's OAuth service, not the key.
    write_service_account(down, mock_upstream, DOWN_EMAIL, publish=True, token_query="?mock:status=503")
    write_service_account(rogue, mock_upstream, ROGUE_EMAIL, publish=False)
    # Its token endpoint answers with a UTF-8 byte order mark before the JSON.
    write_service_account(bom, mock_upstream, BOM_EMAIL, publish=True, token_query="?mock:bom=1")
    return {"good": good, "rogue": rogue, "bom": bom, "down": down}


@pytest.fixture(scope="module")
def vertex_gateway(
    mock_upstream: Mock, key_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "vertex", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "vertex_location": "us-central1",
             "credentials_file": str(key_files["good"])},
            # vertex_project omitted: it comes from the key file.
            {"name": "vertex-global", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_location": "global", "credentials_file": str(key_files["good"])},
            {"name": "vertex-rogue", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "credentials_file": str(key_files["rogue"])},
            {"name": "vertex-bom", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "credentials_file": str(key_files["bom"])},
            {"name": "vertex-down", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "credentials_file": str(key_files["down"])},
        ],
        "models": [
            {"name": "vertex-flash", "provider": "vertex", "model": "gemini-2.5-flash"},
            {"name": "vertex-global-flash", "provider": "vertex-global", "model": "gemini-2.5-flash"},
            {"name": "vertex-embed", "provider": "vertex", "model": "text-embedding-005"},
            {"name": "gemini-embed", "provider": "vertex", "model": "gemini-embedding-001"},
            # A group with a deployment that takes one input per call and one that takes many.
            {"name": "embed-either", "provider": "vertex", "model": "gemini-embedding-001"},
            {"name": "embed-either", "provider": "vertex", "model": "text-embedding-005"},
            {"name": "vertex-rogue", "provider": "vertex-rogue", "model": "gemini-2.5-flash"},
            {"name": "vertex-bom", "provider": "vertex-bom", "model": "gemini-2.5-flash"},
            {"name": "vertex-down", "provider": "vertex-down", "model": "gemini-2.5-flash"},
            {"name": "vertex-down-alone", "provider": "vertex-down", "model": "gemini-2.5-flash"},
        ],
        "router": {"fallbacks": {"vertex-down": ["vertex-flash"]}, "num_retries": 1,
                   "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("vertex"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(vertex_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=vertex_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, text: str, model: str = "vertex-flash", **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_a_malformed_function_call_with_nothing_said_is_an_upstream_error(
    client: openai.OpenAI, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": "weather in Paris? mock:malformed_call=1"}]
    with pytest.raises(openai.APIError) as info:
        reply = client.chat.completions.create(model="vertex-flash", messages=messages, tools=[WEATHER_TOOL],
                                               stream=stream)
        if stream:
            list(reply)
    assert "MALFORMED_FUNCTION_CALL" in str(info.value)
    if not stream:
        assert isinstance(info.value, openai.InternalServerError) and info.value.status_code == 502


def test_chat_non_stream(client: openai.OpenAI) -> None:
    reply = ask(client, "Hello Vertex", max_tokens=100, temperature=0)
    assert reply.choices[0].message.content == "Hello from the Switchboard mock. You said: Hello Vertex"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens == 9


def test_usage_totals_and_cached_tokens(client: openai.OpenAI) -> None:
    reply = ask(client, "count me mock:cached_tokens=2")
    chunks = list(ask(client, "count me mock:cached_tokens=2", stream=True,
                      stream_options={"include_usage": True}))
    words = len(reply.choices[0].message.content.split(" "))
    for usage in (reply.usage, chunks[-1].usage):
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens > 0 and usage.completion_tokens == words
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert usage.prompt_tokens_details.cached_tokens == 2


def test_global_location_and_project_from_key_file(client: openai.OpenAI) -> None:
    reply = ask(client, "Hello global", model="vertex-global-flash")
    assert reply.choices[0].message.content.endswith("You said: Hello global")


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(ask(client, "stream it", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the Switchboard mock. You said: stream it"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tool_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Lyon?"}]
    first = client.chat.completions.create(model="vertex-flash", messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}]
    final = client.chat.completions.create(model="vertex-flash", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == 'The tool returned: {"temp_c":18}'


def test_tool_name_vertex_refuses_is_a_400_naming_it(client: openai.OpenAI) -> None:
    # Vertex AI's rule is Gemini's with up to 128 characters (the gateway's own limit).
    for name in ("9lives", ".hidden"):
        bad: Any = {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        with pytest.raises(openai.BadRequestError) as exc:
            ask(client, "weather?", tools=[bad])
        assert exc.value.body["param"] == "tools[0].function.name"  # type: ignore[index]
        assert exc.value.code == "invalid_value" and "vertex" in exc.value.message


def test_image_data_url(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="vertex-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]}])
    assert reply.choices[0].message.content.endswith("You said: What is this? (attachments: image/png)")


def test_image_http_url(client: openai.OpenAI, mock_upstream: Mock) -> None:
    reply = client.chat.completions.create(model="vertex-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
    ]}])
    assert "(attachments: image/png)" in reply.choices[0].message.content


def test_json_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    reply = ask(client, "json", response_format=fmt)
    assert "answer" in json.loads(reply.choices[0].message.content)


def test_embeddings_with_token_usage(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="vertex-embed", input=["alpha beta", "gamma"], dimensions=12)
    assert [len(d.embedding) for d in result.data] == [12, 12]
    assert result.usage.prompt_tokens == 3


def test_more_embeddings_inputs_than_vertex_takes_are_a_400_naming_input(client: openai.OpenAI) -> None:
    # predict takes at most 250 instances (the mock refuses more, as Vertex AI).
    assert len(client.embeddings.create(model="vertex-embed", input=["x"] * 250).data) == 250
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="vertex-embed", input=["x"] * 251)
    assert info.value.param == "input" and info.value.code == "too_many_inputs"
    assert "at most 250 inputs" in info.value.message


def test_embeddings_send_the_retrieval_hints_on_each_instance(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    # Vertex AI's predict instances take task_type and title, as the canonical extension names them.
    marker = new_marker()
    texts = [f"the manual mock:capture={marker}", "the appendix"]
    hinted = client.embeddings.create(model="vertex-embed", input=texts,
                                      extra_body={"task_type": "RETRIEVAL_DOCUMENT", "title": "Guide"})
    [record] = captured(mock_upstream, marker)
    assert record["body"]["instances"] == [
        {"content": texts[0], "task_type": "RETRIEVAL_DOCUMENT", "title": "Guide"},
        {"content": texts[1], "task_type": "RETRIEVAL_DOCUMENT", "title": "Guide"},
    ]
    plain = client.embeddings.create(model="vertex-embed", input=texts)
    assert hinted.data[0].embedding != plain.data[0].embedding
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="vertex-embed", input="q", extra_body={"task_type": "QUERY"})
    assert (info.value.param, info.value.code) == ("task_type", "invalid_value")


def test_gemini_embedding_001_takes_one_input_per_request(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # Vertex AI's gemini-embedding-001 takes one instance per predict call (the mock refuses more,
    # as Vertex AI): a longer input is refused before the call, naming input.
    assert len(client.embeddings.create(model="gemini-embed", input="alpha beta").data) == 1
    assert len(client.embeddings.create(model="gemini-embed", input=["alpha"]).data) == 1
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemini-embed", input=[f"a mock:capture={marker}", "b", "c"])
    assert info.value.status_code == 400
    assert info.value.param == "input" and info.value.code == "too_many_inputs"
    assert "one input per request" in info.value.message and "'input' has 3" in info.value.message
    assert captured(mock_upstream, marker, timeout=0.5) == []  # nothing was sent
    # In a group with a deployment that takes them all, that one serves, whichever was picked first.
    for _ in range(3):
        both = client.embeddings.create(model="embed-either", input=["alpha", "beta"], dimensions=8)
        assert [len(d.embedding) for d in both.data] == [8, 8]
        assert both.model == "text-embedding-005"


def test_access_token_is_cached(client: openai.OpenAI, mock_upstream: Mock) -> None:
    ask(client, "warm up")
    before = httpx.get(f"{mock_upstream.url}/vertex/stats").json()["issued"][EMAIL]
    for _ in range(3):
        ask(client, "again")
    after = httpx.get(f"{mock_upstream.url}/vertex/stats").json()["issued"][EMAIL]
    assert after == before >= 1


def test_token_answer_with_a_byte_order_mark_still_authenticates(client: openai.OpenAI, mock_upstream: Mock
                                                                  ) -> None:
    reply = ask(client, "Hello BOM", model="vertex-bom")
    assert reply.choices[0].message.content == "Hello from the Switchboard mock. You said: Hello BOM"
    assert httpx.get(f"{mock_upstream.url}/vertex/stats").json()["issued"][BOM_EMAIL] == 1


def test_rate_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "mock:status=429")
    assert info.value.response.headers["retry-after"] == "1"


def test_context_length(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "mock:status=400 mock:error_code=context_length_exceeded")
    assert info.value.code == "context_length_exceeded"


def test_overloaded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "mock:status=503")
    assert info.value.status_code == 503


def test_a_token_endpoint_outage_is_retried_and_fallen_back_from(client: openai.OpenAI) -> None:
    """Google's OAuth service down (HTTP 503) is a server error of the provider, not a refused
    key: the group's fallback answers; alone, the error says what failed."""
    raw = client.chat.completions.with_raw_response.create(
        model="vertex-down", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-switchboard-model"] == "vertex-flash"
    assert raw.headers["x-switchboard-attempts"] == "3"  # two tries of vertex-down, then the fallback
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "hi", model="vertex-down-alone")
    assert info.value.status_code == 502 and info.value.code == "upstream_error"
    assert "token endpoint answered HTTP 503" in info.value.message
    assert info.value.response.headers["x-switchboard-attempts"] == "2"


def test_refused_service_account_is_502(client: openai.OpenAI, key_files: dict[str, Path]) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "hi", model="vertex-rogue")
    assert info.value.status_code == 502
    assert info.value.code == "upstream_authentication_failed"
    assert "Invalid JWT Signature" in info.value.message
    secret = json.loads(key_files["rogue"].read_text())["private_key"]
    body = info.value.response.text
    assert secret.splitlines()[1] not in body and "assertion" not in body


def test_stream_error_before_first_byte(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        list(ask(client, "mock:status=429", stream=True))
