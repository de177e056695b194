"""The `mcp_servers:` and `mcp:` sections: bad values are configuration errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switchboard.config.mcp import McpConfig, McpServerConfig


@pytest.mark.parametrize("server", [
    {"name": "a__b", "url": "https://x.example/mcp"},  # the separator in a server name
    {"name": "notes_", "url": "https://x.example/mcp"},  # "notes___t" would read as notes, "_t"
    {"name": "", "url": "https://x.example/mcp"},
    {"name": "ok"},  # streamable HTTP needs a url
    {"name": "ok", "url": "ftp://x.example/mcp"},
    {"name": "ok", "url": "https://x.example/mcp", "max_concurrency": 0},
    {"name": "ok", "url": "https://x.example/mcp", "price_per_call": -1},
    # No whole number of nano-USD (every call of the tool was a 500), or a charge no store holds.
    {"name": "ok", "url": "https://x.example/mcp", "price_per_call": float("inf")},
    {"name": "ok", "url": "https://x.example/mcp", "price_per_call": 1e300},
    {"name": "ok", "url": "https://x.example/mcp", "tool_prices": {"t": float("inf")}},
    {"name": "ok", "url": "https://x.example/mcp", "tool_prices": {"t": 123456789012345678901234567890}},
    {"name": "ok", "url": "https://x.example/mcp", "transport": "carrier-pigeon"},
    {"name": "ok", "transport": "stdio"},  # stdio needs a command
    {"name": "ok", "url": "https://x.example/mcp", "unknown": 1},
])
def test_bad_servers_are_refused(server: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        McpServerConfig.model_validate(server)


@pytest.mark.parametrize("section", [
    {"list_timeout_seconds": 0},
    {"max_argument_bytes": 10},
    {"permissions": {"roles": {"viewer": {"allow": "x"}}}},
    {"permissions": {"teams": {"t": {"deny": [""]}}}},
    {"permissions": {"users": {}}},
])
def test_bad_mcp_sections_are_refused(section: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        McpConfig.model_validate(section)


def test_the_minimal_contract() -> None:
    server = McpServerConfig.model_validate({"name": "github", "url": "https://mcp.example.com/mcp"})
    assert (server.transport, server.tenant, server.price_per_call) == ("streamable_http", None, 0.0)
