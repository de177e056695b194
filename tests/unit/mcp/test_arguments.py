"""A tool's input schema comes from its MCP server: the gateway checks arguments against what
the schema says itself, and never fetches what a ``$ref`` names."""

from __future__ import annotations

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
