"""A request's cycle: uvicorn's, with a cheaper response head.

uvicorn checks every response header name and value with a regular expression call of its own
(32 calls for the 16 headers of a gateway answer, some 40,000 CPU instructions, about 4 % of a
whole request). The characters refused are checked per byte and independent of their
neighbours, so one search over all the names together and one over all the values together
refuse exactly what the 32 calls refuse, for the price of two (and a translation table makes
each a byte-by-byte lookup, several times cheaper than the expression's per-byte matching).

Everything else about the head is what uvicorn writes: the status line, its default headers
first, the names lower-cased, ``content-length`` and ``transfer-encoding`` deciding the framing,
``connection: close`` ending keep-alive, chunked framing when the length is unknown. A stream's
body parts with more to follow are framed and written as uvicorn's ``send`` does, but without a
coroutine of their own (two or more a stream). The rest of the body (a whole answer, a stream's
last part) and anything unusual (an access log, a second start, a refused header, a length that
is not plain digits) go to uvicorn's own ``send``, which then raises the error it would have
raised.

The usual head (no transfer-encoding or connection header among the names) is written without a
per-header test: the loop only gathers the lines, and the checks run over the names and values
taken back from them (``_start``); the rest is walked header by header (``_walk``).

Relies on these uvicorn internals (0.55), to be rechecked on every uvicorn upgrade:
``RequestResponseCycle.__init__`` (:func:`new_cycle` sets its attributes itself, in its order),
``RequestResponseCycle.send`` and the attributes it keeps (``flow``, ``disconnected``,
``response_started``, ``waiting_for_100_continue``, ``default_headers``, ``access_log``,
``chunked_encoding``, ``expected_content_length``, ``keep_alive``, ``scope``, ``transport``), and
``httptools_impl``'s ``STATUS_LINE``, ``HEADER_RE`` and ``HEADER_VALUE_RE``.

A body part sent with more to follow once the connection is gone raises :class:`ClientGone`
where uvicorn would drop it silently: a relay then stops at its next send and closes its
upstream response, instead of reading the upstream on until the disconnect watcher
(http/disconnect.py) cancels it, up to a quarter of a second later (tens of MB from a fast
upstream). So does a part whose send was waiting for the client to take what was buffered
when the connection went (uvicorn would drop that one quietly once its wait ends). A response's
last part (or only one) is still dropped quietly: nothing follows it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Generator
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

from switchboard.http.asgi import ABORT
from switchboard.http.disconnect import ClientGone


def _table(refused: re.Pattern[bytes]) -> bytes:
    """A translation table mapping each byte ``refused`` matches to NUL and every other to 1."""
    return bytes(0 if refused.match(bytes((b,))) else 1 for b in range(256))


_NAME_TABLE = _table(HEADER_RE)
_VALUE_TABLE = _table(HEADER_VALUE_RE)
_REFUSED = 0


class GatewayCycle(RequestResponseCycle):
    """uvicorn's request cycle with the response head written by :meth:`_start`."""

    # An awaitable rather than uvicorn's coroutine (WRITTEN for a part written at once): ASGI
    # asks only that send's result be awaited, and everything that calls it awaits it.
    def send(self, message: Any) -> Awaitable[None]:  # type: ignore[override]
        # A plain function handing back an awaitable: the body's sends pay no extra frame.
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started and not self.access_log:
            return self._start(message)
        if kind == ABORT:
            return abort(self)
        # Two flag tests per body part before its own path (a slow reader, a client gone).
        if self.flow.write_paused:  # only a slow or stalled reader gets here
            return self._after_drain(message)
        if self.disconnected:
            if message.get("more_body", False):
                return gone()
        elif (
            # A stream's part with more to follow (chunked_encoding is set only with the head):
            # framed and written as uvicorn's send does, without that coroutine. Its last part,
            # which completes the response, and anything else go to uvicorn.
            kind == "http.response.body"
            and self.chunked_encoding
            and not self.response_complete
            and message.get("more_body", False)
            and (body := message.get("body", b""))
            and self.scope["method"] != "HEAD"
        ):
            self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            return WRITTEN
        return RequestResponseCycle.send(self, message)

    async def _after_drain(self, message: Any) -> None:
        # uvicorn's send waits for the drain itself, but then drops the part quietly when the
        # connection was lost meanwhile (its loss is what ends the wait): the relay would read
        # one more upstream piece before its next send noticed. The wait is done here, so a part
        # with more to follow raises ClientGone as a send after the loss does.
        await self.flow.drain()
        if self.disconnected and message.get("more_body", False):
            raise ClientGone(on_send=True)
        await RequestResponseCycle.send(self, message)

    async def _start(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        extra = list(message.get("headers", ()))
        status = message["status"]
        content = [STATUS_LINE[status]]
        # The usual head (none of transfer-encoding or connection, a length of plain digits) with
        # a loop that only gathers the lines: the names and values are taken back from it by
        # slices, checked on joined bytes (a name's case does not change what is refused), the
        # names lower-cased only when one has a capital, and the special names looked up in the
        # names' list, in C. Anything else (a special name, a refused byte, a header that is not
        # a pair of bytes) goes to the header-by-header walk (:meth:`_walk`), which writes or
        # refuses exactly what uvicorn does.
        chunked = self.chunked_encoding
        declared: bytes | None = None  # the first content-length
        try:
            for name, value in self.default_headers + extra:
                content += (name, b": ", value, b"\r\n")
            names = content[1::4]
            joined = b"".join(names)
            if joined.lower() != joined:  # a capital (the gateway's own names are lower-case)
                names = content[1::4] = [name.lower() for name in names]
                joined = b"".join(names)
            values = content[3::4]
            usual = not (
                b"transfer-encoding" in names
                or b"connection" in names
                or _REFUSED in joined.translate(_NAME_TABLE)
                or _REFUSED in b"".join(values).translate(_VALUE_TABLE)
            )
            if usual and chunked is None and b"content-length" in names:
                declared = values[names.index(b"content-length")]  # the first one counts
                usual = declared.isdigit()
        except Exception:  # a malformed header list: the walk raises what uvicorn raises
            usual = False
        if not usual:
            return await self._walk(message, extra)
        self.response_started = True
        self.waiting_for_100_continue = False
        if declared is not None:
            self.chunked_encoding = chunked = False
            self.expected_content_length = int(declared)
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        if chunked is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))

    async def _walk(self, message: Any, extra: list[Any]) -> None:
        """The head written header by header: the special names in any case or place, and
        uvicorn's own refusal of a bad header."""
        status = message["status"]
        content = [STATUS_LINE[status]]
        names: list[bytes] = []
        values: list[bytes] = []
        chunked, close = self.chunked_encoding, False
        length: int | None = self.expected_content_length  # None: the declared one
        declared: bytes | None = None  # the first content-length, parsed once all is checked
        for headers in (self.default_headers, extra):
            for name, value in headers:
                names.append(name)
                values.append(value)
                name = name.lower()
                if name == b"content-length" and chunked is None:
                    declared, length, chunked = value, None, False
                elif name == b"transfer-encoding" and value.lower() == b"chunked":
                    length, chunked = 0, True
                elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                    close = True
                content += (name, b": ", value, b"\r\n")
        if (
            _REFUSED in b"".join(names).translate(_NAME_TABLE)
            or _REFUSED in b"".join(values).translate(_VALUE_TABLE)
            or (declared is not None and not declared.isdigit())
        ):
            # uvicorn raises the error it finds first, header by header: let it.
            again: Any = {**message, "headers": extra}
            await RequestResponseCycle.send(self, again)
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        self.chunked_encoding = chunked
        self.expected_content_length = int(declared or b"0") if length is None else length
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            content.append(b"connection: close\r\n")
        if chunked is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))


