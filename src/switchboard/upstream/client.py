"""The only outbound HTTP to providers: pooled keep-alive connections per provider.

Requests with a body in memory go through the lean HTTP/1.1 client (upstream/http1.py);
streamed uploads through one aiohttp session per provider. See docs/architecture.md for the
measurements behind both choices. Foreign exceptions are translated to gateway errors here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp
from yarl import URL

from switchboard.config.schema import MIB, Timeouts
from switchboard.errors import (
    InternalError,
    UpstreamBadGateway,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
    untraced,
)
from switchboard.jsonio import BOM
from switchboard.upstream import http1, scrub
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.outbound import Outbound
from switchboard.upstream.request import UpstreamRequest, file_pieces
from switchboard.upstream.reset import answered_upload, drop, end_upload, transport_of
from switchboard.upstream.upload import Sending, Upload
from switchboard.upstream.userinfo import UrlCredential

_MAX_CACHED_URLS = 4096
# How long an idle pooled connection is kept. Shorter than the 5 s after which uvicorn (vLLM,
# TGI's router, most Python servers) and Node close an idle keep-alive connection: a connection
# the upstream is closing is never reused for a request (the request would fail with a reset).
# Under load connections never sit idle that long, so nothing is lost.
IDLE_SECONDS = 4.0
_MAX_CACHED_TIMEOUTS = 1024
DEFAULT_MAX_RESPONSE_BYTES = 256 * MIB
# Error bodies (any status >= 400, stream or not) are read up to this and cut there: enough for
# any provider's error message, and an error never costs the memory of a full answer.
MAX_ERROR_BYTES = 1 * MIB
# What the upstream calls can fail with, before translation to gateway errors.
FAILURES = (TimeoutError, aiohttp.ClientError, http1.Http1Error)
# The client libraries' own errors (aiohappyeyeballs raises OSError): tracebacks dropped once
# translated (errors.untraced); a cause of another kind is the caller's, and keeps its own.
_LIBRARY = (aiohttp.ClientError, http1.Http1Error, OSError)
# Methods sent without a Content-Length when they carry no body.
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
# Sent unless the provider's headers or the adapter set their own.
_DEFAULT_HEADERS = {"Accept": "*/*", "User-Agent": "switchboard"}


class _Answer(aiohttp.ClientResponse):
    """aiohttp's answer, with how its body is being sent when that was not in memory."""

    sending: Sending | None = None


Answer = http1.Response | aiohttp.ClientResponse


# The lean client's timeouts (connect, first_byte, total) as plain floats: read from the config
# model once, when the client or an override is first seen, not per request: a pydantic model's
# class defines ``__getattr__``, so the interpreter never specialises a read of its fields.
Bounds = tuple[float, float, float]


def bounds(t: Timeouts) -> Bounds:
    return (t.connect, t.first_byte, t.total)


def client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    # sock_read bounds the wait for the headers and every later gap between reads.
    return aiohttp.ClientTimeout(
        total=t.total, sock_connect=t.connect, connect=t.connect, sock_read=t.first_byte
    )


