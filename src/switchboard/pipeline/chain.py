"""The stage interface, its composition, and helpers for stages that act on results.

A stage is an async callable ``stage(ctx, call_next) -> Result``. It may short-circuit by
returning without calling ``call_next`` (an auth failure raises, a cache hit returns), do work
after ``await call_next(ctx)``, and wrap a :class:`StreamReply`'s iterator to act on chunks.
Work that must happen once the response is out (accounting, logging) is registered with
``ctx.after(callback)``: the edge runs it after the last byte, also on errors and disconnects.
A stage that receives a stream and then fails must close it (``await reply.aclose()``);
:func:`map_result` does that for the stages built on it. The chain is folded once at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from functools import partial
from typing import Any, Protocol

from switchboard.context import Chunk, Reply, RequestContext, Result, StreamReply

Handler = Callable[[RequestContext], Awaitable[Result]]


class Stage(Protocol):
    name: str

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result: ...


def build_chain(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Fold ``stages`` (outermost first) around ``terminal``."""
    handler = terminal
    for stage in reversed(stages):
        # A partial, not a wrapper coroutine: one frame less per stage on every request.
        handler = partial(stage.__call__, call_next=handler)
    return handler


def map_result(
    result: Result,
    *,
    body: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch: Callable[[list[Chunk]], list[Chunk]] | None = None,
    done: Callable[[BaseException | None], None] | None = None,
) -> Result:
    """Act on a result the same way whether it is complete or a stream.

    ``body`` transforms a complete reply's body (not a :class:`RawReply`'s, already encoded);
    ``batch`` transforms each batch of a stream (an empty list drops the batch); ``done`` is
    called once the reply is complete: at once for a complete reply, and when a stream ends for
    a :class:`StreamReply`, with the exception that ended it (``None`` when it ran to the end).
    The wrapped stream closes the inner one however it ends, so the upstream response is
    released at once.
    """
    if isinstance(result, StreamReply):
        return StreamReply(_mapped(result, batch, done), close=result.aclose, native=result.native)
    if body is not None and isinstance(result, Reply):
        result.body = body(result.body)
    if done is not None:
        done(None)
    return result


async def _mapped(
    inner: StreamReply,
    batch: Callable[[list[Chunk]], list[Chunk]] | None,
    done: Callable[[BaseException | None], None] | None,
) -> AsyncGenerator[list[Chunk], None]:
    error: BaseException | None = None
    try:
        async with aclosing(inner.chunks) as source:
            async for item in source:
                out = batch(item) if batch is not None else item
                if out:
                    yield out
    except BaseException as exc:
        error = exc
        raise
    finally:
        await inner.aclose()
        if done is not None:
            done(error)
