"""The edge of the pipeline: one ASGI handler per operation, and the owner of each request's
lifecycle.

It reads the (bounded) body, builds the request context, runs the operation's stage chain and
writes the result in the inbound API's wire format, recording what was sent in ``ctx.outcome``.
Errors become that API's error body with the error's status; after a stream has started they
become an error event inside the stream. Whatever happened (success, error, client gone, server
shutting down), it then runs the request's post-response callbacks and logs a failed request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable

from switchboard.context import (
    Batches,
    Chunk,
    InboundAPI,
    RawReply,
    Reply,
    RequestContext,
    StreamReply,
    milliseconds,
    unique_id,
)
from switchboard.errors import GatewayError, InvalidRequest, UnsupportedMediaType, retry_hint
from switchboard.http.asgi import (
    ABORT,
    EDGE_ANSWERED,
    JSON_CT,
    REQUEST_ID,
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    encode_headers,
    inflate_request_body,
    read_body,
)
from switchboard.http.disconnect import CLIENT_LEFT, ClientGone, until_disconnect
from switchboard.http.errors import UNEXPECTED, ServerShuttingDown
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.state import ServerState, Unserved
from switchboard.observability.logs import CURRENT
from switchboard.observability.requests import log_failure
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.http")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Headers whose repetition is ambiguous: which key, which body type, which id (request, session) counts.
_SINGLE_VALUED = ("authorization", "x-api-key", "x-goog-api-key", "content-type", "content-encoding",
                  "x-request-id", "x-switchboard-session")

# The inbound API of a request no endpoint took (count_refused): only its context needs one.
_UNROUTED = OpenAIJson("")

Headers = list[tuple[bytes, bytes]]

OVERHEAD_HEADER = b"x-switchboard-overhead-ms"
UPSTREAM_HEADER = b"x-switchboard-upstream-ms"


def timing_headers(ctx: RequestContext) -> Headers:
    """The gateway's own time and the upstream's until now (fixed by the first call), in
    milliseconds: on every model-call response."""
    overhead, upstream = ctx.split_time()
    return [(OVERHEAD_HEADER, b"%.3f" % milliseconds(overhead)),
            (UPSTREAM_HEADER, b"%.3f" % milliseconds(upstream))]


def request_id(headers: dict[str, str]) -> str:
    # A caller's id is echoed back only when it cannot inject anything into our headers.
    given = headers.get("x-request-id")
    if given and _SAFE_REQUEST_ID.match(given):
        return given
    return unique_id()


def scope_request_id(scope: Scope, headers: dict[str, str]) -> str:
    """The request's id (:func:`request_id`), left on its scope for the connection: an answer it
    writes itself while the body is read (a 408 for a body that stopped) then carries the id the
    request's log lines so far were written under (http/protocol.py)."""
    rid = scope[REQUEST_ID] = request_id(headers)
    return rid


def request_id_headers(rid: str, dialect: str) -> Headers:
    """The request id's response headers: ``x-request-id``, and for the Anthropic APIs
    ``request-id`` too, which the Anthropic SDKs read (a message's ``_request_id``, an error's
    ``request_id``): on every answer, an error before the body is decoded (401, 413) included."""
    value = rid.encode()
    if dialect == "anthropic":
        return [(b"x-request-id", value), (b"request-id", value)]
    return [(b"x-request-id", value)]


def request_headers(scope: Scope) -> dict[str, str]:
    """Lower-cased names, latin-1 values. A repeated single-valued header is refused (400)."""
    raw = scope["headers"]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    if len(headers) != len(raw):
        names = [k.decode("latin-1") for k, _ in raw]
        for name in _SINGLE_VALUED:
            if names.count(name) > 1:
                raise InvalidRequest(f"the '{name}' header may be sent only once", code="duplicate_header")
    return headers


def check_content_type(headers: dict[str, str]) -> None:
    value = headers.get("content-type")
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"unsupported content type '{media[:100]}'; send application/json")


def log_gone(scope: Scope, rid: str, gone: str = "client disconnected") -> None:
    """Log the end of a request whose connection went away: the connection's own answer when it
    refused the body as it arrived (a 408: no client that left), else ``gone``."""
    if (answered := scope.get(EDGE_ANSWERED)) is None:
        log.info("request %s: %s", rid, gone)
    else:
        log.info("request %s: the connection answered %s while the body was read: %s",
                 rid, answered[0], answered[3])


