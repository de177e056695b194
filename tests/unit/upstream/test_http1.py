"""The lean HTTP/1.1 upstream client (upstream/http1.py) through UpstreamClient, against tiny
upstreams on real sockets that write exact raw bytes: what goes on the wire, keep-alive and the
pool, misbehaving upstreams, bodies by length, chunked and until close, encodings, size limits,
timeouts, streams and error bodies scrubbed of the credential.

No sleeps: the upstreams set events (or wait on queues) so the test knows what happened; the only
small timeouts are in the tests whose subject is a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import hashlib
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import cast

import pytest
import uvloop
from yarl import URL

from switchboard.config.schema import Timeouts
from switchboard.errors import (
    UpstreamBadGateway,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from switchboard.upstream import http1
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.client import DEFAULT_MAX_RESPONSE_BYTES, IDLE_SECONDS, UpstreamClient
from switchboard.upstream.request import UpstreamRequest
from tests.servers import refused_port

KEY = "sk-test-0123456789abcdefghijkl"
# Bounds a wait the test expects to end at once (an event the upstream sets): a hang fails fast.
SOON = 5.0


# -- the upstream --------------------------------------------------------------------------------


class Seen:
    """One request as the upstream read it."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        lines = head.decode("latin-1").split("\r\n")
        self.line = lines[0]
        self.fields = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if line]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return [v for n, v in self.fields if n.lower() == name.lower()]

    def one(self, name: str) -> str:
        found = self.values(name)
        assert len(found) == 1, f"{name}: {found} in {self.head!r}"
        return found[0]


async def read_request(reader: asyncio.StreamReader) -> Seen | None:
    """The next request on the connection; None at its end (nothing of a request read)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    except ConnectionError:
        return None
    seen = Seen(head, b"")
    if any(v.lower() == "chunked" for v in seen.values("transfer-encoding")):
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            del body[len(body) - 2:]
            if size == 0:
                break
        seen.body = bytes(body)
    elif seen.values("content-length"):
        seen.body = await reader.readexactly(int(seen.one("content-length")))
    return seen


class Conn:
    """One accepted connection, as its handler sees it."""

    def __init__(self, upstream: Upstream, index: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.upstream = upstream
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[Seen] = []
        self.eof = asyncio.Event()  # the client closed its side
        self.finished = asyncio.Event()  # the handler is done and the connection closed

    async def request(self) -> Seen | None:
        seen = await read_request(self.reader)
        if seen is None:
            self.eof.set()
        else:
            self.requests.append(seen)
            self.upstream.requests.append(seen)
            self.upstream.arrived.set()
        return seen

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:  # the client reset it, dropping an answer it had not read whole
            self.eof.set()
            raise

    async def until_eof(self) -> None:
        """Read (and drop) until the client closes the connection."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.eof.set()


Handler = Callable[[Conn], Awaitable[None]]


