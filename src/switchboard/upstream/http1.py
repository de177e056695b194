"""A lean HTTP/1.1 client for the request path: asyncio protocols, httptools' response parser
(C, the one uvicorn uses for requests) and a keep-alive pool per origin.

Why not aiohttp here: on this path aiohttp's request and response machinery (request objects,
payload registry, timer objects, stream readers, multidicts) cost about seven times the CPU of
the bytes on the wire; the upstream client was the largest single cost of a proxied request
(docs/benchmarks.md). This module does only what the gateway's upstream calls need: a body of
known length, no redirects, no cookies; JSON APIs answering with a length, chunked or until
close; an https origin reached through an HTTP proxy's CONNECT tunnel, with the provider's own
TLS context (upstream/outbound.py). Anything else (streamed uploads, plain http through a proxy)
still goes through aiohttp (upstream/client.py).

Timeouts: ``connect`` bounds waiting for a pooled connection and the TCP/TLS set-up, the read
timeout (the provider's ``first_byte``) the whole response head, from the request's sending
to the end of the final answer's headers, and then every gap between reads of the body (paused
reads, while the caller is slower than the upstream, do not count), ``total`` the whole
exchange, body included. One timer per connection watches all three.

An exchange sees only bytes that arrive after its request was written: bytes on a connection
with no exchange in progress (idle in the pool, or after the answer was complete) are an
unsolicited answer (a stray second response, a 408 before an idle close) and break the
connection, which is closed and never handed out again. Otherwise the next request on it would
be given that answer, and every later caller the one before it.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import sys
import zlib
from collections import deque
from collections.abc import AsyncIterator, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from switchboard.upstream.gunzip import Gunzip
from switchboard.upstream.reset import reset

if TYPE_CHECKING:
    from switchboard.upstream.outbound import Proxy

# A streamed body is read from the socket up to this much ahead of the caller, then the socket
# is paused until the caller has taken it below LOW_WATER.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# The most one read of a streamed body hands the caller (readany). A stream's piece is decoded
# into a batch of events that is held, as dicts and their encoding (some five times the piece's
# bytes), for as long as the client takes to accept it; a fast upstream's reads of up to 256 KiB
# (and what piled up behind a slow client) are handed over in pieces of this size instead.
MAX_PIECE = 64 * 1024
_WHOLE = sys.maxsize
_INF = float("inf")
# Header names the client writes itself; a caller's or adapter's value for them is not sent.
_OWN = frozenset({"content-length", "transfer-encoding", "connection"})
_SSL: ssl.SSLContext | None = None
# What one network read of a compressed answer may expand to (JSON compresses about 10:1).
MAX_INFLATE = 8 * 1024 * 1024
# An answer's status line and headers; providers send a few KiB (nginx reads 4-8 KiB by default).
MAX_HEAD_BYTES = 64 * 1024
# A chunked answer's read with at most this many bytes besides its body (the usual one: a chunk's
# size line and CRLF) counts them all towards the bound after the body, rather than look for
# where the body ends: the count is then at most this much too large, never too small.
_FEW_PAST = 512
# A request body at least this large is written apart from its head (writelines): joining them
# copies the body, and writing the joined copy cost as much again; for 30 MiB (a message batch,
# base64 images) the two took 150 ms on the event loop, apart a few ms, as uvloop takes the body
# as it is. A smaller body is joined to its head: one write, one system call, a copy of
# microseconds.
WRITE_APART_BYTES = 256 * 1024
_NONE: Any = object()
# What makes an idle pooled connection unfit for a request, seen by a poll of its socket that
# does not wait (the event loop may not have read it yet): bytes waiting (an answer nobody asked
# for, a TLS close) or the upstream's end of the connection. No poll() (not Linux or BSD): only
# what the loop has read counts.
_POLL: Any = getattr(select, "poll", None)
_STALE = (select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
          | getattr(select, "POLLRDHUP", 0)) if _POLL is not None else 0
# Only a connection idle at least this long is polled. Upstreams close idle connections after
# seconds (gunicorn 2 s, uvicorn and Node 5 s, nginx 75 s), and under load a connection is
# reused within milliseconds: the poll (some 1,100 instructions under callgrind, a system call
# and the GIL let go and taken back, about 0.2 % of a proxied request) is paid where it matters.
POLL_IDLE_SECONDS = 0.5
# Interim (1xx) answers read past before an answer's final head: a server sends one or two (100
# Continue, 103 Early Hints); more is a server that never gets to its answer.
MAX_INTERIM = 8
_DEFLATE: Any = object()  # a deflate answer whose form (zlib or raw) is not known yet
_GZIP: Any = object()  # a gzip answer whose body has not begun


class Http1Error(Exception):
    """The connection failed or the upstream broke HTTP; the message names no credential."""


class ConnectFailed(Http1Error):
    """No connection could be opened (refused, unreachable, TLS handshake failed)."""


class TlsFailed(ConnectFailed):
    """The provider's certificate was refused (or the handshake failed): the message says why."""