@dataclass(slots=True)
class UpstreamReply:
    """A complete answer; for an error status (>= 400) the body is scrubbed of credentials."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class UpstreamClient:
    def __init__(
        self,
        provider: str,
        auth: UpstreamAuth,
        max_connections: int,
        headers: dict[str, str],
        timeouts: Timeouts,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        url_credential: UrlCredential | None = None,
        outbound: Outbound | None = None,
    ) -> None:
        self.provider = provider
        # The provider's own TLS context and proxy (providers[].tls, .proxy); None: neither.
        self._context = outbound.ssl if outbound is not None else None
        self._proxy = outbound.proxy if outbound is not None else None
        self._client_cert = outbound is not None and outbound.client_cert
        self.auth = auth
        self.max_response_bytes = max_response_bytes
        self._max_connections = max_connections
        # Fixed credentials become session headers, so requests skip a per-call auth step.
        self._static = isinstance(auth, StaticHeaderAuth)
        # Every provider API takes JSON bodies; adapters' own request headers override these.
        # The base URL's user info is a header of the provider's like any other (sent with a
        # caller's own credential too: it opens the way to the upstream, such as a proxy's);
        # a credential in Authorization replaces it (the registry refuses configs where one would).
        basic = url_credential.headers if url_credential is not None else {}
        base = _over({"Content-Type": "application/json", **basic}, headers)
        self._base_headers = base  # without the stored credential: for callers' own credentials
        self._headers = _over(base, auth.headers) if isinstance(auth, StaticHeaderAuth) else base
        self._timeout = client_timeout(timeouts)
        self._bounds = bounds(timeouts)
        # The lean client's forms of the same headers, and its pools by origin; None when a
        # configured header cannot be sent as HTTP/1.1 (aiohttp then refuses it per request).
        self._fast: tuple[http1.Headers, http1.Headers] | None
        try:
            self._fast = (http1.Headers(_with_defaults(self._headers)), http1.Headers(_with_defaults(base)))
        except http1.Http1Error:
            self._fast = None
        self._pools: dict[tuple[bool, str, int], http1.Pool] = {}
        self._targets: dict[str, http1.Target | None] = {}
        self._session: aiohttp.ClientSession | None = None
        # For requests that carry the caller's own credential (same pool, no stored credential);
        # made on first use.
        self._caller_session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        # Per-model timeout overrides in aiohttp's form and the lean client's, by the identity of
        # the config value.
        self._timeouts: dict[int, tuple[Timeouts, aiohttp.ClientTimeout, Bounds]] = {}
        # Credentials fixed for the client's life, in every form scrubbing looks for; schemes
        # whose credentials change (access tokens) are asked again at each scrub.
        self._fixed_secrets = scrub.header_secrets(headers) + (auth.secrets() if self._static else [])
        if url_credential is not None:
            self._fixed_secrets += url_credential.secrets()
        if self._proxy is not None:  # a proxy's error page may echo its credential
            self._fixed_secrets += self._proxy.secrets()
        self._needles = scrub.forms(self._fixed_secrets)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=IDLE_SECONDS,
            ssl=self._context if self._context is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers=self._headers,
            timeout=self._timeout,
            raise_for_status=False,
            proxy=self._proxy.url if self._proxy is not None else None,
            response_class=_Answer,
        )

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._caller_session is not None:
            await self._caller_session.close()
            self._caller_session = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.auth.close()

    def translate(self, exc: Exception, sending: Sending | None = None) -> Exception:
        """The gateway error for an aiohttp or timeout exception (others are returned unchanged),
        or for the failure of the body it was sent with (``sending``: upstream/upload.py). A
        translated error and its causes lose their tracebacks (``errors.untraced``)."""
        where = f"provider '{self.provider}'"
        if sending is not None and sending.failure is not None:
            if isinstance(exc, FAILURES):
                untraced(exc, _LIBRARY)
            return self.unsent(sending)
        if isinstance(exc, FAILURES):
            untraced(exc, _LIBRARY)
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{where} did not answer in time")
        if isinstance(exc, http1.ProxyFailed | http1.TlsFailed):  # their messages name no secret
            return UpstreamUnreachable(f"cannot connect to {where}: {exc}")
        if self._proxy is not None and isinstance(exc, aiohttp.ClientProxyConnectionError):
            return UpstreamUnreachable(f"cannot connect to {where}: cannot connect to the proxy "
                                       f"{self._proxy.shown}")
        if self._proxy is not None and isinstance(exc, aiohttp.ClientHttpProxyError):
            return UpstreamUnreachable(f"cannot connect to {where}: the proxy {self._proxy.shown} refused "
                                       f"the tunnel: HTTP {exc.status}")
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            why = getattr(exc.certificate_error, "verify_message", None) or "certificate refused"
            return UpstreamUnreachable(f"cannot connect to {where}: TLS handshake failed: certificate "
                                       f"verify failed: {why} (tls.ca_file)")
        if isinstance(exc, aiohttp.ClientConnectorError | http1.ConnectFailed):
            return UpstreamUnreachable(f"cannot connect to {where}")
        if self._context is not None and isinstance(exc, http1.Disconnected) and exc.before_answer:
            # Not a connection error for retries: the request went out and may have been run.
            return UpstreamBadGateway(self._unanswered_over_tls(where))
        if isinstance(exc, http1.Redirected):  # its target is not shown: it may be internal
            return UpstreamBadGateway(f"{where} answered with a redirect (HTTP {exc.status}), which the "
                                      "gateway does not follow; check the provider's api_base")
        if isinstance(exc, http1.Http1Error):
            # What went wrong, as the lean client says it: its messages name no credential, and
            # the few words an upstream puts in one (an unknown content coding) are scrubbed.
            why = self.scrub(str(exc).encode()).decode("utf-8", "replace")
            return UpstreamBadGateway(f"connection to {where} failed: {why}")
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamBadGateway(f"connection to {where} failed: {type(exc).__name__}")
        return exc

    def unsent(self, sending: Sending) -> InternalError:
        """The gateway's own side of the exchange failed: the body it was sending (a spooled
        upload, a caller's body streamed on) could not be read on; the connection was reset."""
        return InternalError(f"the request body being sent to provider '{self.provider}' failed part-way "
                             f"({sending.failure}); the exchange was ended")

    def _unanswered_over_tls(self, where: str) -> str:
        """Why a provider with its own TLS settings may close without answering: under TLS 1.3 a
        server checks the client's certificate after the handshake, and its refusal arrives as
        the connection's end. Named by the configuration keys, never their files' content."""
        if self._client_cert:
            why = "a server refusing the client certificate (tls.client_cert) does this"
        else:
            why = "a server requiring a client certificate does this (tls.client_cert: none is configured)"
        return f"{where} closed a new connection before answering (the request was sent); {why}"

    async def _open(self, request: UpstreamRequest, limits: Timeouts | None) -> Answer:
        assert self._session is not None, "client not started"
        # A body in memory only; anything else (a file, an async iterable) is sent by aiohttp.
        if request.upload is None and self._fast is not None and isinstance(request.body, bytes | None):
            target = self._target(request.url)
            if target is not None:
                limited = self._bounds if limits is None else self._override(limits)[2]
                return await self._open_fast(request, target, limited, self._fast)
        return await self._open_aiohttp(request, limits)

    async def _open_fast(
        self,
        request: UpstreamRequest,
        target: http1.Target,
        limits: Bounds,
        fast: tuple[http1.Headers, http1.Headers],
    ) -> http1.Response:
        if request.credentials is not None:  # the caller's credential, never the stored one
            block, host = fast[1].block({**request.headers, **request.credentials})
        else:
            if not self._static:
                await self.auth.apply(request)
            block, host = fast[0].block(request.headers, remember=self._static)
        body = request.body
        length = len(body) if body is not None else (None if request.method in _NO_BODY else 0)
        head = http1.request_head(request.method, target, block, host, length)
        pool = self._pools.get(target.origin)
        if pool is None:
            pool = self._pools[target.origin] = http1.Pool(
                target, self._max_connections, IDLE_SECONDS, self._context, self._proxy)
        connect, first_byte, total = limits
        return await pool.request(target, head, body, connect=connect, read_gap=first_byte, total=total)

    def _target(self, text: str) -> http1.Target | None:
        """Parsed once per distinct URL; None: a URL only aiohttp sends (user info in it)."""
        try:
            return self._targets[text]
        except KeyError:
            pass
        if len(self._targets) >= _MAX_CACHED_URLS:
            # The oldest one goes (insertion order): emptying it all would parse every URL in
            # use again at once, on the requests that come next.
            del self._targets[next(iter(self._targets))]
        url = self._url(text)
        # Through a proxy the lean client speaks only CONNECT (https); plain http goes in the
        # proxy's forward form, which aiohttp writes.
        usable = http1.supports(url) and (self._proxy is None or url.scheme == "https")
        target = self._targets[text] = http1.Target(url) if usable else None
        return target

    async def _open_aiohttp(
        self, request: UpstreamRequest, limits: Timeouts | None
    ) -> aiohttp.ClientResponse:
        assert self._session is not None, "client not started"
        session = self._session
        if request.credentials is not None:  # the caller's credential, never the stored one
            session = self._caller_session or self._open_caller_session()
            headers: dict[str, str] | None = {**request.headers, **request.credentials}
        else:
            if not self._static:
                await self.auth.apply(request)
            headers = request.headers or None  # None: just the session's headers, nothing to merge
        url = self._url(request.url)
        # A file is sent as its pieces, not handed to aiohttp, which closes a file body as soon
        # as the answer's head arrives: an upstream that answers before it has read the whole
        # upload (a transcription streaming early) would get only what was sent by then. A body
        # not in memory is watched: one failing part-way ends the exchange (upstream/upload.py).
        data: object = request.body  # or a caller's body streamed on, as pieces (http/files)
        sending = None
        if request.upload is not None or not (data is None or isinstance(data, bytes)):
            upload = Upload(file_pieces(request.upload) if request.upload is not None
                            else cast("AsyncIterable[bytes]", data))
            data, sending = upload, upload.sending
        # Redirects are not followed, as by the lean client (http1.Redirected).
        try:
            if limits is None:  # the provider's own timeouts, set on the session
                resp = await session.request(request.method, url, data=data, headers=headers,
                                             allow_redirects=False)
            else:
                resp = await session.request(request.method, url, data=data, headers=headers,
                                             allow_redirects=False, timeout=self._client_timeout(limits))
        except FAILURES as exc:
            raise self.translate(exc, sending) from None
        if sending is not None:
            cast(_Answer, resp).sending = sending
        if 300 <= resp.status <= 399:
            drop(resp)  # reset: an upload's unsent rest may be queued on it
            raise http1.Redirected(resp.status)
        if resp.status == 407 and self._proxy is not None:
            # Plain http goes to the proxy in its forward form: its refusal comes back as an
            # answer, not as a failed tunnel. Only a proxy answers 407.
            resp.close()
            raise http1.ProxyFailed(f"the proxy {self._proxy.shown} refused the request: HTTP 407")
        return resp

    def _open_caller_session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        self._caller_session = aiohttp.ClientSession(
            connector=self._session.connector,
            connector_owner=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers=self._base_headers,
            timeout=self._timeout,
            raise_for_status=False,
            proxy=self._proxy.url if self._proxy is not None else None,
            response_class=_Answer,
        )
        return self._caller_session

    def _client_timeout(self, limits: Timeouts) -> aiohttp.ClientTimeout:
        return self._override(limits)[1]

    def _override(self, limits: Timeouts) -> tuple[Timeouts, aiohttp.ClientTimeout, Bounds]:
        """Both forms of a per-model override, built once per distinct override (the routes hold
        them for the process' life), not per request; the entry keeps the value alive, so its id
        cannot be reused while cached."""
        cached = self._timeouts.get(id(limits))
        if cached is None or cached[0] is not limits:
            if cached is None and len(self._timeouts) >= _MAX_CACHED_TIMEOUTS:
                del self._timeouts[next(iter(self._timeouts))]  # the oldest one, not all of them
            cached = self._timeouts[id(limits)] = (limits, client_timeout(limits), bounds(limits))
        return cached

    def _url(self, text: str) -> URL:
        """Parsed once per distinct URL (bounded by the configured models), not per request."""
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:
                del self._urls[next(iter(self._urls))]  # the oldest one, not all of them
            url = self._urls[text] = URL(text)
        return url

    def scrub(self, body: bytes, credentials: dict[str, str] | None = None) -> bytes:
        """``body`` (upstream error text) with every credential held for this provider, and the
        caller's own ``credentials`` if it sent any, replaced by ``[redacted]``; see
        upstream/scrub.py for the forms matched."""
        if credentials:
            needles = [*self._fixed_secrets, *scrub.header_secrets(credentials)]
            if not self._static:
                needles += self.auth.secrets()
            return scrub.redact(body, scrub.forms(needles))
        if self._static:
            return scrub.redact(body, self._needles)
        return scrub.redact(body, scrub.forms([*self._fixed_secrets, *self.auth.secrets()]))

    async def send(self, request: UpstreamRequest, limits: Timeouts | None) -> UpstreamReply:
        try:
            resp = await self._open(request, limits)
            sending = _sending(resp)
            try:
                if resp.status >= 400:  # an error: its start is enough, never a credential
                    raw = (await read_bounded(resp, MAX_ERROR_BYTES, cut=True))[0]
                    body = self.scrub(raw, request.credentials)
                else:
                    body, whole = await read_bounded(resp, self.max_response_bytes)
                    if not whole:
                        raise self.too_large()
            except FAILURES as exc:
                raise self.translate(exc, sending) from None
            finally:
                _release(resp, sending)
        except FAILURES as exc:
            raise self.translate(exc) from None
        return UpstreamReply(resp.status, resp.headers, body)

    def too_large(self) -> UpstreamResponseTooLarge:
        return UpstreamResponseTooLarge(f"provider '{self.provider}' sent a response larger than "
                                        f"{self.max_response_bytes} bytes (providers[].max_response_bytes)")

    async def open_stream(self, request: UpstreamRequest, limits: Timeouts | None) -> UpstreamStream:
        """Send and wait for the headers; the caller reads the body through the returned stream."""
        try:
            resp = await self._open(request, limits)
        except FAILURES as exc:
            raise self.translate(exc) from None
        return UpstreamStream(self, resp, request.credentials, _sending(resp))


