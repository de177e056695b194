"""Key chains whose keys all expired: their budgets ended as a revoke of the chain's last key
ends them (the budgets set on them deleted and audited by the system, their incidents and the
chain's own budget's resolved: ``http/admin/budgets.end_chain``, which the gateway hands in).

A revoke ends a chain at once; an expiry happens with no request behind it, so every instance
looks, every ``budgets.expired_keys_seconds``, whether alert rules are configured or not: one
query over the key budgets (``BudgetStore.ended_key_chains``). Every instance may find the same
chain at the same moment (and a revoke may end it meanwhile): ending it is safe to repeat (the
delete returns only what it deleted, so each budget is audited once, and the store resolves each
incident once), and a chain whose budgets are gone is not found again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from switchboard.background import stop_task
from switchboard.stores.protocols import BudgetStore

log = logging.getLogger("switchboard.budgets")

# End the budgets of the key chain (tenant, lineage), no key of which may spend any more.
EndChain = Callable[[str, str], Awaitable[None]]
# At most one warning per this many seconds while the search or the ending keeps failing.
_WARN_SECONDS = 60.0


class ExpiredChains:
    def __init__(self, store: BudgetStore, end: EndChain, interval: float) -> None:
        self._store = store
        self._end = end
        self._interval = interval
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
