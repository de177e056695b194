"""A small HTTP service for the REST-services tests, run as its own process:
``python tests/e2e/service_upstream.py PORT``. It records every request it sees (GET /_seen
lists them, oldest first) and answers:

- ``/stream?n=N&delay=S``: N lines, one every S seconds (chunked);
- ``/slow?seconds=S``: after S seconds;
- ``/hold?every=S``: its status and a first line at once, the request body left unread, then a
  line every S seconds (30 by default) for at most a minute; a call whose caller (the gateway)
  closes the connection ends at once, its query listed by GET /_ended;
- ``/drain?every=S``: its status and a first line at once, then a line every S seconds (30 by
  default) while it reads the request body as it arrives, until the connection is closed (for at
  most a minute); such a call's query is listed by GET /_ended too;
- ``/big?bytes=N``: N bytes with their length declared; ``/bigchunked?bytes=N``: chunked;
- ``/redirect?to=URL``: 302 to URL;
- ``/binary?word=W``: bytes that are not text (NULs, invalid UTF-8) around the word W;
- anything else: the request echoed as JSON (method, path, raw path, query, headers, body), with
  the status ``?status=N``, gzip-compressed with ``?gzip=1``, and with ``?encoding=NAME``
  compressed and labelled ``Content-Encoding: NAME``: zstd-compressed for ``zstd`` (its frame
  asking for a window of 2**N bytes with ``&window_log=N``), gzip-compressed for any other name
  (br has no codec at hand), as a server answering in br would send it: unreadable as plain text.
  ``?pad=N`` adds N spaces of padding to the echo, after the request's headers; with ``?cors=1``
  it carries CORS headers of its own (``Access-Control-Allow-Origin: *``), as a service made for
  browsers answers; with ``?ratelimit=1``, ``x-ratelimit-*`` headers of its own (and with
  ``?status=429`` a ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import sys
from typing import Any
from urllib.parse import parse_qs

import uvicorn
import zstandard

SEEN: list[dict[str, Any]] = []
ENDED: list[str] = []  # the queries of /hold calls whose connection was closed


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if path == "/_seen":
        await _reply(send, 200, json.dumps(SEEN).encode())
        return
    if path == "/_ended":
        await _reply(send, 200, json.dumps(ENDED).encode())
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    SEEN.append({"method": scope["method"], "path": path,
                 "raw_path": scope.get("raw_path", b"").decode("latin-1"), "query": query,
                 "host": headers.get("host")})
    if path.endswith("/stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(params.get("n", "3"))):
            await send({"type": "http.response.body", "body": f"line {i}\n".encode(), "more_body": True})
            await asyncio.sleep(float(params.get("delay", "0.05")))
        await send({"type": "http.response.body", "body": b""})
        return
    if path.endswith("/hold"):
        await _hold(receive, send, float(params.get("every", "30")))
        ENDED.append(query)
        return
    if path.endswith("/drain"):
        await _drain(receive, send, float(params.get("every", "30")))
        ENDED.append(query)
        return
    if path.endswith("/slow"):
        await asyncio.sleep(float(params.get("seconds", "5")))
        await _reply(send, 200, b'{"slow": true}')
        return
    if path.endswith("/big") or path.endswith("/bigchunked"):
        size = int(params.get("bytes", "1000"))
        if path.endswith("/big"):
            await _reply(send, 200, b"x" * size, content_type=b"application/octet-stream")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        while sent < size:
            piece = min(65536, size - sent)
            await send({"type": "http.response.body", "body": b"x" * piece, "more_body": True})
            sent += piece
        await send({"type": "http.response.body", "body": b""})
        return
    if path.endswith("/binary"):
        await _body(receive)
        word = params.get("word", "binary").encode()
        await _reply(send, 200, b"\x89PNG\x00\x00\x01" + word + b"\x00\xff\xfe tail",
                     content_type=b"application/octet-stream")
        return
    if path.endswith("/redirect"):
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", params.get("to", "/").encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = await _body(receive)
    echo = {
        "method": scope["method"], "path": path, "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query": query, "headers": headers, "body_bytes": len(body),
        "header_list": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body": body.decode("utf-8", "replace") if len(body) < 4096 else None,
    }
    status = int(params.get("status", "200"))
    extra = [(b"set-cookie", b"session=upstream-secret"), (b"x-upstream", b"echo"),
             (b"cache-control", b"no-store")]
    if "cors" in params:
        extra += [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"x-upstream")]
    if "ratelimit" in params:  # a service reporting limits of its own under the gateway's names
        extra += [(b"x-ratelimit-limit-requests", b"1000"), (b"x-ratelimit-remaining-requests", b"999"),
                  (b"x-ratelimit-reset-requests", b"30s"), (b"x-ratelimit-scope", b"upstream-own")]
        if status == 429:
            extra.append((b"retry-after", b"30"))
    if "pad" in params:
        echo["pad"] = " " * int(params["pad"])
    data = json.dumps(echo).encode()
    if "gzip" in params:  # ?gzip=1: the echo compressed, as a server honouring Accept-Encoding sends it
        data = gzip.compress(data)
        extra.append((b"content-encoding", b"gzip"))
    elif "encoding" in params:
        data = _zstd(data, params.get("window_log")) if params["encoding"] == "zstd" else gzip.compress(data)
        extra.append((b"content-encoding", params["encoding"].encode()))
    await _reply(send, status, data, extra=extra)


async def _hold(receive: Any, send: Any, every: float) -> None:
    """Answers without reading the body (its sender's writes back up), then streams slowly until
    the connection is closed. uvicorn tells an application of a closed connection only through
    ``receive``, which would read the body, and does not see it while it holds back reading (the
    unread body): the socket's TCP state is looked at instead (Linux)."""
    sock = receive.__self__.transport.get_extra_info("socket")  # uvicorn's request cycle's
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ready\n", "more_body": True})
    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    next_line = loop.time() + every
    while _established(sock) and loop.time() < end:
        await asyncio.sleep(0.02)
        if loop.time() >= next_line:
            next_line += every
            await send({"type": "http.response.body", "body": b"line\n", "more_body": True})


async def _drain(receive: Any, send: Any, every: float) -> None:
    """Answers at once, then reads the body as it comes (and waits on, once it is whole) until the
    connection is closed, a line every ``every`` seconds meanwhile."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ready\n", "more_body": True})

    async def lines() -> None:
        while True:
            await asyncio.sleep(every)
            await send({"type": "http.response.body", "body": b"line\n", "more_body": True})

    writer = asyncio.create_task(lines())
    try:
        async with asyncio.timeout(60):
            while (await receive())["type"] != "http.disconnect":
                pass
    finally:
        writer.cancel()


def _established(sock: Any) -> bool:
    """The connection is still open both ways: TCP_INFO's first byte, the state, is ESTABLISHED
    (a peer's close makes it CLOSE_WAIT, a reset CLOSE; a socket already closed is not)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1
    except OSError:
        return False


def _zstd(data: bytes, window_log: str | None) -> bytes:
    """``data`` as one zstd frame; with ``window_log``, one whose header asks for that window
    (its content size left out, so the decoder cannot size the window down)."""
    if window_log is None:
        return zstandard.compress(data)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=int(window_log),
                                                             write_content_size=False)
    packer = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return packer.compress(data) + packer.flush()


async def _reply(send: Any, status: int, body: bytes, *, content_type: bytes = b"application/json",
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info", access_log=False,
                lifespan="on")
