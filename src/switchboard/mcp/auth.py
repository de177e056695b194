"""The MCP gateway's credentials and run-time servers, opened with the stores: the stored
servers' cache (mcp/stored.py), the OAuth client (mcp/oauth.py) and the :class:`Credentials`
the upstream sessions use (mcp/credentials.py)."""

from __future__ import annotations

from switchboard.config.mcp import McpServerConfig
from switchboard.config.schema import Settings
from switchboard.crypto.keyring import Keyring
from switchboard.mcp.credentials import GatewayCredentials, Tickets
from switchboard.mcp.oauth import OAuthClient
from switchboard.mcp.stored import StoredServers
from switchboard.stores import Stores


class McpAuth:
    def __init__(self, settings: Settings, stores: Stores, keyring: Keyring | None) -> None:
        self.settings = settings
        self.keyring = keyring
        assert stores.mcp is not None
        self.stored = StoredServers(stores.mcp, stores.feed, lambda: self.keyring)
        self.oauth = OAuthClient(settings.mcp, stores.mcp, stores.cache, stores.feed, lambda: self.keyring)
        self.tickets = Tickets(lambda: self.keyring, settings.mcp.oauth_state_seconds)
        self.credentials = GatewayCredentials(self.oauth, self.tickets, settings.mcp.public_url)

    async def start(self) -> None:
        await self.stored.start()
        await self.oauth.start()

    async def close(self) -> None:
        await self.oauth.close()
        await self.stored.close()

    async def servers(self, tenant: str) -> list[McpServerConfig]:
        """Every server a tenant's callers may use: the configuration file's, then the stored."""
        yaml = [s for s in self.settings.mcp_servers if s.tenant is None or s.tenant == tenant]
        return [*yaml, *await self.stored.for_tenant(tenant)]

    async def server(self, tenant: str, name: str) -> McpServerConfig | None:
        return next((s for s in await self.servers(tenant) if s.name == name), None)
