"""A client to one upstream MCP server: a small JSON-RPC client over the gateway's aiohttp.

Why not the ``mcp`` SDK's client (docs/architecture.md, "MCP gateway"): the SDK opens one
long-lived session per connection inside anyio task groups, with the headers fixed when it
connects; the gateway needs headers chosen per operation (per-user OAuth), a hard bound on the
bytes it reads from a server, fail-fast concurrency, and errors of its own tree. The protocol
part the gateway needs of a client is small: the ``initialize`` handshake (the session id it
returns), then one POST per request whose answer is JSON or an SSE stream ending with the reply.

Sessions are keyed by the identity of the credentials (a hash of the headers), so two users of a
per-user OAuth server never share an upstream session. Transports: streamable HTTP and the older
HTTP+SSE one (``transport: sse``: a GET stream that names the POST endpoint and carries the
replies). Health: a server whose connections fail ``DOWN_AFTER`` times in a row is *down*; calls
to it then fail at once until the next retry (backoff doubling up to ``MAX_BACKOFF``), and one
success brings it back. A tool call counts only when the server cannot be reached: a reply that
breaks off is that call's failure (``mcp_malformed_reply``), not the server's. A periodic check
(``health_check_seconds``) pings it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.errors import (
    GatewayError,
    UpstreamBadGateway,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from switchboard.mcp.interfaces import AuthorizationRequired, Credentials
from switchboard.mcp.relay import RELAY, Notify
from switchboard.providers.errors import loads
from switchboard.upstream import scrub
from switchboard.upstream.egress import ONLY_PUBLIC, Egress, refusal

log = logging.getLogger("switchboard.mcp")

PROTOCOL_VERSION = "2025-06-18"
_REVISION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CLIENT_INFO = {"name": "switchboard", "version": "0.1.0"}
# Declared so servers may ask; passed to the gateway's client only when its session declared the
# same (mcp/passthrough.py), refused to the server otherwise.
CLIENT_CAPABILITIES: dict[str, Any] = {"elicitation": {}, "sampling": {}, "roots": {"listChanged": False}}
DOWN_AFTER = 2  # consecutive connection failures before a server is down
MAX_BACKOFF = 60.0  # seconds between two tries of a down server, at most
_SESSIONS_MAX = 1024  # upstream sessions kept per server (one per credential identity)
_ERROR_BYTES = 64 * 1024
_LINE_SLACK = 1024  # an SSE line holds an event's data and its field name
_BOM_DATA, _BOM_EVENT = b"\xef\xbb\xbfdata:", b"\xef\xbb\xbfevent:"  # a stream's first line, after a BOM


class ServerBusy(UpstreamUnavailable):
    code = "mcp_server_busy"


class ServerDown(UpstreamUnavailable):
    code = "mcp_server_unavailable"


class AuthorizationNeeded(GatewayError):
    """The server needs this user's OAuth authorization first (the Credentials said so): the
    caller is told where to start it (``data.authorize_url``)."""

    status = 403
    type = "permission_error"
    code = "mcp_authorization_required"

    def __init__(self, required: AuthorizationRequired) -> None:
        super().__init__(str(required))
        self.extra = {"authorize_url": required.authorize_url}


class RpcError(GatewayError):
    """The server answered the request with a JSON-RPC error: relayed to the caller with its own
    code (recorded as a 502: the call failed upstream)."""

    status = 502
    type = "mcp_error"
    code = "mcp_server_error"

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.data = data


class Malformed(UpstreamBadGateway):
    code = "mcp_malformed_reply"


class ConfigCredentials:
    """The server's static ``headers`` from the configuration, the same for every caller."""

    async def headers(self, server: McpServerConfig, principal: Principal | None) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in server.headers.items()}


def identity(headers: Mapping[str, str]) -> str:
    """Who an upstream session belongs to: a hash of the credentials it is opened with."""
    digest = hashlib.sha256()
    for name in sorted(headers):
        digest.update(name.lower().encode() + b"\0" + headers[name].encode() + b"\0")
    return digest.hexdigest()


