"""The terminal handler: translate, call the provider, translate back.

Operations are a table of adapter methods, so the terminal holds no per-operation branches.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from switchboard.context import Reply, RequestContext, Result, StreamReply
from switchboard.pipeline import caller_credentials
from switchboard.providers.base import JSON, StreamDecoder
from switchboard.providers.embedding_encoding import apply_encoding_format
from switchboard.upstream.client import UpstreamStream
from switchboard.upstream.request import UpstreamRequest


@dataclass(frozen=True, slots=True)
class Operation:
    """Names of the adapter methods that implement one operation."""

    build: str
    parse: str
    stream: str | None = None
    # Applied to every parsed response: canonical details no single adapter can settle.
    finish: Callable[[JSON, JSON], JSON] | None = None


OPERATIONS: dict[str, Operation] = {
    "chat": Operation("chat_request", "chat_response", "chat_stream"),
    "embeddings": Operation("embeddings_request", "embeddings_response", finish=apply_encoding_format),
    "completions": Operation("completions_request", "completions_response", "completions_stream"),
}


async def invoke(ctx: RequestContext) -> Result:
    route = ctx.route
    assert route is not None, "the route stage runs first"
    op = OPERATIONS[ctx.operation]
    adapter, target = route.adapter, route.target
    upstream: UpstreamRequest = getattr(adapter, op.build)(ctx.request, target)
    if ctx.upstream_credentials is not None:
        caller_credentials.apply(upstream, ctx.upstream_credentials)
    if ctx.upstream_headers is not None:  # e.g. the attempt's traceparent (pipeline/trace.py)
        upstream.headers = {**upstream.headers, **ctx.upstream_headers}
    if ctx.stream and op.stream is not None:
        decoder: StreamDecoder = getattr(adapter, op.stream)(ctx.request, target)
        stream = await route.client.open_stream(upstream, route.timeout)
        if stream.status >= 400:
            error = adapter.error(stream.status, stream.headers, await stream.read_all(), target)
            raise caller_credentials.blamed(ctx, error)
        ctx.mark("upstream_headers", time.perf_counter())
        return StreamReply(_relay(ctx, stream, decoder), close=stream.close)
    reply = await route.client.send(upstream, route.timeout)
    ctx.mark("upstream_done", time.perf_counter())
    if reply.status >= 400:
        raise caller_credentials.blamed(ctx, adapter.error(reply.status, reply.headers, reply.body, target))
    body: JSON = getattr(adapter, op.parse)(reply.body, target)
    if op.finish is not None:
        body = op.finish(ctx.request, body)
    ctx.usage = body.get("usage")
    return Reply(body)


async def _relay(
    ctx: RequestContext, stream: UpstreamStream, decoder: StreamDecoder
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Canonical chunks in batches, one batch per upstream read, so the edge writes each batch
    to the client at once instead of one socket write per chunk."""
    async with aclosing(stream.chunks()) as data:
        async for piece in data:
            batch = decoder.feed(piece)
            if batch:
                _note_usage(ctx, batch)
                yield batch
    batch = decoder.close()
    if batch:
        _note_usage(ctx, batch)
        yield batch


def _note_usage(ctx: RequestContext, batch: list[dict[str, Any]]) -> None:
    for chunk in batch:
        if chunk.get("usage"):
            ctx.usage = chunk["usage"]
