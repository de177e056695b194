"""The mock's tool-call arguments, built from the tool's JSON schema."""

from __future__ import annotations

import pytest

from switchboard.mock.text import arguments_for, sample_for


def test_arguments_follow_the_schema_types_and_enums() -> None:
    schema = {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}}}
    assert arguments_for(schema) == {"city": "Paris", "days": 1, "unit": "c"}


def test_a_union_type_takes_its_first_non_null_member() -> None:
    # Strict schemas mark an optional field as ["string", "null"]: it crashed the mock (500).
    schema = {"type": "object", "properties": {
        "note": {"type": ["string", "null"]}, "n": {"type": ["null", "number"]}, "x": {"type": ["null"]}},
        "required": ["note", "n", "x"]}
    assert arguments_for(schema) == {"note": "Paris", "n": 1.5, "x": None}


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": 5},
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": [["city"], {"a": 1}, 7]},
    {"type": "object", "properties": ["city"], "required": ["city"]},
    {"type": "object", "properties": {"city": "string"}, "required": ["city"]},
    {"type": "object", "properties": {"city": {"type": {"a": 1}}}},
])
def test_a_schema_the_caller_got_wrong_is_read_as_far_as_it_goes(schema: dict[str, object]) -> None:
    # Each raised (a 500 from the mock, which a gateway reports as the provider's 502).
    arguments, sample = arguments_for(schema), sample_for(schema)
    assert all(isinstance(k, str) for k in arguments) and arguments in ({}, {"city": "Paris"})
    assert isinstance(sample, dict) and all(isinstance(k, str) for k in sample)