class _Session:
    __slots__ = ("id", "lock", "pending", "post_url", "reader", "ready", "response", "version")

    def __init__(self) -> None:
        self.id: str | None = None  # Mcp-Session-Id (streamable HTTP)
        # The protocol revision the server answered initialize with: its MCP-Protocol-Version.
        self.version = PROTOCOL_VERSION
        self.ready = False
        self.lock = asyncio.Lock()  # one initialize at a time
        # HTTP+SSE: the endpoint the server named, the stream and its reader task, the replies
        # awaited by request id.
        self.post_url: str | None = None
        self.response: aiohttp.ClientResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}


class Upstream:
    """One upstream MCP server, shared by every caller allowed to use it."""

    def __init__(self, server: McpServerConfig, config: McpConfig, credentials: Credentials,
                 egress: Egress | None = None) -> None:
        self.server = server
        self.config = config
        self.credentials = credentials
        self._egress = egress  # where a tenant's server may connect (upstream/egress.py)
        self._semaphore = asyncio.Semaphore(server.max_concurrency)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._http: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        # Health: consecutive connection failures, and when a down server may be tried again.
        self.failures = 0
        self.retry_at = 0.0
        self._backoff = 1.0
        self._health: asyncio.Task[None] | None = None
        # Requests (and cancellation notices) under way, and whether the server was changed or
        # removed since: a retired upstream is closed when the last of them ends, not under them.
        self._calls = 0
        self._retired = False

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def egress(self) -> Egress | None:
        """Where this server's connections may go (None: anywhere)."""
        return self._egress

    @property
    def down(self) -> bool:
        return self.failures >= DOWN_AFTER

    def start(self) -> None:
        if self.server.health_check_seconds > 0 and self._health is None:
            self._health = asyncio.create_task(self._check_loop(), name=f"mcp-health-{self.name}")

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.server.connect_timeout_seconds,
                                            sock_connect=self.server.connect_timeout_seconds)
            egress = self._egress
            connector = aiohttp.TCPConnector(limit=self.server.max_concurrency + 8, keepalive_timeout=4.0,
                                             resolver=egress.resolver() if egress is not None else None)
            self._http = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                               cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False,
                                               trace_configs=egress.traces() if egress is not None else None)
        return self._http

    @property
    def busy(self) -> bool:
        """Whether a request (or a cancellation notice) is under way on it."""
        return self._calls > 0

    async def retire(self) -> None:
        """The server was changed or removed: no new call comes here (the registry hands out its
        successor), and the calls under way get their answers on this one, closed when the last
        of them ends (closed under them, each would wait out its timeout for an answer)."""
        self._retired = True
        await self._stop_health()
        if not self._calls:
            await self.close()

    def _hold(self) -> None:
        self._calls += 1

    def _release(self) -> None:
        self._calls -= 1
        if self._retired and not self._calls:
            _in_background(self.close())

    @contextlib.asynccontextmanager
    async def _in_use(self) -> AsyncIterator[None]:
        self._hold()
        try:
            yield
        finally:
            self._release()

    async def _stop_health(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._health
            self._health = None

    async def close(self) -> None:
        await self._stop_health()
        # Taken before the awaits: a retired upstream's last call may close it meanwhile too.
        sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        http, self._http = self._http, None
        for session in sessions:
            await _close_stream(session)
        if http is not None:
            await http.close()

    # -- requests ---------------------------------------------------------------------------

    async def request(self, method: str, params: Mapping[str, Any] | None, principal: Principal | None,
                      *, wait: float | None = None, notify: Notify | None = None) -> dict[str, Any]:
        """The ``result`` of one JSON-RPC request to the server on behalf of ``principal``.
        Raises a GatewayError: RpcError for the server's own JSON-RPC error, the server being
        down, busy, slow (``wait`` seconds, default the server's ``timeout_seconds``) or malformed."""
        now = time.monotonic()
        if self.down and now < self.retry_at:
            raise ServerDown(f"the MCP server '{self.name}' is unavailable; try again later")
        try:
            headers = await self.credentials.headers(self.server, principal)
        except AuthorizationRequired as required:
            raise AuthorizationNeeded(required) from None
        wait = wait if wait is not None else self.server.timeout_seconds
        if self._semaphore.locked():  # no await between this check and taking a slot
            raise ServerBusy(f"the MCP server '{self.name}' is busy ({self.server.max_concurrency} calls "
                             "under way); try again shortly")
        async with self._semaphore, self._in_use():
            try:
                async with asyncio.timeout(wait):
                    result = await self._request(method, params, headers, _scrubbing(notify, headers))
            except aiohttp.ConnectionTimeoutError:
                # Not a slow answer: no connection within connect_timeout_seconds (aiohttp's is a
                # TimeoutError too), a failure to reach the server, counted as a refused one is.
                self._failed()
                raise UpstreamUnreachable(
                    f"cannot reach the MCP server '{self.name}' (no connection within "
                    f"connect_timeout_seconds, {self.server.connect_timeout_seconds:g} s)") from None
            except TimeoutError as exc:
                if method != "tools/call":  # a slow tool is not a down server
                    self._failed()
                slow = f"the MCP server '{self.name}' did not answer within {wait:g} s"
                raise UpstreamTimeout(str(exc) if isinstance(exc, _NoEndpoint) else slow) from None
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if _server_failed(exc, method):
                    self._failed()
                refused = refusal(exc)
                if refused is not None:
                    raise UpstreamUnreachable(
                        f"the MCP server '{self.name}' may not be reached: {refused}; {ONLY_PUBLIC}",
                        code="upstream_address_refused") from None
                if isinstance(exc, aiohttp.ClientConnectorError) or method != "tools/call":
                    raise UpstreamUnreachable(f"cannot reach the MCP server '{self.name}' "
                                              f"({type(exc).__name__})") from None
                raise Malformed(f"the MCP server '{self.name}' broke off its reply to this call "
                                f"({type(exc).__name__})") from None
            except aiohttp.ClientError as exc:
                # The server was reached and its reply broke (cut mid-body, not HTTP): that
                # reply's fault, not a sign the server is down for everyone.
                raise Malformed(f"the MCP server '{self.name}' sent a broken reply "
                                f"({type(exc).__name__})") from None
            except RpcError as exc:
                raise _scrubbed(exc, headers) from None
            except UpstreamBadGateway as exc:
                # A user's OAuth token the server refuses (revoked, ended early): forgotten, and
                # the user is asked to authorize again (mcp/credentials.py).
                refused = getattr(self.credentials, "refused", None)
                if exc.code != "mcp_server_auth_failed" or self.server.oauth is None or refused is None:
                    raise
                raise AuthorizationNeeded(await refused(self.server, principal)) from None
        self._succeeded()
        if tool_failed(self.name, result):  # a tool's own failure, which may quote what it was sent
            return _scrubbed_result(result, headers)
        return result

    def _failed(self) -> None:
        self.failures += 1
        if self.down:
            self.retry_at = time.monotonic() + self._backoff
            if self.failures == DOWN_AFTER:
                log.warning("MCP server %r is down; retrying in %.0f s", self.name, self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _succeeded(self) -> None:
        if self.down:
            log.info("MCP server %r is back", self.name)
        self.failures = 0
        self._backoff = 1.0

    async def _request(self, method: str, params: Mapping[str, Any] | None,
                       headers: dict[str, str], notify: Notify | None = None) -> dict[str, Any]:
        key = identity(headers)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session()
            while len(self._sessions) > _SESSIONS_MAX:
                _, old = self._sessions.popitem(last=False)
                await _close_stream(old)
        else:
            self._sessions.move_to_end(key)
        for attempt in range(2):
            if not session.ready:
                async with session.lock:
                    if not session.ready:
                        await self._initialize(session, headers)
            try:
                return await self._send(session, method, params, headers, notify=notify)
            except _SessionGone:
                session.ready = False
                session.id = None
                await _close_stream(session)
                if attempt:
                    raise Malformed(f"the MCP server '{self.name}' keeps dropping its session") from None
        raise AssertionError("unreachable")

    async def _initialize(self, session: _Session, headers: dict[str, str]) -> None:
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": CLIENT_CAPABILITIES,
                  "clientInfo": CLIENT_INFO}
        if self.server.transport == "sse":
            await self._open_stream(session, headers)
        session.id = None
        result = await self._send(session, "initialize", params, headers, initializing=True)
        if not isinstance(result, dict):
            raise Malformed(f"the MCP server '{self.name}' answered initialize with no result")
        # The revision the server chose is the one its later requests name (MCP-Protocol-Version);
        # one that does not read as a revision (YYYY-MM-DD) is not put in a header.
        negotiated = result.get("protocolVersion")
        session.version = (negotiated if isinstance(negotiated, str) and _REVISION.fullmatch(negotiated)
                           else PROTOCOL_VERSION)
        await self._notify(session, "notifications/initialized", headers)
        session.ready = True

    def _headers(self, session: _Session, headers: dict[str, str], initializing: bool) -> dict[str, str]:
        out = {**headers, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
        if not initializing:
            out["MCP-Protocol-Version"] = session.version
        if session.id is not None:
            out["Mcp-Session-Id"] = session.id
        return out

    async def _notify(self, session: _Session, method: str, headers: dict[str, str]) -> None:
        body = orjson.dumps({"jsonrpc": "2.0", "method": method})
        url = session.post_url or self._url
        sent = self._headers(session, headers, False)
        async with self._client().post(url, data=body, headers=sent, allow_redirects=False) as resp:
            await resp.content.read(_ERROR_BYTES)

    @property
    def _url(self) -> str:
        assert self.server.url is not None, "HTTP transports have a url"
        return self.server.url

    async def _send(self, session: _Session, method: str, params: Mapping[str, Any] | None,
                    headers: dict[str, str], *, initializing: bool = False,
                    notify: Notify | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        body = orjson.dumps(message)
        try:
            if self.server.transport == "sse":
                return await self._send_sse(session, rid, body, headers, initializing)
            sent = self._headers(session, headers, initializing)
            return await self._post(session, rid, body, sent, headers, initializing, notify)
        except asyncio.CancelledError:
            # The caller gave up (cancelled, gone, timed out): tell the server (mcp/relay.py).
            self._cancel_upstream(session, rid, headers)
            raise

    async def _post(self, session: _Session, rid: int, body: bytes, sent: dict[str, str],
                    headers: dict[str, str], initializing: bool, notify: Notify | None) -> dict[str, Any]:
        async with self._client().post(self._url, data=body, headers=sent,
                                     allow_redirects=False) as resp:
            if resp.status == 404 and session.id is not None:
                raise _SessionGone
            if 300 <= resp.status <= 399:  # never followed: the caller's credentials go with it
                raise _status_error(self.name, resp.status)
            if resp.status >= 400:
                text = (await resp.content.read(_ERROR_BYTES)).decode(errors="replace")
                reply = _parse_error_body(text)
                if reply is not None:
                    return _result(self.name, reply)
                raise _status_error(self.name, resp.status)
            if initializing:
                session.id = resp.headers.get("mcp-session-id") or None
            kind = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind == "text/event-stream":
                events = _events(resp, self.config.max_result_bytes, self.name)
                reply = await self._from_events(events, rid, notify, session, headers)
            elif kind == "application/json":
                data = await _read_bounded(resp, self.config.max_result_bytes, self.name)
                reply = _loads(data, self.name)
            else:
                raise Malformed(f"the MCP server '{self.name}' answered with content type {kind[:60]!r}")
        return _result(self.name, reply, rid)

    async def _from_events(self, events: AsyncIterator[tuple[str, bytes]], rid: int,
                           notify: Notify | None = None, session: _Session | None = None,
                           headers: dict[str, str] | None = None) -> Any:
        async for _, data in events:
            if not data.strip():
                continue
            message = _loads(data, self.name)
            if not isinstance(message, dict):
                continue
            # An id is ours only as an integer: ``true`` equals 1 to Python but names no request.
            mid = message.get("id")
            if "method" not in message and ((type(mid) is int and mid == rid) or (
                    mid is None and "error" in message)):
                # The reply, or the server's error it could not tie to a request (id null):
                # passed on as the same error in a JSON answer is (_result).
                return message
            if "method" in message and "id" in message and session is not None and headers is not None:
                # A request of the server's own (sampling, elicitation, roots, ping): answered,
                # so the server does not wait (docs/mcp.md, "What is supported").
                # Passed to the client when it can answer (mcp/passthrough.py), else refused.
                relay = RELAY.get()
                asked = _scrubbed_message(message, headers)
                reply = (await relay.ask(asked) if relay is not None and relay.ask is not None
                         and asked is not None else None)
                await self._answer(session, headers, message, reply)
            elif "method" in message and notify is not None:
                await notify(message)  # progress and other notifications, for the client
        raise Malformed(f"the MCP server '{self.name}' ended its stream without a reply")

    async def _answer(self, session: _Session, headers: dict[str, str], request: dict[str, Any],
                      reply: dict[str, Any] | None = None) -> None:
        if reply is None:
            reply = server_request_reply(request)
        url = session.post_url or self._url
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.server.connect_timeout_seconds), self._client().post(
                    url, data=orjson.dumps(reply), headers=self._headers(session, headers, False),
                    allow_redirects=False) as resp:
                await resp.content.read(_ERROR_BYTES)

    def _cancel_upstream(self, session: _Session, rid: int, headers: dict[str, str]) -> None:
        """Send ``notifications/cancelled`` for ``rid`` in the background (bounded)."""
        message = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": rid, "reason": "cancelled by the gateway's client"}}
        url = session.post_url or self._url
        sent = self._headers(session, headers, False)

        async def send() -> None:
            try:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.server.connect_timeout_seconds), self._client().post(
                            url, data=orjson.dumps(message), headers=sent, allow_redirects=False) as resp:
                        await resp.content.read(_ERROR_BYTES)
            finally:
                self._release()

        self._hold()  # before the call it cancels ends: a retired upstream stays open for it
        _in_background(send())

    # -- HTTP+SSE transport --------------------------------------------------------------------

    async def _open_stream(self, session: _Session, headers: dict[str, str]) -> None:
        await _close_stream(session)
        sent = {**headers, "Accept": "text/event-stream"}
        resp = await self._client().get(self._url, headers=sent, allow_redirects=False)
        if resp.status != 200:
            resp.release()
            raise _status_error(self.name, resp.status)
        session.response = resp
        events = _events(resp, self.config.max_result_bytes, self.name)
        try:
            async with asyncio.timeout(self.server.connect_timeout_seconds):
                async for kind, data in events:
                    if kind == "endpoint":
                        session.post_url = self._same_origin(data.decode(errors="replace").strip())
                        break
                else:
                    raise Malformed(f"the MCP server '{self.name}' named no message endpoint")
        except TimeoutError:
            # The bound that ran out is connect_timeout_seconds, not timeout_seconds: named.
            await _close_stream(session)
            bound = self.server.connect_timeout_seconds
            raise _NoEndpoint(f"the MCP server '{self.name}' named no message endpoint within "
                              f"connect_timeout_seconds ({bound:g} s)") from None
        except BaseException:
            await _close_stream(session)
            raise
        session.reader = asyncio.create_task(self._read_stream(session, events, headers))

    def _same_origin(self, endpoint: str) -> str:
        """The server's message endpoint, only on the configured server's origin."""
        url = urljoin(self._url, endpoint)
        a, b = urlsplit(url), urlsplit(self._url)
        if (a.scheme, a.netloc) != (b.scheme, b.netloc):
            raise Malformed(f"the MCP server '{self.name}' named a message endpoint on another origin")
        return url

    async def _read_stream(self, session: _Session, events: AsyncIterator[tuple[str, bytes]],
                           headers: dict[str, str]) -> None:
        error: Exception = Malformed(f"the MCP server '{self.name}' closed its event stream")
        try:
            async for kind, data in events:
                if kind != "message" or not data.strip():
                    continue
                try:
                    message = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(message, dict) and "method" not in message:
                    # Only an integer names a request of the gateway's; any other id (an array, an
                    # object: not hashable) is ignored rather than ending the stream (as stdio).
                    rid = message.get("id")
                    if rid is None and "error" in message:
                        # The server's error it could not tie to a request (id null or none):
                        # every call waiting on this stream may be the one, so each gets it as
                        # the server's error rather than waiting out timeout_seconds.
                        waiting = list(session.pending.values())
                        session.pending.clear()
                    else:
                        future = session.pending.pop(rid, None) if type(rid) is int else None
                        waiting = [future] if future is not None else []
                    for future in waiting:
                        if not future.done():
                            future.set_result(message)
                elif isinstance(message, dict) and "id" in message:
                    # A request of the server's (ping, elicitation, ...): answered (ping) or refused
                    # at once, as on the other transports, else the server waits out its call
                    # (one at a time, each answer bounded by connect_timeout_seconds).
                    await self._answer(session, headers, message)
        except Exception as exc:
            error = exc if isinstance(exc, GatewayError) else Malformed(
                f"the MCP server '{self.name}' event stream failed: {type(exc).__name__}")
        finally:
            session.ready = False
            for future in session.pending.values():
                if not future.done():
                    future.set_exception(error)
            session.pending.clear()

    async def _send_sse(self, session: _Session, rid: int, body: bytes, headers: dict[str, str],
                        initializing: bool) -> dict[str, Any]:
        if session.post_url is None or session.reader is None or session.reader.done():
            if not initializing:
                raise _SessionGone
            raise Malformed(f"the MCP server '{self.name}' has no open event stream")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        session.pending[rid] = future
        try:
            sent = self._headers(session, headers, initializing)
            async with self._client().post(session.post_url, data=body, headers=sent,
                                     allow_redirects=False) as resp:
                if resp.status >= 300:  # a redirect too: never followed
                    raise _status_error(self.name, resp.status)
                await resp.content.read(_ERROR_BYTES)
            reply = await future
        finally:
            session.pending.pop(rid, None)
        return _result(self.name, reply, rid)

    # -- health ----------------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            await self.request("ping", None, None, wait=self.server.connect_timeout_seconds)
        except Exception:
            return False
        return True

    async def _check_loop(self) -> None:
        every = self.server.health_check_seconds
        while True:
            await asyncio.sleep(every if not self.down else max(0.0, self.retry_at - time.monotonic()) + 0.01)
            if self.server.oauth is not None:  # per-user credentials: calls tell the health
                continue
            if self.down and time.monotonic() < self.retry_at:
                continue
            await self.ping()


_BACKGROUND: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _server_failed(exc: BaseException, method: str) -> bool:
    """Whether a connection error counts towards the server being *down* (for every caller).
    The gateway's own operations (initialize, lists, ping) count every connection error; a tool
    call only when the server could not be reached at all (connect refused, no route, a process
    that died is refused its next connection): one tool whose reply breaks off mid-way, which
    any caller can set off, leaves the server and its other tools up."""
    if method != "tools/call":
        return True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, aiohttp.ClientOSError)