class ProxyFailed(ConnectFailed):
    """The outbound proxy could not be reached or refused the tunnel; the message names the
    proxy as ``http://host:port``, never its credentials."""


class Disconnected(Http1Error):
    """The upstream closed the connection before its answer was complete. ``before_answer``: the
    request was sent on a new TLS connection and not one byte of an answer came (a TLS 1.3 server
    refusing the client's certificate does this: the refusal arrives after the handshake, as the
    connection's end; so does a server that took the request and failed, so it may have run)."""

    before_answer = False


class InvalidHeader(Http1Error):
    """A request header that cannot be sent (a line break in it would split the request)."""


class BadResponse(Http1Error):
    """The upstream's answer is not valid HTTP/1.1 (or not in an encoding the client reads)."""


class Redirected(BadResponse):
    """The upstream answered with a redirect (3xx), which is never followed: it would take the
    provider's credentials and the request's body wherever the upstream points. Holds the status
    only; the target (``Location``) is not shown to callers."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered with a redirect (HTTP {status}), which the gateway does not "
                         "follow")
        self.status = status


def _corrupt() -> BadResponse:
    """A compressed body that is not what its encoding says: invalid, cut short, or followed by
    bytes that are not part of it."""
    return BadResponse("unreadable body from upstream: invalid compressed data")


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:  # built once: loading the system's CA store costs milliseconds
        _SSL = ssl.create_default_context()
    return _SSL


def _tls_failure(exc: ssl.SSLError) -> TlsFailed:
    """Why a handshake failed, as OpenSSL says it (``unable to get local issuer certificate``):
    no certificate content, nothing secret."""
    verify = getattr(exc, "verify_message", None)
    if verify:  # the hint: a private CA is trusted through providers[].tls.ca_file
        return TlsFailed(f"TLS handshake failed: certificate verify failed: {verify} (tls.ca_file)")
    return TlsFailed(f"TLS handshake failed: {str(exc.reason or type(exc).__name__).lower()}")


def _check(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
        raise InvalidHeader(f"header {name!r} holds a character HTTP does not allow")


class Target:
    """One URL, parsed once: the pool it belongs to and its request line and Host header."""

    __slots__ = ("host", "host_header", "origin", "port", "request_target", "tls")

    def __init__(self, url: URL) -> None:
        self.tls = url.scheme == "https"
        self.host = url.raw_host or ""
        self.port = url.port or (443 if self.tls else 80)
        self.origin = (self.tls, self.host, self.port)
        self.request_target = (url.raw_path_qs or "/").encode("ascii")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if url.explicit_port is None else f"{host}:{self.port}"


def supports(url: URL) -> bool:
    """Whether this client can send to ``url`` (else aiohttp does)."""
    return url.scheme in ("http", "https") and bool(url.raw_host) and url.user is None


# Header sets a provider's Headers remembers (see Headers.block).
_KNOWN_HEADER_SETS = 32
# Headers whose value is new on every request (the attempt's W3C trace context, a request id):
# kept out of the remembered sets' keys, or each request would add a set and tracing would clear
# the memo every _KNOWN_HEADER_SETS requests. Written as the gateway sends them (lower case).
_VOLATILE = frozenset({"traceparent", "tracestate", "x-request-id"})


class Headers:
    """A fixed set of request headers (the provider's, its credential) as bytes, case-
    insensitively overridable by each request's own."""

    __slots__ = ("_block", "_items", "_known", "_names")

    def __init__(self, headers: Mapping[str, str]) -> None:
        for name, value in headers.items():
            _check(name, value)
        self._items = {name.lower(): (name, value) for name, value in headers.items()
                       if name.lower() not in _OWN}
        self._names = frozenset(self._items)
        self._block = "".join(f"{n}: {v}\r\n" for n, v in self._items.values()).encode()
        self._known: dict[tuple[tuple[str, str], ...], tuple[bytes, str | None]] = {}

    def block(self, extra: Mapping[str, str] | None, *, remember: bool = False) -> tuple[bytes, str | None]:
        """The header lines to send, and a Host value if the request carries its own (a
        signature covers it). ``remember``: the same few ``extra`` sets recur (a stream's
        Accept), so their result is kept (a bounded few; never for a caller's credential)."""
        if not extra:
            return self._block, None
        if not remember:
            return self._merge(extra)
        if not _VOLATILE.isdisjoint(extra):
            return self._with_volatile(extra)
        key = tuple(extra.items())
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _KNOWN_HEADER_SETS:
                del self._known[next(iter(self._known))]  # the oldest one, not all of them
            known = self._known[key] = self._merge(extra)
        return known

    def _with_volatile(self, extra: Mapping[str, str]) -> tuple[bytes, str | None]:
        """``block`` for a set holding per-request headers: the rest remembered as any set, the
        per-request lines appended (a provider that sets one of them itself is overridden by
        the request's value: merged whole, nothing remembered)."""
        stable: dict[str, str] = {}
        lines = []
        for name, value in extra.items():
            if name not in _VOLATILE:
                stable[name] = value
            elif name in self._names:
                return self._merge(extra)
            else:
                _check(name, value)
                lines.append(f"{name}: {value}\r\n")
        block, host = self.block(stable, remember=True)
        return block + "".join(lines).encode(), host

    def _merge(self, extra: Mapping[str, str]) -> tuple[bytes, str | None]:
        host = None
        merged: dict[str, tuple[str, str]] | None = None
        lines = []
        for name, value in extra.items():
            _check(name, value)
            low = name.lower()
            if low in _OWN:
                continue
            if low == "host":
                host = value
                continue
            if low in self._names:
                if merged is None:
                    merged = dict(self._items)
                merged[low] = (name, value)
            else:
                lines.append(f"{name}: {value}\r\n")
        if merged is None:
            return self._block + "".join(lines).encode(), host
        base = "".join(f"{n}: {v}\r\n" for n, v in merged.values())
        return (base + "".join(lines)).encode(), host


class _NoCallbacks:
    """A parser's protocol with no callbacks."""


# The parser of a connection not connected yet or closed: it holds nothing (see _Conn).
_SPENT = httptools.HttpResponseParser(_NoCallbacks())


class _Conn(asyncio.Protocol):
    """One connection and the response being read on it (one at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # One name for the loop: CPython shares the keys of instance dicts up to 30 names, and a
        # connection's attributes are read many times a request (30 now, with a compressed
        # answer's _came: no more).
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # One parser for the connection's life, made once it is connected (llhttp reads one
        # message after another). It holds this object's callbacks: a reference cycle, which
        # connection_lost breaks (a connection that never connected makes none).
        self._parser = _SPENT
        # The connection's timer, kept from one exchange to the next (see _arm).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _INF
        self._reset()

    def _reset(self) -> None:
        self._raw: list[tuple[bytes, bytes]] = []
        # The final answer's status; until it is in, how many interim (1xx) heads came before it.
        self.status = 0
        self.answered = False  # the final answer's status and headers are in (not a 1xx)
        self.length: bytes | None = None  # its Content-Length, as sent
        self.media: bytes | None = None  # its Content-Type, as sent
        # Read, in a row, without adding to the body: the head (1xx answers included), then
        # chunk framing and trailers.
        self._head_bytes = 0
        # The last body piece of the read in progress, as it came (before inflating); None: none.
        self._piece: bytes | None = None
        self.keep_alive = False
        self._until_close = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.done = False
        self.received = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._inflate: Any = None
        # Timeouts of the exchange in progress (loop time). _timed: an exchange is in progress
        # (its request written, its answer not complete); bytes at any other time are unsolicited.
        # _deadline: the head's (start + read gap, within the total) until the headers are in,
        # then _end, the total's.
        self._timed = False
        self._deadline = 0.0
        self._end = 0.0
        self._read_gap = 0.0
        self._last_read = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if not self._timed:
            self._fail(BadResponse("unsolicited answer on a connection with no request in progress"))
            return
        self.received = True
        self._last_read = self.loop.time()
        buffered = self._buffered
        answered = self.answered  # False: the head may end in this read (see below)
        self._piece = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own refusal arrives wrapped in the parser's error.
            cause = exc.__context__
            if isinstance(cause, zlib.error):  # raised in on_body: the compressed body is invalid
                cause = _corrupt()
            elif not isinstance(cause, BadResponse):
                cause = BadResponse(f"invalid HTTP from upstream: {exc}")
            self._fail(cause)
            return
        except Exception as exc:
            self._fail(BadResponse(f"unreadable body from upstream: {type(exc).__name__}"))
            return
        # Read in a row without adding to the body: the head, or after it chunk framing and
        # trailers, which httptools gathers in memory (one endless trailer value by repeated
        # concatenation): bounded as the head is, counted until a read brings body again.
        piece = self._piece
        if piece is None:
            self._head_bytes += len(data)
        elif (not answered and len(data) > MAX_HEAD_BYTES - self._head_bytes
              and self._head_over(data, piece, buffered)):
            # The head ended in this read and its body began: a read no larger than what is left
            # of the bound cannot take the head past it, so only a larger one is looked into.
            self._refuse_head()
            return
        elif self.length is None and not self._until_close:
            # Chunked: what the read holds past its last body piece (the answer's last chunk, its
            # trailers) counts from here, so the bound holds however the reads fall.
            body = self._buffered - buffered if self._inflate is None else 0  # as it came
            past = len(data) - body
            if past > _FEW_PAST:
                # Many bytes besides the body: those past its last piece. The piece is looked for
                # from where it starts at the earliest (after the read's other body bytes): a
                # copy of it before its place can only make the count larger.
                start = body - len(piece) if body else 0
                past = len(data) - data.find(piece, start) - len(piece)
            self._head_bytes = past
        else:  # a body delimited by its length or by the connection's end: nothing follows it
            self._head_bytes = 0
        if self._head_bytes > MAX_HEAD_BYTES:
            if answered or piece is not None:  # not: a head that ended in this read, no body after it
                self.done = False  # an answer that ended in this read is not taken whole either
                self._fail(BadResponse(f"the upstream sent over {MAX_HEAD_BYTES} bytes of chunk "
                                       "framing or trailers after its body"))
            else:
                self._refuse_head()

    def _head_over(self, data: bytes, piece: bytes, buffered: int) -> bool:
        """Whether the head, with its bytes in this read (the one it ended in, its body's first
        bytes in it too; ``piece``: the read's last body piece as it came, ``buffered``: what was
        buffered before it), is over MAX_HEAD_BYTES. Counted never too few: where the body
        begins is not told, only its pieces."""
        if self.length is not None or self._until_close:
            # The body runs to the read's end (a message after it is refused while parsing) and
            # comes in one piece.
            before = len(data) - len(piece)
        else:
            # Chunked: the last piece is where rfind finds it or earlier (a copy of it in the
            # trailers); the bytes before it that are not body are the head's and the chunk
            # size lines'.
            body = self._buffered - buffered if self._inflate is None else self._came  # as it came
            before = data.rfind(piece) - (body - len(piece))
        return self._head_bytes + before > MAX_HEAD_BYTES

    def _refuse_head(self) -> None:
        self.done = False  # an answer that ended in this read is not taken whole either
        self._fail(BadResponse(f"the upstream's answer headers exceed {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and self.answered and not self.done and exc is None:
            try:
                self.on_message_complete()  # a body delimited by the connection's end: complete
            except BadResponse as bad:  # its compressed content was cut short
                self._error(bad)
        elif not self.done:
            self._error(Disconnected("upstream closed the connection before the answer was complete"))
        self._cancel_timer()
        # The parser holds this object's callbacks (bound methods): a reference cycle, left for
        # the cyclic garbage collector by every connection closed. Nothing is read any more.
        self._parser = _SPENT

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        # A second message in the read that completed the answer (or after it): unsolicited.
        if self.done:
            raise BadResponse("unsolicited answer after the end of the one requested")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.answered:  # after the final answer's head: a chunked body's trailer, dropped
            self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        # Not a success: an interim head read past, or a redirect refused (one compare more on the
        # common path).
        if (status < 200 or status > 299) and self._not_final(status):
            return
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        self.answered = True
        self._deadline = self._end  # the head is in: from now the read gap and the total bound it
        # Only the framing is read here; the headers' mapping is built if someone asks for it
        # (Response.headers): on a successful call nobody does.
        length = encoding = media = None
        chunked = False
        for name, value in self._raw:
            name = name.lower()
            if name == b"content-length":
                length = value if length is None else length
            elif name == b"transfer-encoding":
                if value != b"chunked" and value.strip().lower() != b"chunked":  # gzip: never decoded
                    shown = value[:40].decode("ascii", "replace")
                    raise BadResponse(f"upstream sent a transfer coding the gateway does not read: {shown}")
                chunked = True
            elif name == b"content-encoding":  # a second line lists more codings (RFC 9110 5.3)
                encoding = value if encoding is None else encoding + b", " + value
            elif name == b"content-type":  # read here, in the loop already lowering the names
                media = value if media is None else media
        self.length = length
        self.media = media
        self._until_close = length is None and not chunked
        coding = b"identity" if encoding is None else encoding.strip().lower()
        if coding in (b"gzip", b"x-gzip"):
            self._inflate = _GZIP  # the decoder made at the first byte: an empty body is not cut
            self._came = 0  # this answer's own (a reused connection's earlier ones are not)
        elif coding == b"deflate":
            self._inflate = _DEFLATE  # zlib-wrapped or raw: told by the first bytes
            self._came = 0
        elif coding not in (b"identity", b""):
            shown = coding[:40].decode("ascii", "replace")  # the caller sees it: a few words at most
            raise BadResponse(f"upstream sent an encoding the gateway does not read: {shown}")
        self._wake()

    def _not_final(self, status: int) -> bool:
        """Whether a head that is not a success is an interim one, read past (True); an error
        (4xx, 5xx) is the answer (False); a redirect is refused (:class:`Redirected`)."""
        if 400 <= status <= 599:
            return False
        if 300 <= status <= 399:
            raise Redirected(status)
        self._interim(status)
        return True

    def _interim(self, status: int) -> None:
        """A head that is not a final answer: a 1xx interim one (100 Continue, 103 Early Hints)
        is read past, up to MAX_INTERIM of them (their bytes count towards MAX_HEAD_BYTES with
        the final head's); a 101, or a status outside 100-599, is not HTTP this client reads."""
        if status < 100 or status > 599:
            raise BadResponse(f"upstream answered with status {status}, outside HTTP's 100-599")
        if status == 101:  # llhttp would take the rest of the connection as another protocol's
            raise BadResponse("upstream switched protocols (101) though the request asked for no upgrade")
        self.status += 1
        if self.status > MAX_INTERIM:
            raise BadResponse(f"upstream sent over {MAX_INTERIM} interim (1xx) answers before its answer")
        self._raw = []  # an interim answer's headers (Early Hints' Link) are not the answer's

    def on_body(self, body: bytes) -> None:
        self._piece = body  # as it came: where the read's body ends (data_received)
        if self._inflate is not None:
            body = self._inflated(body)
            if not body:
                return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _inflated(self, body: bytes) -> bytes:
        # The body's bytes as they came, for the count of a head that came with them
        # (_head_over): beside decompressing it, nothing.
        self._came += len(body)
        if self._inflate is _DEFLATE or type(self._inflate) is bytes:
            if self._inflate is not _DEFLATE:
                body = self._inflate + body
            if len(body) < 2:  # one byte (a chunk of one) cannot tell the form: kept for the next
                self._inflate = body
                return b""
            # RFC 9110's deflate is zlib-wrapped; some servers send it raw.
            wrapped = body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
            self._inflate = zlib.decompressobj() if wrapped else zlib.decompressobj(-zlib.MAX_WBITS)
        elif self._inflate is _GZIP:
            self._inflate = Gunzip()
        out: bytes = self._inflate.decompress(body, MAX_INFLATE)
        if self._inflate.unconsumed_tail:  # a compression bomb, not an API answer
            raise BadResponse(f"a compressed piece of the answer expands past {MAX_INFLATE} bytes")
        if self._inflate.unused_data:  # bytes after a deflate stream's end (zlib would keep them)
            raise _corrupt()
        return out

    def on_message_complete(self) -> None:
        if not self.answered:  # the end of a 1xx interim answer
            return
        inflate = self._inflate
        if inflate is _DEFLATE or inflate is _GZIP:  # an empty body: nothing to inflate
            self._inflate = None
        elif inflate is not None:
            if type(inflate) is bytes or not inflate.eof:  # cut short (one byte of deflate: too)
                raise _corrupt()
            rest = inflate.flush()
            if rest:
                self._chunks.append(rest)
                self._buffered += len(rest)
        self.done = True
        self._stop_timer()
        self._wake()

    # -- state -----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _error(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(exc)

    def _fail(self, exc: BaseException) -> None:
        self._error(exc)
        self.close()

    def close(self) -> None:
        midway = self._timed  # an exchange in progress: its answer not complete
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            if midway:  # reset: a close would wait for a request body the upstream may never read
                reset(self.transport)
            else:
                self.transport.close()

    # -- timeouts --------------------------------------------------------------------------

    def start_timer(self, total: float | None, read_gap: float | None) -> None:
        """The exchange starts (its request is written next): its timeouts run from now."""
        now = self.loop.time()
        end = self._end = now + total if total else _INF
        gap = self._read_gap = read_gap or _INF
        head = now + gap  # the whole head within the read gap
        self._deadline = head if head < end else end  # not min(): see _arm
        self._last_read = now
        self._timed = True
        self._arm(now)

    def _arm(self, now: float) -> None:
        """Have the timer fire by the exchange's next deadline. A timer already set to fire
        sooner (by an earlier exchange on this connection) is kept: when it fires it finds the
        deadline ahead and sets itself again. Back-to-back exchanges with the same timeouts then
        make one timer per timeout period, not one per exchange."""
        when = self._last_read + self._read_gap
        if self._deadline < when:  # not min(): a builtin's call costs several times the compare
            when = self._deadline
        if when == _INF:
            return
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return
            timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _stop_timer(self) -> None:
        """The exchange is over: its timeouts no longer apply (the timer may stay set)."""
        self._timed = False

    def _cancel_timer(self) -> None:
        self._timed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if not self._timed or self.done or self.closed:
            return
        now = self.loop.time()
        if now >= self._deadline:
            self._fail(TimeoutError())
            return
        if self._paused:  # the caller is behind, not the upstream: the gap starts again
            self._last_read = now
        if now - self._last_read >= self._read_gap:
            self._fail(TimeoutError())
            return
        self._arm(now)

    # -- reading ---------------------------------------------------------------------------

    async def wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            # A failed waiter holds the error, whose traceback holds this frame: a cycle.
            del waiter

    def take(self, limit: int = _WHOLE) -> bytes:
        """What is buffered, as one piece of at most ``limit`` bytes (at least one byte);
        resumes a paused socket once the rest is below LOW_WATER."""
        chunks = self._chunks
        first = chunks[0]
        if len(chunks) == 1 and len(first) <= limit:  # the common case: one read, taken whole
            data = chunks.popleft()
        elif len(first) > limit:  # a read larger than a piece: cut into pieces, each copied once
            chunks.popleft()
            chunks.extendleft(reversed(_pieces(first, limit)))
            data = first[:limit]
        else:
            parts = [chunks.popleft()]
            size = len(first)
            while chunks and size + len(chunks[0]) <= limit:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._buffered -= len(data)
        if self._paused and self._buffered <= LOW_WATER and self.transport is not None and not self.closed:
            self._paused = False
            self._last_read = self.loop.time()
            self.transport.resume_reading()
        return data

    @property
    def pending(self) -> bool:
        return bool(self._chunks)

    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def quiet(self) -> bool:
        """Nothing waits on the idle connection's socket that the loop has not read yet: not the
        upstream's end of it (closed idle, its FIN or reset in flight until now), not bytes.
        Asked of an open connection idle at least POLL_IDLE_SECONDS. The poll is made here, not
        kept: one more attribute on every connection would cost more on each request (CPython
        stops sharing the keys of instance dicts past 30 names) than this does on the few."""
        sock = self.transport.get_extra_info("socket") if _POLL is not None and self.transport else None
        if sock is None:
            return True
        poll = _POLL()
        poll.register(sock.fileno(), _STALE)
        return not poll.poll(0)

    def discard(self) -> None:
        """Closed for good, its answer no longer read: let go of the error that ended it (raised
        by wait(), its traceback holds the frames that hold this object: a reference cycle)."""
        self.close()
        self._exc = None

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.closed and self._exc is None

    def recycle(self) -> None:
        self._stop_timer()
        self._reset()


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers as a read-only, case-insensitive multidict, decoded on first use: a
    successful call passes them along and seldom reads them."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._decoded: CIMultiDictProxy[str] | None = None

    def _all(self) -> CIMultiDictProxy[str]:
        if self._decoded is None:
            decoded = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw)
            self._decoded = CIMultiDictProxy(decoded)
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def get(self, name: str, default: Any = None) -> Any:
        return self._all().get(name, default)

    def getall(self, name: str, default: Any = _NONE) -> Any:
        """Every value of ``name`` in order (multidict's)."""
        return self._all().getall(name) if default is _NONE else self._all().getall(name, default)

    def keys(self) -> KeysView[str]:
        return self._all().keys()

    def items(self) -> ItemsView[str, str]:
        return self._all().items()

    def values(self) -> ValuesView[str]:
        return self._all().values()

    def __repr__(self) -> str:
        return f"<AnswerHeaders({list(self.items())!r})>"


def _pieces(data: bytes, limit: int) -> list[bytes]:
    """``data`` after its first ``limit`` bytes, in pieces of at most ``limit``. A function of its
    own: the comprehension in ``_Conn.take`` made its variables cells on every read taken."""
    return [data[i:i + limit] for i in range(limit, len(data), limit)]


def _declared(length: bytes | None) -> int | None:
    """A Content-Length's value. Leading zeros are legal and llhttp frames the body by the
    value, but ``int()`` refuses text of over 4,300 digits: they are dropped first (a value
    llhttp took has at most 20 digits once they are)."""
    if length is None or not length.isdigit():
        return None
    digits = length.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 20 else None


class Response:
    """The answer being read; the subset of aiohttp's ClientResponse the gateway uses."""

    def __init__(self, pool: Pool, conn: _Conn) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
        self.status = conn.status
        assert conn.answered
        self.headers = AnswerHeaders(conn._raw)
        self.content_length = _declared(conn.length)
        if conn._inflate is not None:
            self.content_length = None  # the length on the wire, not of what is read
        self._media = conn.media

    @property
    def content_type(self) -> str:
        """The media type, lowercase, without parameters (aiohttp's ``content_type``)."""
        media = self._media
        if media is None:
            return "application/octet-stream"
        return media.split(b";", 1)[0].strip().lower().decode("latin-1")

    @property
    def content(self) -> Response:
        """aiohttp's ``resp.content.iter_any()``. A property, not an attribute: a reference to
        itself would make every answer a cycle that only the garbage collector frees."""
        return self

    async def read(self) -> bytes:
        """The whole body (the caller checked its declared length)."""
        conn = self._conn
        assert conn is not None, "response already released"
        parts = []
        while True:
            if conn.pending:
                parts.append(conn.take())
            if conn.done:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await conn.wait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Each piece as it arrives (see :meth:`readany`)."""
        while piece := await self.readany():
            yield piece

    async def readany(self) -> bytes:
        """The next piece as it arrives (what is buffered, in one piece of at most MAX_PIECE
        bytes); b"" at the end."""
        conn = self._conn
        assert conn is not None, "response already released"
        while True:
            if conn.pending:
                return conn.take(MAX_PIECE)
            if conn.done:
                return b""
            await conn.wait()

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if it was read to the
        end (closed otherwise)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.put(conn)

    def __del__(self) -> None:
        # Dropped without release() or close() (a bug elsewhere): the pool must not lose the
        # connection's place, or it would run out of them.
        if self._conn is not None:
            self.close()

    def close(self) -> None:
        """Drop the answer now: a connection whose answer was read to the end goes back to
        the pool, any other is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if not conn.reusable():
                conn.close()
            self._pool.put(conn)


class _Tunnel(asyncio.Protocol):
    """A connection to an HTTP proxy until it answers CONNECT: the answer's status and reason,
    once its head is complete (a 2xx: the connection is the tunnel from then on)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._buffer = b""
        self._heads = 0  # the interim (1xx) heads read past, at most MAX_INTERIM

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buffer += data
        while not self.answer.done() and self._head():
            pass

    def _head(self) -> bool:
        """Read the answer's next head if it is all in (False: not yet): an interim one (100
        Continue, 103) is read past, as in any answer; the first other one is the proxy's answer."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self.answer.set_exception(BadResponse("its answer to CONNECT never ended"))
            return False
        if end > MAX_HEAD_BYTES:  # whole, but past the bound an answer's head is held to
            self.answer.set_exception(
                BadResponse(f"its answer to CONNECT has a head over {MAX_HEAD_BYTES} bytes"))
            return True
        line = self._buffer[:end].split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ", 2)
        # A status is three ASCII digits (RFC 9112): str.isdigit alone takes "²", which int()
        # refuses, as it does text of thousands of digits.
        code = parts[1] if len(parts) > 1 else ""
        if not parts[0].startswith("HTTP/") or len(code) != 3 or not (code.isascii() and code.isdigit()):
            self.answer.set_exception(BadResponse("its answer to CONNECT is not HTTP"))
            return True
        status = int(code)
        if 100 <= status < 200 and status != 101:
            self._heads += 1
            if self._heads > MAX_INTERIM:
                self.answer.set_exception(BadResponse(f"over {MAX_INTERIM} interim answers to CONNECT"))
            self._buffer = self._buffer[end + 4:]
            return True
        self.answer.set_result((status, parts[2].strip()[:100] if len(parts) > 2 else ""))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(Disconnected("it closed the connection before answering CONNECT"))


