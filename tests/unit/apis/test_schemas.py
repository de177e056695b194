"""Prompt schemas are tenant input checked against caller input: a ``pattern`` is matched with a
bounded engine, so a pattern that backtracks without end is an error, not a frozen gateway."""

from __future__ import annotations

from switchboard.apis import schemas


def test_a_pattern_that_backtracks_without_end_is_an_error() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a|a)*$"}}}
    [error] = schemas.errors(schema, {"name": "a" * 40 + "!"})
    assert "took longer than" in error.message and list(error.absolute_path) == ["name"]


def test_patterns_match_as_json_schema_says() -> None:
    schema = {"type": "string", "pattern": "^[a-z]+-[0-9]{2}$"}
    assert not list(schemas.errors(schema, "order-42"))
    [error] = schemas.errors(schema, "order-4")
    assert "does not match" in error.message
    assert not list(schemas.errors({"pattern": "x"}, 5))  # only strings are matched


def test_property_name_patterns_are_bounded_too() -> None:
    """patternProperties (and additionalProperties, which skips the names they match) match a
    caller's property names: the same bounded engine."""
    slow = "^(a|a)*$"
    name = "a" * 40 + "!"
    [error] = schemas.errors({"type": "object", "patternProperties": {slow: {"type": "string"}}}, {name: 1})
    assert "took longer than" in error.message
    closed = {"type": "object", "properties": {"x": {}}, "patternProperties": {slow: {}},
              "additionalProperties": False}
    found = list(schemas.errors(closed, {name: 1}))  # from both keywords
    assert found and all("took longer than" in error.message for error in found)


def test_property_name_patterns_match_as_json_schema_says() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "integer"}},
              "patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False}
    assert not list(schemas.errors(schema, {"id": 1, "x-trace": "t"}))
    [error] = schemas.errors(schema, {"x-trace": 5})
    assert list(error.absolute_path) == ["x-trace"]
    [error] = schemas.errors(schema, {"other": 1})
    assert "'other'" in error.message and "not allowed" in error.message
    typed = {"type": "object", "additionalProperties": {"type": "string"}}
    [error] = schemas.errors(typed, {"a": "ok", "b": 2})
    assert list(error.absolute_path) == ["b"]
    [error] = schemas.errors({"type": "object", "additionalProperties": False}, {"z": 1})
    assert "Additional properties are not allowed" in error.message


def test_unevaluated_properties_beside_pattern_properties_is_refused_at_save() -> None:
    reason = schemas.check_schema({"type": "object", "patternProperties": {"^x": {}},
                                   "allOf": [{"unevaluatedProperties": False}]})
    assert reason is not None and "unevaluatedProperties is not supported" in reason
    assert schemas.check_schema({"type": "object", "unevaluatedProperties": False}) is None
