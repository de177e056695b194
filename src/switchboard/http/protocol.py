"""The HTTP/1.1 connection: uvicorn's httptools protocol with the edge's bounds.

uvicorn parses and dispatches; this subclass adds what a server facing the internet needs and
uvicorn does not do by itself:

- the request line and headers are bounded in size (431) and in time (408); the size is counted
  as bytes are fed to the parser, so an oversized or endless header is never buffered whole, and
  measured exactly once the headers are complete; a chunked body's trailer fields and chunk
  extensions are bounded too (431), counted as the body's bytes arrive;
- the request body must keep arriving: a gap between body reads longer than the body timeout
  ends the request (408 when nothing was answered yet), and so does a body not whole within the
  request timeout (``server.request_timeout_seconds``), however steadily it trickles in;
- an HTTP/1.1 request without a Host header, or any request with more than one, is a 400 (RFC
  9112 3.2); an ``Expect`` other than ``100-continue`` is a 417, and ``100-continue`` in an
  HTTP/1.0 request is ignored (RFC 9110 10.1.1);
- the answer must keep leaving: once the connection's write buffer is full (uvicorn then holds
  the application's next send until it drains, so nothing more is buffered), a client that takes
  none of it for the send timeout is cut off (the connection aborted, its buffers dropped), so
  a reader that stopped cannot hold the connection, the upstream call and their memory forever;
- at most ``max_connections`` connections per worker; one past the cap is answered 503 once its
  request's head is read (by a parser of its own, bounded in size and time: only for the shape
  and the id of the answer; soon, in OpenAI's shape, when no byte came) and closed, its request
  reaching no application;
- an answer sent before the request body was read (413, 431, 503) says ``connection: close`` and
  is followed by a bounded lingering close, as nginx does: the rest of the request is read and
  discarded for a few seconds and MiB, so a client still writing its body reads the answer
  instead of a connection reset;
- a streamed (unknown-length) reply to an HTTP/1.0 client is sent as-is and ended by closing the
  connection, since HTTP/1.0 has no chunked encoding.

Every refusal is an OpenAI-shaped JSON error, or Anthropic's for an Anthropic client's request
(its path under ``/v1/messages`` or an ``anthropic-version`` header, as far as they arrived), or
Google's under the Gemini API's own prefixes, with a request id as every answer has one.
Relies on these uvicorn internals (0.55), to be rechecked on every uvicorn upgrade: the
``HttpToolsProtocol`` methods ``connection_made``, ``connection_lost``, ``data_received``,
``on_body``, ``pause_writing``, ``resume_writing`` and ``send_400_response`` (overridden, each
calling the original except the last), ``on_chunk_header`` (uvicorn has none; httptools calls
it when defined), ``on_response_complete`` and
``_unset_keepalive_if_required`` (replaced: the keep-alive timer is one per connection),
``on_header`` (replaced: uvicorn's steps, with Host counted and other expectations kept),
``on_headers_complete`` and ``on_message_complete`` (replaced by uvicorn's steps written out, so
the request's cycle is built without a keyword-argument call and no ``super()`` call is paid per
request: to be compared with uvicorn's own on every upgrade; tests/unit/test_protocol_scope.py
compares the scope and cycle the application gets), the module's ``service_unavailable``, and
the protocol's attributes ``cycle``, ``flow``, ``connections``, ``tasks``, ``pipeline``,
``timeout_keep_alive``, ``timeout_keep_alive_task``, ``timeout_keep_alive_handler``,
``_start_asgi_task``, ``_should_upgrade``, ``url``, ``headers``, ``expect_100_continue``,
``scope``, ``root_path``, ``limit_concurrency``, ``app``, ``parser``, ``transport``, ``loop``,
``logger``, ``access_logger``, ``access_log``, ``server_state``; and
``RequestResponseCycle.__init__``'s attributes (http/cycle.py's ``new_cycle`` sets them itself)
and ``send`` (wrapped for HTTP/1.0, and for a body that spans reads) with the cycle's
``transport``, ``keep_alive``, ``chunked_encoding``, ``expected_content_length``, ``more_body``,
``response_started``, ``response_complete``, ``disconnected`` and ``message_event``.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import sys
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from types import MethodType
from typing import Any
from urllib.parse import unquote

import orjson
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle, service_unavailable

from switchboard.http.anthropic.errors import from_anthropic_client
from switchboard.http.anthropic.errors import status_body as anthropic_body
from switchboard.http.asgi import ABORT, EDGE_ANSWERED, REQUEST_ID
from switchboard.http.cork import CorkedTransport
from switchboard.http.cycle import abort, gone, new_cycle
from switchboard.http.endpoint import request_id, request_id_headers
from switchboard.http.gemini.errors import status_body as gemini_body
from switchboard.http.gemini.routes import GEMINI_ONLY_PREFIX

KIB = 1024
MIB = 1024 * KIB

# Lingering close: how long and how much of an unread request is read and discarded after an
# early answer, before the connection is closed.
LINGER_SECONDS = 5.0
LINGER_EXTRA_BYTES = 4 * MIB
LINGER_MAX_BYTES = 1024 * MIB
# A connection past the cap is held this long at most: its 503 is written once its request's
# head is here (for the shape and id its client reads), or at the end with what came.
REFUSED_LINGER_SECONDS = 2.0
# ... but one whose client has sent nothing this long is answered then, in OpenAI's shape: a
# client's request follows its connection within milliseconds (the SDKs' first byte came at most
# 85 ms after it on a loaded 2-core machine; one answered at once got OpenAI's shape instead of
# its own), while a silent one (a pre-opened pooled connection, an idle flood) would wait 2 s.
REFUSED_QUIET_SECONDS = 0.5
REFUSAL_LOG_INTERVAL = 10.0
# What a chunked body may take on the wire beyond its data, per chunk (the size line and CRLFs, a
# short extension); its trailer fields are bounded by server.max_header_bytes on top.
CHUNK_FRAMING_BYTES = 64

_HEADERS, _BODY = 0, 1
_UNBOUNDED = sys.maxsize


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Per-connection bounds, from ``server.*`` in the config."""

    max_header_bytes: int = 64 * KIB
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    request_timeout: float = 600.0  # bounds a whole body too (server.request_timeout_seconds)
    send_timeout: float = 60.0
    max_connections: int = 10_000


