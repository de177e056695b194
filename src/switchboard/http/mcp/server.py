"""The methods of ``/mcp``: the terminal of its chain (after authentication and decoding)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from switchboard.context import RawReply, Reply, RequestContext, Result
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
from switchboard.mcp.relay import CALLS, RELAY
from switchboard.mcp.toolbox import NOTICES, McpToolbox
from switchboard.pipeline.chain import Handler, Stage, build_chain

SERVER_INFO = {"name": "switchboard", "title": "Switchboard MCP gateway", "version": "0.1.0"}
INSTRUCTIONS = ("Tools, resources and prompts of the MCP servers you may use, named <server>__<name> "
                "(resources: mcp://gateway/<server>/<uri>). Servers left out of a list are named in its "
                "_meta['switchboard/notices'].")
# Methods recorded under their own operation label (metrics, logs); others as mcp:other.
_KNOWN = frozenset({"initialize", "ping", "tools/list", "resources/list", "resources/templates/list",
                    "resources/read", "prompts/list", "prompts/get", "logging/setLevel"})


# Methods answered from the upstream servers (besides tools/call): each counts one request (0
# tokens) against the caller's rate limits, through ``served_stages``.
_FROM_SERVERS = frozenset({"tools/list", "resources/list", "resources/templates/list", "prompts/list",
                           "resources/read", "prompts/get"})


class McpServer:
    """Answers one JSON-RPC message; ``tools/call`` goes through ``call_chain`` (mcp_stages()),
    the other methods that reach the servers through ``served_stages`` (the rate limits)."""

    def __init__(self, toolbox: McpToolbox, call_chain: Handler, served_stages: Sequence[Stage] = ()) -> None:
        self.toolbox = toolbox
        self._call = call_chain
        self._served = build_chain(served_stages, self._from_servers)

    async def __call__(self, ctx: RequestContext) -> Result:
        request = ctx.request
        method = request.get("method")
        if request.get("notification"):
            ctx.operation = "mcp:notification"
        elif method == "tools/call":
            ctx.operation = "mcp"
        else:
            ctx.operation = f"mcp:{method}" if method in _KNOWN else "mcp:other"
        # An empty header names no session (a session id is visible ASCII): served statelessly,
        # as without one, not 404 on every request of a client that can never be given an id.
        session = ctx.headers.get("mcp-session-id") or None
        if session is not None and method != "initialize":
            # A session id the gateway no longer knows is answered 404 (the client initializes
            # again); a known one lives on (mcp/passthrough.py). Without one: stateless, as ever.
            declared = await CLIENTS.lookup(ctx.principal, session)
            if declared is None:
                # A notification or a response has no id of a request to answer.
                raise SessionNotFound(None if request.get("notification") else request.get("id"))
            relay = RELAY.get()
            if relay is not None:  # kept for a server's request to this client: no second lookup
                relay.declared = declared
            if request.get("http") == "DELETE":  # the client ends its session
                await CLIENTS.end(session)
                return RawReply(204, [], b"")  # no body, so no content type
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
        if method in _FROM_SERVERS:
            # Refused here, a malformed request reaches no server and is not counted.
            if method == "resources/read" and (not isinstance(params.get("uri"), str) or not params["uri"]):
                raise _invalid("resources/read needs params.uri (a string)")
            if method == "prompts/get":
                if not isinstance(params.get("name"), str) or not params["name"]:
                    raise _invalid("prompts/get needs params.name (a string)")
                if params.get("arguments") is not None and not isinstance(params["arguments"], dict):
                    raise _invalid("prompts/get params.arguments must be an object")
            ctx.prompt_tokens = 0  # no tokens against token limits, as a tool call
            return await self._served(ctx)
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
        else:
            raise _Unknown(METHOD_NOT_FOUND, f"method not found: {method[:100]}", "method_not_found")
        return Reply({"jsonrpc": "2.0", "id": request.get("id"), "result": result})

    async def _from_servers(self, ctx: RequestContext) -> Result:
        """A method of ``_FROM_SERVERS``, its params checked."""
        request, principal = ctx.request, ctx.principal
        method, params = request["method"], request.get("params") or {}
        result: dict[str, Any]
        if method == "tools/list":
            result = _listed("tools", await self.toolbox.list_tools(principal))
        elif method == "resources/list":
            result = _listed("resources", await self.toolbox.list_resources(principal))
        elif method == "resources/templates/list":
            result = _listed("resourceTemplates", await self.toolbox.list_resource_templates(principal))
        elif method == "prompts/list":
            result = _listed("prompts", await self.toolbox.list_prompts(principal))
        elif method == "resources/read":
            result = await self.toolbox.read_resource(principal, params["uri"])
        else:
            result = await self.toolbox.get_prompt(principal, params["name"], params.get("arguments"))
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
