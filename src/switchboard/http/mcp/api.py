"""JSON-RPC on the wire: decoding one message, encoding replies and errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from switchboard.context import CanonicalNames, RawReply, Reply, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError, retry_hint
from switchboard.http.endpoint import Endpoint, Responder
from switchboard.http.errors import UNEXPECTED, StoreUnavailable
from switchboard.jsonio import MAX_DEPTH, too_deep
from switchboard.mcp.passthrough import CLIENTS
from switchboard.mcp.relay import RELAY, Relay

log = logging.getLogger("switchboard.mcp")

# Protocol revisions the endpoint speaks (the initialize handshake); the newest by default.
VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# The gateway's errors as JSON-RPC codes: the spec's own where one fits (an unknown tool and bad
# arguments are invalid params), the server-error range for the rest.
_BY_STATUS = {
    400: INVALID_PARAMS, 404: INVALID_PARAMS, 413: INVALID_PARAMS, 415: INVALID_REQUEST,
    401: -32001, 403: -32003, 429: -32029, 502: -32002, 503: -32002, 504: -32004,
}


class RpcFailure(GatewayError):
    """A malformed JSON-RPC message from the client; ``rid`` its id when that could be read
    (JSON-RPC answers ``null`` only when it cannot)."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, rpc_code: int, message: str, code: str, rid: Any = None) -> None:
        super().__init__(message, code=code)
        self.rpc_code = rpc_code
        self.rid = rid


class SessionNotFound(RpcFailure):
    """An ``Mcp-Session-Id`` the gateway does not know (expired, never issued, another caller's):
    HTTP 404, so the client initializes again (streamable HTTP, session management)."""

    status = 404
    type = "not_found_error"

    def __init__(self, rid: Any = None) -> None:
        super().__init__(-32001, "session not found: it expired or is unknown; send initialize again "
                         "(without Mcp-Session-Id) for a new one", "mcp_session_not_found", rid)


class NoServerStream(RpcFailure):
    """``GET /mcp`` of a live session: the endpoint opens no server stream (HTTP 405)."""

    status = 405

    def __init__(self) -> None:
        super().__init__(INVALID_REQUEST, "GET /mcp (a server stream) is not supported: POST requests",
                         "method_not_allowed")


def rpc_error(rid: Any, error: GatewayError) -> dict[str, Any]:
    code = getattr(error, "rpc_code", None)
    if not isinstance(code, int):
        code = _BY_STATUS.get(error.status, INTERNAL_ERROR)
    data: dict[str, Any] = {"status": error.status, "type": error.type, "code": error.code}
    upstream = getattr(error, "data", None)
    if upstream is not None:
        data["upstream"] = upstream
    extra = getattr(error, "extra", None)
    if isinstance(extra, dict):
        data.update(extra)
    if "retry-after" in error.headers:
        data["retry_after"] = error.headers["retry-after"]
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": error.message, "data": data}}


def _wide_integer(body: bytes) -> orjson.Fragment | None:
    """The message's id, when it is an integer literal too wide for 64 bits (JSON-RPC allows any
    number): kept as written, answered as written. None for a real fraction or exponent."""
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError, RecursionError):  # ValueError: over int_max_str_digits too
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return orjson.Fragment(str(value).encode())
    return None


def _event(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"


class McpAPI(CanonicalNames):
    operation = "mcp"
    dialect = "mcp"

    def decode(self, ctx: RequestContext) -> None:
        version = ctx.headers.get("mcp-protocol-version")
        if version is not None and version not in VERSIONS:
            raise RpcFailure(INVALID_REQUEST, f"unsupported MCP-Protocol-Version {version[:40]!r}; "
                             f"supported: {', '.join(VERSIONS)}", "unsupported_protocol_version")
        if ctx.method in ("GET", "DELETE"):  # of a session (app.py routes only those here)
            ctx.request = {"id": None, "method": None, "http": ctx.method, "notification": False}
            return
        try:
            message = orjson.loads(ctx.body)
        except orjson.JSONDecodeError:
            raise RpcFailure(PARSE_ERROR, "parse error: the body is not JSON", "parse_error") from None
        if isinstance(message, list):
            raise RpcFailure(INVALID_REQUEST, "batches are not supported: send one JSON-RPC message per "
                             "request", "invalid_request")
        if not isinstance(message, dict):
            raise RpcFailure(INVALID_REQUEST, "not a JSON-RPC 2.0 message", "invalid_request")
        rid = message.get("id")
        if isinstance(rid, float):  # orjson reads an integer beyond 64 bits as a float
            rid = _wide_integer(ctx.body)
        if "id" in message and (isinstance(rid, bool) or not isinstance(rid, str | int | orjson.Fragment)):
            raise RpcFailure(INVALID_REQUEST, "id must be a string or an integer", "invalid_request")
        if message.get("jsonrpc") != "2.0":  # its id read first: the error answers it
            raise RpcFailure(INVALID_REQUEST, "not a JSON-RPC 2.0 message", "invalid_request", rid)
        if too_deep(message):  # as on the model API: written on (a tool's arguments), it could not be
            raise RpcFailure(INVALID_REQUEST, f"the message nests deeper than {MAX_DEPTH} levels of arrays "
                             "and objects", "invalid_request", rid)
        method = message.get("method")
        if "method" in message:
            if not isinstance(method, str) or not method or len(method) > 200:
                raise RpcFailure(INVALID_REQUEST, "method must be a non-empty string", "invalid_request", rid)
            params = message.get("params")
            if params is not None and not isinstance(params, dict):
                raise RpcFailure(INVALID_PARAMS, "params must be an object", "invalid_params", rid)
            ctx.request = {"id": rid, "method": method, "params": params or {},
                           "notification": "id" not in message}
        elif "id" in message and ("result" in message or "error" in message):
            ctx.request = {"id": rid, "method": None, "response": True, "notification": True,
                           "reply": {k: message[k] for k in ("result", "error") if k in message}}
        else:
            raise RpcFailure(INVALID_REQUEST, "a JSON-RPC request needs a method", "invalid_request", rid)

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        return orjson.dumps(body) if body else b""

    async def encode_stream(self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]],
                            native: bool = False) -> AsyncGenerator[bytes, None]:
        async for batch in batches:
            for message in batch:
                yield b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return orjson.dumps(rpc_error(getattr(error, "rid", None), error))

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        return _event(rpc_error(getattr(error, "rid", None), error))


