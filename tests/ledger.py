"""Reading a gateway's usage ledger from a test: its records, and waiting for some to arrive
(the ledger writes in batches behind the response)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at
from switchboard.stores.sql.urls import async_url

if TYPE_CHECKING:
    from tests.servers import Gateway


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


async def _read_all(database: str, tenant: str) -> list[UsageRecord]:
    stores = await open_at(database, None)
    try:
        return await stores.ledger.recent(tenant, 1_000_000)
    finally:
        await stores.close()


def records_of(database: str, request_id: str, tenant: str = "default") -> list[UsageRecord]:
    """Every record of ``request_id`` (several requests may share a caller's id)."""
    return [r for r in asyncio.run(_read_all(database, tenant)) if r.request_id == request_id]


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


class Metered:
    """A gateway started by ``start_gateway(config, tmp)``, an OpenAI SDK client on it with the
    master key, and the usage record of a request id (waited for)."""

    def __init__(self, config: dict[str, Any], gateway: Gateway, tmp: Path, key: str,
                 timeout: float = 30) -> None:
        self.config, self.gateway, self.tmp = config, gateway, tmp
        self.client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=timeout)

    def record(self, rid: str) -> UsageRecord:
        return wait_for(database_of(self.config, self.tmp), {rid})[rid]
