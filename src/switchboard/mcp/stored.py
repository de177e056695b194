"""MCP servers registered through the admin API, as the request path sees them.

A stored server is kept as its settings in clear and its secrets (static headers, the OAuth
client secret, its URL: the clear settings have only its origin) sealed under the server secret
(crypto/mcp_servers.py), bound to the record's id. The
request path reads them through :class:`StoredServers`: every stored server kept in process,
a scope (a tenant's own servers, the global ones) reloaded when the change feed says it changed,
so no request queries the database (everything is also reloaded every ``TTL`` seconds, or
``database.cache_seconds`` when that is longer: the bound on staleness when a feed message is
lost). The registry (mcp/registry.py) follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Set
from typing import Any

from pydantic import SecretStr, ValidationError

from switchboard.background import stop_task
from switchboard.config.mcp import McpServerConfig
from switchboard.crypto.keyring import DecryptError, Keyring, mcp_server_aad
from switchboard.crypto.mcp_servers import Opened, clear_settings, seal, unseal, url_is_sealed
from switchboard.stores.feedcache import ALL
from switchboard.stores.protocols import ChangeFeed, McpServerRecord, McpStore, Subscription
from switchboard.stores.unavailable import OutageLog

__all__ = ["Opened", "StoredServers", "clear_settings", "seal", "server_aad", "to_config", "unseal",
           "url_is_sealed"]

log = logging.getLogger("switchboard.mcp")

TOPIC = "mcp-servers"
GLOBAL = "*"  # the cache key (and feed message) of the global servers
TTL = 30.0


server_aad = mcp_server_aad


def to_config(record: McpServerRecord, opened: Opened) -> McpServerConfig:
    """The record as the rest of the MCP gateway reads a server (the YAML's shape), with its
    secrets and its whole URL as opened (the clear settings hold only the URL's origin)."""
    settings = {k: v for k, v in record.config.items() if not k.startswith("_")}  # markers
    settings.pop("url", None)
    fields: dict[str, Any] = {**settings, "name": record.name, "tenant": record.tenant_id,
                              "headers": {k: SecretStr(v) for k, v in opened.headers.items()}}
    if opened.url is not None:
        fields["url"] = opened.url
    oauth = fields.get("oauth")
    if oauth is not None:
        secret = None if opened.client_secret is None else SecretStr(opened.client_secret)
        fields["oauth"] = {**oauth, "client_secret": secret}
    return McpServerConfig.model_validate(fields)


Key = tuple[str | None, str]  # (tenant, None: global; server name)
# Told every server, and which of them a platform admin registered or last pointed elsewhere.
Listener = Callable[[Mapping[Key, McpServerConfig], Set[Key]], Awaitable[None]]


class StoredServers:
    """Every stored server, in process memory: loaded at start, a scope reloaded when the change
    feed says it changed, everything reloaded every ``reload_seconds`` (the bound on staleness
    when a feed message is lost). The request path reads :attr:`servers` with no query."""

    def __init__(self, store: McpStore, feed: ChangeFeed, keyring: Callable[[], Keyring | None],
                 listener: Listener | None = None, *, reload_seconds: float = TTL) -> None:
        self._store = store
        self._feed = feed
        self._keyring = keyring
        self._listener = listener
        self._every = reload_seconds
        self._lock = asyncio.Lock()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        # The scopes change-feed messages named, reloaded by ``_reloading`` (never in the feed's
        # listener: its one reader serves every topic, and the database may not answer).
        self._named: set[str] = set()
        self._reloading: asyncio.Task[None] | None = None
        # One per table, shared by the periodic pass and the reloads a message starts: a database
        # outage logs one warning, and one line when it is back (stores/unavailable.py).
        self._outage = OutageLog(log, "reloading the stored MCP servers")
        self.servers: dict[Key, McpServerConfig] = {}
        # The servers a platform admin registered or last pointed elsewhere (upstream/egress.py).
        self.by_platform_admin: frozenset[Key] = frozenset()
        self.loads = 0  # store queries made, for tests

    async def start(self) -> None:
        self._subscription = await self._feed.subscribe(TOPIC, self._on_change)
        await self.reload(ALL)
        self._task = asyncio.create_task(self._loop(), name="mcp-stored-servers")

    async def close(self) -> None:
        # The subscription first: a message arriving meanwhile would start a reload nobody stops.
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        for task in (self._task, self._reloading):
            await stop_task(task)
        self._task = self._reloading = None

    def for_tenant(self, tenant_id: str | None) -> list[McpServerConfig]:
        """The global servers, and the tenant's own."""
        return [s for (tenant, _), s in self.servers.items() if tenant is None or tenant == tenant_id]

    async def changed(self, tenant_id: str | None) -> None:
        """A server of this scope (None: a global one) was added, changed or removed here:
        reload it now, and tell every other instance."""
        scope = GLOBAL if tenant_id is None else tenant_id
        await self.reload(scope)
        await self._feed.publish(TOPIC, scope)

    async def _on_change(self, topic: str, message: str) -> None:
        # Never wait for the database here: the scope is reloaded on its own task, with the
        # scopes other messages name meanwhile.
        self._named.add(message or ALL)
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_named())

    async def _reload_named(self) -> None:
        while self._named:
            named, self._named = self._named, set()
            for scope in ([ALL] if ALL in named else sorted(named)):
                await self._reload_logged(scope)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self._reload_logged(ALL)

    async def _reload_logged(self, scope: str) -> None:
        # The database down or silent: one warning for the outage, not a traceback every time.
        try:
            await self.reload(scope)
        except Exception as exc:
            self._outage.failed(exc, "; keeping the ones loaded")
        else:
            self._outage.succeeded()

    async def reload(self, scope: str) -> None:
        """Reload one scope (a tenant id, ``GLOBAL``) or every server (``ALL``)."""
        async with self._lock:
            self.loads += 1
            if scope == ALL:
                records = await self._store.list_servers(None, every_tenant=True)
                kept: dict[Key, McpServerConfig] = {}
                flagged: set[Key] = set()
            else:
                tenant = None if scope == GLOBAL else scope
                records = await self._store.list_servers(tenant, with_global=False)
                kept = {k: v for k, v in self.servers.items() if k[0] != tenant}
                flagged = {k for k in self.by_platform_admin if k[0] != tenant}
            for record in records:
                config = self._open(record)
                if config is not None:
                    kept[(record.tenant_id, record.name)] = config
                    if record.by_platform_admin:
                        flagged.add((record.tenant_id, record.name))
            self.servers, self.by_platform_admin = kept, frozenset(flagged)
            if self._listener is not None:
                await self._listener(kept, self.by_platform_admin)

    def _open(self, record: McpServerRecord) -> McpServerConfig | None:
        try:
            return to_config(record, unseal(self._keyring(), record))
        except ValidationError as exc:
            # Stored before a rule it breaks (a name ending with "_"): the rule, never a value.
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            log.warning("MCP server %r (%s) left out: its stored settings are no longer valid (%s: %s); "
                        "remove it and register it again", record.name, record.id, where,
                        str(first["msg"]).removeprefix("Value error, "))
            return None
        except (DecryptError, ValueError) as exc:
            # Never the secret: only which record and why it does not open.
            log.warning("MCP server %r (%s) left out: its stored settings do not open (%s)",
                        record.name, record.id, type(exc).__name__)
            return None
