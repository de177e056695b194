"""What the MCP gateway's parts agree on: who supplies credentials, and the aggregated toolbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.config.mcp import McpServerConfig
from switchboard.context import Principal
from switchboard.errors import GatewayError


class AuthorizationRequired(GatewayError):
    """The server needs this user's OAuth authorization first: ``authorize_url`` starts it
    (through the gateway). A list leaves the server out with a notice; a call fails with this
    error (its JSON-RPC ``data`` carries ``authorize_url``)."""

    status = 403
    type = "permission_error"
    code = "mcp_authorization_required"

    def __init__(self, server: str, authorize_url: str) -> None:
        super().__init__(f"the MCP server '{server}' needs your authorization: open {authorize_url}")
        self.server = server
        self.authorize_url = authorize_url
        self.extra = {"authorize_url": authorize_url}  # in the JSON-RPC error's data


class Credentials(Protocol):
    async def headers(self, server: McpServerConfig, principal: Principal | None) -> dict[str, str]:
        """The headers to send with every operation (listing and calling) against ``server`` on
        behalf of ``principal``. Raises :class:`AuthorizationRequired` when a per-user OAuth
        server has no usable token for this user."""
        ...


@dataclass(frozen=True)
class Listing:
    """An aggregated list (tools, resources or prompts) and the servers left out of it."""

    items: Sequence[Mapping[str, Any]]
    # One line per server left out (down, slow, needs authorization), for the caller to see.
    notices: Sequence[str] = field(default_factory=tuple)


class Toolbox(Protocol):
    """The tools a caller may use, from every server it may use, named ``<server>__<tool>``."""

    async def list_tools(self, principal: Principal | None) -> Listing: ...

    async def call_tool(self, principal: Principal | None, name: str,
                        arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The MCP ``CallToolResult`` (as JSON) of calling ``name`` (``server__tool``); the call
        goes through the gateway's limits, budgets and logs."""
        ...
