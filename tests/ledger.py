"""Reading a gateway's usage ledger from a test: its records, and waiting for some to arrive
(the ledger writes in batches behind the response)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at
from switchboard.stores.sql.urls import async_url


def database_of(config: dict[str, Any], tmp: Path) -> str:
    """The database a gateway started by ``start_gateway(config, tmp)`` writes to."""
    return async_url((config.get("database") or {}).get("url"), tmp / "data")


async def _read(database: str, tenant: str) -> dict[str, UsageRecord]:
    stores = await open_at(database, None)
    try:
        return {r.request_id: r for r in await stores.ledger.recent(tenant, 1_000_000)}
    finally:
        await stores.close()


def records(database: str, tenant: str = "default") -> dict[str, UsageRecord]:
    return asyncio.run(_read(database, tenant))


def wait_for(database: str, ids: set[str], timeout: float = 20.0, tenant: str = "default",
             ) -> dict[str, UsageRecord]:
    """The ledger's records once every id in ``ids`` is there (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(database, tenant)
        if ids <= set(found):
            return found
        if time.monotonic() > deadline:
            missing = sorted(ids - set(found))
            raise AssertionError(f"{len(missing)} request id(s) missing from the ledger: {missing[:5]}")
        time.sleep(0.1)