class Upstream:
    """A server on 127.0.0.1 handing each accepted connection to ``handler``; counts connections
    (accepted, open at once) and keeps every request read."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.conns: list[Conn] = []
        self.requests: list[Seen] = []
        self.arrived = asyncio.Event()  # set at each request (cleared by the test)
        self.active = 0
        self.max_active = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def accepted(self) -> int:
        return len(self.conns)

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(cast("asyncio.Task[None]", task))
        conn = Conn(self, len(self.conns), reader, writer)
        self.conns.append(conn)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self._handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stopped at the test's end: the task ends as done, not
            pass  # cancelled (asyncio.streams asks a cancelled one for its exception and logs)
        finally:
            self.active -= 1
            writer.close()
            conn.finished.set()
            self._tasks.discard(cast("asyncio.Task[None]", task))


def response(body: bytes = b'{"ok":true}', status: int = 200, reason: str = "OK",
             headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A whole answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked_head(status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Transfer-Encoding: chunked", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


LAST_CHUNK = b"0\r\n\r\n"
OK = response()


def keep_alive(answer: Callable[[Seen], bytes] | bytes = OK) -> Handler:
    """Answer every request on the connection with ``answer``, until the client closes it."""

    async def handler(conn: Conn) -> None:
        while (seen := await conn.request()) is not None:
            await conn.send(answer(seen) if callable(answer) else answer)

    return handler


def once_then_ok(first: bytes) -> Handler:
    """The first connection reads a request, answers ``first`` and waits for the client to
    close it; every later one is a kept-alive upstream answering OK."""

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(first)
            await conn.until_eof()
        else:
            await keep_alive()(conn)

    return handler


# -- the client ----------------------------------------------------------------------------------


@asynccontextmanager
async def upstream_client(
    *,
    max_connections: int = 4,
    headers: dict[str, str] | None = None,
    connect: float = 5.0,
    first_byte: float = 10.0,
    total: float = 30.0,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> AsyncIterator[UpstreamClient]:
    """Built as routing/table.py builds a provider's client, with a static bearer credential."""
    client = UpstreamClient(
        "prov",
        StaticHeaderAuth.bearer(KEY),
        max_connections,
        dict(headers or {}),
        Timeouts(connect=connect, first_byte=first_byte, total=total),
        max_response_bytes,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def post(up: Upstream, body: bytes | None = b'{"model":"m"}', path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None, method: str = "POST") -> UpstreamRequest:
    return UpstreamRequest(method, up.url(path), body, dict(headers or {}))


def now() -> float:
    return asyncio.get_running_loop().time()


# -- 1. the request on the wire ------------------------------------------------------------------


async def test_request_line_and_headers_on_the_wire() -> None:
    async with Upstream(keep_alive()) as up, upstream_client(
        headers={"X-Provider": "prov-value", "OpenAI-Organization": "org-provider"}
    ) as client:
        body = b'{"model":"m","messages":[]}'
        request = post(up, body, "/v1/chat/completions?api-version=2024-10-21&x=a%20b",
                       headers={"openai-organization": "org-request", "X-Request-Only": "yes"})
        reply = await client.send(request, None)

    assert reply.status == 200 and reply.body == b'{"ok":true}'
    [seen] = up.requests
    assert seen.line == "POST /v1/chat/completions?api-version=2024-10-21&x=a%20b HTTP/1.1"
    assert seen.one("host") == f"127.0.0.1:{up.port}"  # an explicit port is in the Host header
    assert seen.one("content-length") == str(len(body)) and seen.body == body
    assert seen.one("x-provider") == "prov-value"
    assert seen.one("authorization") == f"Bearer {KEY}"
    assert seen.one("content-type") == "application/json"
    assert seen.one("accept") == "*/*"
    assert seen.one("user-agent") == "switchboard"
    # The request's header replaces the provider's whatever their case: sent once, its value.
    assert seen.one("openai-organization") == "org-request"
    assert seen.one("x-request-only") == "yes"
    assert not seen.values("transfer-encoding")


async def test_a_request_host_replaces_the_urls_and_bodies_decide_content_length() -> None:
    async with Upstream(keep_alive()) as up, upstream_client(
        headers={"Accept": "application/json", "User-Agent": "custom-agent/1"}
    ) as client:
        await client.send(post(up, headers={"Host": "signed.example.com"}), None)
        await client.send(post(up, None, "/v1/models", method="GET"), None)
        await client.send(post(up, None, "/v1/files/f-1/cancel"), None)
        await client.send(post(up, b"", "/v1/empty", method="PUT"), None)

    signed, get, empty_post, empty_put = up.requests
    assert signed.one("host") == "signed.example.com"  # a signature covers it: its own, once
    # The provider's own Accept and User-Agent replace the defaults (not sent as well).
    assert signed.one("accept") == "application/json" and signed.one("user-agent") == "custom-agent/1"
    assert get.line == "GET /v1/models HTTP/1.1"
    assert get.values("content-length") == [] and get.body == b""
    assert get.one("host") == f"127.0.0.1:{up.port}"
    assert empty_post.line.startswith("POST ") and empty_post.one("content-length") == "0"
    assert empty_put.one("content-length") == "0"
    assert up.accepted == 1  # all on one kept-alive connection


async def test_per_request_trace_headers_keep_the_remembered_header_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tracing on every attempt carries its own traceparent: the rest of its headers is
    still merged once and remembered, and each request sends its own trace context once."""
    merges = 0
    merge = http1.Headers._merge

    def counted(self: http1.Headers, extra: dict[str, str]) -> tuple[bytes, str | None]:
        nonlocal merges
        merges += 1
        return merge(self, extra)

    monkeypatch.setattr(http1.Headers, "_merge", counted)
    sent = 3 * 32  # three times what the memo holds
    async with Upstream(keep_alive()) as up, upstream_client(headers={"X-Provider": "p"}) as client:
        for i in range(sent):
            headers = {"content-type": "application/json", "traceparent": f"00-{i:032x}-{i + 1:016x}-01",
                       "tracestate": "vendor=x", "x-request-id": f"req-{i}"}
            await client.send(post(up, headers=headers), None)

    assert merges == 1  # the stable part, once; not once per request (nor per memo clearing)
    assert len(up.requests) == sent
    for i, seen in enumerate(up.requests):
        assert seen.one("traceparent") == f"00-{i:032x}-{i + 1:016x}-01"
        assert seen.one("tracestate") == "vendor=x" and seen.one("x-request-id") == f"req-{i}"
        assert seen.one("content-type") == "application/json" and seen.one("x-provider") == "p"
        assert seen.one("authorization") == f"Bearer {KEY}"


async def test_a_providers_own_trace_header_is_replaced_by_the_requests_and_checked() -> None:
    async with Upstream(keep_alive()) as up, upstream_client(headers={"X-Request-Id": "provider"}) as client:
        await client.send(post(up, headers={"x-request-id": "req-1", "traceparent": "00-a-b-01"}), None)
        with pytest.raises(UpstreamBadGateway):  # a per-request line is checked like any other
            await client.send(post(up, headers={"traceparent": "00-a-b-01\r\nX-Injected: 1"}), None)
    [seen] = up.requests
    assert seen.one("x-request-id") == "req-1" and seen.one("traceparent") == "00-a-b-01"
    assert b"X-Injected" not in seen.head


# -- 2. header injection -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rX-Injected: 1"])
async def test_a_header_value_with_cr_or_lf_is_refused_and_nothing_is_written(value: str) -> None:
    async with Upstream(keep_alive()) as up, upstream_client() as client:
        await client.send(post(up), None)  # a pooled connection the bad request could use
        with pytest.raises(UpstreamBadGateway):
            await client.send(post(up, headers={"X-Bad": value}), None)
        with pytest.raises(UpstreamBadGateway):
            await client.open_stream(post(up, headers={"Host": value}), None)
        reply = await client.send(post(up, b"{}"), None)  # the client still works

    assert reply.status == 200
    # Two requests on the one connection: nothing of the refused ones reached the socket.
    assert up.accepted == 1 and len(up.requests) == 2
    assert all(b"X-Injected" not in seen.head and b"X-Bad" not in seen.head for seen in up.requests)
    assert up.requests[1].body == b"{}"


def digesting(seen: list[tuple[int, str]]) -> Handler:
    """Each request's body length and SHA-256, read in pieces and dropped (nothing of the size
    of the body is held on this side), answered OK, until the client closes the connection."""

    async def handler(conn: Conn) -> None:
        while head := await conn.reader.readuntil(b"\r\n\r\n"):
            length = int(Seen(head, b"").one("content-length"))
            digest, left = hashlib.sha256(), length
            while left:
                piece = await conn.reader.read(min(left, 65536))
                digest.update(piece)
                left -= len(piece)
            seen.append((length, digest.hexdigest()))
            await conn.send(OK)

    return handler


def test_a_large_body_is_written_without_a_copy_and_arrives_whole() -> None:
    """Joining a body of tens of MiB to its head copied it on the event loop (70-80 ms for
    30 MiB): a body past WRITE_APART_BYTES is handed to the transport as it is. The connection
    is then kept for the next request, whose small body is framed as before. On uvloop, the
    gateway's loop (asyncio's own transports copy what they cannot send at once)."""
    body = bytes(range(256)) * (32 * http1.WRITE_APART_BYTES // 256)  # 8 MiB
    seen: list[tuple[int, str]] = []

    async def exchange() -> tuple[int, int, int, int]:
        async with Upstream(digesting(seen)) as up, upstream_client() as client:
            tracemalloc.start()
            try:
                large = await client.send(post(up, body), None)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            small = await client.send(post(up, b'{"model":"m"}'), None)
        return large.status, small.status, up.accepted, peak

    large, small, accepted, peak = uvloop.run(exchange())
    assert large == small == 200
    assert seen == [(len(body), hashlib.sha256(body).hexdigest()),
                    (13, hashlib.sha256(b'{"model":"m"}').hexdigest())]
    assert accepted == 1
    assert peak < len(body) // 2  # no copy of the body was made to send it

# -- 3, 4, 5. keep-alive, connections the upstream closed ----------------------------------------


async def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async with Upstream(keep_alive()) as up, upstream_client() as client:
        first = await client.send(post(up, b"1"), None)
        second = await client.send(post(up, b"2"), None)
        third = await client.send(post(up, b"3"), None)

    assert first.status == second.status == third.status == 200
    assert up.accepted == 1 and [s.body for s in up.conns[0].requests] == [b"1", b"2", b"3"]


async def test_an_answer_is_freed_when_dropped_without_the_garbage_collector() -> None:
    # A reference cycle per answer would leave every request's response to the collector,
    # whose passes stall the event loop under load.
    async with Upstream(keep_alive()) as up, upstream_client() as client:
        await client.send(post(up), None)  # the connection is open and pooled
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            reply = await client.send(post(up, b"1"), None)
            stream = await client.open_stream(post(up, b"2"), None)
            pieces = [piece async for piece in stream.chunks()]
            await stream.close()
            del stream
            gc.collect()
            cyclic = [obj for obj in gc.garbage if isinstance(obj, http1.Response)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    assert reply.status == 200 and pieces == [b'{"ok":true}']
    assert cyclic == []


async def test_an_idle_connection_the_upstream_closed_is_not_used() -> None:
    async def handler(conn: Conn) -> None:
        if conn.index == 0:  # answers one request, then closes (its idle timeout, say)
            await conn.request()
            await conn.send(response(b"first"))
        else:
            await keep_alive(response(b"second"))(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        assert (await client.send(post(up), None)).body == b"first"
        await asyncio.wait_for(up.conns[0].finished.wait(), SOON)
        reply = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b"second"
    assert up.accepted == 2 and len(up.conns[1].requests) == 1


async def test_a_request_a_reused_connection_took_and_never_answered_is_not_sent_again() -> None:
    # The upstream reads the request, then the connection ends with nothing answered: it may
    # have run it (a POST that generated, and cost, a completion). The client does not resend it.
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(response(b"first"))
        await conn.request()  # read, never answered: closed

    async with Upstream(handler) as up, upstream_client() as client:
        await client.send(post(up, b"1"), None)
        with pytest.raises(UpstreamBadGateway, match="closed the connection before the answer was complete"):
            await client.send(post(up, b"2"), None)

    assert up.accepted == 1 and [s.body for s in up.requests] == [b"1", b"2"]  # each sent once


class ThreadUpstream:
    """An upstream in a thread of its own, so that a test can have it act while the test's
    event loop is blocked, not reading: its first connection answers one request, then does
    ``then`` (the test waits on ``done``); every later one answers each request with what it
    asked for, until the client closes it."""

    def __init__(self, then: Callable[[socket.socket], None]) -> None:
        self._then = then
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.go = threading.Event()
        self.done = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def _request(self, sock: socket.socket, buffered: bytearray) -> bytes | None:
        while b"\r\n\r\n" not in buffered:
            data = sock.recv(65536)
            if not data:
                return None
            buffered += data
        head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
        length = int(Seen(head + b"\r\n\r\n", b"").one("content-length"))
        while len(rest) < length:
            rest += sock.recv(65536)
        buffered[:] = rest[length:]
        self.requests.append(rest[:length])
        return rest[:length]

    def _serve(self) -> None:
        with self._listener:
            while True:
                try:
                    sock, _ = self._listener.accept()
                except OSError:
                    return
                self.accepted += 1
                with sock:
                    buffered = bytearray()
                    if self.accepted == 1:
                        self._request(sock, buffered)
                        sock.sendall(response(b"first"))
                        self.go.wait(SOON)
                        self._then(sock)
                        self.done.set()
                        continue
                    while (body := self._request(sock, buffered)) is not None:
                        sock.sendall(response(b"answer to " + body))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes its accept() (close alone does not)
        self._thread.join(SOON)
        assert not self._thread.is_alive()


def _close(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_RDWR)


def _stray(sock: socket.socket) -> None:
    sock.sendall(response(b"stray", 408, "Request Timeout"))


@pytest.mark.parametrize("then", [_close, _stray], ids=["closed", "sent an answer nobody asked for"])
async def test_a_pooled_connection_the_upstream_acted_on_unseen_is_not_used(
    then: Callable[[socket.socket], None],
) -> None:
    # The upstream closes its idle connection (or writes on it) just before the next request,
    # too late for the event loop to have read it: the pool polls the socket before its reuse.
    up = ThreadUpstream(then)
    try:
        async with upstream_client() as client:
            first = await client.send(UpstreamRequest("POST", up.url(), b"1", {}), None)
            (pool,) = client._pools.values()
            (idle,) = pool._idle
            idle.idle_since -= http1.POLL_IDLE_SECONDS  # idle long enough to be polled (no sleep)
            up.go.set()
            assert up.done.wait(SOON)  # blocks the loop: what the upstream did is not read yet
            second = await client.send(UpstreamRequest("POST", up.url(), b"2", {}), None)
    finally:
        up.close()

    assert first.body == b"first" and second.body == b"answer to 2"
    assert up.accepted == 2 and up.requests == [b"1", b"2"]


async def test_a_fresh_connection_closed_after_the_request_is_a_bad_gateway_without_retry() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()  # read, then closed with nothing sent

    async with Upstream(handler) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway):
            await client.send(post(up), None)
        with pytest.raises(UpstreamBadGateway):
            await client.open_stream(post(up), None)

    assert up.accepted == 2 and len(up.requests) == 2  # one attempt each


# -- 6. not HTTP ---------------------------------------------------------------------------------


async def test_garbage_instead_of_http_is_a_bad_gateway_and_the_connection_is_dropped() -> None:
    handler = once_then_ok(b"hello\r\n\r\n")

    async with Upstream(handler) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway):
            await client.send(post(up), None)
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the client closed it
        reply = await client.send(post(up), None)

    assert reply.status == 200 and up.accepted == 2


# -- 6b. unsolicited answers: bytes no request asked for break the connection -------------------


class FakeTransport:
    """What _Conn uses of an asyncio transport, recording what it was told."""

    def __init__(self) -> None:
        self.closed = False
        self.reset = False  # dropped mid-exchange (upstream/reset.py), not closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.reset = True

    def get_extra_info(self, name: str) -> None:
        return None  # no socket to set a linger on

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        pass


class PausableTransport(FakeTransport):
    """A FakeTransport that also records whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def test_a_streamed_body_is_handed_over_in_bounded_pieces_and_read_at_the_callers_pace() -> None:
    """A fast upstream's big reads (and what piled up while the caller was slow) come out in
    pieces of at most MAX_PIECE: each becomes a batch of events held until the client takes it.
    The socket is paused past HIGH_WATER and resumed only once the rest is below LOW_WATER."""
    conn = http1._Conn(asyncio.get_running_loop())
    transport = PausableTransport()
    conn.connection_made(cast(asyncio.Transport, transport))
    conn.start_timer(30, 10)
    body = bytes(range(256)) * (1200 * 4)  # 1.2 MiB: well past HIGH_WATER
    conn.data_received(chunked_head() + chunk(body[:300_000]))
    conn.data_received(chunk(body[300_000:]) + b"0\r\n\r\n")
    assert transport.paused and conn.done
    pieces = []
    while conn.pending:
        pieces.append(conn.take(http1.MAX_PIECE))
        if conn._buffered > http1.LOW_WATER:
            assert transport.paused
    assert b"".join(pieces) == body
    assert max(map(len, pieces)) == http1.MAX_PIECE and not transport.paused