async def finish(ctx: RequestContext, scope: Scope, unserved: Unserved | None = None) -> None:
    """Once the answer is out: the request's end, its after-response work (usage, the log), and a
    log line when it failed or the client left. ``unserved`` (the server state's, metrics on)
    counts a request whose chain never ran."""
    outcome = ctx.outcome
    outcome.finished_at = time.perf_counter()
    if outcome.client_disconnected and (answered := scope.get(EDGE_ANSWERED)) is not None:
        # Not a client that left: the connection answered the request itself while reading its
        # body (http/protocol.py), and the ledger, the metrics and the log record that answer
        # (under the request's id, which that answer carried too: scope_request_id).
        outcome.client_disconnected = False
        outcome.status, outcome.error_type, outcome.error_code, outcome.error_message, _ = answered
    if ctx.post_response is not None:
        if (waits := ctx.run_after_response()) is not None:
            await waits
    elif unserved is not None:
        # With metrics on, the observe stage is the first of every chain and registers a
        # callback on every way out of it: none registered means the edge refused the request
        # before its chain (413, 415, a repeated header, 408, 499), and only this counts it.
        # Error path only.
        unserved(ctx)
    if outcome.status >= 400 or outcome.client_disconnected:
        log_failure(ctx)


def record_failure(ctx: RequestContext, err: GatewayError) -> None:
    """Record ``err`` in ``ctx.outcome`` once named as the request's caller spells it (its inbound
    API's name_error, the one renaming): the ledger and the request log keep what the client is
    then sent. Error path only."""
    ctx.inbound.name_error(err, ctx)
    ctx.outcome.failed(err)


def count_refused(state: ServerState, scope: Scope, started: float, err: GatewayError) -> None:
    """Count a request refused before any endpoint took it (an unknown URL, a method the path
    does not answer) as the endpoints count theirs: no operation, no model, the error's status
    and code. No log line, as before: a scanner's 404s are not worth one each."""
    unserved = state.unserved
    if unserved is None:
        return
    ctx = RequestContext("", "", _UNROUTED, {}, b"", started, method=scope["method"], path=scope["path"])
    ctx.outcome.failed(err)
    ctx.outcome.finished_at = time.perf_counter()
    unserved(ctx)


async def key_before_continue(state: ServerState, ctx: RequestContext, scope: Scope) -> GatewayError | None:
    """A request sending ``Expect: 100-continue`` waits for the server's go-ahead before its
    body: its key is checked first, so a bad one is answered 401 and the body never sent (the
    first receive() would have told the client to send it). The caller found is the request's:
    the chain's auth stage does not check the key again (one OIDC verification, one last-used
    note, and a key that expires while the body arrives does not refuse a body it asked for).
    An HTTP/1.0 request's 100-continue is ignored (RFC 9110 10.1.1; http/protocol.py sends it
    no 100): it is read as one without. Callers test for an ``expect`` header first."""
    authenticate = state.authenticate
    if (authenticate is None or ctx.headers["expect"].strip().lower() != "100-continue"
            or scope.get("http_version") == "1.0"):
        return None
    try:
        ctx.principal = await authenticate(ctx.headers)
    except GatewayError as err:
        return err
    return None


