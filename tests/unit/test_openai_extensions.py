"""The canonical extensions never reach OpenAI raw: each becomes OpenAI's own field, is removed
with a documented reason, or is refused (docs/providers.md, "Capability matrix")."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import azure, openai, openai_compatible
from switchboard.providers.target import Target


def target(provider_type: str = "openai", drop_params: bool = False, options: Any = None) -> Target:
    opts = options if options is not None else openai.OpenAIOptions()
    return Target("m", "gpt-5", "p", provider_type, "https://api.test/v1", opts, Timeouts(), drop_params)


def body_of(
    request: dict[str, Any], t: Target | None = None, adapter: Any = openai.SPEC.adapter
) -> dict[str, Any]:
    sent = adapter.chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], **request},
                                t or target())
    assert sent.body is not None
    body: dict[str, Any] = orjson.loads(sent.body)
    return body


@pytest.mark.parametrize(("budget", "effort"), [(1, "low"), (1024, "low"), (1025, "medium"), (8192, "medium"),
                                                (8193, "high"), (64000, "high")])
def test_thinking_budget_becomes_reasoning_effort(budget: int, effort: str) -> None:
    body = body_of({"thinking": {"type": "enabled", "budget_tokens": budget}})
    assert body["reasoning_effort"] == effort and "thinking" not in body


def test_thinking_disabled_sends_nothing_and_reasoning_effort_wins() -> None:
    assert not {"thinking", "reasoning_effort"} & set(body_of({"thinking": {"type": "disabled"}}))
    both = body_of({"thinking": {"type": "enabled", "budget_tokens": 50000}, "reasoning_effort": "low"})
    assert both["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    "thinking", [{"type": "on"}, {"type": "enabled"}, {"type": "enabled", "budget_tokens": 0}, "yes"]
)
def test_malformed_thinking_is_a_400(thinking: Any) -> None:
    with pytest.raises(InvalidRequest) as exc:
        body_of({"thinking": thinking})
    assert (exc.value.param or "").startswith("thinking")


def test_top_k_is_refused_unless_dropping() -> None:
    with pytest.raises(UnsupportedParameter) as exc:
        body_of({"top_k": 5})
    assert exc.value.param == "top_k"
    assert "top_k" not in body_of({"top_k": 5, "drop_params": True})


def test_history_extensions_become_openai_fields() -> None:
    pdf = {"type": "document", "document": {"title": "r.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}}
    note = {"type": "document", "document": {"title": "Note", "source": {"type": "text", "data": "plain"}}}
    messages = [
        {"role": "system",
         "content": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [pdf, note, {"type": "text", "text": "sum up"}]},
        {"role": "assistant", "content": None, "reasoning_content": "r",
         "thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": "sig"}],
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "boom", "is_error": True},
    ]
    tools = [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]
    body = body_of({"messages": messages, "tools": tools})
    assert body["messages"][0]["content"] == [{"type": "text", "text": "rules"}]
    assert body["messages"][1]["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "r.pdf"}},
        {"type": "text", "text": "Note\n\nplain"},
        {"type": "text", "text": "sum up"},
    ]
    assert set(body["messages"][2]) == {"role", "content", "tool_calls"}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "Error: boom"}
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_url_document_is_a_400() -> None:
    doc = {"type": "document", "document": {"source": {"type": "url", "url": "https://x.test/a.pdf"}}}
    with pytest.raises(InvalidRequest) as exc:
        body_of({"messages": [{"role": "user", "content": [doc]}]})
    assert exc.value.param == "messages[0].content[0].document.source.type"  # the field that cannot be sent


def test_the_callers_request_is_not_changed() -> None:
    part = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    request = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    openai.SPEC.adapter.chat_request(request, target())
    assert part["cache_control"] == {"type": "ephemeral"}


def test_azure_shares_the_translation() -> None:
    t = Target("m", "dep", "p", "azure", "https://r.openai.azure.com", azure.Options(), Timeouts())
    body = body_of({"thinking": {"type": "enabled", "budget_tokens": 2048}}, t, azure.SPEC.adapter)
    assert body["reasoning_effort"] == "medium"
    with pytest.raises(UnsupportedParameter):
        body_of({"top_k": 5}, t, azure.SPEC.adapter)


def test_gemini_thought_signatures_reach_neither_openai_nor_azure_but_compatible_servers() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2ln"}}}
    history = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None,
                                                                "tool_calls": [call]},
                            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}
    t = Target("m", "dep", "p", "azure", "https://r.openai.azure.com", azure.Options(), Timeouts())
    for body in (body_of(history), body_of(history, t, azure.SPEC.adapter)):
        assert body["messages"][1]["tool_calls"] == [{k: v for k, v in call.items() if k != "extra_content"}]
    assert "extra_content" in call  # the caller's request is not changed
    compatible = target("openai-compatible", options=openai_compatible.Options())
    body = body_of(history, compatible, openai_compatible.SPEC.adapter)
    assert body["messages"][1]["tool_calls"] == [call]  # Google's OpenAI-compatible endpoint reads it


@pytest.mark.parametrize(("preset", "param"), [("groq", "logprobs"), ("deepseek", "seed"), ("ollama", "n")])
def test_openai_compatible_presets_refuse_from_their_tables(preset: str, param: str) -> None:
    t = target("openai-compatible", options=openai_compatible.Options(preset=preset))
    with pytest.raises(UnsupportedParameter) as exc:
        body_of({param: 2}, t, openai_compatible.SPEC.adapter)
    assert exc.value.param == param and f"preset '{preset}'" in str(exc.value)


def test_ollama_auto_tool_choice_is_removed_other_choices_refused() -> None:
    t = target("openai-compatible", options=openai_compatible.Options(preset="ollama"))
    tools = [{"type": "function", "function": {"name": "f"}}]
    adapter = openai_compatible.SPEC.adapter
    assert "tool_choice" not in body_of({"tools": tools, "tool_choice": "auto"}, t, adapter)
    with pytest.raises(UnsupportedParameter):
        body_of({"tools": tools, "tool_choice": "none"}, t, openai_compatible.SPEC.adapter)
