"""ASGI plumbing shared by the endpoints: headers, bounded body reads, JSON responses."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import zstandard

from switchboard.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from switchboard.upstream.gunzip import WBITS as GZIP_WBITS
from switchboard.upstream.gunzip import Gunzip, TooManyMembers
from switchboard.upstream.zstd import decompressor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CT = (b"content-type", b"application/json")
# A private ASGI message the gateway's server understands (http/cycle.py): end a response that
# cannot be finished (its upstream failed mid-body) by closing the connection without the body's
# end, so the client sees it incomplete.
ABORT = "switchboard.http.abort"
# Put on a request's scope by the connection (http/protocol.py) when it answered the request
# itself while its body was being read (408 for a body too slow, 431 for endless trailers, 400
# for a malformed chunk): (status, type, code, message, request id) of that answer. The
# application's next receive() reports a disconnect, which the endpoint then records as that
# answer (under that request id), not as a 499.
EDGE_ANSWERED = "switchboard.edge_answered"
# Put on a request's scope by the endpoint that took it (http/endpoint.py scope_request_id): the
# request's id, which an answer the connection writes itself while reading the body then carries
# too, so that one request has one id in its answer and in every log line about it.
REQUEST_ID = "switchboard.request_id"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def header_dict(scope: Scope) -> dict[str, str]:
    """Request headers, lower-cased names, latin-1 values (repeated headers: the last wins)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limit:
            raise PayloadTooLarge(f"request body is {size} bytes; the limit is {limit} bytes")
    first = await receive()
    body = first.get("body", b"")
    if not first.get("more_body"):
        if first["type"] == "http.disconnect":  # gone (or answered by the connection) before any body
            raise ConnectionAbortedError("client disconnected before sending the body")
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return body
    parts = [body]
    total = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


# The request content codings a body may come in (RFC 9110 8.4.1): gzip (and its old name x-gzip)
# and deflate (the zlib format), as zlib's window bits, and zstd (OpenAI's Codex CLI sends it).
# Others (br, compress) are refused by name.
_CODINGS = {"gzip": GZIP_WBITS, "x-gzip": GZIP_WBITS, "deflate": 15}
# Gzip members one request body may be made of: each costs a decoder (a few microseconds, on the
# event loop below INFLATE_IN_THREAD_BYTES, before authentication); concatenated files make a few.
MAX_GZIP_MEMBERS = 64
ZSTD = "zstd"
# A compressed body at least this large is inflated in a worker thread: tens of MiB of output
# take tens of milliseconds, which would stall every other request on the event loop (zlib
# releases the GIL while it works). Smaller ones take well under a millisecond: not worth a thread.
INFLATE_IN_THREAD_BYTES = 1 << 20


def _plain(coding: str | None) -> bool:
    return coding is None or coding.strip().lower() in ("", "identity")


async def inflate_request_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """:func:`inflate_body`, off the event loop for a body of ``INFLATE_IN_THREAD_BYTES`` or
    more. Callers skip it when there is no ``Content-Encoding`` (the common case)."""
    if len(body) >= INFLATE_IN_THREAD_BYTES and not _plain(coding):
        return await asyncio.to_thread(inflate_body, body, coding, limit)
    return inflate_body(body, coding, limit)


def refuse_content_encoding(coding: str | None) -> None:
    """For the endpoints that parse their body as it streams in (multipart uploads): a compressed
    body is a 415 saying so, not a confusing multipart parse error. Decompressing there would have
    to be bounded and streamed through the parser, for a case clients do not send in practice."""
    if not _plain(coding):
        assert coding is not None
        name = coding.strip().lower()[:40]
        raise UnsupportedMediaType(
            f"this endpoint takes no compressed body (Content-Encoding '{name}'); send it uncompressed",
            code="unsupported_content_encoding")


def inflate_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """A request body as its ``Content-Encoding`` says it was compressed, decompressed to at most
    ``limit`` bytes (413 past it: a small compressed body may inflate to gigabytes). Clients that
    compress large bodies (agents sending long conversations) would otherwise get "not valid
    JSON"; an unknown coding is a 415 naming it, a corrupt or truncated body a 400."""
    if coding is None:
        return body
    name = coding.strip().lower()
    if name in ("", "identity"):
        return body
    if name == ZSTD:
        plain = _unzstd(body, limit)
    elif (wbits := _CODINGS.get(name)) is not None:
        plain = _inflate(body, wbits, limit)
    else:
        raise UnsupportedMediaType(
            f"unsupported content encoding '{name[:40]}'; send the body uncompressed, or as gzip, deflate or "
            "zstd", code="unsupported_content_encoding")
    if plain is None:
        raise InvalidRequest(f"the request body is not one whole {name} stream, as its Content-Encoding says",
                             code="invalid_content_encoding")
    return plain


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes once decompressed")


def _inflate(body: bytes, wbits: int, limit: int) -> bytes | None:
    """A gzip or zlib stream decompressed (at most ``limit`` bytes); None when it is not one whole
    stream. Gzip members one after another (RFC 1952) are one content, as on the upstream side
    (upstream/gunzip.py: in work proportional to the body, however many members); the zlib
    format has one stream."""
    inflater: Gunzip | zlib._Decompress = (Gunzip(MAX_GZIP_MEMBERS) if wbits == GZIP_WBITS
                                           else zlib.decompressobj(wbits))
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error:
        return None
    except TooManyMembers:
        raise InvalidRequest(f"the request body has more than {MAX_GZIP_MEMBERS} gzip members",
                             code="invalid_content_encoding") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return plain if inflater.eof and not inflater.unused_data else None


def _unzstd(body: bytes, limit: int) -> bytes | None:
    """Zstandard frames (RFC 8878: one after another are one content) decompressed, at most
    ``limit`` bytes; None when they are not whole frames. A stream reader finds out the size first,
    reading no more than ``limit`` + 1 bytes (a frame header's content size is not trusted: it would
    be allocated at once); it does not notice a cut frame, so the frames are then decompressed one
    by one, each checked to its end (as much output again, already known to fit). A frame asking
    for a window over 8 MiB (RFC 9659's bound) is refused by the decoder."""
    zstd = decompressor()
    try:
        if len(zstd.stream_reader(body, read_across_frames=True).read(limit + 1)) > limit:
            raise _too_large(limit)
        parts: list[bytes] = []
        rest = body
        while True:
            frame = zstd.decompressobj()
            parts.append(frame.decompress(rest))
            if not frame.eof:
                return None
            rest = frame.unused_data
            if not rest:
                return b"".join(parts)
    except zstandard.ZstdError:
        return None


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    try:
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    except UnicodeEncodeError:  # text latin-1 cannot hold (a rule or model name in any script)
        return [(k.encode("latin-1"), header_bytes(v)) for k, v in headers.items()]


def header_bytes(value: str) -> bytes:
    """A response header's value: latin-1, the header's own encoding (the usual values are
    ASCII); text it cannot hold goes as its UTF-8 bytes, which clients that read headers as UTF-8
    show as written, rather than failing the response."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: tuple[bytes, bytes],
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [content_type, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
