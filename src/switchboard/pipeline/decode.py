"""Parse and validate the body into the canonical request, in the inbound API's own format."""

from __future__ import annotations

from switchboard.context import RequestContext, Result
from switchboard.pipeline.chain import Handler


class DecodeStage:
    name = "decode"

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        ctx.inbound.decode(ctx)
        return await call_next(ctx)