class Responder:
    """Writes one response, and records in ``ctx.outcome`` what the client was sent."""

    __slots__ = ("ctx", "extra", "send", "started", "timed")

    def __init__(self, send: Send, ctx: RequestContext, extra: Headers, timed: bool = False) -> None:
        self.send = send
        self.ctx = ctx
        self.extra = extra
        self.started = False  # http.response.start was sent
        self.timed = timed  # a model call: the overhead headers go out with the status

    def headers(self, more: dict[str, str]) -> Headers:
        return self.extra + encode_headers(more) if more else self.extra

    async def body(self, status: int, body: bytes, more: dict[str, str]) -> None:
        outcome = self.ctx.outcome
        outcome.status = status
        self.started = True
        headers = [JSON_CT, (b"content-length", str(len(body)).encode()), *self.extra]
        if more:
            headers += encode_headers(more)
        if self.timed:
            headers += timing_headers(self.ctx)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
        outcome.bytes_sent = len(body)
        outcome.first_byte_at = time.perf_counter()

    async def raw(self, reply: RawReply) -> None:
        """A response in wire form from an ASGI terminal; the edge adds only its own headers."""
        outcome = self.ctx.outcome
        outcome.status = reply.status
        self.started = True
        headers = [*reply.headers, *self.headers(self.ctx.response_headers)]
        await self.send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": reply.body})
        outcome.bytes_sent = len(reply.body)
        outcome.first_byte_at = time.perf_counter()

    async def answer(self, chain: Handler) -> StreamReply | None:
        """Run ``chain`` on this response's request and answer a complete reply, or the error it
        raised; a stream is returned for the edge to relay its own way. A client that leaves
        (ConnectionAbortedError) is the edge's to record."""
        ctx = self.ctx
        try:
            result = await chain(ctx)
        except GatewayError as err:
            await self.error(err)
            return None
        except ConnectionAbortedError:
            raise
        except Exception as exc:
            await self.error(UNEXPECTED.error(ctx.request_id, exc))
            return None
        if isinstance(result, Reply):
            if result.large:  # a large answer is encoded off the event loop (context.Reply)
                body = await asyncio.to_thread(ctx.inbound.encode, ctx, result.body, result.native)
            else:
                body = ctx.inbound.encode(ctx, result.body, result.native)
            await self.body(result.status, body, ctx.response_headers)
        elif isinstance(result, RawReply):
            await self.raw(result)
        else:
            return result
        return None

    async def error(self, err: GatewayError) -> None:
        record_failure(self.ctx, err)
        body = self.ctx.inbound.encode_error(err, self.ctx)
        await self.body(err.status, body, {**self.ctx.response_headers, **retry_hint(err.headers)})

    # The stream writes return the ASGI send's awaitable instead of being coroutines themselves:
    # one coroutine less per event on the hot path. Bytes count as sent once handed over.

    def stream_start(self) -> Awaitable[None]:
        outcome = self.ctx.outcome
        outcome.status = 200
        outcome.stream = True
        self.started = True
        headers = SSE_HEADERS + self.headers(self.ctx.response_headers)
        if self.timed:
            headers += timing_headers(self.ctx)
        return self.send({"type": "http.response.start", "status": 200, "headers": headers})

    def stream_data(self, data: bytes) -> Awaitable[None]:
        outcome = self.ctx.outcome
        if outcome.first_byte_at is None:
            outcome.first_byte_at = time.perf_counter()
        outcome.bytes_sent += len(data)
        return self.send({"type": "http.response.body", "body": data, "more_body": True})

    def stream_end(self) -> Awaitable[None]:
        return self.send({"type": "http.response.body", "body": b""})

    def abort(self) -> Awaitable[None]:
        """Drop the connection mid-body: a stream that cannot be finished is not ended as if whole."""
        return self.send({"type": ABORT})


