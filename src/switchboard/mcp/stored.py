"""MCP servers registered through the admin API, as the request path sees them.

A stored server is kept as its settings in clear and its secrets (static headers, the OAuth
client secret) sealed under the server secret (crypto/keyring.py), bound to the record's id. The
request path reads them through :class:`StoredServers`: per scope (a tenant's own servers, the
global ones), cached in process and dropped when the change feed says the scope changed, so no
request queries the database (an entry also expires after ``TTL``: the bound on staleness when a
feed message is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import SecretStr, ValidationError

from switchboard.access.feedcache import ALL, FeedCache
from switchboard.config.mcp import McpServerConfig
from switchboard.crypto.keyring import DecryptError, Keyring
from switchboard.stores.protocols import ChangeFeed, McpServerRecord, McpStore

log = logging.getLogger("switchboard.mcp")

TOPIC = "mcp-servers"
GLOBAL = "*"  # the cache key (and feed message) of the global servers
TTL = 30.0


def server_aad(server_id: str) -> str:
    return f"mcp-server:{server_id}"


def seal(keyring: Keyring, server_id: str, headers: Mapping[str, str], client_secret: str | None
         ) -> str | None:
    """The record's secrets sealed together (None: it has none)."""
    if not headers and client_secret is None:
        return None
    plain = orjson.dumps({"headers": dict(headers), "client_secret": client_secret}).decode()
    return keyring.encrypt(plain, server_aad(server_id))


def unseal(keyring: Keyring | None, record: McpServerRecord) -> tuple[dict[str, str], str | None]:
    """(headers, OAuth client secret) of a record. Raises DecryptError when they do not open."""
    if record.sealed is None:
        return {}, None
    if keyring is None:
        raise DecryptError("no server secret (auth.secret_key) to open the stored secrets with")
    data = orjson.loads(keyring.decrypt(record.sealed, server_aad(record.id)))
    return dict(data.get("headers") or {}), data.get("client_secret")


def to_config(record: McpServerRecord, headers: Mapping[str, str], client_secret: str | None
              ) -> McpServerConfig:
    """The record as the rest of the MCP gateway reads a server (the YAML's shape)."""
    settings = {k: v for k, v in record.config.items() if not k.startswith("_")}  # markers
    fields: dict[str, Any] = {**settings, "name": record.name, "tenant": record.tenant_id,
                              "headers": {k: SecretStr(v) for k, v in headers.items()}}
    oauth = fields.get("oauth")
    if oauth is not None:
        secret = None if client_secret is None else SecretStr(client_secret)
        fields["oauth"] = {**oauth, "client_secret": secret}
    return McpServerConfig.model_validate(fields)


class StoredServers:
    """The stored servers a tenant's callers may use: the tenant's own and the global ones."""

    def __init__(self, store: McpStore, feed: ChangeFeed, keyring: Callable[[], Keyring | None],
                 *, ttl: float = TTL) -> None:
        self._store = store
        self._keyring = keyring
        self._cache: FeedCache[str, tuple[McpServerConfig, ...]] = FeedCache(
            TOPIC, self._load, feed, encode=lambda scope: scope, decode=lambda message: message or None,
            ttl=ttl)

    async def start(self) -> None:
        await self._cache.start()

    async def close(self) -> None:
        await self._cache.close()

    async def for_tenant(self, tenant_id: str) -> list[McpServerConfig]:
        """The global servers, then the tenant's own (names never collide: the admin API
        refuses a name the tenant already sees)."""
        shared = await self._cache.get(GLOBAL) or ()
        own = await self._cache.get(tenant_id) or ()
        return [*shared, *own]

    async def changed(self, tenant_id: str | None) -> None:
        """A server of this scope (None: a global one) was added, changed or removed."""
        await self._cache.changed(GLOBAL if tenant_id is None else tenant_id)

    async def changed_all(self) -> None:
        await self._cache.changed(ALL)

    @property
    def lookups(self) -> int:
        return self._cache.lookups

    async def _load(self, scope: str) -> tuple[McpServerConfig, ...]:
        tenant = None if scope == GLOBAL else scope
        records = await self._store.list_servers(tenant, with_global=False)
        servers = []
        for record in records:
            try:
                headers, secret = unseal(self._keyring(), record)
                servers.append(to_config(record, headers, secret))
            except (DecryptError, ValueError, ValidationError) as exc:
                # Never the secret: only which record and why it does not open.
                log.warning("MCP server %r (%s) left out: its stored settings do not open (%s)",
                            record.name, record.id, type(exc).__name__)
        return tuple(servers)
