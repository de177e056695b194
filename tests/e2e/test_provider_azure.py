"""Provider type 'azure' end to end: the openai SDK -> gateway -> Azure OpenAI mock, and back.

The mock is strict like Azure: the deployment path, ``api-version`` and the ``api-key`` header
are required, streams open with a prompt-filter chunk that has no choices, and errors use
Azure's bodies and headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
BAD_KEY = "azure-wrong-key-31337"
SAID = "Hello from the Switchboard mock. You said: "
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def azure_config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "az", "type": "azure", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "az-entra", "type": "azure", "api_base": mock.url, "azure_ad_token": "${UPSTREAM_KEY}"},
            {
                "name": "az-old",
                "type": "azure",
                "api_base": mock.url,
                "api_key": "${UPSTREAM_KEY}",
                "api_version": "2024-06-01",
            },
            {"name": "az-bad-key", "type": "azure", "api_base": mock.url, "api_key": BAD_KEY},
        ],
        "models": [
            {"name": "gpt-4o", "provider": "az", "model": "my-gpt4o-deployment"},
            {"name": "gpt-4o-entra", "provider": "az-entra", "model": "my-gpt4o-deployment"},
            {"name": "gpt-4o-old", "provider": "az-old", "model": "my-gpt4o-deployment"},
            {"name": "embedding", "provider": "az", "model": "my-embedding-deployment"},
            {"name": "instruct", "provider": "az", "model": "my-instruct-deployment"},
            {"name": "gpt-4o-misconfigured", "provider": "az-bad-key", "model": "my-gpt4o-deployment"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def azure_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(azure_config(mock_upstream), tmp_path_factory.mktemp("azure"))
    yield gw
    gw.process.stop()


@pytest.fixture
def az(azure_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=azure_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)




# ---- chat -------------------------------------------------------------------------------------


def test_non_stream_answer_and_usage(az: openai.OpenAI) -> None:
    resp = az.chat.completions.create(
        model="gpt-4o", messages=ask("hello azure"), seed=3, max_completion_tokens=50
    )
    assert resp.choices[0].message.content == SAID + "hello azure"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "my-gpt4o-deployment"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 0


def test_entra_id_token_is_sent_as_bearer(az: openai.OpenAI) -> None:
    resp = az.chat.completions.create(model="gpt-4o-entra", messages=ask("token auth"))
    assert resp.choices[0].message.content == SAID + "token auth"


def test_stream_drops_prompt_filter_chunk_and_reports_usage(az: openai.OpenAI) -> None:
    chunks = list(
        az.chat.completions.create(
            model="gpt-4o", messages=ask("stream azure"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.choices for c in chunks[:-1])  # Azure's leading choices-less chunk is gone
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == SAID + "stream azure"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))


def test_stream_without_include_usage(az: openai.OpenAI) -> None:
    chunks = list(az.chat.completions.create(model="gpt-4o", messages=ask("quiet"), stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_old_api_version_streams_without_stream_options(az: openai.OpenAI) -> None:
    # 2024-06-01 refuses stream_options: the gateway does not send it, so there is no usage.
    chunks = list(
        az.chat.completions.create(
            model="gpt-4o-old",
            messages=ask("old version"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SAID + "old version"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("parallel", [False, True])
def test_old_api_version_takes_parallel_tool_calls(az: openai.OpenAI, parallel: bool) -> None:
    # 2024-06-01 refuses parallel_tool_calls (added in 2024-09-01-preview): the gateway does not
    # send it, and keeps the first call of the reply itself when the caller asked for one.
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    chunks = list(
        az.chat.completions.create(
            model="gpt-4o-old",
            messages=ask("weather? mock:parallel_calls=2"),
            tools=[WEATHER_TOOL, other],
            parallel_tool_calls=parallel,
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert {d.index for d in deltas} == ({0, 1} if parallel else {0})
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_round_trip(az: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = ask("weather in Paris?")
    first = az.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    call = (first.choices[0].message.tool_calls or [])[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C"})
    final = az.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 18C"


def test_streamed_tool_call(az: openai.OpenAI) -> None:
    chunks = list(
        az.chat.completions.create(
            model="gpt-4o", messages=ask("weather?"), tools=[WEATHER_TOOL], stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert {d.index for d in deltas} == {0}
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"city": "Paris"}


def test_image_inputs(az: openai.OpenAI, mock_upstream: Mock) -> None:
    resp = az.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "two images"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}"}},
                    {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
                ],
            }
        ],
    )
    # The OpenAI mock echoes every text value it got: both images reached Azure unchanged (Azure
    # fetches http(s) URLs itself, so the gateway does not inline them).
    echoed = resp.choices[0].message.content or ""
    assert "two images" in echoed
    assert f"data:image/png;base64,{PIXEL_PNG}" in echoed
    assert f"{mock_upstream.url}/images/pixel.png" in echoed


def test_json_schema(az: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    resp = az.chat.completions.create(
        model="gpt-4o",
        messages=ask("structured"),
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content or "")["answer"].endswith("structured")


def test_content_filtered_completion_passes_through(az: openai.OpenAI) -> None:
    resp = az.chat.completions.create(model="gpt-4o", messages=ask("mock:error_code=content_filter"))
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content is None


# ---- embeddings and legacy completions --------------------------------------------------------


def test_embeddings(az: openai.OpenAI) -> None:
    resp = az.embeddings.create(model="embedding", input=["a", "b"], dimensions=12)
    assert [len(d.embedding) for d in resp.data] == [12, 12]
    assert resp.model == "my-embedding-deployment"


def test_legacy_completions(az: openai.OpenAI) -> None:
    resp = az.completions.create(model="instruct", prompt="complete me")
    assert resp.choices[0].text == SAID + "complete me"


def test_legacy_completions_stream(az: openai.OpenAI) -> None:
    chunks = list(az.completions.create(model="instruct", prompt="stream me", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == SAID + "stream me"


# ---- errors -----------------------------------------------------------------------------------


def test_rate_limit_carries_retry_after(az: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        az.chat.completions.create(model="gpt-4o", messages=ask("mock:status=429 mock:retry_after=6"))
    headers = exc.value.response.headers
    assert headers.get("retry-after") == "6"
    assert headers.get("retry-after-ms") == "6000"
    assert exc.value.code == "rate_limit_exceeded"  # Azure's "429" is not an OpenAI code
    assert "Please retry after 6 seconds" in exc.value.message


def test_prompt_content_filter_is_a_400(az: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        az.chat.completions.create(
            model="gpt-4o", messages=ask("mock:status=400 mock:error_code=content_filter")
        )
    assert exc.value.code == "content_filter"
    assert "content management policy" in exc.value.message


def test_context_length(az: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        az.chat.completions.create(
            model="gpt-4o", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"


def test_upstream_server_error(az: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        az.chat.completions.create(model="gpt-4o", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502
    assert "server had an error" in exc.value.message


def test_upstream_overloaded(az: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        az.chat.completions.create(model="gpt-4o", messages=ask("mock:status=503"))
    assert exc.value.status_code == 503


def test_upstream_auth_failure_hides_key(az: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        az.chat.completions.create(model="gpt-4o-misconfigured", messages=ask("hi"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    assert BAD_KEY not in exc.value.response.text


def test_mid_stream_failure(az: openai.OpenAI) -> None:
    stream = az.chat.completions.create(model="gpt-4o", messages=ask("mock:fail_after=2 go"), stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