class Endpoint:
    """The ASGI handler of one operation: ``inbound`` is its wire format, ``chain`` its stages
    and terminal. ``max_body_bytes`` is None for operations without a request body."""

    def __init__(
        self,
        inbound: InboundAPI,
        chain: Handler,
        state: ServerState,
        *,
        max_body_bytes: int | None,
        deadline_seconds: float,
        timed: bool = False,
    ) -> None:
        self.inbound = inbound
        self._timed = timed  # x-switchboard-overhead-ms / -upstream-ms on every response
        self._chain = chain
        self._state = state
        self._limit = max_body_bytes
        self._deadline = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            headers = request_headers(scope)
            failure: GatewayError | None = None
        except GatewayError as err:
            headers, failure = {}, err
        rid = scope_request_id(scope, headers)
        ctx = RequestContext(
            rid, self.inbound.operation, self.inbound, headers, b"", started,
            method=scope["method"], path=scope["path"],
            query=query.decode("latin-1") if (query := scope.get("query_string")) else "",
            client=peer[0] if (peer := scope.get("client")) else "",
            deadline=started + self._deadline,
        )
        out = Responder(send, ctx, request_id_headers(rid, self.inbound.dialect), self._timed)
        current = CURRENT.set((rid, None))  # the request id on every log line about it
        try:
            if failure is None and self._limit is not None and "expect" in headers:
                failure = await key_before_continue(self._state, ctx, scope)
            if failure is None:
                failure = await self._read_body(ctx, receive)
            if failure is not None:
                await out.error(failure)
            elif not ctx.outcome.client_disconnected:
                await until_disconnect(receive, self._serve(ctx, out))
        except ClientGone as left:
            ctx.outcome.client_disconnected = True
            if left.on_send:  # the relay's send found the connection gone and closed the stream
                log.info("request %s: client disconnected during the answer; upstream response closed", rid)
            else:  # the disconnect watcher cancelled the request's work
                log.info("request %s: client disconnected; upstream call cancelled", rid)
        except asyncio.CancelledError as cancel:
            if not self._state.draining or CLIENT_LEFT in cancel.args:
                raise
            # The drain window is over and the server is stopping: tell the client plainly.
            await self._cut_at_shutdown(ctx, out)
        finally:
            await finish(ctx, scope, self._state.unserved)
            CURRENT.reset(current)

    async def _read_body(self, ctx: RequestContext, receive: Receive) -> GatewayError | None:
        if self._limit is None:
            return None
        try:
            check_content_type(ctx.headers)
            body = await read_body(receive, self._limit, ctx.headers.get("content-length"))
            if (coding := ctx.headers.get("content-encoding")) is not None:
                body = await inflate_request_body(body, coding, self._limit)
            ctx.body = body
        except GatewayError as err:
            return err
        except ConnectionAbortedError:
            ctx.outcome.client_disconnected = True
        return None

    async def _serve(self, ctx: RequestContext, out: Responder) -> None:
        try:
            result = await self._chain(ctx)
        except GatewayError as err:
            await out.error(err)
            return
        except Exception as exc:
            await out.error(UNEXPECTED.error(ctx.request_id, exc))
            return
        if isinstance(result, Reply):
            if result.large:  # a large answer is encoded off the event loop (context.Reply)
                body = await asyncio.to_thread(self.inbound.encode, ctx, result.body, result.native)
            else:
                body = self.inbound.encode(ctx, result.body, result.native)
            if ctx.reply_waits is not None:
                await ctx.reply_waits()
            await out.body(result.status, body, ctx.response_headers)
        elif isinstance(result, StreamReply):
            await self._stream(ctx, result, out)
        else:
            await out.raw(result)

    async def _stream(self, ctx: RequestContext, result: StreamReply, out: Responder) -> None:
        # The stream is closed on every way out: done, failed, client gone, server stopping.
        try:
            await out.stream_start()
            events = self.inbound.encode_stream(ctx, _Counted(ctx, result.chunks, self._state), result.native)
            try:  # what ``aclosing`` does, without its three calls a stream
                async for event in events:
                    await out.stream_data(event)
            finally:
                await events.aclose()
            await out.stream_end()
        finally:
            await result.aclose()

    async def _cut_at_shutdown(self, ctx: RequestContext, out: Responder) -> None:
        err = _shutting_down(ctx)
        try:
            # Only what can be written at once: a client that takes nothing (its socket full)
            # would hold the request past the process' own end, its record never written.
            async with asyncio.timeout(0):
                if not out.started:
                    await out.error(err)
                elif ctx.outcome.stream:
                    record_failure(ctx, err)
                    await out.stream_data(self.inbound.encode_stream_error(err, ctx))
                    await out.stream_end()
        except Exception:  # the connection may already be gone, or full; nothing more to tell
            log.debug("request %s: could not send the shutdown notice", ctx.request_id)


def _shutting_down(ctx: RequestContext) -> ServerShuttingDown:
    log.warning("request %s: cut short by server shutdown", ctx.request_id)
    return ServerShuttingDown("the server is shutting down; retry the request")


class _Counted:
    """Pass batches through, counting chunks; any other failure becomes a gateway error the
    encoder can write (``Unexpected.mid_stream``: an InternalError for a fault of the code), and
    the error is recorded in the outcome. An iterator, not an async
    generator: one generator less per stream (the consumer closes the batches itself)."""

    __slots__ = ("_ctx", "_source", "_state")

    def __init__(self, ctx: RequestContext, source: Batches, state: ServerState) -> None:
        self._ctx = ctx
        self._source = source
        self._state = state

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> list[Chunk]:
        ctx = self._ctx
        try:
            batch = await self._source.__anext__()
        except StopAsyncIteration:
            raise
        except GatewayError as err:
            record_failure(ctx, err)  # the encoder's error event tells the client the same
            raise
        except asyncio.CancelledError as cancel:
            if not self._state.draining or CLIENT_LEFT in cancel.args:
                raise
            # The server stops while the stream waits on its upstream: the encoder ends it as
            # any failure after the start (a Responses stream's numbered response.failed), not
            # with an event written apart from its state (Endpoint._cut_at_shutdown, still there
            # for a stream cut while a send waits on its client).
            cut = _shutting_down(ctx)
            ctx.outcome.failed(cut)
            raise cut from None
        except Exception as exc:
            # A handled cause is one warning line, a fault of the code keeps its traceback.
            failure = UNEXPECTED.mid_stream(ctx.request_id, exc)
            ctx.outcome.failed(failure)
            raise failure from None
        ctx.outcome.chunks_sent += len(batch)
        return batch
