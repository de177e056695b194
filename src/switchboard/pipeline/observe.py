"""The observe stage: outermost, so it sees every request (a refused key too), and hands each
finished request to the observers (metrics, alerts) after the response is written.

With metrics on it also keeps the in-flight gauges (a request from here to its last byte, a
stream from its first batch) and counts the refusals it sees go by (rate limits, budgets, by
scope); with metrics off none of that is here."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from switchboard.context import RequestContext, Result, StreamReply
from switchboard.errors import GatewayError
from switchboard.observability.metrics import Metrics
from switchboard.observability.observers import Observer
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.observe")


class ObserveStage:
    name = "observe"

    def __init__(self, observers: Sequence[Observer], metrics: Metrics | None = None) -> None:
        self._observers = tuple(observers)
        self._metrics = metrics

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        metrics = self._metrics
        if metrics is None:
            try:
                return await call_next(ctx)
            finally:
                ctx.after(self._after)  # registered last: see below
        metrics.began()  # ended by its observe(), in _after, however the request ends
        try:
            result = await call_next(ctx)
        except GatewayError as error:
            metrics.refused(error)
            raise
        finally:
            # Registered last, once the inner stages have registered theirs, so the observers run
            # after the usage stage has recorded what a failed, cut or abandoned call cost
            # (ctx.spent): the token and cost counters then match the ledger.
            ctx.after(self._after)
        if type(result) is StreamReply:  # the edge starts writing it at once (outcome.stream)
            metrics.stream_began()
        return result

    def _after(self, ctx: RequestContext) -> None:
        # A plain callback: nothing here waits (an awaited coroutine would cost every request).
        for observer in self._observers:
            try:
                observer.observe(ctx)
            except Exception:  # an observer never fails the others
                log.exception("request %s: observer %s failed", ctx.request_id, type(observer).__name__)
