"""The mock's tool-call arguments, built from the tool's JSON schema."""

from __future__ import annotations

from switchboard.mock.text import arguments_for


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