def open_conn() -> tuple[http1._Conn, FakeTransport]:
    conn = http1._Conn(asyncio.get_running_loop())
    transport = FakeTransport()
    conn.connection_made(cast(asyncio.Transport, transport))
    return conn, transport


async def test_bytes_on_an_idle_connection_break_it() -> None:
    conn, transport = open_conn()
    conn.data_received(response(b"stray"))  # no request was written

    assert conn.closed and transport.closed and not conn.answered
    assert not conn.reusable()


async def test_a_connection_dropped_mid_exchange_is_reset_an_idle_one_closed() -> None:
    """Dropped before its answer is complete, a connection is reset (a close would wait for a
    request body the upstream may never read); one whose answer is whole closes as usual."""
    midway, reset = open_conn()
    midway.start_timer(30, 10)  # the request is written
    midway.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n")
    midway.close()
    assert reset.reset and midway.closed

    whole, closed = open_conn()
    whole.start_timer(30, 10)
    whole.data_received(response(b"done"))
    whole.close()
    assert closed.closed and not closed.reset


async def test_a_second_answer_in_the_read_that_ends_the_first_breaks_the_connection() -> None:
    conn, transport = open_conn()
    conn.start_timer(30, 10)  # the request is written
    conn.data_received(response(b"mine") + response(b"stray"))

    # The answer asked for is whole and unchanged; the connection goes no further.
    assert conn.done and conn.status == 200 and conn.take() == b"mine"
    assert [name for name, _ in conn._raw] == [b"Content-Length"]
    assert conn.closed and transport.closed and not conn.reusable()


async def test_bytes_after_the_answer_is_complete_break_the_connection() -> None:
    conn, transport = open_conn()
    conn.start_timer(30, 10)
    conn.data_received(response(b"mine"))
    assert conn.done and conn.reusable()
    conn.data_received(b"HTTP/1.1 408 Request Timeout\r\n")  # before the caller released it

    assert conn.take() == b"mine" and conn.closed and transport.closed and not conn.reusable()


STRAYS = {
    "a second whole answer": response(b"stray answer"),
    "a 408 before an idle close": response(b'{"error":"idle"}', 408, "Request Timeout"),
    "part of an answer": b"HTTP/1.1 200 OK\r\nContent-Le",
}


