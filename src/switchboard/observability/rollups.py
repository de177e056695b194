"""Retention of the analytics rollups (``analytics.retention_days``): at start and every hour the
rollups of older hours are deleted. Every instance runs it; deleting what is already gone is a
no-op, so instances need no coordination."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from switchboard.background import stop_task
from switchboard.stores.protocols import AnalyticsStore

log = logging.getLogger("switchboard.analytics")


class RollupRetention:
    def __init__(self, store: AnalyticsStore, days: int, interval_seconds: float = 3600.0) -> None:
        self._store = store
        self._keep = timedelta(days=days)
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now: datetime | None = None) -> int:
        """Delete the rollups older than the retention; how many rows went (0 after a failure,
        which the next round retries)."""
        try:
            deleted = await self._store.purge((now or datetime.now(UTC)) - self._keep)
        except Exception as exc:
            log.warning("analytics retention failed (%s: %s); retrying in %.0fs",
                        type(exc).__name__, exc, self._interval)
            return 0
        if deleted:
            log.info("analytics retention: %d rollup rows older than %s deleted", deleted, self._keep)
        return deleted

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="analytics-retention")

    async def _run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
