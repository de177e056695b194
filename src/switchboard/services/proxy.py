"""The terminal of the services chain: forwards the call to the service and relays its answer.

The request body is streamed from the client to the service as it arrives (at most the
service's ``max_request_bytes``: a declared larger body is refused before connecting, one that
grows past it mid-way aborts the upstream call, both 413); the response is relayed as the service
sends it, its status and headers as they are, bar hop-by-hop headers and cookies (a declared body
over ``max_response_bytes`` is 502 before anything is written, one that grows past it is cut).
Redirects are relayed, never followed. Connection failures are 502, timeouts 504. An error
answer (4xx, 5xx) of a service with credentials among its headers is read whole (cut at 1 MiB;
a gzip, deflate or zstd one decompressed, to at most 1 MiB) and relayed with them scrubbed: a
service may echo what it was sent. One that cannot be scrubbed (another encoding, such as br, or
compressed data that does not decompress) is replaced by a generic error: it is never relayed.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
from multidict import CIMultiDict

from switchboard.config.services import HOP_BY_HOP
from switchboard.context import Chunk, RequestContext, Result, StreamReply
from switchboard.errors import (
    GatewayError,
    PayloadTooLarge,
    UpstreamBadGateway,
    UpstreamError,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
    untraced,
)
from switchboard.pipeline.auth import KEY_HEADERS
from switchboard.services.context import Inbox, ServiceContext
from switchboard.services.table import Service
from switchboard.upstream import scrub
from switchboard.upstream.client import MAX_ERROR_BYTES, read_bounded
from switchboard.upstream.egress import ONLY_PUBLIC, Egress, EgressPolicy, refusal
from switchboard.upstream.gunzip import Gunzip
from switchboard.upstream.request import relayed_header
from switchboard.upstream.reset import drop
from switchboard.upstream.zstd import head as unzstd_head

log = logging.getLogger("switchboard.services")

# Never forwarded from the caller: its gateway credentials (and its own provider credential, whose
# header the configuration names: ServiceProxy) and cookies, the host it named, what
# the gateway sets itself, forwarding headers a caller could forge, and the headers some
# frameworks take for the request's real path or method (a path or method the gateway never
# checked: a GET-only service deleting).
_DROPPED_REQUEST = HOP_BY_HOP | KEY_HEADERS | {
    "host", "cookie", "cookie2", "x-request-id", "content-length",
    "forwarded", "x-real-ip", "expect",
    "x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override",
}
_DROPPED_PREFIXES = ("x-forwarded-", "x-switchboard-")
# Never relayed to the caller: hop-by-hop headers, cookies (the caller's are not forwarded, so
# the service's would be meaningless on the gateway's origin), and what the edge sets.
_DROPPED_RESPONSE = HOP_BY_HOP | {"set-cookie", "set-cookie2", "x-request-id", "server", "date"}
# A redirect's target, and where a response says its body lives: a URL of the service's own is
# rewritten to the gateway's path for it (its internal address is no use to a caller).
_LOCATIONS = (b"location", b"content-location")
_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# The client libraries' own errors (aiohappyeyeballs raises OSError): their tracebacks are
# dropped once translated (errors.untraced).
_LIBRARY = (aiohttp.ClientError, OSError)


class RequestTooLarge(PayloadTooLarge):
    pass


class _Body:
    """The client's body, read from the ASGI receive as aiohttp asks for it, bounded."""

    def __init__(self, ctx: ServiceContext, first: bytes, limit: int) -> None:
        self._ctx = ctx
        self._first = first
        self.total = len(first)
        self._limit = limit
        self.too_large = False
        self.gone = False
        assert ctx.receive is not None
        # Shared with the edge's disconnect watcher once the service has answered.
        self._inbox = ctx.inbox = Inbox(ctx.receive, limit)

    async def chunks(self) -> AsyncIterator[bytes]:
        inbox = self._inbox
        kept = self._ctx.request_capture
        if self._first:
            if kept is not None:
                kept.add(self._first)
            yield self._first
        async for chunk in self._rest(inbox):
            if kept is not None and not kept.truncated:
                kept.add(chunk)
            yield chunk

    async def _rest(self, inbox: Inbox) -> AsyncIterator[bytes]:
        while True:
            message = await inbox.for_body()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise ConnectionAbortedError("client disconnected while sending the body")
            chunk = message.get("body", b"")
            self.total += len(chunk)
            if self.total > self._limit:
                self.too_large = True
                raise RequestTooLarge(f"request body exceeds the service's limit of {self._limit} bytes")
            last = not message.get("more_body")
            if last:  # read to its end: receive is the edge's disconnect watcher's from here
                self._ctx.body_done()
            if chunk:
                yield chunk
            if last:
                return


