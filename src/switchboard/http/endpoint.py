"""The edge of the pipeline: one ASGI handler per inbound operation.

It bounds and reads the body, builds the request context, runs the stage chain, and writes the
result in the inbound API's wire format. Errors become that API's error body with the error's
status; after a stream has started they become an error event inside the stream.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from switchboard.context import Chunk, Reply, RequestContext, StreamReply
from switchboard.errors import GatewayError, InternalError, UnsupportedMediaType
from switchboard.http.asgi import (
    JSON_CT,
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    encode_headers,
    header_dict,
    read_body,
    send_bytes,
)
from switchboard.http.disconnect import ClientGone, until_disconnect
from switchboard.http.inbound import InboundAPI
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.http")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)


def request_id(headers: dict[str, str]) -> str:
    # A caller's id is echoed back only when it cannot inject anything into our headers.
    given = headers.get("x-request-id")
    if given and _SAFE_REQUEST_ID.match(given):
        return given
    # Unique per process start; needs no randomness per request.
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def check_content_type(headers: dict[str, str]) -> None:
    value = headers.get("content-type")
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"unsupported content type '{media[:100]}'; send application/json")


class PipelineEndpoint:
    def __init__(self, inbound: InboundAPI, chain: Handler, max_body_bytes: int) -> None:
        self.inbound = inbound
        self._chain = chain
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_dict(scope)
        rid = request_id(headers)
        extra = [(b"x-request-id", rid.encode())]
        try:
            check_content_type(headers)
            body = await read_body(receive, self._limit, headers.get("content-length"))
        except GatewayError as err:
            await self._send_error(send, err, extra)
            return
        except ConnectionAbortedError:
            return
        ctx = RequestContext(rid, self.inbound.operation, self.inbound, headers, body, time.perf_counter())
        try:
            await until_disconnect(receive, self._serve(ctx, send, extra))
        except ClientGone:
            log.info("request %s: client disconnected; upstream call cancelled", rid)

    async def _serve(self, ctx: RequestContext, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        try:
            result = await self._chain(ctx)
        except GatewayError as err:
            await self._send_error(send, err, _with(extra, ctx.response_headers))
            return
        except Exception:
            log.exception("request %s: unexpected error", ctx.request_id)
            error = InternalError(f"internal error (request id {ctx.request_id})")
            await self._send_error(send, error, _with(extra, ctx.response_headers))
            return
        headers = _with(extra, ctx.response_headers)
        if isinstance(result, Reply):
            await send_bytes(send, result.status, self.inbound.encode(ctx, result.body), headers, JSON_CT)
            return
        await self._stream(ctx, result, send, headers)

    async def _stream(
        self, ctx: RequestContext, result: StreamReply, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        chunks = _internal_errors_as_gateway(ctx, result.chunks)
        async with aclosing(self.inbound.encode_stream(ctx, chunks)) as events:
            async for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _send_error(self, send: Send, err: GatewayError, extra: list[tuple[bytes, bytes]]) -> None:
        await send_bytes(send, err.status, self.inbound.encode_error(err), _with(extra, err.headers), JSON_CT)


def _with(headers: list[tuple[bytes, bytes]], more: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return headers + encode_headers(more) if more else headers


async def _internal_errors_as_gateway(
    ctx: RequestContext, batches: AsyncGenerator[list[Chunk], None]
) -> AsyncGenerator[list[Chunk], None]:
    """Pass batches through; an unexpected failure becomes an InternalError the encoder can write."""
    # Closing this generator closes the upstream stream too, also when the client went away.
    async with aclosing(batches) as source:
        try:
            async for batch in source:
                yield batch
        except GatewayError:
            raise
        except Exception:
            log.exception("request %s: unexpected error mid-stream", ctx.request_id)
            raise InternalError(f"internal error (request id {ctx.request_id})") from None
