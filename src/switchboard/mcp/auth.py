"""The MCP gateway's credentials and run-time servers: the :class:`Credentials` the upstream
sessions use (mcp/credentials.py), built with the gateway; the stored servers (mcp/stored.py)
and the OAuth client (mcp/oauth.py), opened with the stores."""

from __future__ import annotations

from switchboard.config.mcp import McpServerConfig
from switchboard.config.schema import Settings
from switchboard.crypto import keyring as crypto_keyring
from switchboard.crypto.keyring import Keyring
from switchboard.mcp.credentials import GatewayCredentials, Tickets
from switchboard.mcp.oauth import OAuthClient
from switchboard.mcp.registry import Registry
from switchboard.mcp.stored import TTL, StoredServers
from switchboard.stores import Stores


class McpAuth:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring: Keyring | None = crypto_keyring.from_settings(settings.auth)
        self.stored: StoredServers | None = None  # opened in start()
        self.oauth: OAuthClient | None = None  # opened in start()
        self.tickets = Tickets(lambda: self.keyring, settings.mcp.oauth_ticket_seconds)
        self.credentials = GatewayCredentials(lambda: self.oauth, self.tickets, settings.mcp.public_url)

    async def start(self, stores: Stores, keyring: Keyring | None, registry: Registry) -> None:
        self.keyring = keyring
        assert stores.mcp is not None
        self.oauth = OAuthClient(self.settings.mcp, stores.mcp, stores.cache, stores.feed,
                                 lambda: self.keyring, registry.egress_for)
        await self.oauth.start()
        # The periodic reload bounds staleness when a feed message is lost: never more often than
        # TTL, and no more often than the other stored records are read (database.cache_seconds).
        every = max(TTL, self.settings.database.cache_seconds)
        self.stored = StoredServers(stores.mcp, stores.feed, lambda: self.keyring, registry.sync_stored,
                                    reload_seconds=every)
        await self.stored.start()

    async def close(self) -> None:
        if self.stored is not None:
            await self.stored.close()
            self.stored = None
        if self.oauth is not None:
            await self.oauth.close()
            self.oauth = None

    def servers(self, tenant: str) -> list[McpServerConfig]:
        """Every server a tenant's callers may use: the configuration file's, then the stored."""
        yaml = [s for s in self.settings.mcp_servers if s.tenant is None or s.tenant == tenant]
        return [*yaml, *(self.stored.for_tenant(tenant) if self.stored is not None else [])]

    def server(self, tenant: str, name: str) -> McpServerConfig | None:
        return next((s for s in self.servers(tenant) if s.name == name), None)