@pytest.mark.parametrize("stray", STRAYS.values(), ids=STRAYS.keys())
async def test_an_answer_arriving_on_an_idle_pooled_connection_is_never_given_to_a_request(
    stray: bytes,
) -> None:
    idle = asyncio.Event()  # the first answer is read and its connection is back in the pool

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(response(b"first"))
            await idle.wait()
            await conn.send(stray)
            await conn.until_eof()  # the client must close it
        else:
            await keep_alive(lambda seen: response(b"answer to " + seen.body))(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        assert (await client.send(post(up, b"0"), None)).body == b"first"
        idle.set()
        # Closed at once, not by the pool's sweep of connections idle for IDLE_SECONDS.
        await asyncio.wait_for(up.conns[0].eof.wait(), IDLE_SECONDS / 2)
        replies = [await client.send(post(up, b"%d" % i), None) for i in (1, 2, 3)]

    assert [r.body for r in replies] == [b"answer to 1", b"answer to 2", b"answer to 3"]
    assert up.accepted == 2 and len(up.conns[0].requests) == 1


async def test_a_second_answer_sent_with_the_first_is_dropped_with_its_connection() -> None:
    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(response(b"first") + response(b"stray answer"))
            await conn.until_eof()
        else:
            await keep_alive(lambda seen: response(b"answer to " + seen.body))(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        first = await client.send(post(up, b"0"), None)
        await asyncio.wait_for(up.conns[0].eof.wait(), IDLE_SECONDS / 2)  # not by the idle sweep
        second = await client.send(post(up, b"1"), None)
        stream = await client.open_stream(post(up, b"2"), None)
        streamed = b"".join([piece async for piece in stream.chunks()])

    assert first.body == b"first" and second.body == b"answer to 1" and streamed == b"answer to 2"
    assert up.accepted == 2


# -- 7. framing and encodings --------------------------------------------------------------------


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    pieces = [b'{"id":', b'"chatcmpl-1",', b'"object":"chat.completion"}']

    def answer(seen: Seen) -> bytes:
        return chunked_head() + b"".join(chunk(p) for p in pieces) + LAST_CHUNK

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        first = await client.send(post(up), None)
        second = await client.send(post(up), None)

    assert first.body == second.body == b"".join(pieces)
    assert first.headers["Transfer-Encoding"] == "chunked"
    assert up.accepted == 1


async def test_a_chunked_answers_extensions_and_trailers_are_read_past_and_never_become_headers() -> None:
    def answer(seen: Seen) -> bytes:
        return (chunked_head(headers=[("Content-Type", "application/json")])
                + b"5;name=value;flag\r\n{\"a\":\r\n3;quoted=\"a b\"\r\n1}\n\r\n"
                + b"0;last\r\nX-Checksum: abc\r\nContent-Type: text/html\r\n\r\n")

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        first = await client.send(post(up), None)
        second = await client.send(post(up), None)

    assert first.body == second.body == b'{"a":1}\n'
    # A trailer is not a header: the answer's headers are the ones that came before its body.
    assert first.headers.getall("Content-Type") == ["application/json"]  # type: ignore[attr-defined]
    assert "X-Checksum" not in first.headers and len(first.headers) == 2
    assert up.accepted == 1


# After the last chunk's size: what starts the endless part, and what repeats in it.
ENDLESS_FRAMING = {
    "many trailer lines": (b"0\r\n", b"X-Trailer: " + b"t" * 1000 + b"\r\n"),
    "one endless trailer line": (b"0\r\nX-Long: ", b"t" * 1000),
    "one endless chunk extension": (b"0;ext=", b"x" * 1000),
}


@pytest.mark.parametrize(("start", "filler"), ENDLESS_FRAMING.values(), ids=ENDLESS_FRAMING.keys())
async def test_endless_framing_after_the_body_is_a_bad_gateway_past_the_head_bound(
    start: bytes, filler: bytes
) -> None:
    async def handler(conn: Conn) -> None:
        if conn.index:
            await keep_alive()(conn)
            return
        await conn.request()
        await conn.send(chunked_head() + chunk(b'{"ok":true}') + start)
        # Endless, until the client gives up and closes (the send then fails).
        while True:
            await conn.send(filler)

    async with Upstream(handler) as up, upstream_client(first_byte=60) as client:
        with pytest.raises(UpstreamBadGateway, match="chunk framing or trailers after its body"):
            await asyncio.wait_for(client.send(post(up), None), SOON)  # not at the 60 s timeout
        await asyncio.wait_for(up.conns[0].finished.wait(), SOON)  # the client closed it
        assert (await client.send(post(up), None)).status == 200


@pytest.mark.parametrize("lines", [60, 70], ids=["under the bound", "over the bound"])
@pytest.mark.parametrize("coding", ["identity", "gzip"])
async def test_a_whole_trailer_section_sent_with_the_last_body_bytes_counts_against_the_bound(
    lines: int, coding: str,
) -> None:
    """The trailer lines that arrive in the read of the body's last bytes count, so a finite
    section over the bound is refused however the reads fall, even when it ends in that read."""
    trailer = b"".join(b"X-Trailer-%d: %s\r\n" % (i, b"t" * 1000) for i in range(lines)) + b"\r\n"
    body = gzip.compress(b'{"ok":true}') if coding == "gzip" else b'{"ok":true}'

    async def handler(conn: Conn) -> None:
        if not conn.index:
            await conn.request()
            await conn.send(chunked_head(headers=[("Content-Encoding", coding)]) + chunk(body[:6]))
            await conn.send(chunk(body[6:]) + b"0\r\n" + trailer)  # one write
        await keep_alive()(conn)  # then OK to each request, until the client closes

    async with Upstream(handler) as up, upstream_client(first_byte=60) as client:
        if len(trailer) < http1.MAX_HEAD_BYTES:
            assert (await client.send(post(up), None)).body == b'{"ok":true}'
        else:
            with pytest.raises(UpstreamBadGateway, match="chunk framing or trailers after its body"):
                await asyncio.wait_for(client.send(post(up), None), SOON)
        assert (await client.send(post(up), None)).status == 200
    assert up.accepted == (1 if len(trailer) < http1.MAX_HEAD_BYTES else 2)  # a refused one is not reused


async def test_an_answer_delimited_by_the_connections_end() -> None:
    body = b'{"until":"close"}' * 100

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n")
        await conn.send(body[:700])
        await conn.send(body[700:])  # then the connection ends: the body is complete

    async with Upstream(handler) as up, upstream_client() as client:
        first = await client.send(post(up), None)
        second = await client.send(post(up), None)

    assert first.status == 200 and first.body == body and second.body == body
    assert up.accepted == 2  # a closed connection is never reused


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encode", "framing"),
    [
        ("gzip", gzip.compress, "length"),
        ("gzip", gzip.compress, "chunked"),
        ("x-gzip", gzip.compress, "length"),
        ("deflate", zlib.compress, "length"),
        ("deflate", zlib.compress, "chunked"),
        ("deflate", _deflate_raw, "length"),  # raw deflate, as some servers send it
        ("deflate", _deflate_raw, "chunked"),
    ],
)
async def test_an_encoded_answer_is_decoded(
    coding: str, encode: Callable[[bytes], bytes], framing: str
) -> None:
    plain = b'{"choices":[{"message":{"content":"' + b"tok " * 5000 + b'"}}]}'
    encoded = encode(plain)
    assert len(encoded) < len(plain) // 10

    def answer(seen: Seen) -> bytes:
        if framing == "length":
            return response(encoded, headers=[("Content-Encoding", coding)])
        pieces = [encoded[i:i + 97] for i in range(0, len(encoded), 97)]
        head = chunked_head(headers=[("Content-Encoding", coding)])
        return head + b"".join(map(chunk, pieces)) + LAST_CHUNK

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        reply = await client.send(post(up), None)
        again = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == plain and again.body == plain
    assert up.accepted == 1


@pytest.mark.parametrize("encode", [zlib.compress, _deflate_raw], ids=["zlib", "raw"])
async def test_a_deflate_answer_whose_first_piece_is_one_byte_is_decoded(
    encode: Callable[[bytes], bytes],
) -> None:
    plain = b'{"choices":[]}' * 100
    encoded = encode(plain)
    pieces = [encoded[:1], encoded[1:2], encoded[2:]]  # its form is told by the first two bytes
    head = chunked_head(headers=[("Content-Encoding", "deflate")])
    answer = head + b"".join(map(chunk, pieces)) + LAST_CHUNK

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        reply = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == plain


async def refused_and_dropped(answer: bytes, match: str) -> None:
    """``answer`` is a 502 whose message matches ``match``, its connection is closed by the
    client, and the next request is answered on a new one."""
    async with Upstream(once_then_ok(answer)) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway, match=match):
            await client.send(post(up), None)
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the client closed it
        assert (await client.send(post(up), None)).status == 200

    assert up.accepted == 2


async def test_a_body_that_is_not_what_its_encoding_says_is_a_bad_gateway_saying_so() -> None:
    answer = response(b"\x1f\x8bnot gzip at all", headers=[("Content-Encoding", "gzip")])
    await refused_and_dropped(answer, r"from upstream: invalid compressed data$")


async def test_an_encoded_body_is_bounded_by_its_decoded_size() -> None:
    plain = b"0" * 100_000
    encoded = gzip.compress(plain)

    async with Upstream(keep_alive(response(encoded, headers=[("Content-Encoding", "gzip")]))) as up, \
            upstream_client(max_response_bytes=50_000) as client:
        assert len(encoded) < 50_000
        with pytest.raises(UpstreamResponseTooLarge):
            await client.send(post(up), None)


async def test_a_compressed_piece_that_expands_past_the_bound_is_a_bad_gateway() -> None:
    bomb = gzip.compress(b"0" * (http1.MAX_INFLATE * 2))  # a few KiB on the wire

    async with Upstream(keep_alive(response(bomb, headers=[("Content-Encoding", "gzip")]))) as up, \
            upstream_client(max_response_bytes=http1.MAX_INFLATE * 4) as client:
        assert len(bomb) < 64 * 1024
        with pytest.raises(UpstreamBadGateway):
            await client.send(post(up), None)


def _gzip_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("cut", [7, 97, None], ids=["small-pieces", "pieces", "whole"])
async def test_a_gzip_body_of_several_members_is_decoded_whole(framing: str, cut: int | None) -> None:
    parts = [b'{"choices":[{"message":{"content":"', b"tok " * 3000, b"", b'"}}]}']
    encoded = _gzip_members(*parts)
    pieces = [encoded] if cut is None else [encoded[i:i + cut] for i in range(0, len(encoded), cut)]
    head = [("Content-Encoding", "gzip")]

    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            if framing == "chunked":
                await conn.send(chunked_head(headers=head))
                for piece in pieces:  # each piece its own chunk (and write)
                    await conn.send(chunk(piece))
                await conn.send(LAST_CHUNK)
            elif framing == "length":
                await conn.send(response(encoded, headers=head))
            else:  # no length: the body ends with the connection
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + encoded)
                return

    async with Upstream(handler) as up, upstream_client() as client:
        reply = await client.send(post(up), None)
        stream = await client.open_stream(post(up), None)
        streamed = b"".join([piece async for piece in stream.chunks()])

    assert reply.status == 200 and reply.body == b"".join(parts) and streamed == reply.body


