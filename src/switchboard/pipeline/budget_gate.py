"""Budgets for requests whose cost is unknown when they are made: a file's upload and a batch's
creation (http/files/). Such a request is refused with the budget stage's 429
``budget_exceeded`` while a budget that applies to the caller is exhausted (spent and reserved
at or over its limit in the current period), and reserves nothing: a batch's cost is known only
once it completes, and is then counted in the same budgets by whoever records it in the ledger
(``BudgetBook.add``). Other requests of these endpoints (lists, reads, deletes) are not gated.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from switchboard.config.schema import BudgetsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import SHOULD_RETRY, GatewayError
from switchboard.pipeline.budgets import SCOPE_HEADER, BudgetExceeded, BudgetUnavailable
from switchboard.pipeline.chain import Handler
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.periods import window
from switchboard.spend.budgets.plan import Budget

log = logging.getLogger("switchboard.budgets")

_WARN_EVERY = 10.0


class BudgetGateStage:
    name = "budgets"

    def __init__(self, config: BudgetsConfig, book: Callable[[], BudgetBook | None],
                 gated: Callable[[RequestContext], bool]) -> None:
        self._config = config
        self._book = book
        self._gated = gated  # which requests are checked (the others pass)
        self._warned = -math.inf

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        book = self._book()
        principal = ctx.principal
        if book is None or principal is None or principal.tenant_id is None or not self._gated(ctx):
            return await call_next(ctx)
        try:
            budgets = book.in_force_now(principal)
            if budgets is None:
                budgets = await book.in_force(principal)
            found = await book.exhausted(budgets) if budgets else None
        except GatewayError:
            raise
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned >= _WARN_EVERY:
                self._warned = now
                log.warning("budgets unavailable (%s: %s): requests are %s", type(exc).__name__, exc,
                            "admitted" if self._config.on_store_error == "open" else "refused")
            if self._config.on_store_error == "closed":
                raise BudgetUnavailable("budgets cannot be checked right now; try again shortly") from None
            return await call_next(ctx)
        if found is not None:
            raise refusal(budgets[found[0]], found[1])
        return await call_next(ctx)


def refusal(budget: Budget, used: int) -> GatewayError:
    headers = {SCOPE_HEADER: budget.scope}
    _, end = window(budget.period, budget.zone, datetime.now(UTC))
    if end is not None:
        headers["retry-after"] = str(max(1, math.ceil((end - datetime.now(UTC)).total_seconds())))
    else:  # a total budget never comes back: an SDK's retry cannot pass (see errors.retry_hint)
        headers[SHOULD_RETRY] = "false"
    where = f"the {budget.scope} budget ({budget.id}, {budget.shown(budget.limit)} {budget.period})"
    return BudgetExceeded(f"{where} is exhausted: {budget.shown(used)} spent or reserved", headers=headers)