MCP = McpAPI()


class McpEndpoint(Endpoint):
    """The edge of ``/mcp``: after authentication an error is the JSON-RPC error of the request
    (HTTP 200, as JSON-RPC over HTTP expects), while ``ctx.outcome`` keeps the gateway's status for
    the metrics and logs."""

    async def _serve(self, ctx: RequestContext, out: Responder) -> None:
        if "text/event-stream" in ctx.headers.get("accept", ""):
            await self._relayed(ctx, out)
            return
        try:
            result = await self._chain(ctx)
        except GatewayError as err:
            await self._error(ctx, out, err)
            return
        except Exception as exc:  # a store out of reach is a 503 as elsewhere, anything else a 500
            await self._error(ctx, out, UNEXPECTED.error(ctx.request_id, exc))
            return
        await self._write(ctx, out, result)

    async def _relayed(self, ctx: RequestContext, out: Responder) -> None:
        """For a client that accepts SSE: the chain runs while what the upstream server sends for
        the client (progress of a tools/call with a progressToken, mcp/relay.py) is written as
        events; the reply is then the last event. Nothing relayed: a plain JSON reply."""
        relay = Relay(None)
        session = ctx.headers.get("mcp-session-id")

        async def ask(request: dict[str, Any]) -> dict[str, Any] | None:
            # A server's request, to this client when its session allows (mcp/passthrough.py).
            return await CLIENTS.ask(ctx.principal, session, relay.declared, request, relay.send)

        relay.ask = ask
        RELAY.set(relay)  # seen by the chain's task (a copy of this context)
        try:
            await self._relay(ctx, out, relay)
        finally:
            relay.ask = None  # it closes over the relay: a reference cycle per request otherwise

    async def _relay(self, ctx: RequestContext, out: Responder, relay: Relay) -> None:
        task = asyncio.ensure_future(self._chain(ctx))
        started = False
        try:
            while True:
                getter = asyncio.ensure_future(relay.queue.get())
                done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                if not started:
                    await out.stream_start()
                    started = True
                await out.stream_data(_event(getter.result()))
            while started and not relay.queue.empty():
                await out.stream_data(_event(relay.queue.get_nowait()))
        except BaseException:
            task.cancel()  # the client is gone (or the server stopping): the call is cancelled
            raise
        try:
            result = task.result()
        except GatewayError as err:
            if not started:
                await self._error(ctx, out, err)
                return
            rid = ctx.request.get("id") if ctx.request else None
            ctx.outcome.failed(err)
            await out.stream_data(_event(rpc_error(rid, err)))
            await out.stream_end()
            return
        except Exception as exc:
            failure = UNEXPECTED.error(ctx.request_id, exc)
            if not started:
                await self._error(ctx, out, failure)
                return
            ctx.outcome.failed(failure)
            await out.stream_data(_event(rpc_error(ctx.request.get("id") if ctx.request else None, failure)))
            await out.stream_end()
            return
        if not started:
            await self._write(ctx, out, result)
            return
        if isinstance(result, Reply) and result.body:
            await out.stream_data(_event(result.body))
        await out.stream_end()

    async def _write(self, ctx: RequestContext, out: Responder, result: Result) -> None:
        if isinstance(result, Reply):
            await out.body(result.status, self.inbound.encode(ctx, result.body), ctx.response_headers)
        elif isinstance(result, StreamReply):
            await self._stream(ctx, result, out)
        elif isinstance(result, RawReply):
            await out.raw(result)

    async def _error(self, ctx: RequestContext, out: Responder, err: GatewayError) -> None:
        rid = ctx.request.get("id") if ctx.request else None
        if isinstance(err, StoreUnavailable):
            # A store out of reach (a key to read from the database): the 503 and Retry-After
            # every endpoint answers, which clients retry, not a JSON-RPC error of the call.
            ctx.outcome.failed(err)
            await out.body(err.status, orjson.dumps(rpc_error(rid, err)),
                           {**ctx.response_headers, **retry_hint(err.headers)})
            return
        if ctx.principal is None or err.status == 401 or isinstance(err, RpcFailure):
            # Not authenticated, not a JSON-RPC request, or not of a session the gateway knows:
            # the HTTP status, a JSON-RPC body.
            await out.error(err)
            return
        await out.body(200, orjson.dumps(rpc_error(rid, err)), {**ctx.response_headers, **err.headers})
        ctx.outcome.failed(err)
