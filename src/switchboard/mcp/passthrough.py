"""Server-initiated requests passed through ``/mcp`` to the client (docs/mcp.md, "Server-initiated
requests").

- Sessions: ``initialize`` answers an ``Mcp-Session-Id``; the client's declared capabilities
  (elicitation, sampling, roots) are kept under it in the shared cache (Redis in cluster mode)
  for ``mcp.client_session_seconds`` from its last use (each request presenting it extends it),
  bound to the caller (tenant and key). A request presenting an unknown or expired id, or
  another caller's (whose expiry it leaves as it was), is answered 404
  (:meth:`ClientRequests.lookup`, one cache call that also reads what the session declared), as
  the transport's session management says, so the client initializes again. No id: served
  statelessly, as before (a server's request is refused to the server). A caller holds at most
  ``mcp.max_client_sessions_per_key`` open at once (:class:`TooManySessions` at ``initialize``;
  one ended or expired frees its place): counted in the cache as the session is stored, one
  step (cluster: one round trip, at ``initialize`` only).
- A request of an upstream server (``elicitation/create``, ``sampling/createMessage``,
  ``roots/list``) made while the gateway serves a client request that accepts SSE and presented
  a session that declared the capability is written to that request's SSE stream with an id of
  the gateway's (``sb-…``); the client POSTs its JSON-RPC answer (with the session id) to
  ``/mcp``. The instance holding the waiting request resolves it; an answer landing on another
  instance is published on the change feed (:data:`TOPIC`), every instance listens and only the
  one holding the id acts.
- Bounds: ``mcp.client_request_timeout_seconds`` (then the server gets an error),
  ``mcp.max_pending_client_requests`` per session, ``mcp.max_client_answer_bytes`` per answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.config.mcp import McpConfig
from switchboard.context import Principal
from switchboard.errors import GatewayError
from switchboard.stores.protocols import ChangeFeed, SharedCache, Subscription

log = logging.getLogger("switchboard.mcp")

TOPIC = "mcp.client_answers"
PREFIX = "mcp:client-session:"
OPEN = "mcp:client-sessions-of:"  # the sessions a caller holds, by ``caller``
# The methods passed through, and the client capability each needs.
CAPABILITY = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling",
              "roots/list": "roots"}
_ID_PREFIX = "sb-"


class AnswerTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "mcp_answer_too_large"


class TooManySessions(GatewayError):
    """``initialize`` of a caller already holding ``mcp.max_client_sessions_per_key`` sessions."""

    status = 429
    type = "rate_limit_error"
    code = "mcp_too_many_sessions"

    def __init__(self, limit: int) -> None:
        super().__init__(f"this key already holds {limit} MCP sessions, the most it may hold open "
                         "(mcp.max_client_sessions_per_key): end one (DELETE /mcp with its "
                         "Mcp-Session-Id) or let one expire, then initialize again")


def caller(principal: Principal | None) -> str:
    """Who a session belongs to: the tenant and the key (or principal) that opened it."""
    if principal is None:
        return ""
    return f"{principal.tenant_id or ''}/{principal.key_id or principal.id}"


def _mark(owner: str) -> bytes:
    """How the record of a session of ``owner`` begins (``ClientRequests.open`` writes the
    caller first, and orjson writes a string one way): the cache extends only such a record."""
    return b'{"caller":' + orjson.dumps(owner) + b","


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


class _Pending:
    __slots__ = ("caller", "future", "session")

    def __init__(self, session: str, owner: str, future: asyncio.Future[dict[str, Any]]) -> None:
        self.session = session
        self.caller = owner
        self.future = future


class ClientRequests:
    """The sessions' capabilities and the server requests waiting for a client's answer."""

    def __init__(self) -> None:
        self.config = McpConfig()
        self._cache: SharedCache | None = None
        self._feed: ChangeFeed | None = None
        self._subscription: Subscription | None = None
        self._pending: dict[str, _Pending] = {}
        self._per_session: dict[str, int] = {}

    async def start(self, config: McpConfig, cache: SharedCache, feed: ChangeFeed) -> None:
        self.config = config
        self._cache, self._feed = cache, feed
        self._subscription = await feed.subscribe(TOPIC, self._on_feed)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
        self._per_session.clear()

    # -- sessions ------------------------------------------------------------------------------

    async def open(self, principal: Principal | None, capabilities: Any) -> str | None:
        """A new session for ``principal`` with the capabilities it declared; None without a
        cache (not started), a caller, or any of the capabilities (nothing to keep: no cache
        entry per stateless initialize), and when the cache cannot keep it (unreachable): the
        client is then served statelessly, as :meth:`lookup` serves one, not failed. A caller
        holding ``mcp.max_client_sessions_per_key`` live sessions already: :class:`TooManySessions`."""
        if self._cache is None or principal is None:
            return None
        declared = capabilities if isinstance(capabilities, dict) else {}
        kept = sorted(name for name in set(CAPABILITY.values()) if isinstance(declared.get(name), dict))
        if not kept:
            return None
        session = secrets.token_urlsafe(24)
        # The caller first: the record begins with its mark (``_mark``), which the cache checks.
        owner = caller(principal)
        record = orjson.dumps({"caller": owner, "capabilities": kept})
        limit, ttl = self.config.max_client_sessions_per_key, self.config.client_session_seconds
        try:
            stored = await self._cache.add_counted(PREFIX + session, record, ttl, OPEN + owner, limit)
        except Exception:
            log.warning("MCP client session not kept: the cache failed", exc_info=True)
            return None
        if not stored:
            raise TooManySessions(limit)
        return session

    async def lookup(self, principal: Principal | None, session: str) -> frozenset[str] | None:
        """The capabilities ``session`` declared when it is a live session of the caller's, its
        expiry then extended by ``mcp.client_session_seconds``; None when it is not (unknown,
        expired, another caller's: whose expiry is left as it was, only its owner's requests
        keep it alive). One cache call (cluster: one round trip), whose answer the request keeps
        for :meth:`ask`. Nothing declared when that cannot be told (no cache, the cache
        unreachable): the request is served, without its session, rather than sending the client
        to initialize again for nothing."""
        if self._cache is None or principal is None:
            return frozenset()
        if len(session) > 100:
            return None
        owner = caller(principal)
        try:
            # The caller's count of sessions (``open``) kept as long as the session, in the same step.
            raw = await self._cache.touch(PREFIX + session, self.config.client_session_seconds,
                                          _mark(owner), OPEN + owner)
            record = orjson.loads(raw) if raw is not None else None
        except Exception:
            log.warning("MCP client session lookup failed", exc_info=True)
            return frozenset()
        if not isinstance(record, dict) or record.get("caller") != owner:
            return None
        names = record.get("capabilities")
        return frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else frozenset()

    async def end(self, session: str) -> None:
        """The client ended its session (``DELETE /mcp``); ``lookup`` checked it is the caller's.
        A cache that cannot be reached leaves it to expire (only its owner could use it)."""
        if self._cache is not None:
            try:
                await self._cache.delete(PREFIX + session)
            except Exception:
                log.warning("MCP client session not deleted: the cache failed", exc_info=True)

    # -- a server's request, to the client -----------------------------------------------------

    async def ask(self, principal: Principal | None, session: str | None, declared: frozenset[str],
                  request: Mapping[str, Any], send: Any) -> dict[str, Any] | None:
        """The client's answer to the server's ``request`` (its id the server's), or None when it
        cannot be passed through (then the gateway refuses it). ``declared``: what the session
        declared, as :meth:`lookup` found it for the request. ``send(message)`` writes the
        request to the client's stream, False when it cannot."""
        method = request.get("method")
        needed = CAPABILITY.get(method) if isinstance(method, str) else None
        if needed is None or session is None or needed not in declared:
            return None
        rid = request.get("id")
        if self._per_session.get(session, 0) >= self.config.max_pending_client_requests:
            return _error(rid, -32603, f"too many requests wait for the client's answer (at most "
                          f"{self.config.max_pending_client_requests}, mcp.max_pending_client_requests)")
        gid = _ID_PREFIX + secrets.token_urlsafe(16)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[gid] = _Pending(session, caller(principal), future)
        self._per_session[session] = self._per_session.get(session, 0) + 1
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": gid, "method": method}
            if isinstance(request.get("params"), dict):
                message["params"] = request["params"]
            if not send(message):
                return _error(rid, -32603, "the request could not be written to the client")
            timeout = self.config.client_request_timeout_seconds
            try:
                async with asyncio.timeout(timeout):
                    answer = await future
            except TimeoutError:
                return _error(rid, -32001, f"the client did not answer {method} within {timeout:g} s "
                              "(mcp.client_request_timeout_seconds)")
        finally:
            self._pending.pop(gid, None)
            left = self._per_session.get(session, 1) - 1
            if left > 0:
                self._per_session[session] = left
            else:
                self._per_session.pop(session, None)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if isinstance(answer.get("error"), dict):
            reply["error"] = answer["error"]
        else:
            reply["result"] = answer.get("result") if isinstance(answer.get("result"), dict) else {}
        return reply

    # -- the client's answer ------------------------------------------------------------------

    async def answer(self, principal: Principal | None, session: str | None, rid: Any,
                     reply: Mapping[str, Any], size: int) -> bool:
        """Route the client's answer ``rid`` to the waiting server request (here, or on another
        instance through the change feed). False: not one of the gateway's ids."""
        if not isinstance(rid, str) or not rid.startswith(_ID_PREFIX) or len(rid) > 100 or not session:
            return False
        owner = caller(principal)
        limit = self.config.max_client_answer_bytes
        body: dict[str, Any]
        if size > limit:
            body = {"error": {"code": -32603, "message": f"the client's answer is larger than {limit} bytes"}}
        elif isinstance(reply.get("error"), dict):
            body = {"error": reply["error"]}
        else:
            body = {"result": reply.get("result")}
        if not self._resolve(rid, session, owner, body) and self._feed is not None:
            message = orjson.dumps({"id": rid, "session": session, "caller": owner, "reply": body})
            await self._feed.publish(TOPIC, message.decode())
        if size > limit:
            raise AnswerTooLarge(f"the answer is larger than {limit} bytes (mcp.max_client_answer_bytes); "
                                 "the server was told")
        return True

    def _resolve(self, rid: str, session: str, owner: str, body: dict[str, Any]) -> bool:
        pending = self._pending.get(rid)
        if pending is None or pending.session != session or pending.caller != owner:
            return False
        if not pending.future.done():
            pending.future.set_result(body)
        return True

    async def _on_feed(self, topic: str, message: str) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            data = orjson.loads(message)
            if isinstance(data, dict) and isinstance(data.get("reply"), dict):
                rid, session, owner = data.get("id"), data.get("session"), data.get("caller")
                if isinstance(rid, str) and isinstance(session, str) and isinstance(owner, str):
                    self._resolve(rid, session, owner, data["reply"])


CLIENTS = ClientRequests()