async def test_an_empty_gzip_body_is_empty() -> None:
    answer = response(b"", headers=[("Content-Encoding", "gzip")])
    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        reply = await client.send(post(up), None)
        again = await client.send(post(up), None)

    assert reply.status == again.status == 200 and reply.body == b"" and up.accepted == 1


async def test_the_decoded_size_bound_counts_every_gzip_member() -> None:
    encoded = _gzip_members(*[b"0" * 20_000] * 4)  # each member under the bound, all over it

    async with Upstream(keep_alive(response(encoded, headers=[("Content-Encoding", "gzip")]))) as up, \
            upstream_client(max_response_bytes=50_000) as client:
        with pytest.raises(UpstreamResponseTooLarge):
            await client.send(post(up), None)


async def test_gzip_members_that_expand_past_the_bound_in_one_read_break_the_connection() -> None:
    member = gzip.compress(b"0" * (http1.MAX_INFLATE // 2 + 1))  # two make one read too large
    conn, transport = open_conn()
    conn.start_timer(30, 10)
    conn.data_received(response(member * 2, headers=[("Content-Encoding", "gzip")]))

    assert conn.closed and transport.closed and not conn.reusable()
    with pytest.raises(http1.BadResponse, match=f"expands past {http1.MAX_INFLATE} bytes$"):
        await conn.wait()


CORRUPT_BODIES = {
    "gzip cut short": ("gzip", gzip.compress(b'{"ok":true}' * 50)[:-6]),
    "gzip and garbage": ("gzip", gzip.compress(b'{"ok":true}') + b"garbage"),
    "gzip and zero padding": ("gzip", gzip.compress(b'{"ok":true}') + b"\0" * 8),
    "gzip and a cut member": ("gzip", _gzip_members(b"a" * 100, b"b" * 100)[:-3]),
    "deflate cut short": ("deflate", zlib.compress(b'{"ok":true}' * 50)[:-6]),
    "deflate and garbage": ("deflate", zlib.compress(b'{"ok":true}') + b"garbage"),
    "deflate of one byte": ("deflate", b"x"),
}


@pytest.mark.parametrize(("coding", "body"), CORRUPT_BODIES.values(), ids=CORRUPT_BODIES.keys())
@pytest.mark.parametrize("framing", ["length", "close"])
async def test_a_compressed_body_cut_short_or_followed_by_garbage_is_a_bad_gateway(
    coding: str, body: bytes, framing: str
) -> None:
    if framing == "length":
        answer = response(body, headers=[("Content-Encoding", coding)])
    else:
        answer = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n\r\n".encode() + body

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(answer)
        if framing == "length":
            await conn.until_eof()

    async with Upstream(handler) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway, match=r"from upstream: invalid compressed data$"):
            await client.send(post(up), None)
        stream = await client.open_stream(post(up), None)
        with pytest.raises(UpstreamBadGateway, match=r"invalid compressed data$"):
            async for _ in stream.chunks():
                pass

    assert up.accepted == 2  # neither connection was reused


async def test_an_encoding_the_client_does_not_read_is_a_bad_gateway() -> None:
    answer = response(b"\x0b\x02\x80hello\x03", headers=[("Content-Encoding", "br")])
    await refused_and_dropped(answer, r"an encoding the gateway does not read: br$")


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "identity"])
async def test_a_transfer_coding_other_than_chunked_is_a_bad_gateway_naming_it(coding: str) -> None:
    body = gzip.compress(b'{"ok":true}')
    framed = chunk(body) + LAST_CHUNK if coding.endswith("chunked") else body
    answer = chunked_head().replace(b"chunked", coding.encode()) + framed
    await refused_and_dropped(answer, f"a transfer coding the gateway does not read: {coding}$")


async def test_an_encoding_given_on_two_header_lines_is_not_decoded_as_one() -> None:
    # Two lines are one list ("gzip, gzip": compressed twice); decoding once would hand the
    # caller gzip bytes as the answer.
    twice = gzip.compress(gzip.compress(b'{"ok":true}'))
    answer = response(twice, headers=[("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")])
    await refused_and_dropped(answer, r"an encoding the gateway does not read: gzip, gzip$")


async def test_an_unknown_encoding_is_named_short_and_without_the_credential() -> None:
    coding = "x-" + KEY + "-" + "z" * 10_000
    handler = once_then_ok(response(b"{}", headers=[("Content-Encoding", coding)]))

    async with Upstream(handler) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway) as caught:
            await client.send(post(up), None)

    message = caught.value.message
    assert message.startswith("connection to provider 'prov' failed: upstream sent an encoding")
    assert KEY not in message and "[redacted]" in message and len(message) < 200


# -- 8. size limit -------------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    # The head only: were the client to read the body, it would wait (first_byte: 10 s).
    handler = once_then_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")

    async with Upstream(handler) as up, upstream_client(max_response_bytes=1024) as client:
        with pytest.raises(UpstreamResponseTooLarge):
            await asyncio.wait_for(client.send(post(up), None), SOON)
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the connection was closed
        assert (await client.send(post(up), None)).status == 200

    assert up.accepted == 2  # not reused


async def test_a_declared_length_padded_with_zeros_past_pythons_int_limit_is_read_by_its_value() -> None:
    # Leading zeros are legal in a Content-Length; int() refuses text of over 4,300 digits.
    padded = b"0" * 4400
    handler = once_then_ok(b"HTTP/1.1 200 OK\r\nContent-Length: " + padded + b"2048\r\n\r\n" + b"x" * 2048)

    async with Upstream(handler) as up, upstream_client(max_response_bytes=1024) as client:
        with pytest.raises(UpstreamResponseTooLarge):
            await asyncio.wait_for(client.send(post(up), None), SOON)

    fits = b"HTTP/1.1 200 OK\r\nContent-Length: " + padded + b"5\r\n\r\nhello"
    async with Upstream(once_then_ok(fits)) as up, upstream_client() as client:
        answer = await asyncio.wait_for(client.send(post(up), None), SOON)
    assert answer.status == 200 and answer.body == b"hello"


async def test_a_chunked_body_growing_over_the_limit_is_refused() -> None:
    sent_all = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(chunked_head() + chunk(b"a" * 600) + chunk(b"b" * 600))
            sent_all.set()  # and never the last chunk: the client must stop by itself
            await conn.until_eof()
        else:
            await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client(max_response_bytes=1024) as client:
        with pytest.raises(UpstreamResponseTooLarge):
            await asyncio.wait_for(client.send(post(up), None), SOON)
        assert sent_all.is_set()
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)
        assert (await client.send(post(up), None)).status == 200

    assert up.accepted == 2


async def test_headers_without_end_past_the_bound_are_a_bad_gateway_at_once() -> None:
    line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    endless = b"HTTP/1.1 200 OK\r\n" + line * (http1.MAX_HEAD_BYTES // len(line) + 2)  # no blank line

    async with Upstream(once_then_ok(endless)) as up, upstream_client(first_byte=60) as client:
        with pytest.raises(UpstreamBadGateway):
            await asyncio.wait_for(client.send(post(up), None), SOON)  # not at the 60 s timeout
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)
        assert (await client.send(post(up), None)).status == 200


async def test_a_whole_head_past_the_bound_before_its_body_is_named_as_headers() -> None:
    """A head over the bound that ends before any body byte came: the 502 names the headers,
    not a chunked body's framing (there is none yet)."""
    line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n" + line * 70 + b"\r\n"  # the body never comes

    async with Upstream(once_then_ok(head)) as up, upstream_client(first_byte=60) as client:
        with pytest.raises(UpstreamBadGateway, match=f"headers exceed {http1.MAX_HEAD_BYTES} bytes"):
            await asyncio.wait_for(client.send(post(up), None), SOON)  # not at the 60 s timeout


