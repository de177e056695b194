"""The canonical extensions through the gateway to an ``openai`` upstream: what the upstream
received is OpenAI's own fields, never the extensions raw (docs/providers.md, "Capability
matrix")."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.servers import Mock, captured, new_marker


def sent_upstream(mock: Mock, marker: str) -> dict[str, Any]:
    (seen,) = captured(mock, marker)
    assert seen["path"] == "/v1/chat/completions"
    body: dict[str, Any] = seen["body"]
    return body


def test_thinking_and_breakpoints_become_openai_fields(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    part = {"type": "text", "text": f"hi mock:capture={marker}", "cache_control": {"type": "ephemeral"}}
    messages: list[Any] = [{"role": "user", "content": [part]}]
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 4000}},
    )
    body = sent_upstream(mock_upstream, marker)
    assert body["reasoning_effort"] == "medium" and "thinking" not in body
    assert body["messages"][0]["content"] == [{"type": "text", "text": f"hi mock:capture={marker}"}]


def test_tool_error_flag_and_history_reasoning(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: list[Any] = [
        {"role": "user", "content": f"go mock:capture={marker}"},
        {"role": "assistant", "content": None, "tool_calls": [call], "reasoning_content": "plan",
         "thinking_blocks": [{"type": "thinking", "thinking": "plan", "signature": "sig"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "boom", "is_error": True},
    ]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                   tools=[{"type": "function", "function": {"name": "f"}}])
    body = sent_upstream(mock_upstream, marker)
    assert set(body["messages"][1]) == {"role", "content", "tool_calls"}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "Error: boom"}


def test_top_k_is_refused_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"top_k": 5})
    assert exc.value.param == "top_k" and "drop_params" in exc.value.message


@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 0},
                                      {"type": "enabled", "budget_tokens": "lots"}])
def test_a_bad_thinking_budget_is_an_invalid_value_naming_it(client: openai.OpenAI,
                                                             thinking: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"thinking": thinking})
    assert exc.value.param == "thinking.budget_tokens" and exc.value.code == "invalid_value"
    assert "budget_tokens" in exc.value.message
