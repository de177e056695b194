"""A tool's input schema comes from its MCP server: the gateway checks arguments against what
the schema says itself, and never fetches what a ``$ref`` names."""

from __future__ import annotations

import time
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest

from switchboard.config.mcp import McpConfig
from switchboard.mcp.toolbox import InvalidArguments, McpToolbox, Tool


def _tool(schema: dict[str, Any]) -> Tool:
    return Tool(upstream=SimpleNamespace(name="notes"), name="add", exposed="notes__add",  # type: ignore[arg-type]
                definition={"name": "add", "inputSchema": schema})


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fetched: list[str] = []

    def urlopen(url: Any, *args: Any, **kwargs: Any) -> Any:
        fetched.append(str(url))
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return fetched


def test_a_reference_to_a_url_is_never_fetched(no_fetch: list[str]) -> None:
    toolbox = McpToolbox(McpConfig(), registry=None)  # type: ignore[arg-type]
    schema = {"type": "object", "properties": {"x": {"$ref": "http://169.254.169.254/latest/x.json"}}}
    toolbox.check_arguments(_tool(schema), {"x": 1})  # left to the server
    assert no_fetch == []


def test_a_reference_within_the_schema_is_checked(no_fetch: list[str]) -> None:
    toolbox = McpToolbox(McpConfig(), registry=None)  # type: ignore[arg-type]
    schema = {"type": "object", "$defs": {"n": {"type": "integer"}},
              "properties": {"x": {"$ref": "#/$defs/n"}}}
    toolbox.check_arguments(_tool(schema), {"x": 1})
    with pytest.raises(InvalidArguments, match="notes__add"):
        toolbox.check_arguments(_tool(schema), {"x": "one"})
    assert no_fetch == []


def test_a_servers_pattern_is_matched_under_a_timeout() -> None:
    """A server's ``pattern`` (or ``patternProperties``) against a caller's argument: bounded, so
    one that backtracks without end refuses the call instead of holding the gateway."""
    toolbox = McpToolbox(McpConfig(), registry=None)  # type: ignore[arg-type]
    slow = "^(a|a)*$"
    value = "a" * 40 + "!"
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"x": {"type": "string", "pattern": slow}}}
    with pytest.raises(InvalidArguments, match="took longer than"):
        toolbox.check_arguments(_tool(draft7), {"x": value})
    toolbox.check_arguments(_tool(draft7), {"x": "aaaa"})
    named = {"type": "object", "patternProperties": {slow: {"type": "string"}}}
    with pytest.raises(InvalidArguments, match="took longer than"):
        toolbox.check_arguments(_tool(named), {value: "v"})
    # unevaluatedProperties beside patternProperties would match unbounded: left to the server.
    unevaluated = {"type": "object", "patternProperties": {slow: {}}, "unevaluatedProperties": False}
    toolbox.check_arguments(_tool(unevaluated), {value: "v"})


def test_a_servers_patterns_share_one_bound() -> None:
    """The bound is for one call's arguments in all: 60 patterns that each backtrack without end
    were 60 times the bound (6 s and more with the gateway frozen)."""
    toolbox = McpToolbox(McpConfig(), registry=None)  # type: ignore[arg-type]
    fields = [f"f{i}" for i in range(60)]
    schema = {"type": "object", "properties": {f: {"type": "string", "pattern": "^(a|a)*$"} for f in fields}}
    began = time.monotonic()
    with pytest.raises(InvalidArguments, match="took longer than"):
        toolbox.check_arguments(_tool(schema), {f: "a" * 40 + "!" for f in fields})
    took = time.monotonic() - began
    assert took < 3, f"checked in {took:.1f} s"


def test_valid_arguments_with_many_quick_patterns_are_accepted() -> None:
    """The shared bound is for the time spent matching patterns: validating a long list whose
    every item matches its simple pattern at once is accepted however long the rest of the
    validation takes (the rows, their other keywords)."""
    toolbox = McpToolbox(McpConfig(), registry=None)  # type: ignore[arg-type]
    row = {"type": "object", "required": ["sku", "qty"], "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "qty": {"type": "integer", "minimum": 1}, "note": {"type": "string", "maxLength": 50}}}
    schema = {"type": "object", "properties": {"rows": {"type": "array", "items": row}}}
    rows = [{"sku": "ABC-1234", "qty": 2, "note": "ok"} for _ in range(10_000)]
    toolbox.check_arguments(_tool(schema), {"rows": rows})  # raises InvalidArguments when refused