def _sending(resp: Answer) -> Sending | None:
    """How a watched body (a spooled upload, a caller's body streamed on: always sent by aiohttp)
    is being sent, its connection set to be reset when the exchange ends: an upstream that
    answered first (an early 413) may leave the rest of the body queued, holding it open. Its
    failure is the exchange's (:meth:`UpstreamClient.translate`)."""
    if not isinstance(resp, _Answer):  # the lean client's: a body in memory, never watched
        return None
    sending = resp.sending
    if sending is None:
        return None
    if sending.transport is None:  # the answer came before the body's first piece
        sending.transport = transport_of(resp)
    answered_upload(sending.transport)
    return sending


def _release(resp: Answer, sending: Sending | None) -> None:
    """Release a response read to its end (or cut); an upload's, see :func:`_sending`."""
    if sending is not None and isinstance(resp, aiohttp.ClientResponse):
        end_upload(resp, sending.transport, sending.sent)
    else:
        resp.release()


async def read_bounded(resp: Answer, limit: int, *, cut: bool = False) -> tuple[bytes, bool]:
    """(the body's first ``limit`` bytes, whether that is all of it), read as it arrives into one
    growing buffer (no list of pieces to join). A body over the limit is not read further and
    its connection is closed rather than returned to the pool. Unless ``cut`` (the start of the
    body is wanted anyway), a declared length over the limit is refused before any read."""
    declared = resp.content_length
    if declared is not None:
        if declared <= limit:  # the common case: one read of a length known to fit
            return await resp.read(), True
        if not cut:
            resp.close()
            return b"", False
    buf = bytearray()
    async for piece in resp.content.iter_any():
        buf += piece
        if len(buf) > limit:
            resp.close()
            del buf[limit:]
            return bytes(buf), False
    return bytes(buf), True


