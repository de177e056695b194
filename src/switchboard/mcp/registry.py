"""The upstream MCP servers, and which of them a caller may use.

A server with no ``tenant`` is global (every tenant's callers see it); one with a ``tenant``
serves only that tenant's callers. The platform admin (the master key, no tenant) sees every
server. Servers come from the YAML's ``mcp_servers:``; stored servers (the admin API) are added
with :meth:`Registry.put` and removed with :meth:`Registry.drop`.
"""

from __future__ import annotations

from collections.abc import Iterable

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.mcp.interfaces import Credentials
from switchboard.mcp.stdio import StdioUpstream
from switchboard.mcp.upstream import ConfigCredentials, Upstream


class Registry:
    def __init__(self, servers: Iterable[McpServerConfig], config: McpConfig,
                 credentials: Credentials | None = None) -> None:
        self.config = config
        self.credentials: Credentials = credentials or ConfigCredentials()
        self._servers: dict[str, Upstream] = {}
        self._started = False
        for server in servers:
            if server.transport == "stdio" and not config.allow_stdio:
                continue  # managed child processes only where the platform admin allows it
            # stdio servers: managed child processes (mcp/stdio.py), used like any upstream.
            kind = StdioUpstream if server.transport == "stdio" else Upstream
            self._servers[server.name] = kind(server, config, self.credentials)

    def put(self, server: McpServerConfig, credentials: Credentials | None = None) -> Upstream:
        """Add or replace a server (e.g. one registered through the admin API)."""
        if server.transport == "stdio":  # a command to run: only from the YAML (mcp/stdio.py)
            raise ValueError("stdio MCP servers are configured in the YAML only")
        upstream = Upstream(server, self.config, credentials or self.credentials)
        self._servers[server.name] = upstream
        if self._started:
            upstream.start()
        return upstream

    async def drop(self, name: str) -> None:
        upstream = self._servers.pop(name, None)
        if upstream is not None:
            await upstream.close()

    def all(self) -> list[Upstream]:
        return list(self._servers.values())

    def visible(self, principal: Principal | None) -> list[Upstream]:
        """The servers ``principal`` may use: the global ones and its tenant's."""
        return [u for u in self._servers.values() if _visible(u.server, principal)]

    def get(self, name: str, principal: Principal | None) -> Upstream | None:
        """The server ``name`` if ``principal`` may use it; None otherwise (another tenant's
        server is indistinguishable from one that does not exist)."""
        upstream = self._servers.get(name)
        if upstream is None or not _visible(upstream.server, principal):
            return None
        return upstream

    def start(self) -> None:
        self._started = True
        for upstream in self._servers.values():
            upstream.start()

    async def close(self) -> None:
        for upstream in self._servers.values():
            await upstream.close()


def _visible(server: McpServerConfig, principal: Principal | None) -> bool:
    if server.tenant is None:
        return True
    if principal is None:
        return False
    if principal.role == PLATFORM_ADMIN:
        return True
    return server.tenant == principal.tenant_id
