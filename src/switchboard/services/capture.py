"""The request log's bodies of service calls, as ``request_log.bodies`` selects them (a policy's
``model`` matches ``service:<name>``): the request body as it was forwarded and the response
body as it was relayed, each collected up to ``request_log.max_body_bytes`` while streaming (the
rest is not held), redacted after the response was written and queued to the body writer; for
a call the gateway refused, its error. Added to the services chain only when a policy is set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from switchboard.context import Chunk, RequestContext, Result
from switchboard.errors import GatewayError
from switchboard.observability.request_log import Keep
from switchboard.pipeline.capture import BodyCapture, cut
from switchboard.pipeline.chain import Handler, map_result
from switchboard.services.context import Collected, ServiceContext
from switchboard.stores.protocols import RequestBody


class _Capture:
    __slots__ = ("created_at", "error", "keep", "response", "tenant")

    def __init__(self, keep: Keep, tenant: str, created_at: datetime) -> None:
        self.keep = keep
        self.tenant = tenant
        self.created_at = created_at
        self.response: Collected | None = None
        # The error as the log shows it, not the exception (see pipeline/capture.py's _Capture).
        self.error: dict[str, Any] | None = None


class ServiceCaptureStage(BodyCapture):
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        assert isinstance(ctx, ServiceContext) and ctx.service is not None
        decided = self.decide(ctx, ctx.service.subject)
        if decided is None:
            return await call_next(ctx)
        keep = decided[0]
        capture = _Capture(*decided)
        if keep.request:
            ctx.request_capture = Collected(self._limit)
        ctx.after(lambda c: self._after(c, capture))
        try:
            result = await call_next(ctx)
        except GatewayError as exc:
            capture.error = self.shown_error(exc)
            raise
        if not keep.response:
            return result
        collected = capture.response = Collected(self._limit)

        def tee(batch: list[Chunk]) -> list[Chunk]:
            if not collected.truncated:
                for chunk in batch:
                    collected.add(chunk["data"])
            return batch

        return map_result(result, batch=tee)

    async def _after(self, ctx: RequestContext, capture: _Capture) -> None:
        writer = self._writer()
        if writer is not None:
            writer.put(self.body(ctx, capture))

    def body(self, ctx: RequestContext, capture: _Capture) -> RequestBody:
        assert isinstance(ctx, ServiceContext)
        keep, redact, truncated = capture.keep, self._redactor, False
        request = response = None
        if keep.request and ctx.request_capture is not None:
            request, cut_request = cut(self.json_text(bytes(ctx.request_capture.data)), self._limit)
            truncated |= cut_request or ctx.request_capture.truncated
        if keep.response:
            if capture.error is not None:
                response = orjson.dumps(redact.json(self.sent_error(ctx, capture.error))).decode()
            elif capture.response is not None:
                response, cut_response = cut(self.json_text(bytes(capture.response.data)), self._limit)
                truncated |= cut_response or capture.response.truncated
        headers = redact.headers(ctx.headers) if keep.headers else None
        return RequestBody(request_id=ctx.request_id, tenant_id=capture.tenant, created_at=capture.created_at,
                           request=request, response=response, request_headers=headers, truncated=truncated,
                           log_id=ctx.log_id())