class _Written:
    """The awaitable of a part already written: done when awaited, with no coroutine made.
    ``__await__`` hands back an iterator that is already exhausted (one for all)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return _EXHAUSTED  # type: ignore[return-value]


_EXHAUSTED = iter(())
WRITTEN = _Written()

_new = object.__new__


def new_cycle(
    scope: Any, transport: Any, flow: Any, logger: Any, access_logger: Any, access_log: bool,
    default_headers: list[tuple[bytes, bytes]], message_event: Any, expect_100_continue: bool,
    keep_alive: bool, on_response: Any,
) -> GatewayCycle:
    """A :class:`GatewayCycle` with the attributes ``RequestResponseCycle.__init__`` sets, in its
    order. The cycle is born a GatewayCycle: uvicorn's cycle built with keyword arguments and its
    class changed afterwards (as before) measured some 25,000 instructions a request more
    (docs/benchmarks.md), of which the keyword-argument call is a small part; the rest is put
    down to the changed class (an object whose class changes after it is made no longer gets the
    interpreter's specialised attribute access, and the cycle's attributes are read many times
    a request). tests/unit/test_protocol_scope.py checks the attributes against uvicorn's own."""
    cycle: GatewayCycle = _new(GatewayCycle)
    cycle.scope = scope
    cycle.transport = transport
    cycle.flow = flow
    cycle.logger = logger
    cycle.access_logger = access_logger
    cycle.access_log = access_log
    cycle.default_headers = default_headers
    cycle.message_event = message_event
    cycle.on_response = on_response
    cycle.disconnected = False
    cycle.keep_alive = keep_alive
    cycle.waiting_for_100_continue = expect_100_continue
    cycle.body = bytearray()
    cycle.more_body = True
    cycle.response_started = False
    cycle.response_complete = False
    cycle.chunked_encoding = None
    cycle.expected_content_length = 0
    return cycle


async def gone() -> None:
    """The send of a body part after the client left (connection lost, aborted, cut off by a
    server timeout): the sender's work stops here, as if the disconnect watcher had cancelled it."""
    raise ClientGone(on_send=True)


async def abort(cycle: RequestResponseCycle) -> None:
    """Close the connection (what was written is flushed first) with the response unfinished.
    Marked disconnected: uvicorn then writes nothing more and does not report the unfinished
    response as the application's error."""
    cycle.keep_alive = False
    cycle.disconnected = True
    cycle.transport.close()
