"""The pure rules of prompt APIs: lifecycle transitions, the sticky A/B split, deprecation
headers, the output check and repair messages, and the OpenAPI generator's examples."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from switchboard.apis import openapi
from switchboard.apis.lifecycle import (
    bucket,
    deprecation_headers,
    split_problem,
    split_version,
    transition_problem,
)
from switchboard.apis.output import output_errors, repair_messages, schema_problem
from switchboard.stores.protocols import ApiRecord, PromptVersion


@pytest.mark.parametrize(("current", "wanted", "ok"), [
    ("draft", "published", True), ("draft", "retired", True), ("draft", "deprecated", False),
    ("published", "deprecated", True), ("published", "retired", True), ("published", "draft", False),
    ("deprecated", "published", True), ("deprecated", "retired", True),
    ("retired", "published", False), ("retired", "deprecated", False), ("retired", "retired", True),
])
def test_transitions(current: str, wanted: str, ok: bool) -> None:
    problem = transition_problem(current, wanted)
    assert (problem is None) == ok, problem
    if not ok:
        assert current in problem and wanted in problem  # type: ignore[operator]


def test_split_is_stable_and_proportional() -> None:
    split = [{"version": 1, "percent": 20}, {"version": 2, "percent": 80}]
    keys = [f"key_{i}" for i in range(5000)]
    first = [split_version(split, k, "api") for k in keys]
    assert first == [split_version(split, k, "api") for k in keys]  # sticky
    share = first.count(1) / len(keys)
    assert 0.17 < share < 0.23  # 20 %, ~5 standard deviations of slack
    # Another API hashes the same key elsewhere: arms are independent across APIs.
    assert [bucket(k, "api") for k in keys[:50]] != [bucket(k, "other") for k in keys[:50]]
    assert all(split_version([{"version": 3, "percent": 100}, {"version": 4, "percent": 0}], k, "a") == 3
               for k in keys[:100])


@pytest.mark.parametrize(("split", "problem"), [
    ([{"version": 1, "percent": 100}], "at least two"),
    ([{"version": 1, "percent": 50}, {"version": 1, "percent": 50}], "twice"),
    ([{"version": 1, "percent": 50}, {"version": 2, "percent": 49}], "100"),
    ([{"version": 1, "percent": 50}, {"version": 2, "percent": 50}], None),
])
def test_split_problems(split: list[dict[str, int]], problem: str | None) -> None:
    found = split_problem(split)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_deprecation_headers() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    headers = deprecation_headers(deprecated_at=at, sunset_at=datetime(2027, 1, 1, tzinfo=UTC),
                                  successor_url="/apis/next")
    assert headers == {"deprecation": f"@{int(at.timestamp())}", "sunset": "Fri, 01 Jan 2027 00:00:00 GMT",
                       "link": '</apis/next>; rel="successor-version"'}
    assert set(deprecation_headers(deprecated_at=at, sunset_at=None, successor_url=None)) == {"deprecation"}


SCHEMA = {"type": "object", "required": ["label"], "additionalProperties": False,
          "properties": {"label": {"enum": ["positive", "negative"]}, "score": {"type": "number"}}}


def test_output_errors() -> None:
    assert output_errors('{"label": "positive"}', SCHEMA) == ({"label": "positive"}, [])
    assert output_errors('```json\n{"label": "negative"}\n```', SCHEMA)[1] == []
    value, errors = output_errors('{"label": "meh", "extra": 1}', SCHEMA)
    assert value == {"label": "meh", "extra": 1} and len(errors) == 2
    assert any(e.startswith("label:") for e in errors) and any("extra" in e for e in errors)
    assert output_errors("positive", SCHEMA)[1][0].startswith("not valid JSON")
    assert schema_problem(SCHEMA) is None and schema_problem({"type": 3}) is not None
    asked = repair_messages("positive", ["not valid JSON"], SCHEMA)
    assert [m["role"] for m in asked] == ["assistant", "user"] and asked[0]["content"] == "positive"
    assert "not valid JSON" in asked[1]["content"] and '"enum"' in asked[1]["content"]


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 3}, "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "mode": {"enum": ["a", "b"]}, "nested": {"type": "object", "properties": {"x": {"type": "boolean"}}},
        "either": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "long": {"type": "string", "minLength": 8},
        "fixed": {"const": 7}, "given": {"type": "string", "examples": ["hello"]},
    }},
    {"type": "object"},
    {"type": "object", "properties": {  # upper bounds and simple patterns
        "text": {"type": "string", "maxLength": 2},
        "n": {"type": "integer", "minimum": 0, "maximum": 0},
        "below": {"type": "number", "exclusiveMaximum": 0},
        "between": {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
        "range": {"type": "number", "minimum": 2.5, "maximum": 3},
        "sized": {"type": "string", "minLength": 7, "maxLength": 8},
        "digits": {"type": "string", "pattern": "^[0-9]{3}$"},
        "lower": {"type": "string", "pattern": "^[a-z]+$"},
        "few": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
    }},
])
def test_examples_satisfy_their_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(openapi.example(schema), schema)


def test_document() -> None:
    prompt = PromptVersion(tenant_id="t", name="p", version=3, messages=[], model="m",
                           variables={"type": "object", "properties": {"text": {"type": "string"}}},
                           output_schema=SCHEMA)
    record = ApiRecord(tenant_id="t", name="sentiment", prompt="p", status="deprecated", successor="next")
    doc = openapi.one(record, prompt, "https://gw.example")
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "https://gw.example"}]
    post = doc["paths"]["/apis/sentiment"]["post"]
    assert post["deprecated"] is True and "/apis/next" in post["description"]
    assert post["requestBody"]["content"]["application/json"]["example"] == {"text": "text"}
    envelope = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert envelope["properties"]["output"] == SCHEMA
    assert post["security"] == [{"bearer": []}]
    pinned = doc["paths"]["/apis/sentiment/v{version}"]["post"]
    assert pinned["parameters"][0]["name"] == "version" and pinned["operationId"] != post["operationId"]
    plain = openapi.one(ApiRecord(tenant_id="t", name="x", prompt="p"), prompt, "http://h")
    assert "deprecated" not in plain["paths"]["/apis/x"]["post"]