@pytest.mark.parametrize("lines", [60, 70], ids=["under the bound", "over the bound"])
@pytest.mark.parametrize("coding", ["identity", "gzip", "deflate"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_head_sent_with_its_body_in_one_write_counts_against_the_bound(
    lines: int, coding: str, framing: str,
) -> None:
    """The head's bytes that arrive in the read of the body's first bytes count, and only they:
    a large body (here 256 KiB that do not compress, in 8 KiB chunks) in that read does not."""
    plain = hashlib.shake_256(b"body").digest(256 * 1024)
    body = {"gzip": gzip.compress, "deflate": zlib.compress}.get(coding, bytes)(plain)
    fillers = [(f"X-Filler-{i}", "f" * 1000) for i in range(lines)]
    headers = [*fillers, ("Content-Encoding", coding)]
    if framing == "chunked":
        pieces = (chunk(body[at:at + 8192]) for at in range(0, len(body), 8192))
        answer = chunked_head(headers=headers) + b"".join(pieces) + LAST_CHUNK
    else:
        answer = response(body, headers=headers)

    async def handler(conn: Conn) -> None:
        if not conn.index:
            await conn.request()
            await conn.send(answer)  # one write
        await keep_alive()(conn)  # then OK to each request, until the client closes

    async with Upstream(handler) as up, upstream_client(first_byte=60) as client:
        if lines * 1000 < http1.MAX_HEAD_BYTES:
            assert (await client.send(post(up), None)).body == plain
        else:
            with pytest.raises(UpstreamBadGateway, match=f"headers exceed {http1.MAX_HEAD_BYTES} bytes"):
                await asyncio.wait_for(client.send(post(up), None), SOON)
        assert (await client.send(post(up), None)).status == 200


async def test_a_compressed_answer_on_a_reused_connection_counts_only_its_own_body() -> None:
    """The second gzip answer of a connection: the first one's body bytes are not taken for its
    own, which would make its head count short (and an oversized head pass)."""
    plain = hashlib.shake_256(b"body").digest(256 * 1024)
    body = gzip.compress(plain)
    fillers = [(f"X-Filler-{i}", "f" * 1000) for i in range(70)]
    first = response(body, headers=[("Content-Encoding", "gzip")])
    second = response(body, headers=[*fillers, ("Content-Encoding", "gzip")])

    async def handler(conn: Conn) -> None:
        if not conn.index:
            await conn.request()
            await conn.send(first)
            await conn.request()
            await conn.send(second)  # one write
        await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client(first_byte=60) as client:
        assert (await client.send(post(up), None)).body == plain
        with pytest.raises(UpstreamBadGateway, match=f"headers exceed {http1.MAX_HEAD_BYTES} bytes"):
            await asyncio.wait_for(client.send(post(up), None), SOON)
        assert (await client.send(post(up), None)).status == 200


async def test_headers_under_the_bound_are_read_and_looked_up_in_any_case() -> None:
    fillers = [(f"X-Filler-{i}", "f" * 1000) for i in range(http1.MAX_HEAD_BYTES // 1100)]
    handler = once_then_ok(response(b"{}", headers=[*fillers, ("X-Two", "a"), ("x-two", "b")]))

    async with Upstream(handler) as up, upstream_client() as client:
        reply = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b"{}"
    assert reply.headers["x-filler-0"] == "f" * 1000 and reply.headers["CONTENT-LENGTH"] == "2"
    headers = reply.headers
    assert headers.getall("X-TWO") == ["a", "b"]  # type: ignore[attr-defined]
    assert headers.getall("x-none", []) == [] and headers.get("x-none") is None  # type: ignore[attr-defined]
    assert "X-TWO" in headers and "x-none" not in headers and len(headers) == len(fillers) + 3
    assert [v for k, v in headers.items() if k.lower() == "x-two"] == ["a", "b"]
    assert list(headers)[:2] == ["Content-Length", "X-Filler-0"] and "x-two" in repr(headers).lower()
    with pytest.raises(KeyError):
        headers["x-none"]


# -- 9. timeouts ---------------------------------------------------------------------------------


async def test_an_upstream_that_never_answers_times_out_after_first_byte() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client(first_byte=0.3, total=20) as client:
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), None)
        took = now() - start
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the client dropped it

    assert 0.3 <= took < 3.0


async def test_per_request_timeouts_override_the_providers() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client(first_byte=20, total=30) as client:
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), Timeouts(connect=5, first_byte=0.3, total=10))
        took = now() - start

    assert 0.3 <= took < 3.0


async def test_a_kept_connection_times_out_its_next_exchange_by_its_own_deadlines() -> None:
    # The connection's timer outlives an exchange: set by a long one, it must still end a short
    # one in time; set by a short one, it must not end a later one before that one's deadline.
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(OK)
        await conn.request()
        await conn.until_eof()  # the second is never answered

    async with Upstream(handler) as up, upstream_client(first_byte=20, total=30) as client:
        assert (await client.send(post(up), None)).status == 200
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), Timeouts(connect=5, first_byte=0.3, total=10))
        took = now() - start
    assert up.accepted == 1 and 0.3 <= took < 3.0

    async with Upstream(handler) as up, upstream_client(first_byte=0.4, total=30) as client:
        first_start = now()
        assert (await client.send(post(up), None)).status == 200
        # Started a moment after the first: the timer the first set fires before this one's
        # deadline, finds it ahead and waits on.
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), None)
        took, since_first = now() - start, now() - first_start
    assert up.accepted == 1 and 0.4 <= took < 3.0 and since_first >= 0.4


async def test_headers_trickled_line_by_line_time_out_after_first_byte() -> None:
    # Each header line comes well within first_byte of the last, but the head never ends:
    # first_byte bounds the whole head, not only the gap between its reads.
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        for _ in range(200):  # the trickle is the subject: a line every 0.05 s, for at most 10 s
            await asyncio.sleep(0.05)
            await conn.send(b"X-Slow: 1\r\n")

    async with Upstream(handler) as up, upstream_client(first_byte=0.5, total=20) as client:
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), None)
        took = now() - start
        stream_start = now()
        with pytest.raises(UpstreamTimeout):
            await client.open_stream(post(up), None)
        stream_took = now() - stream_start

    assert 0.5 <= took < 3.0 and 0.5 <= stream_took < 3.0


async def test_a_body_slower_than_first_byte_in_all_but_its_gaps_is_read() -> None:
    # After the head, first_byte bounds only the gaps: a body whose whole takes longer is read.
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head())
        for i in range(8):  # 8 pieces 0.1 s apart: 0.8 s in all, over first_byte (0.4 s)
            await conn.send(chunk(b"%d" % i))
            await asyncio.sleep(0.1)
        await conn.send(LAST_CHUNK)
        await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client(first_byte=0.4, total=20) as client:
        reply = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b"01234567"


async def test_a_body_that_stalls_after_the_headers_times_out() -> None:
    headers_sent = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        headers_sent.set()
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client(first_byte=0.3, total=20) as client:
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), None)
        took = now() - start
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)

    assert headers_sent.is_set() and 0.3 <= took < 3.0


async def test_a_stream_whose_pieces_keep_coming_is_cut_at_the_total_timeout() -> None:
    # Each piece is sent as soon as the previous one was taken: no gap near first_byte, but the
    # whole outlasts total.
    taken: asyncio.Queue[bool] = asyncio.Queue()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head(headers=[("Content-Type", "text/event-stream")]))
        n = 0
        while True:
            await conn.send(chunk(b"data: %d\n\n" % n))
            n += 1
            if not await taken.get():
                break
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client(first_byte=0.3, total=0.8) as client:
        start = now()
        stream = await client.open_stream(post(up), None)
        assert stream.status == 200
        got = []
        with pytest.raises(UpstreamTimeout):
            async for piece in stream.chunks():
                got.append(piece)
                taken.put_nowait(True)
        took = now() - start
        taken.put_nowait(False)  # the upstream stops sending and waits for the connection's end
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the client closed it

    assert 0.8 <= took < 3.0  # past first_byte many times over: only total ended it
    assert len(got) > 1 and got[0] == b"data: 0\n\n"


async def test_a_stream_that_stalls_between_pieces_times_out_after_first_byte() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head() + chunk(b"data: 1\n\n"))
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client(first_byte=0.3, total=20) as client:
        stream = await client.open_stream(post(up), None)
        got = []
        start = now()
        with pytest.raises(UpstreamTimeout):
            async for piece in stream.chunks():
                got.append(piece)
        took = now() - start

    assert got == [b"data: 1\n\n"] and 0.2 <= took < 3.0


# -- 10. unreachable -----------------------------------------------------------------------------