def _forwarded(ctx: ServiceContext, service: Service, dropped: frozenset[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    # Every value of a repeated header, in the caller's order (uvicorn gives names lower-cased).
    raw = ctx.raw_headers if ctx.raw_headers is not None else [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in ctx.headers.items()]
    # Headers the caller named hop-by-hop, in every Connection line (``headers`` keeps one).
    named = {token.strip().lower() for name, value in raw if name.lower() == b"connection"
             for token in value.decode("latin-1").split(",")} if "connection" in ctx.headers else ()
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        if name not in dropped and name not in named and not name.startswith(_DROPPED_PREFIXES):
            out.add(name, relayed_header(raw_value))  # the caller's bytes, not re-encoded
    for name, value in service.headers:
        out[name] = value
    out["x-request-id"] = ctx.request_id
    return out


def _relayed(service: Service, raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    drop = set(_DROPPED_RESPONSE)
    for name, value in raw:
        if name.lower() == b"connection":
            drop.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    out = []
    for k, v in raw:
        name = k.lower()
        if name.decode("latin-1") in drop:
            continue
        if name in _LOCATIONS and (local := service.local(v.decode("latin-1"))) is not None:
            v = local.encode("latin-1")  # the service's own URL, as the caller reaches it
        out.append((name, v))
    return out


class ServiceProxy:
    """One pooled session for the services the operator set up, one for those tenants registered
    (their connections held to ``egress``, upstream/egress.py): no cookie jar, no environment
    proxies, no redirects, no decompression (bodies are relayed byte for byte)."""

    def __init__(self, egress: EgressPolicy, max_connections: int = 1000, *,
                 caller_credentials: str = "x-provider-authorization") -> None:
        self._egress = egress
        # The header carrying a caller's own provider credential (auth.caller_credentials.header):
        # for the gateway's provider calls, never forwarded to a service.
        self._dropped = _DROPPED_REQUEST | {caller_credentials.lower()}
        self._max_connections = max_connections
        self._sessions: dict[Egress | None, aiohttp.ClientSession] = {}

    def _session(self, egress: Egress | None) -> aiohttp.ClientSession:
        session = self._sessions.get(egress)
        if session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300,
                                             keepalive_timeout=4.0,
                                             resolver=egress.resolver() if egress is not None else None)
            session = self._sessions[egress] = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                # Only the caller's own Accept-Encoding: a body compressed for the gateway would
                # reach a client that never asked for it (bodies are relayed as they are); only
                # the caller's own Content-Type (aiohttp's default is application/octet-stream).
                auto_decompress=False, raise_for_status=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trace_configs=egress.traces() if egress is not None else None,
            )
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def __call__(self, ctx: RequestContext) -> Result:
        assert isinstance(ctx, ServiceContext), "the services chain runs on a ServiceContext"
        service = ctx.service
        assert service is not None and ctx.receive is not None, "resolved by the service stage"
        settings = service.settings
        limit = settings.max_request_bytes
        declared = ctx.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > limit:
                raise RequestTooLarge(f"request body is {size} bytes; the service's limit is {limit} bytes")
        first = await ctx.receive()
        if first["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected")
        piece = first.get("body", b"")
        if len(piece) > limit:
            raise RequestTooLarge(f"request body exceeds the service's limit of {limit} bytes")
        body: _Body | None = None
        data: bytes | AsyncIterator[bytes] | None
        headers = _forwarded(ctx, service, self._dropped)
        if first.get("more_body"):
            body = _Body(ctx, piece, limit)
            data = body.chunks()
            if declared is not None:
                headers["content-length"] = declared
        else:
            ctx.body_done()
            data = piece if piece or ctx.method not in _METHODS_WITHOUT_BODY else None
            if ctx.request_capture is not None:
                ctx.request_capture.add(piece)
        url = service.url(ctx.rest, ctx.raw_query)
        guard = (self._egress.guard(service.tenant, by_platform_admin=service.by_platform_admin)
                 if service.origin == "admin" else None)
        session = self._session(guard)
        began = time.perf_counter()
        try:
            resp = await session.request(ctx.method, url, data=data, headers=headers, allow_redirects=False,
                                         timeout=service.timeout)
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if body is not None and body.too_large:
                raise RequestTooLarge(f"request body exceeds the service's limit of {limit} bytes") from None
            if body is not None and body.gone:
                raise ConnectionAbortedError("client disconnected while sending the body") from None
            raise _translate(service, exc) from None
        finally:
            ctx.upstream_seconds += time.perf_counter() - began
        ctx.status_received()
        if body is not None and body.too_large:
            drop(resp)
            raise RequestTooLarge(f"request body exceeds the service's limit of {limit} bytes")
        length = resp.content_length if ctx.method != "HEAD" else None  # a HEAD answer has no body
        if length is not None and length > settings.max_response_bytes:
            drop(resp)
            raise UpstreamResponseTooLarge(
                f"service '{service.name}' sent a response of {length} bytes, over its limit of "
                f"{settings.max_response_bytes} bytes")
        if resp.status >= 400 and service.secrets and ctx.method != "HEAD":
            # An error may echo what it was sent: the service's own credentials go no further.
            error, dropped, added = await _scrubbed_error(service, resp)
            ctx.reply_status = resp.status
            relayed = _relayed(service, resp.raw_headers)
            ctx.reply_headers = [*(h for h in relayed if h[0] not in dropped), *added,
                                 (b"content-length", b"%d" % len(error))]
            return StreamReply(_whole(error), _closer(resp))
        ctx.reply_status = resp.status
        ctx.reply_headers = _relayed(service, resp.raw_headers)
        return StreamReply(_relay(service, resp, body), _closer(resp))


def _translate(service: Service, exc: BaseException) -> GatewayError:
    """The gateway's error for what the client library raised. That error and its causes lose
    their tracebacks here (``errors.untraced``): only the translated error goes on (raised
    ``from None``)."""
    untraced(exc, _LIBRARY)
    where = f"service '{service.name}'"
    refused = refusal(exc)
    if refused is not None:
        return UpstreamUnreachable(f"{where} may not be reached: {refused}; {ONLY_PUBLIC}",
                                   code="upstream_address_refused")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{where} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to {where}")
    return UpstreamBadGateway(f"connection to {where} failed: {type(exc).__name__}")


# Headers an error answer loses when its body changes: its length is always the scrubbed body's;
# a body inflated to be scrubbed goes out as such; a withheld one is the gateway's own JSON.
_LENGTH = (b"content-length",)
_INFLATED = (b"content-length", b"content-encoding")
_WITHHELD = (b"content-length", b"content-encoding", b"content-type")
_JSON = ((b"content-type", b"application/json"),)
_IDENTITY = ("", "identity")
_DEFLATED = ("gzip", "x-gzip", "deflate")
_ZSTD = "zstd"

Headers = tuple[tuple[bytes, bytes], ...]


async def _scrubbed_error(service: Service, resp: aiohttp.ClientResponse
                          ) -> tuple[bytes, tuple[bytes, ...], Headers]:
    """An error answer's body (cut at MAX_ERROR_BYTES, as providers' are), with every credential
    among the service's headers replaced by ``[redacted]`` (upstream/scrub.py); with the names of
    the service's headers to leave out and those to add for it. Bodies are relayed as sent,
    compressed too: a gzip, deflate or zstd error body is decompressed (to at most the same bound,
    so a small bomb stays small; a zstd frame asking for a window over 8 MiB is refused) to be
    scrubbed. Any other encoding (br: no decoder is installed), or compressed data that does not
    decompress, cannot be searched for the credentials: such a body is replaced by a generic error
    rather than relayed unread."""
    limit = min(MAX_ERROR_BYTES, service.settings.max_response_bytes)
    try:
        body, _ = await read_bounded(resp, limit, cut=True)
    except (TimeoutError, aiohttp.ClientError) as exc:
        drop(resp)
        raise _translate(service, exc) from None
    secrets = list(service.secrets)
    # Every Content-Encoding line counts: "gzip" then "br" is a br body, not a gzip one.
    encoding = ",".join(resp.headers.getall("content-encoding", ())).strip().lower()
    if encoding in _IDENTITY:
        return scrub.redact(body, secrets), _LENGTH, ()
    plain = _decompressed(body, encoding, limit)
    if plain is None:
        return _withheld(service, resp.status), _WITHHELD, _JSON
    return scrub.redact(plain, secrets), _INFLATED, ()


def _withheld(service: Service, status: int) -> bytes:
    """The body sent instead of a service's error body that could not be scrubbed (OpenAI-shaped,
    like the gateway's own errors; the service's status is kept)."""
    return orjson.dumps(UpstreamError(
        f"service '{service.name}' answered HTTP {status} with a compressed body the gateway cannot "
        "check for its credentials (only gzip, deflate and zstd are read); the body is withheld",
        code="service_error_withheld").to_openai())


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes | None:
    """``body`` decompressed as its one ``encoding`` says (at most ``limit`` bytes), else None
    when the gateway has no decoder for it or it does not decompress."""
    if encoding in _DEFLATED:
        return _inflated(body, limit)
    if encoding == _ZSTD:
        return unzstd_head(body, limit)
    return None


def _inflated(body: bytes, limit: int) -> bytes | None:
    """``body`` decompressed (at most ``limit`` bytes) as gzip (every member: upstream/gunzip.py)
    or deflate (zlib or raw), else None when it does not decompress."""
    try:
        if body.startswith(b"\x1f\x8b"):  # gzip's magic
            return Gunzip().decompress(body, limit)
    except zlib.error:
        return None
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # zlib header; raw deflate
        try:
            return zlib.decompressobj(wbits).decompress(body, limit)
        except zlib.error:
            continue
    return None


async def _whole(body: bytes) -> AsyncGenerator[list[Chunk], None]:
    yield [{"data": body}]


def _closer(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    """Ends the service's response: a connection still held is reset (upstream/reset.py), or the
    call would stay open while a body queued for it waits for a service that never reads it."""

    async def close() -> None:
        drop(resp)
    return close


async def _relay(service: Service, resp: aiohttp.ClientResponse, body: _Body | None
                 ) -> AsyncGenerator[list[Chunk], None]:
    """The body as it arrives, in chunks ``{"data": bytes}``; past the limit, cut with a 502. A
    client that left while its body was still being forwarded ends it as gone, not as a failure
    of the service's (aiohttp reports the body's abort as a broken connection)."""
    limit = service.settings.max_response_bytes
    total = 0
    try:
        async for data in resp.content.iter_any():
            total += len(data)
            if total > limit:
                raise UpstreamResponseTooLarge(
                    f"service '{service.name}' sent more than its limit of {limit} bytes: response cut")
            yield [{"data": data}]
    except (TimeoutError, aiohttp.ClientError) as exc:
        if body is not None and body.gone:
            raise ConnectionAbortedError("client disconnected while sending the body") from None
        raise _translate(service, exc) from None
    finally:
        drop(resp)
