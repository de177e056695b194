"""The methods of ``/mcp``: the terminal of its chain (after authentication and decoding)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import GatewayError
from switchboard.http.mcp.api import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    VERSIONS,
    NoServerStream,
    SessionNotFound,
)
from switchboard.mcp.interfaces import Listing
from switchboard.mcp.passthrough import CLIENTS
from switchboard.mcp.relay import CALLS
from switchboard.mcp.toolbox import NOTICES, McpToolbox
from switchboard.pipeline.chain import Handler

SERVER_INFO = {"name": "switchboard", "title": "Switchboard MCP gateway", "version": "0.1.0"}
INSTRUCTIONS = ("Tools, resources and prompts of the MCP servers you may use, named <server>__<name> "
                "(resources: mcp://gateway/<server>/<uri>). Servers left out of a list are named in its "
                "_meta['switchboard/notices'].")
# Methods recorded under their own operation label (metrics, logs); others as mcp:other.
_KNOWN = frozenset({"initialize", "ping", "tools/list", "resources/list", "resources/templates/list",
                    "resources/read", "prompts/list", "prompts/get", "logging/setLevel"})


class McpServer:
    """Answers one JSON-RPC message; ``tools/call`` goes through ``call_chain`` (mcp_stages())."""

    def __init__(self, toolbox: McpToolbox, call_chain: Handler) -> None:
        self.toolbox = toolbox
        self._call = call_chain

    async def __call__(self, ctx: RequestContext) -> Result:
        request = ctx.request
        method = request.get("method")
        if request.get("notification"):
            ctx.operation = "mcp:notification"
        elif method == "tools/call":
            ctx.operation = "mcp"
        else:
            ctx.operation = f"mcp:{method}" if method in _KNOWN else "mcp:other"
        session = ctx.headers.get("mcp-session-id")
        if session is not None and method != "initialize":
            # A session id the gateway no longer knows is answered 404 (the client initializes
            # again); a known one lives on (mcp/passthrough.py). Without one: stateless, as ever.
            if not await CLIENTS.known(ctx.principal, session):
                # A notification or a response has no id of a request to answer.
                raise SessionNotFound(None if request.get("notification") else request.get("id"))
            if request.get("http") == "DELETE":  # the client ends its session
                await CLIENTS.end(ctx.principal, session)
                return Reply({}, status=204)
            if request.get("http") == "GET":
                ctx.response_headers["allow"] = "DELETE, POST"
                raise NoServerStream
        if request.get("notification"):
            # Notifications (initialized, cancelled, ...) and replies to server requests: accepted.
            if method == "notifications/cancelled":  # the caller's own call under way here
                cancelled = request.get("params") or {}
                CALLS.cancel(ctx.principal, cancelled.get("requestId"))
            elif request.get("response"):  # the client's answer to a server's request it was passed
                await CLIENTS.answer(ctx.principal, session, request.get("id"), request.get("reply") or {},
                                     len(ctx.body))
            return Reply({}, status=202)
        assert isinstance(method, str)
        if method == "tools/call":
            return await self._call(ctx)
        params: Mapping[str, Any] = request.get("params") or {}
        principal = ctx.principal
        result: dict[str, Any]
        if method == "initialize":
            asked = params.get("protocolVersion")
            result = {
                "protocolVersion": asked if asked in VERSIONS else VERSIONS[-1],
                "capabilities": {"tools": {"listChanged": False}, "resources": {"subscribe": False,
                                 "listChanged": False}, "prompts": {"listChanged": False}},
                "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS,
            }
            # A session for passing server requests to this client (mcp/passthrough.py); optional.
            session = await CLIENTS.open(principal, params.get("capabilities"))
            if session is not None:
                ctx.response_headers["mcp-session-id"] = session
        elif method in ("ping", "logging/setLevel"):
            result = {}
        elif method == "tools/list":
            result = _listed("tools", await self.toolbox.list_tools(principal))
        elif method == "resources/list":
            result = _listed("resources", await self.toolbox.list_resources(principal))
        elif method == "resources/templates/list":
            result = _listed("resourceTemplates", await self.toolbox.list_resource_templates(principal))
        elif method == "prompts/list":
            result = _listed("prompts", await self.toolbox.list_prompts(principal))
        elif method == "resources/read":
            uri = params.get("uri")
            if not isinstance(uri, str) or not uri:
                raise _invalid("resources/read needs params.uri (a string)")
            result = await self.toolbox.read_resource(principal, uri)
        elif method == "prompts/get":
            name, arguments = params.get("name"), params.get("arguments")
            if not isinstance(name, str) or not name:
                raise _invalid("prompts/get needs params.name (a string)")
            if arguments is not None and not isinstance(arguments, dict):
                raise _invalid("prompts/get params.arguments must be an object")
            result = await self.toolbox.get_prompt(principal, name, arguments)
        else:
            raise _Unknown(METHOD_NOT_FOUND, f"method not found: {method[:100]}", "method_not_found")
        return Reply({"jsonrpc": "2.0", "id": request.get("id"), "result": result})


class _Unknown(GatewayError):
    status = 404
    type = "not_found_error"

    def __init__(self, rpc_code: int, message: str, code: str) -> None:
        super().__init__(message, code=code)
        self.rpc_code = rpc_code


def _invalid(message: str) -> GatewayError:
    return _Params(message)


class _Params(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_params"
    rpc_code = INVALID_PARAMS


def _listed(key: str, listing: Listing) -> dict[str, Any]:
    result: dict[str, Any] = {key: list(listing.items)}
    if listing.notices:
        result["_meta"] = {NOTICES: list(listing.notices)}
    return result