def server_request_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """The gateway's own answer to a request an upstream server sends: ``ping`` answered, the rest
    (sampling, elicitation, roots) refused: used when the request cannot be passed to the client
    (no session declaring the capability, no SSE stream; docs/mcp.md, "What is supported")."""
    method = request.get("method")
    if method == "ping":
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": {}}
    return {"jsonrpc": "2.0", "id": request.get("id"),
            "error": {"code": -32601, "message": f"{str(method)[:100]} is not passed through by the gateway"}}


class _NoEndpoint(TimeoutError):
    """An HTTP+SSE server's stream named no message endpoint within connect_timeout_seconds."""


class _SessionGone(Exception):
    """The server no longer knows the session (404 with a session id): open a new one."""


async def _close_stream(session: _Session) -> None:
    if session.reader is not None:
        session.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await session.reader
        session.reader = None
    if session.response is not None:
        session.response.close()
        session.response = None
    session.post_url = None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, name: str) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise too_large(name, limit)
    data = await resp.content.read(limit + 1)
    while len(data) <= limit:
        more = await resp.content.read(limit + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) > limit:
        raise too_large(name, limit)
    return data


def too_large(name: str, limit: int) -> GatewayError:
    return UpstreamResponseTooLarge(f"the MCP server '{name}' sent a reply larger than {limit} bytes "
                                    "(mcp.max_result_bytes)", code="mcp_result_too_large")