class UpstreamStream:
    """An open streaming response. Iterate :meth:`chunks` exactly once; it always closes."""

    def __init__(
        self,
        client: UpstreamClient,
        response: Answer,
        credentials: dict[str, str] | None = None,
        sending: Sending | None = None,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._sending = sending  # how an upload's body is being sent (_sending)
        self.response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._held = b""  # the start of the body, read to tell a JSON answer from events

    async def read_all(self) -> bytes:
        """The body of an error answer, cut at MAX_ERROR_BYTES, credentials scrubbed."""
        try:
            body, _ = await read_bounded(self.response, MAX_ERROR_BYTES, cut=True)
            return self._client.scrub(body, self._credentials)
        except FAILURES as exc:
            raise self._client.translate(exc, self._sending) from None
        finally:
            _release(self.response, self._sending)

    @property
    def is_json(self) -> bool:
        """Whether the answer is JSON (``application/json``, ``*/*+json``), not the event stream
        a stream request asked for: some servers, and proxies in front of them, answer a stream
        request's failure with a JSON error body and status 200."""
        media = self.response.content_type
        return media == "application/json" or media.endswith("+json")

    async def _json_start(self) -> bytes | None:
        """For an answer labelled JSON: the start of its body if it is JSON, else None with what
        was read held for :meth:`read`. Servers and proxies exist that label a real event stream
        ``application/json``; those keep streaming."""
        start = b""
        try:
            while not start.lstrip() and (piece := await self.response.content.readany()):
                start += piece
                if len(start) > MAX_ERROR_BYTES:
                    break
        except FAILURES as exc:
            raise self._client.translate(exc, self._sending) from None
        # A UTF-8 byte order mark may come first (providers/errors.py ``loads`` ignores it).
        if start.lstrip().removeprefix(BOM).lstrip()[:1] not in (b"{", b"[", b""):
            self._held = start
            return None
        return start

    async def _rest(self, start: bytes, limit: int, *, cut: bool) -> tuple[bytes, bool]:
        try:
            rest, whole = await read_bounded(self.response, max(0, limit - len(start)), cut=cut)
        except FAILURES as exc:
            raise self._client.translate(exc, self._sending) from None
        finally:
            _release(self.response, self._sending)
        return start + rest, whole

    async def json_body(self) -> bytes | None:
        """For an answer labelled JSON: its body (cut at MAX_ERROR_BYTES, credentials scrubbed)
        if it is JSON, else None (see :meth:`_json_start`)."""
        start = await self._json_start()
        if start is None:
            return None
        body, _ = await self._rest(start, MAX_ERROR_BYTES, cut=True)
        return self.scrub(body[:MAX_ERROR_BYTES])

    async def json_answer(self) -> bytes | None:
        """For an answer labelled JSON: its whole body if it is JSON, bounded as a non-stream
        answer is (``max_response_bytes``), else None (see :meth:`_json_start`): the answer of an
        upstream that ignored ``stream: true``, for a caller that takes it as the reply."""
        start = await self._json_start()
        if start is None:
            return None
        body, whole = await self._rest(start, self._client.max_response_bytes, cut=False)
        if not whole:
            raise self._client.too_large()
        return body

    def scrub(self, body: bytes) -> bytes:
        """``body`` (an error the upstream reported) with credentials redacted."""
        return self._client.scrub(body, self._credentials)

    def scrub_text(self, text: str) -> str:
        """``text`` (an error the upstream reported mid-stream) with credentials redacted."""
        return self.scrub(text.encode()).decode("utf-8", "replace")

    async def close(self) -> None:
        """Drop the response (and its connection) now; idempotent. Used when the stream is
        abandoned before or while it is read."""
        self._drop()

    def _drop(self) -> None:
        """Close the response. aiohttp's (streamed uploads) may still hold its connection, with
        part of the upload queued for an upstream that answered first and reads it no more:
        that connection is reset rather than closed, which would wait for the queue to drain."""
        if self._sending is not None and isinstance(self.response, aiohttp.ClientResponse):
            end_upload(self.response, self._sending.transport, self._sending.sent)
        elif isinstance(self.response, aiohttp.ClientResponse):
            drop(self.response)
        else:
            self.response.close()

    async def read(self) -> bytes:
        """The next piece of the body as it arrives; b"" at its end. The reader closes the
        stream when done (:meth:`close`), at the end too: closing an answer read to the end
        returns its connection to the pool."""
        if self._held:
            held, self._held = self._held, b""
            return held
        try:
            return await self.response.content.readany()
        except FAILURES as exc:
            raise self._client.translate(exc, self._sending) from None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            while data := await self.read():
                yield data
        finally:
            # Closing (not releasing) drops a connection whose body was not read to the end.
            self._drop()


def _over(base: dict[str, str], headers: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``headers`` set over it, names compared case-insensitively."""
    names = {name.lower() for name in headers}
    return {**{k: v for k, v in base.items() if k.lower() not in names}, **headers}


def _with_defaults(headers: dict[str, str]) -> dict[str, str]:
    present = {name.lower() for name in headers}
    return {**{k: v for k, v in _DEFAULT_HEADERS.items() if k.lower() not in present}, **headers}
