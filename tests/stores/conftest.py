"""Fixtures for the store contract tests: real servers, fresh databases, both implementations.

- ``postgres``, ``redis_server``, ``fresh_database_url`` and the migrated copies
  (``migrated_database_url``, ``sqlite_schema``: tests/schemas.py) come from tests/conftest.py.
- ``backend``: parametrised ``embedded`` (SQLite in tmp + memory) and ``cluster`` (PostgreSQL +
  Redis), each on a copy of a database migrated once per session; ``backend.stores`` is open,
  ``backend.clock`` a ManualClock driving the in-memory stores and the Redis counters,
  ``await backend.peer()`` another instance on the same state.

Async fixtures run on the session event loop (pyproject), so the async tests here do too:
``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from switchboard.stores import Stores
from switchboard.stores.clock import ManualClock
from switchboard.stores.factory import open_at
from switchboard.stores.protocols import AuditEntry, KeyStore, utcnow
from switchboard.stores.sql.urls import async_url
from tests.schemas import copy_sqlite
from tests.services import RedisServer


@dataclass
class Backend:
    kind: str
    database: str  # async URL
    redis: str | None
    clock: ManualClock
    stores: Stores = field(init=False)
    _opened: list[Stores] = field(default_factory=list)

    async def open(self) -> Stores:
        stores = await open_at(self.database, self.redis, clock=self.clock)
        self._opened.append(stores)
        return stores

    async def peer(self) -> Stores:
        """Another instance on the same state. Embedded state is one process's: the same stores."""
        return self.stores if self.redis is None else await self.open()

    async def close(self) -> None:
        for stores in self._opened:
            await stores.close()


async def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # A database already at the newest revision (tests/conftest.py): these tests are about the
    # stores; migrating is the subject of fresh_url's tests and tests/stores/test_migrations.py.
    if kind == "embedded":
        b = Backend("embedded", copy_sqlite(request.getfixturevalue("sqlite_schema"), tmp_path), None,
                    ManualClock())
    else:
        database = request.getfixturevalue("migrated_database_url")
        redis: RedisServer = request.getfixturevalue("redis_server")
        redis.flush()
        b = Backend("cluster", async_url(database, tmp_path), redis.url, ManualClock())
    b.stores = await b.open()
    return b


@pytest_asyncio.fixture(params=["embedded", "cluster"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each implementation in turn: the contract holds for both."""
    b = await _backend(request.param, request, tmp_path)
    yield b
    await b.close()


@pytest_asyncio.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The cluster implementation alone, for what only it has (sharing, Redis itself)."""
    b = await _backend("cluster", request, tmp_path)
    yield b
    await b.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database not yet created or migrated: a SQLite file, or a new PostgreSQL
    database."""
    if request.param == "sqlite":
        return async_url(None, tmp_path / "data")
    return async_url(request.getfixturevalue("fresh_database_url"), tmp_path)


async def revoke(keys: KeyStore, tenant_id: str, key_id: str) -> bool:
    """Revoke the key as the admin API does (``KeyStore.revoke``, audited as the gateway's own
    change); False when the tenant has no such key or it is revoked already."""

    def entry(action: str, kind: str, resource_id: str) -> AuditEntry:
        return AuditEntry(tenant_id=tenant_id, actor="system", actor_role="system", action=action,
                          resource_type=kind, resource_id=resource_id)

    revoked = await keys.revoke(tenant_id, key_id, utcnow(),
                                audited=lambda key: entry("key.revoke", "api_key", key.id),
                                budget_audited=lambda budget: entry("budget.delete", "budget", budget.id))
    return revoked is not None
