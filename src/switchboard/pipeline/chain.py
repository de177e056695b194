"""The stage interface, its composition, and helpers for stages that act on results.

A stage is an async callable ``stage(ctx, call_next) -> Result``. It may short-circuit by
returning without calling ``call_next`` (an auth failure raises, a cache hit returns), do work
after ``await call_next(ctx)``, and add a map to a :class:`StreamReply`'s batches to act on chunks.
Work that must happen once the response is out (accounting, logging) is registered with
``ctx.after(callback)``: the edge runs it after the last byte, also on errors and disconnects.
A stage that receives a stream and then fails must close it (``await reply.aclose()``); the
edge closes every stream it was given, however it ends. The chain is folded once at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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
        handler = _bound(stage.__call__, handler)
    return handler


def _bound(call: Callable[[RequestContext, Handler], Awaitable[Result]], call_next: Handler) -> Handler:
    """``call`` with its next handler: a plain function handing back the stage's coroutine (no
    wrapper coroutine, no frame of its own left on the stack). Not ``partial(call,
    call_next=...)``: a partial with a keyword copies its keywords into a new dict and unpacks
    them again on every call, about 1,000 CPU instructions a stage, some 15,000 a request."""

    def handler(ctx: RequestContext) -> Awaitable[Result]:
        return call(ctx, call_next)

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
    a :class:`StreamReply`, with the exception that ended it (``None`` when it ran to the end,
    GeneratorExit when it was closed before its end); never for a stream closed before it
    started. A stream is not wrapped: the map and the callback are added to its
    :class:`~switchboard.context.Batches`, the same stream is returned.
    """
    if isinstance(result, StreamReply):
        result.chunks.add(batch, done)
        return result
    if body is not None and isinstance(result, Reply):
        result.body = body(result.body)
    if done is not None:
        done(None)
    return result