async def test_a_refused_connection_is_unreachable() -> None:
    port = refused_port()
    async with upstream_client() as client:
        with pytest.raises(UpstreamUnreachable):
            await client.send(UpstreamRequest("POST", f"http://127.0.0.1:{port}/v1/x", b"{}"), None)
        with pytest.raises(UpstreamUnreachable):
            await client.open_stream(UpstreamRequest("POST", f"http://127.0.0.1:{port}/v1/x", b"{}"), None)


async def test_a_connect_that_does_not_finish_in_time_is_a_timeout() -> None:
    """A server that takes the TCP connection and never answers the TLS handshake: the connect
    (TCP and TLS, ``timeouts.connect``) runs out, a 504 ``upstream_timeout`` as documented, not a
    502 ``upstream_unreachable`` (which aiohttp's client never made of it either)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with upstream_client(connect=0.3) as client:
            with pytest.raises(UpstreamTimeout):
                await client.send(UpstreamRequest("POST", f"https://127.0.0.1:{port}/v1/x", b"{}"), None)
        assert len(accepted) == 1
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


# -- 11. pool limit ------------------------------------------------------------------------------


async def test_max_connections_one_serves_concurrent_requests_in_turn() -> None:
    release_first = asyncio.Event()

    async def handler(conn: Conn) -> None:
        while (seen := await conn.request()) is not None:
            if len(conn.upstream.requests) == 1:
                await release_first.wait()  # the first answer is held: the second must wait
            await conn.send(response(b"answer to " + seen.body))

    async with Upstream(handler) as up, upstream_client(max_connections=1) as client:
        first = asyncio.create_task(client.send(post(up, b"A"), None))
        second = asyncio.create_task(client.send(post(up, b"B"), None))
        await asyncio.wait_for(up.arrived.wait(), SOON)
        # The first request is at the upstream, unanswered; the second did not get a connection.
        assert up.accepted == 1 and len(up.requests) == 1 and not second.done()
        release_first.set()
        replies = await asyncio.wait_for(asyncio.gather(first, second), SOON)

    assert [r.body for r in replies] == [b"answer to A", b"answer to B"]
    assert [s.body for s in up.requests] == [b"A", b"B"]
    assert up.accepted == 1 and up.max_active == 1


async def test_a_request_waiting_for_a_full_pool_times_out_by_connect() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.until_eof()  # holds the only connection

    async with Upstream(handler) as up, upstream_client(max_connections=1, connect=0.3) as client:
        held = asyncio.create_task(client.send(post(up), None))
        await asyncio.wait_for(up.arrived.wait(), SOON)
        start = now()
        with pytest.raises(UpstreamTimeout):
            await client.send(post(up), None)
        took = now() - start
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held

    assert 0.3 <= took < 3.0 and up.accepted == 1


async def test_a_connection_closing_on_its_way_to_a_waiting_request_is_not_handed_to_it() -> None:
    """A request waiting for a full pool is woken by a connection's return; that connection
    closes (the upstream's end, read in between) before the request runs: it gets a new one."""
    loop = asyncio.get_running_loop()
    async with Upstream(keep_alive()) as up:
        pool = http1.Pool(http1.Target(URL(up.url())), 1, IDLE_SECONDS)
        stale, transport = open_conn()  # the pool's one connection, its answer read to the end
        pool._open = 1
        stale.start_timer(30, 10)
        stale.data_received(OK)
        assert stale.done and stale.reusable()
        waiting = pool._queue(loop)
        waiting.send(None)  # run up to its wait: the pool is full
        pool.put(stale)  # the connection comes back and wakes it
        transport.close()  # and closes before the waiting request runs
        conn, reused = await asyncio.wait_for(asyncio.ensure_future(waiting), SOON)
        try:
            assert conn is not stale and not reused and conn.open()
            assert stale.closed and pool._open == 1 and up.accepted == 1
        finally:
            conn.close()
            pool.close()


# -- 12. streams ---------------------------------------------------------------------------------


async def test_a_stream_delivers_each_piece_as_it_arrives_in_order() -> None:
    pieces = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n", b"data: [DONE]\n\n"]
    taken: asyncio.Queue[None] = asyncio.Queue()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head(headers=[("Content-Type", "text/event-stream")]))
        for piece in pieces:
            await conn.send(chunk(piece))
            await taken.get()  # the next piece only once the client has this one
        await conn.send(LAST_CHUNK)
        await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
        got = []
        async for piece in stream.chunks():
            got.append(piece)
            taken.put_nowait(None)

    assert got == pieces


async def test_a_stream_read_to_the_end_leaves_its_connection_for_the_next_request() -> None:
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head() + chunk(b"data: 1\n\n") + chunk(b"data: 2\n\n") + LAST_CHUNK)
        await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        got = [piece async for piece in stream.chunks()]
        reply = await client.send(post(up), None)

    assert b"".join(got) == b"data: 1\n\ndata: 2\n\n" and reply.status == 200
    # Read to its end, the stream's keep-alive connection serves the next request (as aiohttp's
    # did: it released a connection once the body was read).
    assert up.accepted == 1 and len(up.conns[0].requests) == 2


async def test_closing_a_stream_early_closes_its_connection() -> None:
    async def handler(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(chunked_head() + chunk(b"data: first\n\n"))
            await conn.until_eof()  # the rest would never come
        else:
            await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        pieces = stream.chunks()
        assert await pieces.__anext__() == b"data: first\n\n"
        await stream.close()
        await asyncio.wait_for(up.conns[0].eof.wait(), SOON)  # the upstream sees the end
        await pieces.aclose()
        await stream.close()  # idempotent
        reply = await client.send(post(up), None)

    assert reply.status == 200 and up.accepted == 2


async def test_an_error_status_on_a_stream_is_read_whole_and_scrubbed() -> None:
    error = b'{"error":{"message":"Incorrect API key provided: Bearer ' + KEY.encode() + b'"}}'

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(chunked_head(500) + chunk(error[:20]) + chunk(error[20:]) + LAST_CHUNK)
        await keep_alive()(conn)

    async with Upstream(handler) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        assert stream.status == 500
        body = await stream.read_all()
        again = await client.send(post(up), None)

    assert body == b'{"error":{"message":"Incorrect API key provided: Bearer [redacted]"}}'
    assert again.status == 200 and up.accepted == 1


# -- 13. error bodies ----------------------------------------------------------------------------


async def test_an_error_body_comes_back_with_the_credential_redacted() -> None:
    error = b'{"error":{"message":"Incorrect API key provided: ' + KEY.encode() + b'","code":"invalid"}}'

    async with Upstream(keep_alive(response(error, 401, "Unauthorized"))) as up, \
            upstream_client() as client:
        reply = await client.send(post(up), None)

    assert reply.status == 401
    assert KEY.encode() not in reply.body
    assert reply.body == b'{"error":{"message":"Incorrect API key provided: [redacted]","code":"invalid"}}'


async def test_a_500_body_is_scrubbed_and_cut_at_the_error_limit() -> None:
    error = b"internal error, key was Bearer " + KEY.encode() + b" " + b"z" * (2 * 1024 * 1024)

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(response(error, 500, "Internal Server Error"))
        await conn.until_eof()

    async with Upstream(handler) as up, upstream_client() as client:
        reply = await client.send(post(up), None)

    assert reply.status == 500
    assert reply.body.startswith(b"internal error, key was Bearer [redacted] zzz")
    # Cut at MAX_ERROR_BYTES (1 MiB), then the key replaced.
    assert len(reply.body) == 1024 * 1024 - len(KEY) + len(b"[redacted]")


# -- 14. interim answers -------------------------------------------------------------------------


async def test_a_100_continue_before_the_answer_is_skipped() -> None:
    def answer(seen: Seen) -> bytes:
        return b"HTTP/1.1 100 Continue\r\n\r\n" + response(b'{"final":true}', headers=[("X-Final", "1")])

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        reply = await client.send(post(up), None)
        again = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b'{"final":true}'
    assert reply.headers["X-Final"] == "1" and again.body == b'{"final":true}'
    assert up.accepted == 1


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


async def test_early_hints_and_other_interim_heads_are_read_past_in_any_reads() -> None:
    # Each interim head in its own write (its own read, most likely), then the final answer.
    interim = [b"HTTP/1.1 100 Continue\r\n\r\n", EARLY_HINTS,
               b"HTTP/1.1 102 Processing\r\nX-Interim: 1\r\n\r\n"]

    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            for head in interim:
                await conn.send(head)
            await conn.send(response(b'{"final":true}', headers=[("X-Final", "1")]))

    async with Upstream(handler) as up, upstream_client() as client:
        reply = await client.send(post(up), None)
        again = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b'{"final":true}' and again.body == reply.body
    assert dict(reply.headers) == {"Content-Length": "14", "X-Final": "1"}  # no Link, no X-Interim
    assert up.accepted == 1


async def test_early_hints_before_a_stream_are_read_past() -> None:
    events = [b"data: one\n\n", b"data: [DONE]\n\n"]
    answer = EARLY_HINTS + chunked_head(headers=[("Content-Type", "text/event-stream")])
    answer += b"".join(map(chunk, events)) + LAST_CHUNK

    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        assert stream.status == 200 and "Link" not in stream.headers
        assert b"".join([piece async for piece in stream.chunks()]) == b"".join(events)
        reply = await client.send(post(up), None)

    assert reply.status == 200 and up.accepted == 1


async def test_as_many_interim_heads_as_allowed_are_read_past() -> None:
    answer = EARLY_HINTS * http1.MAX_INTERIM + response(b"{}")
    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        reply = await client.send(post(up), None)

    assert reply.status == 200 and reply.body == b"{}"


NOT_FINAL = {
    "101 with an upgrade": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n\r\n" + OK, r"switched protocols \(101\)"),
    "101 alone": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + OK, r"switched protocols \(101\)"),
    "status 000": (response(b"{}", 0, "Zero"), "status 0, outside HTTP's 100-599$"),
    "status 099": (response(b"{}", 99, "Low"), "status 99, outside HTTP's 100-599$"),
    "status 600": (response(b"{}", 600, "High"), "status 600, outside HTTP's 100-599$"),
    "status 999": (response(b"{}", 999, "High"), "status 999, outside HTTP's 100-599$"),
    "one interim head too many": (EARLY_HINTS * (http1.MAX_INTERIM + 1) + OK,
                                  f"over {http1.MAX_INTERIM} interim \\(1xx\\) answers"),
    # Heads in a row with no final one yet: bounded as one head is (not at the read timeout).
    "interim heads past the head bound": (
        (b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"l" * 40_000 + b">\r\n\r\n") * 2,
        f"headers exceed {http1.MAX_HEAD_BYTES} bytes"),
}


