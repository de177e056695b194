"""The observe stage: outermost, so it sees every request (a refused key too), and hands each
finished request to the observers (metrics, alerts) after the response is written."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from switchboard.context import RequestContext, Result
from switchboard.observability.observers import Observer
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.observe")


class ObserveStage:
    name = "observe"

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        ctx.after(self._after)
        return await call_next(ctx)

    async def _after(self, ctx: RequestContext) -> None:
        for observer in self._observers:
            try:
                observer.observe(ctx)
            except Exception:  # an observer never fails the others
                log.exception("request %s: observer %s failed", ctx.request_id, type(observer).__name__)