class Pool:
    """Keep-alive connections to one origin, at most ``limit`` open at once; with ``proxy``
    (https origins only) each connection is a CONNECT tunnel through it."""

    def __init__(
        self,
        target: Target,
        limit: int,
        idle_seconds: float,
        context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self._tls = target.tls
        self._host = target.host
        self._port = target.port
        # The provider's own TLS context (upstream/outbound.py); None: the system store.
        self._context = context
        # The proxy to tunnel through (host, port, Proxy-Authorization); None: direct.
        self._proxy = proxy
        self._limit = limit
        self._idle_seconds = idle_seconds
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        target: Target,
        head: bytes,
        body: bytes | None,
        *,
        connect: float | None,
        read_gap: float | None,
        total: float | None,
    ) -> Response:
        """Send one request and wait for its status and headers. A request is sent once: a
        connection that ends after it, with nothing answered, is a Disconnected (the upstream
        may have taken the request, and run it). Only a request the connection refused to take
        (closed under us) is sent again, once, on a new connection; a pooled connection idle at
        least POLL_IDLE_SECONDS that the upstream has closed is found before its reuse (_acquire)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for attempt in (0, 1):
            conn, reused = await self._acquire(loop, connect)
            left = None if total is None else total - (loop.time() - start)
            if left is not None and left <= 0:
                self.put(conn)
                raise TimeoutError()
            conn.start_timer(left, read_gap)
            assert conn.transport is not None
            sent = True
            try:
                if body and len(body) >= WRITE_APART_BYTES:
                    conn.transport.writelines((head, body))
                else:
                    conn.transport.write(head + body if body else head)
            except (OSError, RuntimeError):  # closed under us: as if the upstream had closed it
                sent = False
                conn._error(Disconnected("the connection closed before the request was sent"))
            try:
                while not conn.answered:
                    await conn.wait()
            except Disconnected as exc:
                conn.close()
                self.put(conn)
                if not sent and attempt == 0:
                    continue
                # Only a fresh TLS connection: a reused one that closed was idle, not refused.
                exc.before_answer = not conn.received and not reused and self._tls
                raise
            except BaseException:
                conn.close()
                self.put(conn)
                raise
            return Response(self, conn)
        raise AssertionError("unreachable")

    async def _acquire(self, loop: asyncio.AbstractEventLoop, connect: float | None) -> tuple[_Conn, bool]:
        if self._idle:
            conn = self._fit_idle(loop.time())
            if conn is not None:
                return conn, True
        if self._open >= self._limit:
            return await asyncio.wait_for(self._queue(loop), connect)
        return await self._connect(loop, connect), False

    async def _queue(self, loop: asyncio.AbstractEventLoop) -> tuple[_Conn, bool]:
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._next()  # woken and then cancelled: pass the turn on
                raise
            # Woken by a connection's return (or a free place): the connection may have closed
            # since (the upstream's end read in between), as any idle one is checked.
            conn = self._fit_idle(loop.time())
            if conn is not None:
                return conn, True
            if self._open < self._limit:
                return await self._connect(loop, None), False

    def _fit_idle(self, now: float) -> _Conn | None:
        """The idle connection returned last that can still take a request: not closed or
        closing, not idle past the idle time and, idle at least POLL_IDLE_SECONDS, with nothing
        waiting on its socket. The unfit ones are closed on the way."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            rested = now - conn.idle_since
            if (not conn.closed and rested < self._idle_seconds and conn.open()
                    and (rested < POLL_IDLE_SECONDS or conn.quiet())):
                return conn
            conn.close()
            self._open -= 1
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, seconds: float | None) -> _Conn:
        if self._closed:
            raise ConnectFailed("client closed")
        self._open += 1
        try:
            if self._proxy is not None:
                opening = self._tunnel(loop)
            else:
                opening = loop.create_connection(
                    lambda: _Conn(loop), self._host, self._port,
                    ssl=(self._context or _ssl_context()) if self._tls else None,
                    server_hostname=self._host if self._tls else None,
                )
            _, conn = await (asyncio.wait_for(opening, seconds) if seconds else opening)
        except ssl.SSLError as exc:
            self._open -= 1
            self._next()
            exc.__traceback__ = None  # see below
            raise _tls_failure(exc) from None
        except TimeoutError:
            # The connect (TCP and TLS) ran out of ``timeouts.connect``: a timeout, as documented
            # and as a full pool's wait is (TimeoutError is an OSError: caught before that).
            self._open -= 1
            self._next()
            raise TimeoutError() from None
        except OSError as exc:
            self._open -= 1
            self._next()
            # Its traceback holds wait_for's frame, which holds the task that holds it: a
            # reference cycle (with the frames of this request) that only its translation needs.
            exc.__traceback__ = None
            raise ConnectFailed(f"cannot connect: {type(exc).__name__}") from None
        except Http1Error:
            self._open -= 1
            self._next()
            raise
        except BaseException:
            self._open -= 1
            self._next()
            raise
        return conn

    async def _tunnel(self, loop: asyncio.AbstractEventLoop) -> tuple[asyncio.BaseTransport, _Conn]:
        """A TLS connection to the origin inside a CONNECT tunnel through the proxy. The
        proxy's refusal (407, 403) or absence is a ProxyFailed naming it, never its password."""
        proxy = self._proxy
        assert proxy is not None
        try:
            raw, tunnel = await loop.create_connection(lambda: _Tunnel(loop), proxy.host, proxy.port)
        except OSError as exc:
            raise ProxyFailed(f"cannot connect to the proxy {proxy.shown}: {type(exc).__name__}") from None
        try:
            host = f"[{self._host}]" if ":" in self._host else self._host
            authority = f"{host}:{self._port}"
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            raw.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode())
            try:
                status, reason = await tunnel.answer
            except Http1Error as exc:
                raise ProxyFailed(f"the proxy {proxy.shown} failed: {exc}") from None
            if not 200 <= status < 300:
                raise ProxyFailed(f"the proxy {proxy.shown} refused the tunnel to {authority}: "
                                  f"HTTP {status} {reason}".rstrip())
            conn = _Conn(loop)
            context = self._context or _ssl_context()
            transport = await loop.start_tls(raw, conn, context, server_hostname=self._host)
            if transport is None:
                raise ConnectFailed("the tunnel closed during the TLS handshake")
            conn.connection_made(transport)
        except BaseException:
            raw.close()
            raise
        return transport, conn

    def put(self, conn: _Conn) -> None:
        """Take back a connection after an exchange: kept if it can serve another."""
        if conn.reusable() and not self._closed:
            conn.recycle()
            loop = conn.loop
            conn.idle_since = loop.time()
            self._idle.append(conn)
            if self._sweeper is None:
                self._sweeper = loop.call_later(self._idle_seconds, self._sweep, loop)
        else:
            conn.discard()
            self._open -= 1
        self._next()

    def _next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle too long (the upstream would close them soon anyway)."""
        self._sweeper = None
        now = loop.time()
        keep = []
        for conn in self._idle:
            if conn.closed or now - conn.idle_since >= self._idle_seconds:
                conn.close()
                self._open -= 1
            else:
                keep.append(conn)
        self._idle = keep
        if keep:
            self._sweeper = loop.call_later(self._idle_seconds, self._sweep, loop)
        self._next()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in self._idle:
            conn.close()
        self._idle = []


def request_head(method: str, target: Target, headers: bytes, host: str | None, length: int | None) -> bytes:
    """The request line and headers, ready to write; ``length`` None: no body, no length."""
    sized = b"" if length is None else b"Content-Length: %d\r\n" % length
    host_value = target.host_header.encode("ascii") if host is None else host.encode()
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (
        method.encode("ascii"), target.request_target, host_value, headers, sized,
    )
