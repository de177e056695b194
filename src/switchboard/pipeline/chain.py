"""The stage interface and its composition.

A stage is an async callable ``stage(ctx, call_next) -> Result``. It may short-circuit by
returning without calling ``call_next`` (an auth failure raises, a cache hit returns), do work
after ``await call_next(ctx)``, and wrap a :class:`StreamReply`'s iterator to act on chunks.
Cleanup that must happen belongs in ``finally`` (and for streams in the iterator wrapper) so it
also runs when the client disconnects. The chain is folded once at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from switchboard.context import RequestContext, Result

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
