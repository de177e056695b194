"""Parse and validate the body into the canonical request, in the inbound API's own format."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from switchboard.context import LARGE_BODY_BYTES, RequestContext, Result
from switchboard.errors import GatewayError
from switchboard.pipeline.chain import Handler


class DecodeStage:
    name = "decode"

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        try:
            if len(ctx.body) <= LARGE_BODY_BYTES:
                ctx.inbound.decode(ctx)
            else:
                # A large body's parse and validation (megabytes of JSON, thousands of messages
                # checked one by one) run in a worker thread: orjson lets go of the GIL while it
                # parses and the validation's loop is preempted, so the event loop keeps serving
                # the other requests. A small body stays inline: no thread hop on the common path.
                await asyncio.to_thread(ctx.inbound.decode, ctx)
        except GatewayError as error:
            # Refused by validation: the metrics and the failure log still name the model the
            # body named (the metrics only if the configuration knows it: observability/metrics.py).
            # Error path only: the body is parsed again, off the event loop when it is large.
            if not ctx.request and error.code != "invalid_json" and ctx.body:
                body = ctx.body
                small = len(body) <= LARGE_BODY_BYTES
                ctx.request = named(body) if small else await asyncio.to_thread(named, body)
            raise
        return await call_next(ctx)


def named(body: bytes) -> dict[str, Any]:
    """``{"model": <name>}`` when ``body`` is a JSON object whose ``model`` is a string, else empty."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return {"model": model} if isinstance(model, str) else {}