async def _lines(resp: aiohttp.ClientResponse, limit: int, name: str) -> AsyncIterator[bytes]:
    """The body's lines (without their end), none longer than an event's data may be
    (``limit``, mcp.max_result_bytes) plus room for its field name."""
    buffer, cr = b"", False
    async for chunk in resp.content.iter_any():
        # A line ends in CRLF, LF or a bare CR (WHATWG): normalised to LF as providers/sse.py's
        # SSEBlocks does; a CR ending a read may be the first half of a CRLF.
        if cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        cr = False
        if b"\r" in chunk:
            cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            yield buffer[:end]
            buffer = buffer[end + 1:]
        if len(buffer) > limit + _LINE_SLACK:
            raise too_large(name, limit)  # the configured bound and the server's name, never its host
    if buffer:
        yield buffer


async def _events(resp: aiohttp.ClientResponse, limit: int, name: str) -> AsyncIterator[tuple[str, bytes]]:
    """Server-sent events of the server ``name`` as (event, data), each bounded by ``limit`` bytes."""
    kind, data = "message", bytearray()
    async for line in _lines(resp, limit, name):
        if not line:
            if data or kind != "message":
                yield kind, bytes(data)
            kind, data = "message", bytearray()
        elif line.startswith(b"data:"):
            if data:
                data += b"\n"
            data += line[5:].removeprefix(b" ")
            if len(data) > limit:
                raise too_large(name, limit)
        elif line.startswith(b"event:"):
            kind = line[6:].strip().decode(errors="replace")
        # A stream may start with a UTF-8 byte order mark, to be ignored (WHATWG): looked for
        # only on a line no field matched, so the usual lines cost nothing more.
        elif line.startswith(_BOM_DATA):
            data += line[8:].removeprefix(b" ")
            if len(data) > limit:
                raise too_large(name, limit)
        elif line.startswith(_BOM_EVENT):
            kind = line[9:].strip().decode(errors="replace")
    if data:
        yield kind, bytes(data)


