"""Opens the five stores the settings ask for, and closes them.

Embedded (no ``redis``): counters, cache and change feed live in this process, so they are right
for one instance with one worker only. Cluster (``redis.url``): they live in Redis, shared by
every instance and worker. Keys and the usage ledger are always in SQL: the SQLite file in the
data dir, or PostgreSQL when ``database.url`` says so. Opening applies pending migrations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.background import LAST_WRITE_SECONDS, finish_within
from switchboard.config.paths import data_dir as default_data_dir
from switchboard.config.schema import Settings
from switchboard.stores.checks import Probe, StoreChecks
from switchboard.stores.clock import Clock, system_clock
from switchboard.stores.errors import StoreError
from switchboard.stores.memory.budgets import MemoryBudgetCounters
from switchboard.stores.memory.cache import MemoryCache
from switchboard.stores.memory.feed import MemoryFeed
from switchboard.stores.memory.limits import MemoryRateLimiter
from switchboard.stores.protocols import (
    Admission,
    AnalyticsStore,
    ApiStore,
    AuditLog,
    BudgetCounters,
    BudgetStore,
    ChangeFeed,
    FileStore,
    HealthStore,
    IncidentStore,
    KeyStore,
    LimitStore,
    LogSearch,
    McpStore,
    PromptStore,
    ProviderStore,
    RateLimiter,
    RequestLogStore,
    ResponseStore,
    RoutingStore,
    ServiceStore,
    SessionStore,
    SharedCache,
    SubscriptionStore,
    TenancyStore,
    TokenRevocationStore,
    UsageLedger,
)
from switchboard.stores.sql.analytics import SqlAnalyticsStore
from switchboard.stores.sql.api_sessions import SqlSessionStore
from switchboard.stores.sql.apis import SqlApiStore
from switchboard.stores.sql.audit import SqlAuditLog
from switchboard.stores.sql.budgets import SqlBudgetStore
from switchboard.stores.sql.engine import create_engine, describe, ping, shown
from switchboard.stores.sql.files import SqlFileStore
from switchboard.stores.sql.incidents import SqlIncidentStore
from switchboard.stores.sql.keys import SqlKeyStore
from switchboard.stores.sql.ledger import SqlUsageLedger
from switchboard.stores.sql.limits import SqlLimitStore
from switchboard.stores.sql.log_search import SqlLogSearch
from switchboard.stores.sql.mcp import SqlMcpStore
from switchboard.stores.sql.migrate import upgrade
from switchboard.stores.sql.prompts import SqlPromptStore
from switchboard.stores.sql.providers import SqlProviderStore
from switchboard.stores.sql.request_log import SqlRequestLog
from switchboard.stores.sql.responses import SqlResponseStore
from switchboard.stores.sql.revocations import SqlTokenRevocationStore
from switchboard.stores.sql.routing import SqlRoutingStore
from switchboard.stores.sql.services import SqlServiceStore
from switchboard.stores.sql.subscriptions import SqlSubscriptionStore
from switchboard.stores.sql.tenancy import SqlTenancyStore
from switchboard.stores.sql.urls import async_url, sqlite_path

log = logging.getLogger("switchboard.stores")

# Embedded, the in-memory caches' bounds (the least recently written go first when full): MCP
# client sessions in one, OAuth states and spent links in the other (MemoryCache's 10,000), so
# neither can evict the other's entries (docs/mcp.md).
MAX_CLIENT_SESSIONS = 10_000


@dataclass
class Stores:
    keys: KeyStore
    audit: AuditLog
    tenancy: TenancyStore  # tenants, teams, users and service accounts
    ledger: UsageLedger
    subscriptions: SubscriptionStore
    cache: SharedCache  # MCP OAuth states and spent authorization links
    # MCP client sessions (mcp/passthrough.py): embedded, an in-memory cache of their own, so a
    # burst of OAuth sign-ins cannot evict live sessions; in a cluster the same Redis cache.
    sessions: SharedCache
    feed: ChangeFeed
    providers: ProviderStore  # providers, credentials and models managed at run time
    database: str  # shown URL, password hidden
    revision: str  # schema revision after migrating
    shared: bool  # rate-limit windows, cache and feed shared through Redis
    # Rate-limit windows (limits/): in this process, or in Redis.
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    limits: LimitStore | None = None  # limits set through the admin API (always in SQL)
    budgets: BudgetStore | None = None  # budgets set through the admin API (always in SQL)
    # Budget counters (spent and reserved per budget and period): in this process, or in Redis.
    budget_counters: BudgetCounters = field(default_factory=MemoryBudgetCounters)
    # The limits and budgets of a request in one call (Redis: one script); None embedded.
    admission: Admission | None = None
    routing: RoutingStore | None = None  # run-time weights of deployments (always in SQL)
    # Deployment health shared by every instance (Redis); None: in this process only.
    health: HealthStore | None = None
    # Observability (docs/observability.md): the request log's bodies and retention, its search,
    # the analytics rollups, alert incidents. Always in SQL.
    request_log: RequestLogStore | None = None

    log_search: LogSearch | None = None

    analytics: AnalyticsStore | None = None

    incidents: IncidentStore | None = None
    # Files and batches created through the gateway, with their owners (always in SQL).
    files: FileStore | None = None
    # Stored Responses API responses (http/responses/). Always in SQL.
    responses: ResponseStore | None = None
    # The prompt registry and prompts published as APIs (prompts/, apis/). Always in SQL.
    prompts: PromptStore | None = None
    apis: ApiStore | None = None
    # Sessions of multi-turn prompt APIs (apis/sessions.py). Always in SQL.
    api_sessions: SessionStore | None = None
    # Plain REST services registered through the admin API (services/). Always in SQL.
    services: ServiceStore | None = None
    # MCP servers managed at run time and per-user OAuth tokens (mcp/). Always in SQL.
    mcp: McpStore | None = None
    # JWT callers cut off by an admin (access/revocations.py keeps them in memory). Always in SQL.
    token_revocations: TokenRevocationStore | None = None
    # Whether the database (and Redis) answer, for /health/ready (stores/checks.py).
    checks: StoreChecks = field(default_factory=lambda: StoreChecks({}))
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)

    async def close(self) -> None:
        """Close in reverse order of opening; safe to call twice."""
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("closing a store failed")


def data_dir(settings: Settings | None) -> Path:
    """``server.data_dir``, else ``$SWITCHBOARD_DATA_DIR``, else ``~/.switchboard``."""
    return (settings.server.data_dir if settings else None) or default_data_dir()


def database_url(settings: Settings | None) -> str:
    """The async URL of the configured database; no settings: the SQLite file in the data dir."""
    url = settings.database.url if settings else None
    return async_url(None if url is None else url.get_secret_value(), data_dir(settings))


async def open_database(url: str) -> tuple[AsyncEngine, str]:
    """The engine for ``url`` (as ``async_url`` returns it), with migrations applied."""
    db_file = sqlite_path(url)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Key hashes and usage: readable by the owner only (SQLite gives its -wal and -shm files
        # the same mode). An empty file is a valid empty database.
        os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        engine = create_engine(url)
    except ValueError as exc:  # the dialect parses some of the query's options when it is made
        raise StoreError(f"cannot open the database {shown(url)}: invalid URL option ({exc})") from None
    try:
        revision = await upgrade(engine)
    except StoreError:
        await engine.dispose()
        raise
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        await engine.dispose()
        raise StoreError(f"cannot open the database {shown(url)}: {describe(exc)}") from None
    except TypeError as exc:
        # The driver refused an option from the URL's query string.
        await engine.dispose()
        if "unexpected keyword argument" not in str(exc):
            raise
        raise StoreError(f"cannot open the database {shown(url)}: unsupported URL option ({exc})") from None
    return engine, revision


async def open_stores(settings: Settings, *, clock: Clock | None = None) -> Stores:
    redis = settings.redis
    if redis is None:
        return await open_at(database_url(settings), None, clock=clock)
    return await open_at(database_url(settings), redis.url.get_secret_value(), clock=clock,
                         publish_timeout=redis.publish_timeout_seconds)


async def open_at(database: str, redis_url: str | None, *, clock: Clock | None = None,
                  publish_timeout: float | None = None) -> Stores:
    """The stores on a database URL (as ``async_url`` returns it) and an optional Redis URL.
    ``clock`` replaces the time source of the in-memory stores and of the Redis counters;
    ``publish_timeout`` bounds a change-feed publish on Redis (its default when None)."""
    engine, revision = await open_database(database)
    closers: list[Callable[[], Awaitable[None]]] = [partial(close_engine, engine)]
    keys, ledger, audit = SqlKeyStore(engine), SqlUsageLedger(engine), SqlAuditLog(engine)
    cache: SharedCache
    sessions: SharedCache
    feed: ChangeFeed
    limiter: RateLimiter
    budget_counters: BudgetCounters
    admission: Admission | None = None
    health: HealthStore | None = None
    probes: dict[str, Probe] = {"database": partial(ping, engine)}
    if redis_url is None:
        mem_cache, mem_feed = MemoryCache(clock or system_clock), MemoryFeed()
        mem_sessions = MemoryCache(clock or system_clock, max_entries=MAX_CLIENT_SESSIONS)
        closers += [mem_cache.close, mem_sessions.close, mem_feed.close]
        cache, sessions, feed = mem_cache, mem_sessions, mem_feed
        mem_limiter = MemoryRateLimiter(clock or system_clock)
        closers.append(mem_limiter.close)
        limiter = mem_limiter
        budget_counters = MemoryBudgetCounters(clock or system_clock)
    else:
        from switchboard.stores.redis.admission import RedisAdmission
        from switchboard.stores.redis.batch import batch_for
        from switchboard.stores.redis.budgets import RedisBudgetCounters
        from switchboard.stores.redis.cache import RedisCache
        from switchboard.stores.redis.client import connect
        from switchboard.stores.redis.feed import RedisFeed
        from switchboard.stores.redis.health import RedisHealth
        from switchboard.stores.redis.limits import RedisRateLimiter

        try:
            client = await connect(redis_url)
        except StoreError:
            await engine.dispose()
            raise
        redis_feed = RedisFeed(client) if publish_timeout is None else RedisFeed(client, publish_timeout)
        closers += [client.aclose, redis_feed.close, batch_for(client).close]
        cache, feed = RedisCache(client), redis_feed
        sessions = cache
        redis_limiter = RedisRateLimiter(client, clock)
        closers.append(redis_limiter.close)  # first: its waiting corrections, while Redis is open
        redis_counters = RedisBudgetCounters(client, clock)
        limiter, budget_counters = redis_limiter, redis_counters
        admission = RedisAdmission(client, redis_limiter, redis_counters)
        health = RedisHealth(client, clock)
        probes["redis"] = client.ping
    # The SQLite file is read in this process: a slow answer there is a busy host, not an outage.
    checks = StoreChecks(probes, local=["database"] if sqlite_path(database) is not None else [])
    closers.append(checks.close)  # first: a check under way, while the stores are open
    log.info(
        "database %s at revision %s; counters, cache and change feed %s",
        shown(database),
        revision,
        "in redis" if redis_url is not None else "in this process",
    )
    return Stores(
        keys=keys,
        audit=audit,
        tenancy=SqlTenancyStore(engine),
        ledger=ledger,
        subscriptions=SqlSubscriptionStore(engine),
        cache=cache,
        sessions=sessions,
        feed=feed,
        providers=SqlProviderStore(engine),
        database=shown(database),
        revision=revision,
        shared=redis_url is not None,
        limiter=limiter,
        limits=SqlLimitStore(engine),
        budgets=SqlBudgetStore(engine),
        budget_counters=budget_counters,
        admission=admission,
        routing=SqlRoutingStore(engine),
        health=health,
        request_log=SqlRequestLog(engine),
        analytics=SqlAnalyticsStore(engine),
        incidents=SqlIncidentStore(engine),
        log_search=SqlLogSearch(engine),
        files=SqlFileStore(engine),
        responses=SqlResponseStore(engine),
        prompts=SqlPromptStore(engine),
        apis=SqlApiStore(engine),
        api_sessions=SqlSessionStore(engine),
        services=SqlServiceStore(engine),
        mcp=SqlMcpStore(engine),
        token_revocations=SqlTokenRevocationStore(engine),
        checks=checks,
        _closers=closers,
    )


async def close_engine(engine: AsyncEngine) -> None:
    """Close the pool's connections, within the bound of a last write: on SQLite a connection's
    close waits behind a statement still waiting for the file's write lock (held by another
    process), up to the busy timeout (10 s). What is left then ends with the process."""
    try:
        await finish_within(LAST_WRITE_SECONDS, engine.dispose())
    except TimeoutError:
        log.warning("closing the database connections: no answer within %g s at shutdown",
                    LAST_WRITE_SECONDS)


async def upgrade_database(settings: Settings | None) -> tuple[str, str]:
    """Apply pending migrations; returns the database (password hidden) and its revision."""
    url = database_url(settings)
    engine, revision = await open_database(url)
    await engine.dispose()
    return shown(url), revision