@pytest.mark.parametrize(("answer", "match"), NOT_FINAL.values(), ids=NOT_FINAL.keys())
async def test_a_head_that_is_neither_interim_nor_final_is_a_bad_gateway(answer: bytes, match: str) -> None:
    # "status 000" is sent as three digits (response() writes the number: make it so).
    answer = answer.replace(b"HTTP/1.1 0 ", b"HTTP/1.1 000 ").replace(b"HTTP/1.1 99 ", b"HTTP/1.1 099 ")
    await refused_and_dropped(answer, match)


async def test_a_status_outside_http_is_a_bad_gateway_on_a_stream_too() -> None:
    async with Upstream(once_then_ok(response(b"{}", 600, "High"))) as up, upstream_client() as client:
        with pytest.raises(UpstreamBadGateway, match="status 600"):
            await client.open_stream(post(up), None)
        stream = await client.open_stream(post(up), None)
        assert stream.status == 200
        await stream.close()


# -- bodies the fast path cannot send ------------------------------------------------------------


async def test_a_body_given_as_an_async_iterable_is_sent_whole() -> None:
    # What http/files/upstream.py's upload() hands the client for a streamed /v1/files upload.
    async def parts() -> AsyncIterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=purpose\r\n\r\nbatch\r\n"
        yield b"--b--\r\n"

    async with Upstream(keep_alive()) as up, upstream_client() as client:
        request = UpstreamRequest("POST", up.url("/v1/files"), cast(bytes, parts()),
                                  {"Content-Type": "multipart/form-data; boundary=b"})
        reply = await client.send(request, None)

    assert reply.status == 200
    assert up.requests[0].body == (
        b"--b\r\nContent-Disposition: form-data; name=purpose\r\n\r\nbatch\r\n--b--\r\n"
    )


@pytest.mark.parametrize(("headers", "media", "is_json"), [
    ([("Content-Type", "text/event-stream; charset=utf-8")], "text/event-stream", False),
    ([("content-type", "Application/JSON; charset=utf-8")], "application/json", True),
    ([("Content-Type", "application/problem+json")], "application/problem+json", True),
    ([], "application/octet-stream", False),  # aiohttp's answer for a missing header
])
async def test_a_streams_content_type_says_whether_it_is_json(
    headers: list[tuple[str, str]], media: str, is_json: bool
) -> None:
    async with Upstream(keep_alive(response(b"{}", headers=headers))) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        try:
            assert (stream.response.content_type, stream.is_json) == (media, is_json)
        finally:
            await stream.close()


async def test_an_event_stream_labelled_json_keeps_streaming_from_its_first_byte() -> None:
    # Some servers and proxies label a real event stream application/json: what was read to
    # tell it from a JSON body is handed on first, then the rest as it arrives.
    events = b'data: {"a":1}\n\ndata: [DONE]\n\n'
    answer = response(events, headers=[("Content-Type", "application/json")])
    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        stream = await client.open_stream(post(up), None)
        assert stream.is_json
        assert await stream.json_body() is None
        assert b"".join([piece async for piece in stream.chunks()]) == events


async def test_a_json_body_on_a_stream_is_read_whole_and_scrubbed() -> None:
    body = b'  {"error": {"message": "bad key sk-secret", "type": "invalid_request_error"}}'
    answer = response(body, headers=[("Content-Type", "application/json")])
    async with Upstream(keep_alive(answer)) as up, upstream_client() as client:
        request = post(up)
        request.credentials = {"Authorization": "sk-secret"}
        stream = await client.open_stream(request, None)
        got = await stream.json_body()
    assert got is not None and b"sk-secret" not in got and b"invalid_request_error" in got


@pytest.mark.parametrize("split", [None, 1, 7])
async def test_a_proxy_answering_connect_with_interim_heads_first_is_read_to_its_answer(
        split: int | None) -> None:
    """A proxy may send 100 Continue (or 103) before its answer to CONNECT: read past, as in any
    answer; it was taken for the answer (a refusal of the tunnel)."""
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 Connection established\r\n\r\n")
    tunnel = http1._Tunnel(asyncio.get_running_loop())
    for i in range(0, len(data), split or len(data)):
        tunnel.data_received(data[i:i + (split or len(data))])
    assert tunnel.answer.result() == (200, "Connection established")


async def test_a_proxy_that_never_gets_past_interim_heads_is_refused() -> None:
    tunnel = http1._Tunnel(asyncio.get_running_loop())
    tunnel.data_received(b"HTTP/1.1 100 Continue\r\n\r\n" * (http1.MAX_INTERIM + 1))
    with pytest.raises(http1.BadResponse, match="interim answers to CONNECT"):
        tunnel.answer.result()


@pytest.mark.parametrize("interim", [False, True])
async def test_a_connect_answer_whose_whole_head_is_over_the_bound_is_refused(interim: bool) -> None:
    """A head over 64 KiB that arrives whole in one read is refused as one still unended is."""
    big = b"HTTP/1.1 200 Connection established\r\nX-Pad: " + b"a" * http1.MAX_HEAD_BYTES + b"\r\n\r\n"
    tunnel = http1._Tunnel(asyncio.get_running_loop())
    tunnel.data_received((b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b"") + big)
    with pytest.raises(http1.BadResponse, match="head over 65536 bytes"):
        tunnel.answer.result()
    just_under = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * (http1.MAX_HEAD_BYTES - 40) + b"\r\n\r\n"
    tunnel = http1._Tunnel(asyncio.get_running_loop())
    tunnel.data_received(just_under)
    assert tunnel.answer.result() == (200, "OK")


@pytest.mark.parametrize("status", [b"\xb200", b"2" * 4400, b"2000", b"20"],
                         ids=["superscript-two", "4400-digits", "four-digits", "two-digits"])
async def test_a_connect_answer_whose_status_is_not_three_digits_is_not_http(status: bytes) -> None:
    # Read as latin-1, "\xb2" is "²", which str.isdigit takes and int() refuses; a status of
    # thousands of digits is past int()'s limit: both raised out of data_received, never
    # answering the tunnel's future (the connect then waited for its timeout).
    tunnel = http1._Tunnel(asyncio.get_running_loop())
    tunnel.data_received(b"HTTP/1.1 " + status + b" OK\r\n\r\n")
    with pytest.raises(http1.BadResponse, match="not HTTP"):
        tunnel.answer.result()
