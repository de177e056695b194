"""Key chains whose keys all expired: their budgets ended as a revoke of the chain's last key
ends them (the budgets set on them deleted and audited by the system, their incidents and the
chain's own budget's resolved: ``http/admin/budgets.end_chain``, which the gateway hands in).

A revoke ends a chain at once; an expiry happens with no request behind it, so every instance
looks, every ``budgets.expired_keys_seconds``, whether alert rules are configured or not: one
query over the key budgets and the claims of keys' own budgets (``BudgetStore.ended_key_chains``;
a chain whose only budget is its own, ``max_budget_usd``, has only its claims to be found by).
Every instance may find the same chain at the same moment (and a revoke may end it meanwhile):
ending it is safe to repeat (the delete returns only what it deleted, so each budget is audited
once, and the store resolves each incident once), and a chain whose budgets and claims are gone
is not found again. An incident the store refused to resolve then is not left open: the alerts'
evaluation resolves any key budget's incident whose chain cannot spend (``Alerts.key_live``).

The same task forgets, once an hour, the threshold claims of periods that ended
(``BudgetStore.purge_alerts``), which would otherwise pile up for ever: a claim is past once its
period's counter is (``COUNTER_MARGIN`` after the period's end; a request reserved before the end
may settle, and claim, in it until then). Deleting is safe on several instances at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from switchboard.background import stop_task
from switchboard.spend.budgets.periods import COUNTER_MARGIN, window, zone
from switchboard.stores.protocols import BudgetStore
from switchboard.stores.protocols.budgets import AlertsCutoff

log = logging.getLogger("switchboard.budgets")

# End the budgets of the key chain (tenant, lineage), no key of which may spend any more.
EndChain = Callable[[str, str], Awaitable[None]]
# At most one warning per this many seconds while the search or the ending keeps failing.
_WARN_SECONDS = 60.0
# Claims of ended periods forgotten this often: a few rows a period per budget, no hurry.
PURGE_SECONDS = 3600.0


def claims_cutoff(default_zone: str, now: datetime) -> AlertsCutoff:
    """Per (period, timezone): the start of the period holding ``now`` less ``COUNTER_MARGIN``;
    claims of periods starting before it are past. None for a total budget (one period), and
    for a zone no longer known (its claims kept rather than guessed at)."""
    def cutoff(period: str, timezone: str | None) -> datetime | None:
        if period == "total":
            return None
        try:
            return window(period, zone(timezone or default_zone), now - COUNTER_MARGIN)[0]
        except ValueError:
            return None
    return cutoff


class ExpiredChains:
    def __init__(self, store: BudgetStore, end: EndChain, interval: float, default_zone: str = "UTC") -> None:
        self._store = store
        self._end = end
        self._interval = interval
        self._zone = default_zone  # budgets.timezone: that of budgets set without one, and keys' own
        self._purged = -PURGE_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._warned = -_WARN_SECONDS

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="expired-key-chains")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.run_once()
            if time.monotonic() - self._purged >= PURGE_SECONDS:
                self._purged = time.monotonic()
                await self.purge_once()

    async def purge_once(self) -> int:
        """Forget the threshold claims of ended periods; how many. A failure is logged, not
        raised: the next hour's purge takes what is left."""
        try:
            return await self._store.purge_alerts(claims_cutoff(self._zone, datetime.now(UTC)))
        except Exception as exc:
            self._complain(exc)
            return 0

    async def run_once(self) -> int:
        """End every chain found; how many were. A failure is logged, not raised: the next round
        finds what is left."""
        try:
            chains = await self._store.ended_key_chains(datetime.now(UTC))
        except Exception as exc:
            self._complain(exc)
            return 0
        ended = 0
        for tenant, lineage in chains:
            try:
                await self._end(tenant, lineage)
            except Exception as exc:  # the other chains are ended all the same
                self._complain(exc)
            else:
                ended += 1
        return ended

    def _complain(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_SECONDS:
            self._warned = now
            log.warning("budgets of expired key chains not ended (%s); tried again in %gs",
                        type(exc).__name__, self._interval)