def dialect(path: str, headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The error shape the client of a request answered by the connection itself reads, by as
    much of its path and ``headers`` as arrived: ``anthropic`` (its SDK reads only Anthropic's),
    ``gemini`` (under the Gemini API's own prefixes) or ``openai``."""
    if from_anthropic_client(path, headers):
        return "anthropic"
    return "gemini" if path.startswith(GEMINI_ONLY_PREFIX) else "openai"


def error_response(status: int, reason: str, message: str, type_: str, code: str,
                   shape: str = "openai", rid: str | None = None) -> bytes:
    """A complete ``connection: close`` response with an OpenAI-shaped error body, or
    Anthropic's or Google's for such a client's request (``shape``, see :func:`dialect`), with the
    request id ``rid`` in the headers every answer carries it in."""
    if shape == "anthropic":
        error = anthropic_body(status, message)
    elif shape == "gemini":
        error = gemini_body(status, message)
    else:
        error = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    body = orjson.dumps(error)
    ids = b"" if rid is None else b"".join(b"%s: %s\r\n" % pair for pair in request_id_headers(rid, shape))
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode() + ids + b"\r\n" + body


def _path(url: bytes) -> str:
    return url.partition(b"?")[0].decode("latin-1")


class _RefusedHead:
    """The head of a request on a connection past the cap, read only for the shape and the id of
    its 503 (:meth:`GatewayHttpProtocol._read_refused`): the target and the header lines, by a
    parser of its own, so that the connection's own parser (and every request it serves) is
    untouched."""

    __slots__ = ("complete", "headers", "parser", "size", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.complete = False
        self.parser = HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.complete = True


class _CloseGuard:
    """Stands in for the transport in a ``connection: close`` cycle that has a request body, so
    that uvicorn closing the connection after the answer becomes a lingering close when the body
    was not read to the end. Only such cycles pay for the indirection."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: GatewayHttpProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _close_delimited_send(cycle: RequestResponseCycle, message: Any) -> None:
    """``send`` for an HTTP/1.0 request: a reply without a Content-Length is written as it comes
    (no chunked framing, which HTTP/1.0 lacks) and ends when the connection closes (uvicorn
    closes 1.0 connections after every reply)."""
    if message["type"] == ABORT:
        await abort(cycle)
        return
    if cycle.flow.write_paused:  # waited for here, so a loss during the wait is seen below
        await cycle.flow.drain()
    if cycle.disconnected and message.get("more_body", False):
        await gone()  # as GatewayCycle.send: the relay stops at once
    if message["type"] == "http.response.start" and not cycle.response_started:
        names = {name.lower() for name, _ in message.get("headers", ())}
        no_body = cycle.scope["method"] == "HEAD" or message["status"] in (204, 304)
        if b"content-length" not in names and not no_body:
            cycle.chunked_encoding = False
            cycle.expected_content_length = _UNBOUNDED
            cycle.keep_alive = False
            cycle.close_delimited = True  # type: ignore[attr-defined]
    elif getattr(cycle, "close_delimited", False) and not message.get("more_body", False):
        # uvicorn checks the declared length at the end; this reply declared none.
        cycle.expected_content_length = len(message.get("body", b""))
    await RequestResponseCycle.send(cycle, message)


def _unwrap_send(cycle: RequestResponseCycle) -> None:
    """Drop a cycle's own ``send`` wrapper (a closure or method over the cycle) once it is no
    longer needed: left in place it makes every such request a reference cycle, freed only by
    the garbage collector, whose passes stop the event loop."""
    cycle.__dict__.pop("send", None)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's bounds (see the module docstring)."""

    # Set once per process from the settings (server.configure_edge) before serving.
    limits = EdgeLimits()
    _refused_count = 0
    _refusal_logged = float("-inf")
    _refused: _RefusedHead | None = None  # a connection past the cap, until it is answered

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _HEADERS
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        # The body timer, kept from one request to the next (see _body_timeout); _body_timed: the
        # current request's body spans reads, and is timed.
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_timed = False
        self._body_seen = 0.0  # loop time of the last body read
        self._body_began = 0.0  # loop time the timed body began (its headers were complete)
        self._body_got = 0  # body bytes of the current request received so far
        # Of a timed body (counted from when its timing began): the bytes read, the body bytes
        # got when it began, and its chunks; what is read beyond the body (chunk framing and
        # extensions, trailer fields) is bounded, as headers are (see data_received).
        self._wire = 0
        self._wire_body = 0
        self._chunks = 0
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_left = 0
        self._lingering = False
        self._send_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # what the client had not taken when the send timer was last set
        self._idle_since: float | None = None  # loop time the connection went idle; None: busy
        # Of the request whose headers are being read: its Host lines, and an Expect value other
        # than 100-continue (checked once its headers are complete; see _head_refused).
        self._hosts = 0
        self._expectation: bytes | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.limits.max_connections
        # Every write of the connection coalesced per event-loop pass (http/cork.py).
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
        if over:
            self.connections.discard(self)
            self._note_refusal()
            # Answered once its request's head is here (or the time is up), in the shape its
            # client reads and with its id, or soon in OpenAI's if nothing comes; meanwhile what
            # arrives goes to _read_refused only.
            self._refused = _RefusedHead()
            self._lingering = True
            self._linger_timer = self.loop.call_later(REFUSED_QUIET_SECONDS, self._refused_quiet)
            return
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _read_refused(self, data: bytes) -> None:
        """Read the head of a connection past the cap, bounded as any head is, and answer it
        once it is whole, too large or malformed."""
        head = self._refused
        assert head is not None
        head.size += len(data)
        try:
            head.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):  # malformed, or an upgrade: answered with what arrived
            head.complete = True
        if head.complete or head.size > self.limits.max_header_bytes:
            self._answer_refused_now()

    def _answer_refused_now(self) -> None:
        """Answer a refused connection now; read and discard what still comes until its time is up."""
        self._answer_refused()
        self._linger_left = LINGER_EXTRA_BYTES  # the rest of the request, read and discarded
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self._close_now()

    def _refused_quiet(self) -> None:
        """A refused connection's first moment is over: answered now if its client sent nothing
        yet (a late request is then read and discarded, as after any early answer); a head begun
        is waited for until the refused connection's time is up."""
        self._linger_timer = self.loop.call_later(REFUSED_LINGER_SECONDS - REFUSED_QUIET_SECONDS,
                                                  self._refused_due)
        if self._refused is not None and self._refused.size == 0:
            self._answer_refused_now()

    def _refused_due(self) -> None:
        """The end of a refused connection's time: answered with what arrived, if not yet, and closed."""
        self._linger_timer = None
        if self._refused is not None:
            self._answer_refused()
        self._close_now()

    def _answer_refused(self) -> None:
        head, self._refused = self._refused, None
        assert head is not None
        shape = dialect(_path(head.url), head.headers)
        rid = request_id({name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers})
        self.transport.write(error_response(
            503, "Service Unavailable", "the server has too many open connections; retry later",
            "api_error", "too_many_connections", shape, rid,
        ))

    def _note_refusal(self) -> None:
        """One warning per interval, with a count, not one per refused connection."""
        cls = GatewayHttpProtocol
        cls._refused_count += 1
        now = self.loop.time()
        if now - cls._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self.logger.warning(
                "refused %d connection(s) past server.max_connections (%d)", cls._refused_count,
                self.limits.max_connections,
            )
            cls._refused_count, cls._refusal_logged = 0, now

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._drop_keep_alive_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._cancel_send_timer()
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None:
            _unwrap_send(cycle)
            if isinstance(cycle.transport, _CloseGuard):  # it points back at this protocol
                cycle.transport = self.transport

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            if self._refused is not None:  # past the cap, its request's head not whole yet
                self._read_refused(data)
                return
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self._close_now()
            return
        if self._phase == _HEADERS:
            self._header_bytes += len(data)
        else:
            self._wire += len(data)
        super().data_received(data)
        if self.transport.is_closing() or self._lingering:
            return
        if self._phase == _HEADERS and self._header_bytes:
            if self._header_bytes > self.limits.max_header_bytes:
                self._header_too_large()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)
        elif self._phase == _BODY:
            if not self._body_timed:
                # The body spans reads (this runs once per such request, before its task starts).
                self._body_timed = True
                self._body_began = self._body_seen = self.loop.time()
                if self._body_timer is None:  # one left by an earlier request fires early, and waits on
                    limits = self.limits
                    self._body_timer = self.loop.call_later(min(limits.body_timeout, limits.request_timeout),
                                                            self._body_timeout)
                self._wire, self._wire_body, self._chunks = 0, self._body_got, 0
                self._close_if_answered_early()
            elif (self._wire - self._body_got + self._wire_body
                  > self.limits.max_header_bytes + CHUNK_FRAMING_BYTES * self._chunks):
                # Trailer fields are kept (by the parser, then in the request's headers) as they
                # arrive, after the header bound was checked; without this an endless trailer
                # section would grow the worker's memory until the body timeout.
                self._trailer_too_large()

    # Write flow control

    def pause_writing(self) -> None:
        # The transport's buffer is over its high-water mark: uvicorn's send now waits for it to
        # drain before writing more. Only a stalled or slow reader gets here, so this path (and
        # its system call) costs the common path nothing.
        super().pause_writing()
        if self._send_timer is None:
            self._unsent = self._unsent_bytes()
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_timeout)

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()

    def _unsent_bytes(self) -> int:
        """What the client has not taken yet: the transport's buffer and the kernel's send queue
        (unsent or unacknowledged; Linux's SIOCOUTQ). The transport's buffer alone moves only
        when the kernel wants more, which for a slow reader of a large kernel buffer can be
        minutes apart even though the client keeps reading."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                unsent += struct.unpack("i", queued)[0]
            except (OSError, AttributeError, ValueError):  # not a socket it can ask, or closed
                pass
        return unsent

    def _send_timeout(self) -> None:
        self._send_timer = None
        if not self.flow.write_paused:
            return
        timeout = self.limits.send_timeout
        unsent = self._unsent_bytes()
        if unsent < self._unsent:  # it took some: slow, not stalled; it gets another period
            self._unsent = unsent
            self._send_timer = self.loop.call_later(timeout, self._send_timeout)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() now reports a disconnect
            cycle.message_event.set()
        peer = f"{self.client[0]}:{self.client[1]} " if self.client else ""
        self.logger.info("connection %sclosed: the client took none of the answer for %g s "
                         "(server.send_timeout_seconds)", peer, timeout)
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._cancel_timers()
        # Aborted, not closed: a close would wait, without end, for the client to take what is
        # buffered for it (a keep-alive or lingering close included).
        self.transport.abort()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # Parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's, with the Host lines counted and an expectation other than 100-continue kept
        # for on_headers_complete: one compare per header more than uvicorn's.
        name = name.lower()
        # llhttp keeps trailing OWS, which RFC 9110 5.5 excludes from the value (as uvicorn).
        value = value.rstrip(b" \t")
        if name == b"host":
            self._hosts += 1
        elif name == b"expect" and self._phase == _HEADERS:  # in a chunked body's trailer: nothing
            if value.lower() == b"100-continue":
                # RFC 9110 10.1.1: ignored in an HTTP/1.0 request (its client reads no 100).
                self.expect_100_continue = self.parser.get_http_version() != "1.0"
            elif value:  # an empty list of expectations expects nothing
                self._expectation = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._lingering:  # the rest of a chunk that arrived with a refused request
            return
        self._phase = _BODY
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._body_got = 0
        self._body_timed = False
        # The bytes fed since the last request bound this one's headers from above (0: unknown,
        # a pipelined request); only past the limit or unknown are they measured exactly.
        limit = self.limits.max_header_bytes
        if (self._header_bytes > limit or not self._header_bytes) and self._header_size() > limit:
            self._header_too_large()
            return
        if (self._hosts != 1 or self._expectation is not None) and self._head_refused():
            return
        self._start_request()

    def _head_refused(self) -> bool:
        """Refuse a request whose head HTTP says to refuse (True when it did): a 400 for an
        HTTP/1.1 request without Host, or any with more than one (RFC 9112 3.2: which would the
        request be for?); a 417 for an expectation the server cannot meet (RFC 9110 10.1.1: only
        100-continue is defined), rather than serving a client that asked for something else."""
        hosts = self._hosts
        if hosts > 1 or (not hosts and self.parser.get_http_version() == "1.1"):
            why = "more than one Host header" if hosts else "no Host header, which HTTP/1.1 requires"
            self._refuse(400, "Bad Request", f"malformed HTTP request: {why}", "invalid_request_error",
                         "malformed_http_request", LINGER_SECONDS)
            return True
        if (expectation := self._expectation) is not None:
            shown = expectation[:40].decode("latin-1")
            self._refuse(417, "Expectation Failed", f"the expectation '{shown}' cannot be met; the only one "
                         "this server meets is 100-continue", "invalid_request_error", "expectation_failed",
                         LINGER_SECONDS)
            return True
        return False

    def _start_request(self) -> None:
        """uvicorn's ``on_headers_complete``, step for step, with the request's cycle a
        :class:`GatewayCycle` made by :func:`new_cycle` (its response head costs less to write,
        and it is built without a keyword-argument call), then the edge's wrapping of a
        ``connection: close`` cycle."""
        parser = self.parser
        scope = self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return  # upgraded: not an HTTP request cycle
        parsed_url = parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed_url.query or b""
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        transport = self.transport
        if not keep_alive:  # HTTP/1.0, or "connection: close": closing becomes a lingering close
            transport = _CloseGuard(self, transport)  # type: ignore[assignment]
        existing = self.cycle
        self.cycle = cycle = new_cycle(
            scope, transport, self.flow, self.logger, self.access_logger, self.access_log,
            self.server_state.default_headers, asyncio.Event(), self.expect_100_continue, keep_alive,
            self.on_response_complete,
        )
        if http_version == "1.0":
            cycle.send = MethodType(_close_delimited_send, cycle)  # type: ignore[method-assign]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, app)
        else:  # pipelined: queued behind the request being answered
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))

    def on_chunk_header(self) -> None:
        # httptools calls it (per chunk of a chunked body) only because it is defined.
        self._chunks += 1

    def on_body(self, body: bytes) -> None:
        if self._lingering:
            return
        if self._body_timed:  # only a body spanning reads is timed
            self._body_seen = self.loop.time()
        self._body_got += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lingering:
            return
        self._phase = _HEADERS
        self._header_bytes = 0
        self._hosts = 0  # here, after the body: a Host line in a chunked body's trailer counted too
        # The body timer is left set (see _body_timeout).
        # uvicorn's, inline.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        # The current cycle is the answered request's, unless a pipelined request arrived
        # behind it: then that one is current, queued, and the body being read is its own.
        cycle = self.cycle
        answered = cycle is not None and cycle.response_complete
        if answered:
            _unwrap_send(cycle)
        if self._lingering:
            return
        if answered and self._phase == _BODY and not self.transport.is_closing():
            # Answered before the request body was read: this connection cannot be reused.
            self.server_state.total_requests += 1
            self._linger(LINGER_SECONDS)
            return
        # uvicorn's, but for the keep-alive timer (``_keep_idle``).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._keep_idle()

    # Keep-alive: uvicorn sets a timer after each answer and cancels it when the next request
    # arrives, a timer made and dropped per request. The connection keeps one instead: the next
    # request only marks the connection busy, and a timer that fires early (the connection was
    # busy in between) is set again for the current idle period's end, or not at all while busy.

    def _keep_idle(self) -> None:
        now = self.loop.time()
        self._idle_since = now
        if self.timeout_keep_alive_task is None:
            due = now + self.timeout_keep_alive
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:  # busy: the answer sets it again
            return
        due = self._idle_since + self.timeout_keep_alive
        if due > self.loop.time():
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_due)
            return
        self.timeout_keep_alive_handler()

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's calls this as a request's bytes arrive: busy, the timer kept (see above).
        self._idle_since = None

    def _drop_keep_alive_timer(self) -> None:
        self._idle_since = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def send_400_response(self, msg: str) -> None:
        self._refuse(
            400, "Bad Request", "malformed HTTP request", "invalid_request_error", "malformed_http_request",
            LINGER_SECONDS,
        )

    def _close_if_answered_early(self) -> None:
        """Make an answer that starts before this request's body is read say ``connection:
        close`` (and linger when it closes): the unread body makes the connection unusable."""
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope or not cycle.keep_alive or cycle.response_started:
            return
        send = cycle.send

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start" and self._phase == _BODY and self.cycle is cycle:
                cycle.keep_alive = False
                cycle.transport = _CloseGuard(self, self.transport)  # type: ignore[assignment]
            await send(message)

        cycle.send = send_closing  # type: ignore[method-assign]

    # Bounds

    def _header_size(self) -> int:
        """The request line and header lines with their separators, as received."""
        return len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _declared_length(self) -> int:
        """The request's Content-Length; -1 when chunked or unknown."""
        for name, value in reversed(self.headers):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return -1
            if name == b"transfer-encoding":
                return -1
        return 0

    def _header_too_large(self) -> None:
        self._fields_too_large("request headers", "the request line and headers")

    def _trailer_too_large(self) -> None:
        self._fields_too_large("chunked body's trailer fields or chunk framing",
                               "the chunked body's trailer fields and chunk extensions")

    def _fields_too_large(self, logged: str, what: str) -> None:
        limit = self.limits.max_header_bytes
        self.logger.info("%s over %d bytes refused", logged, limit)
        self._refuse(
            431, "Request Header Fields Too Large", f"{what} exceed the limit of {limit} bytes",
            "invalid_request_error", "request_header_fields_too_large", LINGER_SECONDS,
        )

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._lingering or self._phase != _HEADERS:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A reply is still being written; the next request stays unread and the connection
            # closes after that reply.
            cycle.keep_alive = False
            return
        if not self._header_bytes or not self._request_begun():
            # Nothing was asked (blank lines alone begin no request, RFC 9112 2.2): nothing to
            # answer, and an answered request is left alone. Closed as an idle connection is.
            self._close_now()
            return
        self._time_out("the request headers did not arrive in time")

    def _request_begun(self) -> bool:
        """Whether a request line began since the last request (the parser then made a new
        scope): until it does, the scope held is the answered request's, or none."""
        cycle = self.cycle
        return self.scope is not None and (cycle is None or cycle.scope is not self.scope)

    # The body timer, like the keep-alive timer, is one per connection rather than one set and
    # cancelled per request whose body spans reads (as an SDK's body, written after its headers,
    # usually does): left set when a body is complete, it finds no timed body when it fires and
    # goes; one that fires during a later timed body finds the body's last read sooner than the
    # timeout ago and is set again for the rest.

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._lingering or self._phase != _BODY or not self._body_timed:
            return
        limits = self.limits
        now = self.loop.time()
        # The whole body is bounded too: one byte every few seconds would keep the connection,
        # the worker's buffers and the request's slot for as long as the client likes.
        left = self._body_began + limits.request_timeout - now
        if left <= 0:
            self._time_out(f"the request body took longer than {limits.request_timeout:g} s to arrive")
            return
        timeout = limits.body_timeout
        idle = 0.0 if self.flow.read_paused else now - self._body_seen
        if idle < timeout:  # the application is not reading, or a read came since: wait on
            self._body_timer = self.loop.call_later(min(timeout - idle, left), self._body_timeout)
            return
        self._time_out("the request body stopped arriving")

    def _time_out(self, why: str) -> None:
        cycle = self.cycle
        answered = cycle is not None and cycle.scope is self.scope and cycle.response_started
        if cycle is not None and cycle.scope is self.scope:
            cycle.disconnected = True  # the application's receive() now reports a disconnect
            cycle.message_event.set()
        self.logger.info("connection closed: %s", why)
        if not answered:
            self._answer(408, "Request Timeout", why, "invalid_request_error", "request_timeout")
        self._close_now()

    # Closing

    def close_after_answer(self) -> None:
        """uvicorn's close after a ``connection: close`` answer."""
        if self._phase == _BODY and not self.transport.is_closing():
            self._linger(LINGER_SECONDS)
        else:
            self._close_now()

    def _refuse(self, status: int, reason: str, message: str, type_: str, code: str, linger: float) -> None:
        """Answer without reading the request, then close, lingering so the client reads it."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() now reports a disconnect
            cycle.message_event.set()
            if cycle.response_started:  # a reply is half written: nothing else can follow it
                self._close_now()
                return
        self._answer(status, reason, message, type_, code)
        self._linger(linger)

    def _answer(self, status: int, reason: str, message: str, type_: str, code: str) -> None:
        """Write the connection's own error answer: as much of the request's path and headers as
        arrived tells an Anthropic client, which reads only Anthropic's error shape, and the
        request id (the one its endpoint gave it if one took the request, else the caller's
        ``x-request-id`` if it arrived, as the endpoints take it, or a new one). A
        request whose application runs (its body was being read) sees a disconnect; this answer
        and its id are put on its scope for the endpoint to record as what was sent, not as a
        client that left. Refusals only: nothing here runs for a request that is served."""
        begun = self._phase != _HEADERS or self._request_begun()
        # No new request has begun (only blank lines since the last one's end, RFC 9112 2.2):
        # the path and headers still held are the previous request's, not this one's.
        headers = (self.headers or ()) if begun else ()
        # The id the request's endpoint gave it, once one took it, as its log lines carry it.
        rid: str | None = self.scope.get(REQUEST_ID) if self._phase == _BODY else None  # type: ignore[assignment]
        if rid is None:
            rid = request_id({name.decode("latin-1"): value.decode("latin-1") for name, value in headers})
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.response_started:
            self.scope[EDGE_ANSWERED] = (status, type_, code, message, rid)  # type: ignore[literal-required]
        url = (getattr(self, "url", None) or b"") if begun else b""  # none before a request line began
        shape = dialect(_path(url), headers)
        self.transport.write(error_response(status, reason, message, type_, code, shape, rid))

    def _linger(self, seconds: float) -> None:
        """Stop answering; read and discard what the client still sends, for at most ``seconds``
        and a bounded number of bytes, then close (nginx's lingering close)."""
        if self._lingering:
            return
        self._cancel_timers()
        self._lingering = True
        left = max(self._declared_length() - self._body_got, 0) if self._phase == _BODY else 0
        self._linger_left = min(left, LINGER_MAX_BYTES) + LINGER_EXTRA_BYTES
        self.flow.resume_reading()
        try:
            self.transport.write_eof()  # the answer ends here; the client may still be sending
        except (OSError, RuntimeError, NotImplementedError):
            self._close_now()
            return
        self._linger_timer = self.loop.call_later(seconds, self._close_now)

    def _close_now(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
