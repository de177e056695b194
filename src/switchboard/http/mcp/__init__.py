"""The gateway's own MCP endpoint, ``/mcp`` (streamable HTTP, docs/mcp.md).

One POST carries one JSON-RPC message; the answer is JSON (``application/json``), never a
session: the endpoint is stateless (no ``Mcp-Session-Id`` is issued or required), so hosted
and serverless clients work. GET (a server stream) and DELETE (ending a session) answer 405.
Authentication is the gateway's AuthStage (``Authorization: Bearer <master or virtual key>`` or
a JWT); unauthenticated: 401 with a JSON-RPC error body. After authentication every error is a
JSON-RPC error (HTTP 200) whose ``data`` carries the gateway's status and code; the request's
metrics and logs still see the status (429 for a rate limit, ...).
"""

from __future__ import annotations

from switchboard.http.mcp.api import MCP, McpAPI, McpEndpoint
from switchboard.http.mcp.server import McpServer

__all__ = ["MCP", "McpAPI", "McpEndpoint", "McpServer"]
