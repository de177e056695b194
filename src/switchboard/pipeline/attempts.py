"""Try the route stage's candidates: retries within the group, then its fallback groups.

Stub: one attempt, on the first candidate, reported to the router (deployment statistics and
health) when it ends: a stream when its last chunk has been relayed.
"""

from __future__ import annotations

import time

from switchboard.context import RequestContext, Result
from switchboard.errors import GatewayError
from switchboard.pipeline.chain import Handler, map_result
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
        route = ctx.route
        if route is None:
            return await call_next(ctx)
        router = self._router
        router.started(route, (ctx.needs or ANYWHERE).prompt_tokens)
        start = time.perf_counter()
        try:
            result = await call_next(ctx)
        except GatewayError as error:
            router.finished(route, error, time.perf_counter() - start)
            raise
        except BaseException:
            router.finished(route, GatewayError("the attempt ended early"), time.perf_counter() - start)
            raise
        first: list[float] = []

        def batch(chunks: list[dict[str, object]]) -> list[dict[str, object]]:
            if not first:
                first.append(time.perf_counter() - start)
            return chunks

        def done(error: BaseException | None) -> None:
            failure = None if error is None else (
                error if isinstance(error, GatewayError) else GatewayError("the stream ended early"))
            router.finished(route, failure, time.perf_counter() - start, first[0] if first else None)

        return map_result(result, batch=batch, done=done)
