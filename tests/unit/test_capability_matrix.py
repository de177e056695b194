"""The capability matrix against the adapters: every cell of every provider table is probed with
a minimal request (the format is in the ``switchboard.providers.capabilities`` docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import capabilities, registry
from switchboard.providers.capabilities import MISSING, at, docs, samples, table
from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS, Row
from switchboard.providers.openai_compatible import PRESETS
from switchboard.providers.stop_sequences import name_in_reply
from switchboard.providers.target import Target

ROWS: dict[str, Row] = {row.name: row for row in REQUEST_ROWS}
PROVIDER_TYPES = sorted(registry.providers())
VARIANTS = [f"openai-compatible:{p}" for p in sorted(PRESETS) if p != "none"]
KEYS = PROVIDER_TYPES + VARIANTS

_MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "cohere": "command-a-reasoning-08-2025",
    "gemini": "gemini-2.5-flash",
    "vertex": "gemini-2.5-flash",
    "mistral": "mistral-large-latest",
}


def _options(key: str) -> Any:
    provider_type, _, variant = key.partition(":")
    spec = registry.get(provider_type)
    if provider_type == "bedrock":
        return spec.options.model_validate({"aws_region": "us-east-1"})
    if provider_type == "vertex":  # no key file needed to build a request body
        return spec.options.model_construct(credentials_file="sa.json", vertex_project="p",
                                            vertex_location="us-central1")
    if variant:
        return spec.options.model_validate({"preset": variant})
    return spec.options()


def target(key: str, drop_params: bool = False) -> Target:
    provider_type = key.partition(":")[0]
    model = _MODELS.get(provider_type, "gpt-4o")
    # The caller's own credential: objects of the provider account (an audio reply's id) are
    # providers/account.py's concern on a shared one (tests/e2e/test_account_objects.py), not the
    # provider's capability probed here.
    return Target("m", model, "p", provider_type, "https://upstream.test", _options(key), Timeouts(),
                  drop_params, own_account=True)


def adapter(key: str) -> Any:
    return registry.get(key.partition(":")[0]).adapter


def upstream_body(key: str, request: dict[str, Any], drop_params: bool = False) -> dict[str, Any]:
    sent = adapter(key).chat_request(request, target(key, drop_params))
    assert sent.body is not None
    body: dict[str, Any] = orjson.loads(sent.body)
    return body


def probe(key: str, row: Row) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **capabilities.example(key, row)}


def test_every_preset_has_a_table() -> None:
    assert set(capabilities.table("openai-compatible:custom")) == set(table("openai-compatible"))
    for preset in PRESETS:
        assert table(f"openai-compatible:{preset}")


@pytest.mark.parametrize("key", KEYS)
def test_every_table_has_a_cell_for_every_row(key: str) -> None:
    assert set(table(key)) == set(ROWS) | set(RESPONSE_ROWS)
    assert {cell.kind for cell in table(key).values()} <= {"translated", "passed", "refused"}


@pytest.mark.parametrize("row", sorted(ROWS))
@pytest.mark.parametrize("key", KEYS)
def test_request_cell(key: str, row: str) -> None:
    cell, the_row = table(key)[row], ROWS[row]
    request = probe(key, the_row)
    assert the_row.present(request), "the probe must use the feature of its row"
    if cell.kind == "refused":
        with pytest.raises(UnsupportedParameter) as err:
            upstream_body(key, request)
        assert err.value.param == the_row.param_in(request)
        dropped = upstream_body(key, request, drop_params=True)
        # drop_params on both: a row refused because its whole field is (DeepSeek's json_schema
        # description) is dropped with that field by the adapter either way.
        # A row within a wider refused one (more than 5 stop sequences, where more than 4 are
        # refused) is dropped by that row's drop.
        within = the_row.within and table(key)[the_row.within].kind == "refused"
        dropping = ROWS[the_row.within] if within else the_row
        assert dropped == upstream_body(key, dropping.drop(request), drop_params=True)
        assert not the_row.present(dropped)
        return
    body = upstream_body(key, request)
    if cell.kind == "passed":
        for name, value in capabilities.example(key, the_row).items():
            assert body.get(name) == value, name
    elif cell.to:
        assert at(body, cell.to) is not MISSING, f"{cell.to} not in {body}"


@pytest.mark.parametrize("row", sorted(RESPONSE_ROWS))
@pytest.mark.parametrize("provider_type", PROVIDER_TYPES)
def test_response_cell(provider_type: str, row: str) -> None:
    cell = table(provider_type)[row]
    if cell.kind == "refused":
        assert cell.note, "say why the feature is not there (e.g. 'not reported')"
        return
    assert cell.kind == "translated" and cell.to, "a response feature lands in a canonical field"
    sample = samples(provider_type).get(row)
    assert sample is not None, f"capabilities/{provider_type}.py SAMPLES lacks '{row}'"
    reply = adapter(provider_type).chat_response(orjson.dumps(sample), target(provider_type))
    # As the chat operation does with every reply (pipeline/invoke.py): a matched stop sequence the
    # provider does not name is the request's only one.
    reply = name_in_reply({"stop": ["END"]}, reply)
    value = at(reply, cell.to)
    assert value is not MISSING and value not in (None, "", [], {}, 0), f"{cell.to} in {reply}"


def test_check_looks_only_at_refused_rows() -> None:
    # The check is on the hot path: for OpenAI it is one look-up and one set look per request,
    # then a field test only when the request has top_k, stop or Gemini's
    # enable_enhanced_civic_answers (more than 5 stop sequences are within more than 4: not
    # tested on their own).
    looked_at = ["top_k", "stop:more_than_4", "enable_enhanced_civic_answers"]
    assert [row.name for row in capabilities._refused("openai")] == looked_at
    assert [row.name for row in capabilities._refused("azure")] == looked_at
    stops = [row.name for row in capabilities._refused("gemini") if row.param == "stop"]
    assert stops == ["stop:more_than_5"]


@pytest.mark.parametrize("row", REQUEST_ROWS, ids=lambda row: row.name)
def test_a_row_is_used_only_where_its_param_is(row: Row) -> None:
    # check() returns a request carrying none of the refused rows' params untouched, unread.
    assert row.param in row.example
    without = {k: v for k, v in row.example.items() if k != row.param}
    assert not row.present(without) and not row.idle(without)
    assert row.present({**without, **row.example})


def test_a_request_without_the_refused_keys_passes_as_it_is() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert capabilities.check(request, target("openai")) is request
    with pytest.raises(UnsupportedParameter) as refused:
        capabilities.check({**request, "top_k": 3}, target("openai"))
    assert refused.value.param == "top_k"
    # A refused key asking for nothing is removed (Mistral refuses it): the early return skips
    # only requests without any such key.
    assert capabilities.check({**request, "logprobs": False}, target("mistral")) == request


def test_the_committed_docs_table_is_the_generated_one() -> None:
    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    assert docs.rewrite(text) == text, "run: python -m switchboard.providers.capabilities.docs"


def test_seed_refuses_unknown_rows_and_reads_both_spellings() -> None:
    with pytest.raises(KeyError, match="tool_choice:nil"):
        capabilities.seed((), tool_choice_is_nil=capabilities.passed())
    for spelling in ("tool_choice_is_none", "tool_choice__is_none"):
        cells = capabilities.seed((), **{spelling: capabilities.passed()})
        assert cells["tool_choice:none"].kind == "passed"


def test_the_refusal_names_the_variant() -> None:
    t = target("openai-compatible:groq")
    with pytest.raises(UnsupportedParameter, match="with preset 'groq'"):
        capabilities.check({"model": "m", "messages": [], "n": 2}, t, "openai-compatible:groq")


def test_a_type_example_replaces_the_row_example_for_that_type_only() -> None:
    row = ROWS["response_format"]
    assert capabilities.example("bedrock", row)["response_format"]["type"] == "json_schema"
    assert capabilities.example("gemini", row) == row.example


@pytest.mark.parametrize("key", KEYS)
def test_thinking_disabled_asks_for_nothing(key: str) -> None:
    """Gemini clients send thinkingBudget 0 (thinking disabled) to any model: never a 400, and a
    provider that has no thinking control is not sent the field."""
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
               "thinking": {"type": "disabled"}}
    body = upstream_body(key, request)
    if table(key)["thinking"].kind == "refused":
        assert "thinking" not in str(body)


NEUTRAL = {"logprobs": False, "top_logprobs": 0, "store": False, "n": 1, "service_tier": None,
           "modalities": None, "audio": None, "logit_bias": None, "seed": None}


@pytest.mark.parametrize("key", KEYS)
def test_neutral_values_of_refused_fields_are_not_sent(key: str) -> None:
    """Clients that serialise defaults send logprobs false, n 1, nulls: never a 400, and a
    provider that refuses the field is not sent the key (Mistral answers 422 to the key itself)."""
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **NEUTRAL}
    body = upstream_body(key, request)
    cells = table(key)
    for name in NEUTRAL:
        if cells[name].kind == "refused":
            assert name not in body, (key, name)

@pytest.mark.parametrize("key", KEYS)
def test_safety_settings_reach_only_google_upstreams(key: str) -> None:
    """The Gemini CLI sends safetySettings on every request: Gemini and Vertex get them as
    ``safetySettings``; no other upstream is sent them, in either spelling (OpenAI-shaped APIs
    would reject or ignore the unknown field)."""
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "safety_settings": settings}
    body = upstream_body(key, request)
    if key in ("gemini", "vertex"):
        assert body["safetySettings"] == settings
    else:
        assert "safety" not in orjson.dumps(body).decode().lower()
        assert body == upstream_body(key, {k: v for k, v in request.items() if k != "safety_settings"})


def test_safety_method_is_vertex_only() -> None:
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF", "method": "SEVERITY"}]
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "safety_settings": settings}
    assert upstream_body("vertex", request)["safetySettings"] == settings
    with pytest.raises(UnsupportedParameter) as err:
        upstream_body("gemini", request)
    assert err.value.param == "safety_settings[1].method"
    assert upstream_body("gemini", request, drop_params=True)["safetySettings"] == [
        settings[0], {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}]
    assert request["safety_settings"] == settings  # the caller's request is left as it was


@pytest.mark.parametrize("value", [{"category": "X"}, [{"category": "X"}], ["BLOCK_NONE"],
                                   [{"category": "X", "threshold": "Y", "extra": 1}]])
def test_malformed_safety_settings_are_a_400_for_google(value: Any) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "safety_settings": value}
    with pytest.raises(InvalidRequest) as err:
        upstream_body("gemini", request)
    assert (err.value.param or "").startswith("safety_settings")


@pytest.mark.parametrize("key", [k for k in KEYS if table(k)["prompt_cache_breakpoint"].kind == "translated"])
def test_a_breakpoint_translated_as_not_sent_is_not_sent(key: str) -> None:
    # Cells that say "not sent" leave the caching hint out of the upstream body altogether.
    body = upstream_body(key, {"model": "m", "messages": ROWS["prompt_cache_breakpoint"].example["messages"]})
    assert b"prompt_cache_breakpoint" not in orjson.dumps(body)


HINTED = ("verbosity", "service_tier", "prompt_cache_key")


@pytest.mark.parametrize("key", KEYS)
def test_hints_are_sent_where_passed_and_left_out_where_refused(key: str) -> None:
    # The Responses API's hints (http/responses/request.py) name themselves in ``switchboard_hints``: never a
    # 400, and the list itself never reaches the upstream.
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    given = {name: capabilities.example(key, ROWS[name])[name] for name in HINTED}
    body = upstream_body(key, {**plain, **given, "switchboard_hints": list(HINTED)})
    assert "switchboard_hints" not in body
    kept = {name: v for name, v in given.items() if table(key)[name].kind != "refused"}
    assert body == upstream_body(key, {**plain, **kept})
