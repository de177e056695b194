"""Try the route stage's candidates: retries within the group, then its fallback groups.

Stub: one attempt, on the first candidate.
"""

from __future__ import annotations

from switchboard.context import RequestContext, Result
from switchboard.pipeline.chain import Handler
from switchboard.routing.router import ANYWHERE, Router


class AttemptStage:
    name = "attempts"

    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        if ctx.candidates:
            ctx.route = ctx.candidates[0]
        elif ctx.group is not None and ctx.candidates is not None:
            raise self._router.refusal(ctx.group, ctx.needs or ANYWHERE)
        return await call_next(ctx)
