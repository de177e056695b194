"""The gateway's own MCP endpoint, ``/mcp`` (streamable HTTP, docs/mcp.md).

One POST carries one JSON-RPC message; the answer is JSON (``application/json``), or an SSE
stream for what a server sends the client during the request. Sessions are optional: an
``Mcp-Session-Id`` is issued only to pass server requests to the client (mcp/passthrough.py) and
never required; one the gateway does not know is answered 404, so the client initializes again.
GET (a server stream) answers 405; DELETE ends the session it names (405 without one).
Authentication is the gateway's AuthStage (``Authorization: Bearer <master or virtual key>`` or
a JWT); unauthenticated: 401 with a JSON-RPC error body. After authentication every error is a
JSON-RPC error (HTTP 200) whose ``data`` carries the gateway's status and code; the request's
metrics and logs still see the status (429 for a rate limit, ...).
"""

from __future__ import annotations

from switchboard.http.mcp.api import MCP, McpAPI, McpEndpoint
from switchboard.http.mcp.server import McpServer

__all__ = ["MCP", "McpAPI", "McpEndpoint", "McpServer"]