def _loads(data: bytes, name: str) -> Any:
    try:
        return loads(data)  # a byte order mark before the JSON is ignored, as the providers do
    except orjson.JSONDecodeError:
        raise Malformed(f"the MCP server '{name}' sent malformed JSON") from None


def _parse_error_body(text: str) -> dict[str, Any] | None:
    try:
        reply = orjson.loads(text)
    except orjson.JSONDecodeError:
        if not text.startswith("\ufeff"):  # a byte order mark before it is ignored (providers/errors.py)
            return None
        try:
            reply = orjson.loads(text[1:])
        except orjson.JSONDecodeError:
            return None
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        return reply
    return None


def _scrubbed(error: RpcError, headers: Mapping[str, str]) -> RpcError:
    """``error`` (the server's own JSON-RPC error) with every credential it was sent (configured
    headers, a user's OAuth token) replaced by ``[redacted]`` in its message and data: a server
    may echo what it was sent, and both reach the caller and the logs."""
    needles = scrub.forms(scrub.header_secrets(headers))
    if not needles:
        return error
    message = scrub.redact(error.message.encode(), needles).decode("utf-8", "replace")
    data = error.data if error.data is None else _redacted(error.data, needles)
    return RpcError(error.rpc_code, message, data)


def _scrubbed_result(result: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """A tool's error result (``isError``: MCP reports a tool's failure in its result, not as a
    JSON-RPC error) with every credential it was sent replaced by ``[redacted]``, as in
    :func:`_scrubbed`: its content and structured content reach the caller, the model of a tool
    loop and the request log."""
    needles = scrub.forms(scrub.header_secrets(headers))
    if not needles:
        return result
    redacted = _redacted(result, needles)
    if not isinstance(redacted, dict):  # a redaction that cut through an escape: the content dropped
        return {"content": [{"type": "text", "text": scrub.MARKER.decode()}], "isError": True}
    return redacted


def _scrubbed_message(message: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any] | None:
    """A server's message for the client (a notification, a request passed through) with every
    credential it was sent replaced by ``[redacted]``, as in :func:`_scrubbed`; None when a
    redaction cut through an escape (the message is then not passed on)."""
    needles = scrub.forms(scrub.header_secrets(headers))
    if not needles:
        return message
    redacted = _redacted(message, needles)
    return redacted if isinstance(redacted, dict) else None


def _scrubbing(notify: Notify | None, headers: Mapping[str, str]) -> Notify | None:
    """``notify`` passing each message on scrubbed of the credentials the server was sent
    (:func:`_scrubbed_message`): progress messages reach the caller as its answers do."""
    needles = scrub.forms(scrub.header_secrets(headers)) if notify is not None else []
    if notify is None or not needles:
        return notify

    async def scrubbed(message: dict[str, Any]) -> None:
        redacted = _redacted(message, needles)
        if isinstance(redacted, dict):
            await notify(redacted)

    return scrubbed


def _redacted(value: Any, needles: list[bytes]) -> Any:
    """``value`` (JSON) with every needle replaced; None when a redaction cut through an escape
    and the rest is no longer JSON."""
    try:
        return orjson.loads(scrub.redact(orjson.dumps(value), needles))
    except orjson.JSONDecodeError:
        return None


def _status_error(name: str, status: int) -> GatewayError:
    if status in (401, 403):
        return UpstreamBadGateway(f"the MCP server '{name}' refused the gateway's credentials ({status})",
                                  code="mcp_server_auth_failed")
    if 300 <= status <= 399:  # its target is not shown: it may be an internal address
        return UpstreamBadGateway(f"the MCP server '{name}' answered with a redirect (HTTP {status}), "
                                  "which the gateway does not follow; check its url", code="mcp_server_error")
    return UpstreamBadGateway(f"the MCP server '{name}' answered HTTP {status}", code="mcp_server_error")


def tool_failed(name: str, result: Mapping[str, Any]) -> bool:
    """Whether a tool's result reports its failure (``isError``), by the one rule of every path
    (the transports, /mcp's record, the tool loop). MCP's schema makes it a boolean, absent or
    null meaning false; any other value (``1``, ``"true"``) is a malformed reply, not guessed at
    either way: taken for success, what the server meant as an error would go out unscrubbed."""
    failed = result.get("isError")
    if failed is None or type(failed) is bool:
        return failed is True
    raise Malformed(f"the MCP server '{name}' sent a tool result whose isError is not a boolean")


def _result(name: str, reply: Any, rid: int | None = None) -> dict[str, Any]:
    """The ``result`` of a JSON-RPC reply, or the RpcError it carries; anything else is malformed."""
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise Malformed(f"the MCP server '{name}' sent a reply that is not JSON-RPC 2.0")
    answered = reply.get("id")
    # An id is ours only as an integer: ``true`` equals 1 to Python but names no request.
    if rid is not None and (type(answered) is not int or answered != rid) and "error" not in reply:
        raise Malformed(f"the MCP server '{name}' answered another request id")
    error = reply.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        if type(code) is not int:  # an integer, not a boolean (True is an int to isinstance)
            raise Malformed(f"the MCP server '{name}' sent a malformed JSON-RPC error")
        message = error.get("message")
        return_message = message[:2000] if isinstance(message, str) else "error"
        raise RpcError(code, f"{name}: {return_message}", error.get("data"))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise Malformed(f"the MCP server '{name}' sent a reply without a result object")
    return result
