"""Provider type 'openai-compatible' end to end, each preset pointed at the OpenAI mock.

What the presets change shows at the client: parameters a server would reject are refused by
the gateway with a 400 naming them (or dropped on request), streams from servers that must not
get ``stream_options`` still end properly, and operations a server lacks are refused up front.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask, stream_text
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

BAD_KEY = "compat-wrong-key-2718"
SAID = "Hello from the Switchboard mock. You said: "
PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PRESETS = ("vllm", "ollama", "tgi", "groq", "deepseek", "lmstudio", "together", "openrouter")


def compat_config(mock: Mock) -> dict[str, Any]:
    base = f"{mock.url}/v1"
    providers: list[dict[str, Any]] = [
        {"name": p, "type": "openai-compatible", "preset": p, "api_base": base, "api_key": "${UPSTREAM_KEY}"}
        for p in PRESETS
    ]
    providers.append(
        {
            "name": "bad-key",
            "type": "openai-compatible",
            "preset": "vllm",
            "api_base": base,
            "api_key": BAD_KEY,
        }
    )
    models = [{"name": p, "provider": p, "model": "mock-gpt"} for p in PRESETS]
    models += [
        {"name": "groq-lenient", "provider": "groq", "model": "mock-gpt", "drop_params": True},
        {"name": "ollama-embed", "provider": "ollama", "model": "mock-embedding"},
        {"name": "groq-embed", "provider": "groq", "model": "mock-embedding"},
        {"name": "misconfigured", "provider": "bad-key", "model": "mock-gpt"},
    ]
    return {
        "providers": providers,
        "models": models,
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def compat_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(compat_config(mock_upstream), tmp_path_factory.mktemp("compat"))
    yield gw
    gw.process.stop()


@pytest.fixture
def oc(compat_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=compat_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)






# ---- chat across presets ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_non_stream(oc: openai.OpenAI, preset: str) -> None:
    resp = oc.chat.completions.create(
        model=preset, messages=ask(f"hello {preset}"), max_completion_tokens=64, stop="\n\n"
    )
    assert resp.choices[0].message.content == SAID + f"hello {preset}"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("preset", ["vllm", "ollama", "tgi", "deepseek", "openrouter"])
def test_stream_with_usage(oc: openai.OpenAI, preset: str) -> None:
    chunks = list(
        oc.chat.completions.create(
            model=preset, messages=ask("stream"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert stream_text(chunks) == SAID + "stream"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len((SAID + "stream").split(" "))


def test_usage_numbers_and_cached_tokens_agree_in_stream(oc: openai.OpenAI) -> None:
    plain = oc.chat.completions.create(model="vllm", messages=ask("count my words"))
    chunks = list(
        oc.chat.completions.create(
            model="vllm", messages=ask("count my words"), stream=True, stream_options={"include_usage": True}
        )
    )
    words = len((plain.choices[0].message.content or "").split(" "))
    for usage in (plain.usage, chunks[-1].usage):
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens > 0 and usage.completion_tokens == words
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize("preset", ["groq", "lmstudio", "together"])
def test_stream_for_servers_without_stream_options(oc: openai.OpenAI, preset: str) -> None:
    # stream_options is not sent to these servers; the mock then streams no usage, and the
    # stream still ends cleanly with the text complete.
    chunks = list(
        oc.chat.completions.create(
            model=preset, messages=ask("no options"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert stream_text(chunks) == SAID + "no options"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert all(c.usage is None for c in chunks)


def test_tool_round_trip(oc: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = ask("weather in Paris?")
    first = oc.chat.completions.create(
        model="ollama", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C"})
    final = oc.chat.completions.create(model="ollama", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The tool returned: 18C"


def test_streamed_tool_call(oc: openai.OpenAI) -> None:
    chunks = list(
        oc.chat.completions.create(
            model="vllm", messages=ask("weather?"), tools=[WEATHER_TOOL], tool_choice="required", stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert json.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"city": "Paris"}


@pytest.mark.parametrize("same_index", [1, 0])
def test_parallel_streamed_tool_calls_get_their_own_indices(oc: openai.OpenAI, same_index: int) -> None:
    # Ollama numbers every parallel call 0 (same_index=1); clients would merge them into one call
    # with both argument strings run together. Each gets its own index, as from OpenAI; a server
    # that numbers them already keeps its numbers.
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
    prompt = f"weather and time? mock:parallel_calls=2 mock:same_tool_index={same_index}"
    chunks = list(oc.chat.completions.create(
        model="ollama", messages=ask(prompt), tools=[WEATHER_TOOL, clock], stream=True,
    ))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
        call["id"] += d.id or ""
        call["name"] += (d.function.name or "") if d.function else ""
        call["arguments"] += (d.function.arguments or "") if d.function else ""
    assert sorted(calls) == [0, 1]
    assert [calls[0]["name"], calls[1]["name"]] == ["get_weather", "get_time"]
    assert calls[0]["id"] and calls[1]["id"] and calls[0]["id"] != calls[1]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {"zone": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"]


def test_image_inputs(oc: openai.OpenAI, mock_upstream: Mock) -> None:
    resp = oc.chat.completions.create(
        model="vllm",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL_PNG}"}},
                    {"type": "image_url", "image_url": {"url": f"{mock_upstream.url}/images/pixel.png"}},
                ],
            }
        ],
    )
    echoed = resp.choices[0].message.content or ""  # the OpenAI mock echoes what it received
    assert f"data:image/png;base64,{PIXEL_PNG}" in echoed
    assert f"{mock_upstream.url}/images/pixel.png" in echoed


@pytest.mark.parametrize("preset", ["ollama", "lmstudio"])
def test_http_image_is_inlined_for_servers_that_cannot_fetch(
    oc: openai.OpenAI, mock_upstream: Mock, preset: str
) -> None:
    url = f"{mock_upstream.url}/images/pixel.png"
    resp = oc.chat.completions.create(
        model=preset,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    )
    echoed = resp.choices[0].message.content or ""  # the OpenAI mock echoes what it received
    served = base64.b64encode(httpx.get(url).content).decode()
    assert url not in echoed
    assert echoed.endswith(f"image_url data:image/png;base64,{served}")


def test_json_object_for_json_schema_only_server(oc: openai.OpenAI) -> None:
    # lmstudio takes structured output as json_schema only: json_object is sent as a schema.
    resp = oc.chat.completions.create(
        model="lmstudio", messages=ask("json please"), response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "") == {"answer": SAID + "json please"}


# ---- quirks refused up front ------------------------------------------------------------------


def test_groq_refuses_n_and_logprobs(oc: openai.OpenAI) -> None:
    for kwargs in ({"n": 2}, {"logprobs": True}):
        with pytest.raises(openai.BadRequestError) as exc:
            oc.chat.completions.create(model="groq", messages=ask("hi"), **kwargs)
        assert exc.value.code == "unsupported_parameter"
        assert exc.value.param == next(iter(kwargs))
        assert "preset 'groq'" in exc.value.message


def test_groq_drops_when_asked(oc: openai.OpenAI) -> None:
    resp = oc.chat.completions.create(model="groq-lenient", messages=ask("hi"), n=2, logprobs=True)
    assert len(resp.choices) == 1
    assert resp.choices[0].logprobs is None


def test_ollama_refuses_forced_tool_choice(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(
            model="ollama", messages=ask("hi"), tools=[WEATHER_TOOL], tool_choice="required"
        )
    assert exc.value.param == "tool_choice"


def test_top_k_is_refused_where_the_server_ignores_it(oc: openai.OpenAI, mock_upstream: Mock) -> None:
    # Neither Ollama's OpenAI API nor TGI's Messages API has top_k, and both ignore unknown
    # fields: the model would sample as if it had not been asked. vLLM and LM Studio take it.
    for preset in ("ollama", "tgi"):
        with pytest.raises(openai.BadRequestError) as exc:
            oc.chat.completions.create(model=preset, messages=ask("hi"), extra_body={"top_k": 1})
        assert (exc.value.code, exc.value.param) == ("unsupported_parameter", "top_k")
        assert f"preset '{preset}'" in exc.value.message
        marker = new_marker()
        oc.chat.completions.create(model=preset, messages=ask(f"hi mock:capture={marker}"),
                                   extra_body={"top_k": 1, "drop_params": True})
        assert "top_k" not in captured(mock_upstream, marker)[0]["body"]
    for preset in ("vllm", "lmstudio"):
        marker = new_marker()
        oc.chat.completions.create(model=preset, messages=ask(f"hi mock:capture={marker}"),
                                   extra_body={"top_k": 1})
        assert captured(mock_upstream, marker)[0]["body"]["top_k"] == 1


def test_deepseek_refuses_json_schema(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(
            model="deepseek",
            messages=ask("hi"),
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": {"type": "object"}},
            },
        )
    assert exc.value.param == "response_format"


# ---- embeddings and completions ---------------------------------------------------------------


def test_embeddings(oc: openai.OpenAI) -> None:
    resp = oc.embeddings.create(model="ollama-embed", input=["a", "b"], encoding_format="float")
    assert [d.index for d in resp.data] == [0, 1]


def test_embeddings_unsupported_by_preset(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oc.embeddings.create(model="groq-embed", input="a")
    assert exc.value.code == "unsupported_operation"


def test_legacy_completions_stream(oc: openai.OpenAI) -> None:
    chunks = list(
        oc.completions.create(
            model="vllm", prompt="go on", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == SAID + "go on"
    assert chunks[-1].usage is not None


def test_legacy_completions_refuse_what_the_preset_refuses_in_chat(oc: openai.OpenAI) -> None:
    """n and logit_bias mean the same in legacy completions as in chat: a server that ignores them
    in one ignores them in the other, so the same 400 (not one answer where n were asked for)."""
    for preset, kwargs in (("tgi", {"n": 2}), ("ollama", {"n": 3}), ("lmstudio", {"n": 2}),
                           ("tgi", {"logit_bias": {"50256": -100}}), ("ollama", {"logit_bias": {"1": 5}})):
        with pytest.raises(openai.BadRequestError) as exc:
            oc.completions.create(model=preset, prompt="go on", **kwargs)
        assert exc.value.code == "unsupported_parameter"
        assert exc.value.param == next(iter(kwargs))
        assert f"preset '{preset}'" in exc.value.message


def test_legacy_completions_keep_what_asks_for_nothing_or_is_dropped(
    oc: openai.OpenAI, mock_upstream: Mock
) -> None:
    assert oc.completions.create(model="tgi", prompt="go on", n=1).choices[0].text == SAID + "go on"
    dropped = oc.completions.create(model="ollama", prompt="go on", n=2, logit_bias={"1": 5},
                                    extra_body={"drop_params": True})
    assert [c.text for c in dropped.choices] == [SAID + "go on"]
    marker = new_marker()
    oc.completions.create(model="vllm", prompt=f"go on mock:capture={marker}", n=2)  # vLLM honours n
    assert captured(mock_upstream, marker)[0]["body"]["n"] == 2


# ---- errors -----------------------------------------------------------------------------------


def test_rate_limit(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        oc.chat.completions.create(model="vllm", messages=ask("mock:status=429 mock:retry_after=4"))
    assert exc.value.response.headers.get("retry-after") == "4"


def test_context_length(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(
            model="tgi", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"


def test_upstream_server_error(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        oc.chat.completions.create(model="ollama", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502


def test_upstream_auth_failure_hides_key(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        oc.chat.completions.create(model="misconfigured", messages=ask("hi"))
    assert exc.value.status_code == 502
    assert BAD_KEY not in exc.value.response.text


def test_disconnect_mid_stream_is_an_error(oc: openai.OpenAI) -> None:
    stream = oc.chat.completions.create(model="vllm", messages=ask("mock:disconnect_after=3 go"), stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
