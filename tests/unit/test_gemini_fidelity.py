"""Gemini and Vertex translation fidelity: every canonical field is translated, or refused with a
400 naming it (dropped only under drop_params), as the capability tables say."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import capabilities
from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS, Row
from switchboard.providers.gemini import SPEC as GEMINI
from switchboard.providers.gemini import GeminiOptions
from switchboard.providers.target import Target
from switchboard.providers.turns import SYSTEM_MARK
from switchboard.providers.vertex import SPEC as VERTEX
from switchboard.providers.vertex import VertexOptions

HI = [{"role": "user", "content": "hi"}]
PNG = "data:image/png;base64,iVBORw0KGgo="


def target(kind: str = "gemini", model: str = "gemini-2.5-flash", drop_params: bool = False) -> Target:
    if kind == "vertex":
        options: Any = VertexOptions.model_construct(credentials_file="sa.json", vertex_project="p")
        return Target("v", model, "vtx", "vertex", "https://vertex.test", options, Timeouts(), drop_params)
    options = GeminiOptions()
    return Target("g", model, "studio", "gemini", "https://gemini.test", options, Timeouts(), drop_params)


def body_of(request: dict[str, Any], t: Target | None = None) -> dict[str, Any]:
    t = t or target()
    adapter = VERTEX.adapter if t.provider_type == "vertex" else GEMINI.adapter
    upstream = adapter.chat_request({"model": "m", "messages": HI, **request}, t)
    assert upstream.body is not None
    result: dict[str, Any] = orjson.loads(upstream.body)
    return result


def refused(request: dict[str, Any], t: Target | None = None) -> UnsupportedParameter:
    with pytest.raises(UnsupportedParameter) as info:
        body_of(request, t)
    return info.value


def at(body: dict[str, Any], path: str) -> Any:
    value = capabilities.at(body, path)  # the framework's dot paths: digit segments index lists
    assert value is not capabilities.MISSING, f"{path} not in {body}"
    return value


# -- the capability matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gemini", "vertex"])
@pytest.mark.parametrize("row", REQUEST_ROWS, ids=lambda r: r.name)
def test_every_request_cell_is_what_the_adapter_does(kind: str, row: Row) -> None:
    cell = capabilities.table(kind)[row.name]
    request = {"messages": HI, **capabilities.example(kind, row)}
    if cell.kind == "refused":
        error = refused(request, target(kind))
        assert error.param == row.param_in(request) and kind in error.message
        body_of(request, target(kind, drop_params=True))  # dropped, and the request goes on
        return
    assert cell.kind == "translated"  # nothing is passed through as written here
    body = body_of(request, target(kind))
    if cell.to:
        assert at(body, cell.to) not in (None, "", [], {})


@pytest.mark.parametrize("kind", ["gemini", "vertex"])
def test_every_response_row_has_a_cell(kind: str) -> None:
    cells = capabilities.table(kind)
    assert all(cells[name].kind in ("translated", "refused") for name in RESPONSE_ROWS)
    assert cells["usage.cache_write"].kind == "refused" and cells["reasoning"].kind == "translated"


# -- 1. top_k -----------------------------------------------------------------------------------


def test_top_k_reaches_generation_config() -> None:
    assert body_of({"top_k": 40})["generationConfig"] == {"topK": 40}


# -- 2. parallel_tool_calls ----------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "a": {"type": "string"}}}}}


@pytest.mark.parametrize("kind", ["gemini", "vertex"])
def test_parallel_tool_calls_false_is_accepted_and_not_sent(kind: str) -> None:
    # Gemini has no control: the gateway keeps the first call of the reply (providers/tool_calls.py).
    serial = body_of({"tools": [TOOL], "parallel_tool_calls": False}, target(kind))
    assert serial == body_of({"tools": [TOOL]}, target(kind)) and serial["tools"]
    assert "toolConfig" not in body_of({"tools": [TOOL], "parallel_tool_calls": True}, target(kind))


# -- 3. thinking ---------------------------------------------------------------------------------


def thinking_of(request: dict[str, Any], model: str = "gemini-2.5-flash") -> Any:
    return body_of(request, target(model=model))["generationConfig"]["thinkingConfig"]


def test_thinking_budget_and_thoughts() -> None:
    enabled = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert thinking_of(enabled) == {"thinkingBudget": 2048, "includeThoughts": True}
    assert thinking_of(enabled, "gemini-3-pro-preview") == {"thinkingBudget": 2048, "includeThoughts": True}
    assert thinking_of({"thinking": {"type": "disabled"}}) == {"thinkingBudget": 0}


@pytest.mark.parametrize(("effort", "model", "config"), [
    ("minimal", "gemini-2.5-flash", {"thinkingBudget": 0}),
    ("none", "gemini-2.5-pro", {"thinkingBudget": 128, "includeThoughts": True}),
    ("low", "gemini-2.5-flash", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("medium", "gemini-2.5-flash", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("high", "gemini-2.5-flash", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("high", "gemini-3-pro-preview", {"thinkingLevel": "high", "includeThoughts": True}),
    ("none", "gemini-3-flash", {"thinkingLevel": "minimal"}),
])
def test_reasoning_effort_to_thinking_config(effort: str, model: str, config: dict[str, Any]) -> None:
    assert thinking_of({"reasoning_effort": effort}, model) == config


@pytest.mark.parametrize("request_", [
    {"thinking": {"type": "enabled"}},
    {"thinking": {"type": "enabled", "budget_tokens": 0}},
    {"thinking": {"type": "enabled", "budget_tokens": True}},
    {"thinking": {"type": "sometimes"}},
    {"thinking": "on"},
    {"reasoning_effort": "extreme"},
    {"reasoning_effort": "low", "thinking": {"type": "disabled"}},
])
def test_malformed_thinking_is_a_clear_400(request_: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as info:
        body_of(request_)
    assert info.value.param in ("thinking", "thinking.budget_tokens", "reasoning_effort")


def test_thought_signature_is_written_back_unchanged() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2lnLTE="}}}
    messages = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    body = body_of({"messages": messages, "tools": [TOOL]}, target(model="gemini-3-pro-preview"))
    part = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnLTE="}
    assert body["contents"][1]["parts"] == [part]


# -- 4. strict tools -----------------------------------------------------------------------------

STRICT = {"type": "function", "function": {**TOOL["function"], "name": "s", "strict": True}}  # type: ignore[dict-item]


def test_strict_tools_ask_for_validated_calls() -> None:
    assert body_of({"tools": [STRICT]})["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    auto = body_of({"tools": [STRICT], "tool_choice": "auto"})["toolConfig"]
    assert auto == {"functionCallingConfig": {"mode": "VALIDATED"}}
    # ANY validates already; NONE makes no calls.
    assert body_of({"tools": [STRICT], "tool_choice": "required"})["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY"}
    assert body_of({"tools": [STRICT], "tool_choice": "none"})["toolConfig"]["functionCallingConfig"] == {
        "mode": "NONE"}
    assert "toolConfig" not in body_of({"tools": [TOOL]})


def test_mixed_strictness_is_refused_unless_dropped() -> None:
    error = refused({"tools": [STRICT, TOOL]})
    assert error.param == "tools" and "strict on some tools only" in error.message
    dropped = body_of({"tools": [STRICT, TOOL]}, target(drop_params=True))
    assert "toolConfig" not in dropped and len(dropped["tools"][0]["functionDeclarations"]) == 2


# -- 5. user and metadata ------------------------------------------------------------------------


def test_gemini_refuses_metadata() -> None:
    assert refused({"metadata": {"app": "demo"}}).param == "metadata"
    assert "labels" not in body_of({"metadata": {"app": "demo"}}, target(drop_params=True))


def test_gemini_accepts_user_and_does_not_send_it() -> None:
    # The Gemini API has no end-user field; an end-user id does not change the output.
    assert body_of({"user": "u-1"}) == body_of({})


def test_vertex_sends_metadata_and_user_as_labels() -> None:
    body = body_of({"user": "user-7", "metadata": {"team": "search", "env": ""}}, target("vertex"))
    assert body["labels"] == {"team": "search", "env": "", "user": "user-7"}
    assert "labels" not in body_of({}, target("vertex"))


@pytest.mark.parametrize(("field", "param", "kept"), [
    ({"metadata": {"Team": "x"}}, "metadata", None),
    ({"metadata": {"1st": "x"}}, "metadata", None),
    ({"metadata": {"team": "Search Team"}}, "metadata", None),
    ({"metadata": {"k": "v" * 64}}, "metadata", None),
    ({"metadata": {f"k{i}": "v" for i in range(65)}}, "metadata", None),
])
def test_vertex_refuses_what_cannot_be_a_label(field: dict[str, Any], param: str, kept: Any) -> None:
    error = refused(field, target("vertex"))
    assert error.param == param and "label" in error.message
    # drop_params: the field that cannot be labels is left out, the rest is sent.
    assert body_of(field, target("vertex", drop_params=True)).get("labels") == kept


@pytest.mark.parametrize("field", [
    {"user": "someone@example.com"},
    {"user": "user_" + "a" * 64 + "_account__session_" + "b" * 36},  # Claude Code's metadata.user_id
    {"user": "u", "metadata": {"user": "v"}},
])
def test_vertex_does_not_send_a_user_no_label_can_hold(field: dict[str, Any]) -> None:
    body = body_of(field, target("vertex"))
    assert body.get("labels", {}).get("user") in (None, field.get("metadata", {}).get("user"))


def test_vertex_metadata_must_hold_strings() -> None:
    with pytest.raises(InvalidRequest) as info:
        body_of({"metadata": {"n": 1}}, target("vertex"))
    assert info.value.param == "metadata"


# -- 6. image detail -----------------------------------------------------------------------------


def image(detail: str | None) -> dict[str, Any]:
    url: dict[str, Any] = {"url": PNG} if detail is None else {"url": PNG, "detail": detail}
    return {"type": "image_url", "image_url": url}


def test_low_detail_images_get_low_media_resolution() -> None:
    low = [{"role": "user", "content": [image("low"), image("low")]}]
    assert body_of({"messages": low})["generationConfig"] == {"mediaResolution": "MEDIA_RESOLUTION_LOW"}
    high = [{"role": "user", "content": [image("high"), image(None)]}]
    assert "generationConfig" not in body_of({"messages": high})


def test_low_detail_on_some_images_only_is_refused_unless_dropped() -> None:
    mixed = [{"role": "user", "content": [image("low"), image("high")]}]
    assert refused({"messages": mixed}).param == "messages"
    assert "generationConfig" not in body_of({"messages": mixed}, target(drop_params=True))


# -- 7. conversation shape -----------------------------------------------------------------------


def test_a_later_system_message_stays_in_place() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Answer in French from now on."},
        {"role": "user", "content": "how are you?"},
    ]
    body = body_of({"messages": messages})
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": SYSTEM_MARK + "Answer in French from now on."},
                                   {"text": "how are you?"}]},
    ]


def test_an_empty_assistant_turn_keeps_its_place() -> None:
    # Gemini refuses empty parts: the turn says "(no content)", so the user turns stay apart.
    messages = [{"role": "user", "content": "one"}, {"role": "assistant", "content": ""},
                {"role": "user", "content": "two"}, {"role": "assistant", "content": ""}]
    assert body_of({"messages": messages})["contents"] == [
        {"role": "user", "parts": [{"text": "one"}]}, {"role": "model", "parts": [{"text": "(no content)"}]},
        {"role": "user", "parts": [{"text": "two"}]}]
