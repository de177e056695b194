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
