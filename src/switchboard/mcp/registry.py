"""The upstream MCP servers, and which of them a caller may use.

A server with no ``tenant`` is global (every tenant's callers see it); one with a ``tenant``
serves only that tenant's callers. The platform admin (the master key, no tenant) sees every
server. Servers come from the YAML's ``mcp_servers:`` and from the admin API (mcp/stored.py
keeps them in process and hands every change to :meth:`Registry.sync_stored`). Stored servers
are per tenant (two tenants may each have a server of one name) or global; a caller sees the
global ones and its tenant's (the master key's tenant is the default one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.mcp.interfaces import Credentials
from switchboard.mcp.stdio import StdioUpstream
from switchboard.mcp.upstream import ConfigCredentials, Upstream
from switchboard.upstream.egress import Egress, EgressPolicy

Key = tuple[str | None, str]  # a stored server: (tenant, None: global; name)


class Registry:
    def __init__(self, servers: Iterable[McpServerConfig], config: McpConfig,
                 credentials: Credentials | None = None, egress: EgressPolicy | None = None) -> None:
        self.config = config
        self.credentials: Credentials = credentials or ConfigCredentials()
        # Where stored servers of tenants may connect; the YAML's servers are the operator's.
        self._egress = egress
        self._servers: dict[str, Upstream] = {}
        # Stored servers by (tenant, None: global; name).
        self._stored: dict[Key, Upstream] = {}
        # Stored servers changed or removed while calls were under way on them: each closes when
        # its last call ends; kept here so that a shutdown meanwhile closes them too.
        self._retired: set[Upstream] = set()
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

    async def sync_stored(self, servers: Mapping[Key, McpServerConfig],
                          by_platform_admin: Set[Key] = frozenset()) -> None:
        """Follow the stored servers: new ones added, changed ones replaced, removed ones closed.
        ``by_platform_admin``: the keys of those a platform admin registered or last pointed
        elsewhere (the default tenant's are then the operator's own, upstream/egress.py)."""
        self._retired = {upstream for upstream in self._retired if upstream.busy}
        for key, upstream in list(self._stored.items()):
            moved = upstream.egress is not self._guard(key, by_platform_admin)
            if servers.get(key) != upstream.server or moved:
                del self._stored[key]
                await upstream.retire()  # the calls under way on it finish there
                if upstream.busy:
                    self._retired.add(upstream)
        for key, server in servers.items():
            if key not in self._stored:
                egress = self._guard(key, by_platform_admin)
                upstream = Upstream(server, self.config, self.credentials, egress)
                self._stored[key] = upstream
                if self._started:
                    upstream.start()

    def _guard(self, key: Key, by_platform_admin: Set[Key]) -> Egress | None:
        if self._egress is None:
            return None
        return self._egress.guard(key[0], by_platform_admin=key in by_platform_admin)

    def egress_for(self, server: McpServerConfig) -> Egress | None:
        """Where connections made for ``server`` (its OAuth discovery and tokens) may go: the
        configuration file's servers anywhere, a stored one where its own connections may go
        (one not followed yet: as its tenant's rules say for a server a tenant admin registered)."""
        yaml = self._servers.get(server.name)
        if (yaml is not None and yaml.server == server) or self._egress is None:
            return None
        stored = self._stored.get((server.tenant, server.name))
        if stored is not None and stored.server == server:
            return stored.egress
        return self._egress.guard(server.tenant, by_platform_admin=False)

    def all(self) -> list[Upstream]:
        return [*self._servers.values(), *self._stored.values()]

    def visible(self, principal: Principal | None) -> list[Upstream]:
        """The servers ``principal`` may use: the global ones and its tenant's."""
        tenant = _tenant(principal)
        found = [u for u in self._servers.values() if _visible(u.server, principal)]
        return found + [u for (owner, _), u in self._stored.items() if owner is None or owner == tenant]

    def get(self, name: str, principal: Principal | None) -> Upstream | None:
        """The server ``name`` if ``principal`` may use it; None otherwise (another tenant's
        server is indistinguishable from one that does not exist)."""
        upstream = self._servers.get(name)
        if upstream is None or not _visible(upstream.server, principal):
            tenant = _tenant(principal)
            stored = self._stored.get((tenant, name)) if tenant is not None else None
            return stored or self._stored.get((None, name))
        return upstream

    def start(self) -> None:
        self._started = True
        for upstream in self.all():
            upstream.start()

    async def close(self) -> None:
        for upstream in [*self.all(), *self._retired]:
            await upstream.close()
        self._stored.clear()
        self._retired.clear()


def _tenant(principal: Principal | None) -> str | None:
    """The tenant whose stored servers a caller sees (None: the global ones only)."""
    if principal is None:
        return None
    return principal.tenant_id or "default"


def _visible(server: McpServerConfig, principal: Principal | None) -> bool:
    if server.tenant is None:
        return True
    if principal is None:
        return False
    if principal.role == PLATFORM_ADMIN:
        return True
    return server.tenant == principal.tenant_id
