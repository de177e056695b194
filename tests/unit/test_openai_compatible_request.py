"""openai-compatible presets: what each server is sent, and config resolution.

Quirks per preset are documented in providers/openai_compatible.py with their sources (Ollama's
OpenAI-compatibility page and openai.go, TGI's ChatRequest, Groq's OpenAI-compatibility page,
DeepSeek's and LM Studio's API references).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import registry
from switchboard.providers.openai_compatible import PRESETS, SPEC, Options
from switchboard.providers.target import Target

ADAPTER = SPEC.adapter
USER = {"role": "user", "content": "hi"}


def target(preset: str = "custom", drop_params: bool = False, **options: Any) -> Target:
    return Target(
        name="m",
        model="llama3",
        provider="local",
        provider_type="openai-compatible",
        api_base="http://localhost:9999/v1",
        options=Options(preset=preset, **options),  # type: ignore[arg-type]
        timeouts=Timeouts(),
        drop_params=drop_params,
    )


def sent(preset: str, **params: Any) -> dict[str, Any]:
    upstream = ADAPTER.chat_request({"model": "m", "messages": [USER], **params}, target(preset))
    return dict(orjson.loads(upstream.body or b""))


def test_custom_passes_everything_through() -> None:
    params = {
        "n": 2,
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 1,
        "max_completion_tokens": 5,
        "logit_bias": {"1": 1},
        "user": "u",
        "stop": "x",
    }
    upstream = ADAPTER.chat_request({"model": "m", "messages": [USER], **params}, target())
    assert upstream.url == "http://localhost:9999/v1/chat/completions"
    assert orjson.loads(upstream.body or b"") == {"model": "llama3", "messages": [USER], **params}


@pytest.mark.parametrize("preset", ["custom", "vllm", "ollama", "tgi", "deepseek", "openrouter"])
def test_stream_usage_requested(preset: str) -> None:
    body = sent(preset, stream=True)
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("preset", ["groq", "together", "lmstudio"])
def test_stream_options_never_sent(preset: str) -> None:
    assert "stream_options" not in sent(preset, stream=True, stream_options={"include_usage": True})


def test_stream_usage_option_overrides_preset() -> None:
    request = {"model": "m", "messages": [USER], "stream": True}
    off = ADAPTER.chat_request(request, target("vllm", stream_usage=False))
    on = ADAPTER.chat_request(request, target("groq", stream_usage=True))
    assert "stream_options" not in orjson.loads(off.body or b"")
    assert orjson.loads(on.body or b"")["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("preset", ["ollama", "tgi", "deepseek", "lmstudio"])
def test_max_completion_tokens_renamed(preset: str) -> None:
    body = sent(preset, max_completion_tokens=50, max_tokens=10)
    assert body["max_tokens"] == 50
    assert "max_completion_tokens" not in body


def test_tgi_stop_list_and_response_formats() -> None:
    assert sent("tgi", stop="END")["stop"] == ["END"]
    assert sent("tgi", response_format={"type": "json_object"})["response_format"] == {
        "type": "json",
        "value": {"type": "object"},
    }
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}}
    assert sent("tgi", response_format=fmt)["response_format"] == {
        "type": "json_schema",
        "value": {"name": "r", "schema": schema},
    }
    assert "response_format" not in sent("tgi", response_format={"type": "text"})


def test_lmstudio_json_object_becomes_schema() -> None:
    assert sent("lmstudio", response_format={"type": "json_object"})["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "json_object", "schema": {"type": "object"}},
    }


def test_groq_refuses_participant_names_and_strips_tool_message_names() -> None:
    # Groq rejects the key: a participant's name is a 400 (dropped under drop_params), a tool
    # message's (not an OpenAI field) is removed.
    named = {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}]}
    with pytest.raises(UnsupportedParameter) as err:
        ADAPTER.chat_request(named, target("groq"))
    assert err.value.param == "messages[0].name" and "preset 'groq'" in err.value.message
    dropped = ADAPTER.chat_request(named, target("groq", drop_params=True))
    assert orjson.loads(dropped.body or b"")["messages"] == [{"role": "user", "content": "hi"}]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "ok"}]
    tool = sent("groq", messages=messages)["messages"][2]
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": "ok"}


@pytest.mark.parametrize(
    "preset, param, value",
    [
        ("groq", "n", 2),
        ("groq", "logprobs", True),
        ("groq", "top_logprobs", 1),
        ("groq", "logit_bias", {"1": 1}),
        ("ollama", "n", 3),
        ("ollama", "logit_bias", {"1": 1}),
        ("tgi", "n", 2),
        ("deepseek", "seed", 4),
        ("together", "logprobs", True),
        ("lmstudio", "n", 2),
    ],
)
def test_unsupported_parameters(preset: str, param: str, value: Any) -> None:
    with pytest.raises(UnsupportedParameter) as exc:
        sent(preset, **{param: value})
    assert exc.value.param == param
    assert f"preset '{preset}'" in exc.value.message


def test_n_of_one_is_fine() -> None:
    assert "n" not in sent("groq", n=1)  # accepted, and not sent: it asks for the default


def test_drop_params_drops_them() -> None:
    request = {"model": "m", "messages": [USER], "n": 2, "logprobs": True}
    body = orjson.loads(ADAPTER.chat_request(request, target("groq", drop_params=True)).body or b"")
    assert "n" not in body and "logprobs" not in body


def test_ollama_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert "tool_choice" not in sent("ollama", tools=tools, tool_choice="auto")  # its default; unknown field
    for choice in ("required", "none", {"type": "function", "function": {"name": "f"}}):
        with pytest.raises(UnsupportedParameter) as exc:
            sent("ollama", tools=tools, tool_choice=choice)
        assert exc.value.param == "tool_choice"
    request = {
        "model": "m",
        "messages": [USER],
        "tools": tools,
        "tool_choice": "required",
        "drop_params": True,
    }
    assert "tool_choice" not in orjson.loads(ADAPTER.chat_request(request, target("ollama")).body or b"")


def test_deepseek_json_schema_refused() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}}
    with pytest.raises(UnsupportedParameter) as exc:
        sent("deepseek", response_format=fmt)
    assert exc.value.param == "response_format"
    assert "deepseek" in exc.value.message
    assert sent("deepseek", response_format={"type": "json_object"})["response_format"] == {
        "type": "json_object"
    }


def test_operations_a_preset_lacks() -> None:
    with pytest.raises(InvalidRequest) as exc:
        ADAPTER.embeddings_request({"model": "m", "input": "x"}, target("groq"))
    assert exc.value.code == "unsupported_operation"
    with pytest.raises(InvalidRequest):
        ADAPTER.completions_request({"model": "m", "prompt": "x"}, target("deepseek"))
    assert ADAPTER.embeddings_request({"model": "m", "input": "x"}, target("ollama")).url.endswith(
        "/embeddings"
    )


def test_completions_request() -> None:
    upstream = ADAPTER.completions_request(
        {"model": "m", "prompt": "x", "stop": "y", "stream": True}, target("tgi")
    )
    assert upstream.url == "http://localhost:9999/v1/completions"
    assert orjson.loads(upstream.body or b"") == {
        "model": "llama3",
        "prompt": "x",
        "stop": ["y"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_inline_images_by_preset_and_option() -> None:
    assert ADAPTER.needs_inline_images(target("ollama"))
    assert ADAPTER.needs_inline_images(target("lmstudio"))
    assert not ADAPTER.needs_inline_images(target("vllm"))
    assert ADAPTER.needs_inline_images(target("vllm", inline_images=True))
    assert not ADAPTER.needs_inline_images(target("ollama", inline_images=False))


# ---- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, base",
    [
        ("ollama", "http://localhost:11434/v1"),
        ("vllm", "http://localhost:8000/v1"),
        ("tgi", "http://localhost:8080/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("together", "https://api.together.xyz/v1"),
        ("deepseek", "https://api.deepseek.com/v1"),
        ("openrouter", "https://openrouter.ai/api/v1"),
        ("lmstudio", "http://localhost:1234/v1"),
    ],
)
def test_preset_default_api_base(preset: str, base: str) -> None:
    config = ProviderConfig.model_validate({"name": "p", "type": "openai-compatible", "preset": preset})
    assert registry.check_provider(config) == []
    assert SPEC.api_base(config, registry.options_for(config)) == base


def test_configured_api_base_wins() -> None:
    config = ProviderConfig.model_validate(
        {"name": "p", "type": "openai-compatible", "preset": "ollama", "api_base": "http://gpu-box:11434/v1/"}
    )
    assert SPEC.api_base(config, registry.options_for(config)) == "http://gpu-box:11434/v1"


def test_custom_defaults_to_the_local_server_and_presets_are_checked() -> None:
    for preset in ("custom", "none"):
        config = ProviderConfig.model_validate({"name": "p", "type": "openai-compatible", "preset": preset})
        assert registry.check_provider(config) == []
        assert SPEC.api_base(config, registry.options_for(config)) == "http://localhost:8000/v1"
    bad = ProviderConfig.model_validate({"name": "p", "type": "openai-compatible", "preset": "olama"})
    problems = registry.check_provider(bad)
    assert len(problems) == 1 and problems[0].startswith("preset: ")


def test_every_preset_is_in_the_options_model() -> None:
    for name in PRESETS:
        Options(preset=name)  # type: ignore[arg-type]


def test_bearer_auth_only_with_a_key() -> None:
    with_key = SPEC.make_auth(ProviderConfig(name="p", type="openai-compatible", api_key="sk-1"), Options())
    without = SPEC.make_auth(ProviderConfig(name="p", type="openai-compatible"), Options())
    assert repr(with_key) == "StaticHeaderAuth(Authorization)"
    assert repr(without) == "StaticHeaderAuth()"
