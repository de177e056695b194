"""One pipelined Redis connection for the request path's scripts.

The scripts of a loop pass leave as one write and their replies are read back in order by
hiredis, straight from the socket. redis-py's pipeline did the same on the wire, but its Python
side (packing each argument, a pooled connection taken and returned, a retry wrapper, a timeout
and a reply callback per command) cost about as much CPU as the rest of the cluster path's
Redis work together (docs/benchmarks.md). Batches of several passes may be in flight at once:
Redis answers in order, so each batch waits for its own count of replies.

A Redis that accepts connections and never answers (a process frozen, a path that drops
everything) would hold every batch for the whole reply timeout, each request anew. So once a
batch got no reply in time its client is marked *silent* (stores/redis/silence.py, the mark its
other calls share): calls fail at once with the same timeout error until a PING in the
background is answered; the next call then connects afresh. Only the calls in flight when Redis
went quiet wait out the timeout.

Plain TCP and Unix sockets only; a TLS URL keeps redis-py's pipeline (stores/redis/batch.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError
from redis.exceptions import TimeoutError as ReplyTimeout

from switchboard.stores.redis.silence import Silence, silence_for

Arg = str | bytes | int | float


# Encoded arguments by value: keys, script arguments and amounts repeat from request to request.
# Cleared when full rather than evicted one by one; only str and int (1.0 == 1 == True).
ENCODED: dict[str | int, bytes] = {}
ENCODED_MAX = 4096


def _encode(part: Arg) -> bytes:
    data = part if isinstance(part, bytes) else str(part).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encoded(part: Arg) -> bytes:
    """One argument as a RESP bulk string, kept in the cache of encoded values (str and int)."""
    kind = type(part)
    if kind is not str and kind is not int:
        return _encode(part)
    cache = ENCODED
    data = cache.get(part)  # type: ignore[arg-type]
    if data is None:
        if len(cache) >= ENCODED_MAX:
            cache.clear()
        data = cache[part] = _encode(part)  # type: ignore[index]
    return data


def number(value: int) -> bytes:
    """An int argument (an amount, a slot) as a RESP bulk string: a dictionary read when kept.
    Only an ``int`` is looked up (``1.0 == 1``, but its text is not)."""
    data = ENCODED.get(value) if type(value) is int else None
    return data if data is not None else encoded(value)


def unique(part: str) -> bytes:
    """A string sent once (a request's id) as a RESP bulk string, not kept in the cache."""
    data = part.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def values(pieces: Sequence[bytes]) -> list[bytes]:
    """The arguments in RESP bulk strings (``bulk``'s pieces, joined or not), as bytes."""
    data = b"".join(pieces)
    out: list[bytes] = []
    at, end = 0, len(data)
    while at < end:
        line = data.index(b"\r\n", at)
        start = line + 2
        stop = start + int(data[at + 1:line])
        out.append(data[start:stop])
        at = stop + 2
    return out


def bulk(parts: Sequence[Arg]) -> bytes:
    """Arguments as RESP bulk strings (numbers as their decimal text, as redis-py sends them)."""
    out: list[bytes] = []
    bulk_into(out, parts)
    return b"".join(out)


def bulk_into(out: list[bytes], parts: Sequence[Arg]) -> None:
    """``bulk``'s pieces appended to ``out``: a batch's commands are joined once, not each."""
    cache = ENCODED
    for part in parts:
        kind = type(part)
        if kind is str or kind is int:
            data = cache.get(part)  # type: ignore[arg-type]
            if data is None:
                if len(cache) >= ENCODED_MAX:
                    cache.clear()
                data = cache[part] = _encode(part)  # type: ignore[index]
        else:
            data = _encode(part)
        out.append(data)


def command(parts: Sequence[Arg], *, head: bytes = b"", head_count: int = 0) -> bytes:
    """One command in RESP: an array of bulk strings, after ``head`` (``head_count`` of them)."""
    return b"*%d\r\n%b%b" % (head_count + len(parts), head, bulk(parts))


# Told a batch's replies, or the error that ends it: ``(then's argument, replies, None)`` or
# ``(then's argument, None, error)``. Called from the protocol's callbacks, so it must not raise.
Then = Callable[[Any, "list[Any] | None", "Exception | None"], None]


def _into_future(future: asyncio.Future[list[Any]], replies: list[Any] | None, exc: Exception | None) -> None:
    if future.done():
        return
    if exc is not None or replies is None:
        future.set_exception(exc or ConnectionError("redis sent no replies"))
    else:
        future.set_result(replies)


class _Replies(asyncio.Protocol):
    """Reads replies in order and hands each waiting batch its own count of them.

    One timer per connection, not one per batch: it fires at the oldest batch's deadline."""

    def __init__(self, reply_timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._timeout = reply_timeout
        # Per batch: who is told, its argument, the count of replies, those come so far, deadline.
        self._waiting: deque[tuple[Then, Any, int, list[Any], float]] = deque()
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            # An idle connection a middlebox dropped in silence is found before a batch is sent
            # into it (that batch would otherwise wait out the reply timeout).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, option):  # Linux; elsewhere the system's defaults
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    def send(self, payload: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write ``count`` commands; their replies, when all have come."""
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        self.post(payload, count, _into_future, future)
        return future

    def post(self, payload: bytes, count: int, then: Then, arg: Any) -> None:
        """Write ``count`` commands; ``then(arg, replies, None)`` when all have come, or
        ``then(arg, None, error)``. No future: the request path's batches are handed their
        replies from here, a loop pass earlier and without a future and its callback."""
        deadline = self._loop.time() + self._timeout
        self._waiting.append((then, arg, count, [], deadline))
        if self._watch is None:
            self._watch = self._loop.call_at(deadline, self._check)
        assert self.transport is not None
        self.transport.write(payload)

    def _check(self) -> None:
        self._watch = None
        if not self._waiting:
            return
        deadline = self._waiting[0][4]
        if self._loop.time() >= deadline:  # the stream is out of step now: start afresh
            self.abort(ReplyTimeout(f"redis did not answer within {self._timeout:g} s"))
        else:
            self._watch = self._loop.call_at(deadline, self._check)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                if not self._waiting:  # a reply nobody asked for: the stream is out of step
                    raise ConnectionError("redis sent a reply nobody was waiting for")
                then, arg, count, replies, _ = self._waiting[0]
                replies.append(reply)
                if len(replies) == count:
                    self._waiting.popleft()
                    try:
                        then(arg, replies, None)
                    except Exception as exc:  # the receiver's bug, not the stream's
                        self._misbehaved(exc)
        except Exception as exc:  # a protocol error: nothing after it can be trusted
            if not isinstance(exc, ConnectionError):
                exc = ConnectionError(f"redis protocol error: {exc}")
            self.abort(exc)

    def _misbehaved(self, exc: Exception) -> None:
        self._loop.call_exception_handler(
            {"message": "a redis reply's receiver failed", "exception": exc, "protocol": self})

    def abort(self, exc: Exception) -> None:
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"redis connection lost: {exc}" if exc else "redis closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self._waiting:
            then, arg, *_ = self._waiting.popleft()
            try:
                then(arg, None, exc)
            except Exception as error:
                self._misbehaved(error)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Wire:
    """Connects on first use, reconnects after a failure; every wait bounded."""

    def __init__(self, *, host: str, port: int, path: str | None, username: str | None,
                 password: str | None, db: int, connect_timeout: float, reply_timeout: float,
                 silence: Silence) -> None:
        self._host, self._port, self._path = host, port, path
        self._hello = self._handshake(username, password, db)
        self._connect_timeout, self._reply_timeout = connect_timeout, reply_timeout
        self._protocol: _Replies | None = None
        self._connecting: asyncio.Task[_Replies] | None = None
        # Whether Redis stopped answering: shared with the client's other calls.
        self.silence = silence

    @classmethod
    def of(cls, client: Redis) -> Wire | None:
        """The wire to this client's server, or None if redis-py must keep the connection (TLS)."""
        pool = client.connection_pool
        kind, kw = pool.connection_class, pool.connection_kwargs
        if kind not in (Connection, UnixDomainSocketConnection):
            return None
        wire = cls(
            host=kw.get("host", "localhost"),
            port=int(kw.get("port", 6379)),
            path=kw.get("path") if kind is UnixDomainSocketConnection else None,
            username=kw.get("username"),
            password=kw.get("password"),
            db=int(kw.get("db", 0)),
            connect_timeout=kw.get("socket_connect_timeout") or 5.0,
            reply_timeout=kw.get("socket_timeout") or 10.0,
            silence=silence_for(client),
        )
        wire.silence.ping = wire.ping  # asked again the way the wire connects: no HELLO
        return wire

    @staticmethod
    def _handshake(username: str | None, password: str | None, db: int) -> list[bytes]:
        hello = []
        if password is not None:
            hello.append(command(["AUTH", username, password] if username else ["AUTH", password]))
        if db:
            hello.append(command(["SELECT", db]))
        return hello

    async def call(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` commands packed in ``payload``; their replies, errors as values."""
        self.silence.check()
        try:
            protocol = self._protocol
            if protocol is None or protocol.transport is None or protocol.transport.is_closing():
                protocol = await self._connected()
            return await protocol.send(payload, count)
        except ReplyTimeout:
            self.silence.went_silent()
            raise

    def ready(self) -> bool:
        """Whether a batch can be written at once (``post``): connected, Redis not silent."""
        protocol = self._protocol
        return (not self.silence.silent and protocol is not None and protocol.transport is not None
                and not protocol.transport.is_closing())

    def post(self, payload: bytes, count: int, then: Then, arg: Any) -> None:
        """``call`` without a coroutine or a future, when ``ready()``: the commands written now;
        ``then(arg, replies, None)`` when all have come, or ``then(arg, None, error)``. A
        ``ReplyTimeout`` is the receiver's to mark (``went_silent``)."""
        assert self._protocol is not None
        self._protocol.post(payload, count, then, arg)

    async def ping(self) -> None:
        """A PING on a fresh connection of the wire's kind, closed after (the silence's probe)."""
        protocol = await self._connect()
        try:
            await protocol.send(command(["PING"]), 1)
        finally:
            protocol.abort(ConnectionError("the probe is done"))

    async def _connected(self) -> _Replies:
        attempt = self._connecting
        if attempt is None:  # batches arriving meanwhile wait for the same attempt
            attempt = self._connecting = asyncio.ensure_future(self._connect())
            attempt.add_done_callback(_retrieve)  # heard even if every waiter was cancelled
        try:
            self._protocol = await asyncio.shield(attempt)
        finally:
            if attempt.done() and self._connecting is attempt:
                self._connecting = None
        return self._protocol

    async def _connect(self) -> _Replies:
        loop = asyncio.get_running_loop()

        def make() -> _Replies:
            return _Replies(self._reply_timeout)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, protocol = await loop.create_unix_connection(make, self._path)
                else:
                    _, protocol = await loop.create_connection(make, self._host, self._port)
        except TimeoutError:  # the connect itself got no answer: as silent as a reply never sent
            where = self._path or f"{self._host}:{self._port}"
            raise ReplyTimeout(f"cannot connect to redis at {where}: timed out") from None
        except OSError as exc:
            where = self._path or f"{self._host}:{self._port}"
            raise ConnectionError(f"cannot connect to redis at {where}: {exc}") from None
        if self._hello:
            for reply in await protocol.send(b"".join(self._hello), len(self._hello)):
                if isinstance(reply, ResponseError):
                    protocol.abort(ConnectionError("redis refused the handshake"))
                    raise AuthenticationError(str(reply))
        return protocol

    async def close(self) -> None:
        await self.silence.close()
        if self._connecting is not None:
            self._connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed
