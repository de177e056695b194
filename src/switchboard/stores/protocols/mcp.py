"""MCP servers managed at run time and per-user OAuth tokens (mcp/, revision 0020)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class McpServerRecord:
    """An MCP server registered through the admin API. ``config`` holds the server's settings
    (``McpServerConfig`` fields) without its secrets; ``sealed`` holds them (the static headers,
    the OAuth client secret and the URL, of which ``config`` keeps only the origin: see
    crypto/mcp_servers.py) encrypted under the server secret. ``by_platform_admin``: as for
    services (stores/protocols/services.py), revision 0025."""

    id: str
    name: str
    tenant_id: str | None  # None: every tenant (the platform admin's)
    config: Mapping[str, Any]
    sealed: str | None = None
    header_names: Sequence[str] = ()  # the static headers' names (their values are sealed)
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    by_platform_admin: bool = False


@dataclass(frozen=True)
class McpTokenRecord:
    """One user's OAuth tokens for one server, sealed (access and refresh token, their expiry)."""

    tenant_id: str
    user_id: str
    server: str
    sealed: str
    expires_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)


# The audit entry saying how many users' tokens for a server a change or removal deleted (written
# only when it deleted some, in its transaction).
TokensAudited = Callable[[int], AuditEntry]


class McpStore(Protocol):
    async def create_server(self, record: McpServerRecord, *, audited: AuditEntry | None = None) -> bool:
        """False when the name is taken in the record's scope (its tenant, or the global ones).
        ``audited`` is written in the same transaction (both or neither), as for every change
        below."""
        ...

    async def get_server(self, server_id: str) -> McpServerRecord | None: ...

    async def find_server(self, tenant_id: str | None, name: str) -> McpServerRecord | None:
        """The server of this name in exactly this scope (None: the global ones)."""
        ...

    async def list_servers(self, tenant_id: str | None, *, with_global: bool = True,
                           every_tenant: bool = False) -> list[McpServerRecord]:
        """A tenant's servers (and the global ones unless ``with_global`` is false); tenant None:
        the global ones only; ``every_tenant``: all of them. Ordered by name, then id."""
        ...

    async def update_server(self, record: McpServerRecord, read: datetime | None = None, *,
                            audited: AuditEntry | None = None) -> bool:
        """False when there is no such server, or (given ``read``, the ``updated_at`` of the
        record the change was made from) when it changed since: read it again and retry."""
        ...

    async def move_server(self, record: McpServerRecord, read: datetime | None = None, *,
                          audited: AuditEntry | None = None, tokens_audited: TokensAudited | None = None
                          ) -> list[McpTokenRecord] | None:
        """As :meth:`update_server`, and every user's tokens for the server deleted in the same
        transaction (its URL or authorization server changes: they were issued for the old one;
        a global server's are those of every tenant without a server of its own of that name),
        with ``tokens_audited``'s entry when there were some; the tokens deleted (to revoke them
        at the authorization server), or None when nothing was written."""
        ...

    async def delete_server(self, server_id: str, *, audited: AuditEntry | None = None,
                            tokens_audited: TokensAudited | None = None
                            ) -> tuple[McpServerRecord, list[McpTokenRecord]] | None:
        """Remove the server and every user's tokens for it (with ``tokens_audited``'s entry when
        there were some), in one transaction; the removed record and the tokens deleted (to revoke
        them at the authorization server), None when there was no such server."""
        ...

    async def get_token(self, tenant_id: str, user_id: str, server: str) -> McpTokenRecord | None: ...

    async def put_token(self, record: McpTokenRecord) -> None:
        """Insert or replace the user's tokens for the server."""
        ...

    async def delete_token(self, tenant_id: str, user_id: str, server: str) -> bool: ...

    async def reseal(self, server: Callable[[McpServerRecord], McpServerRecord],
                     token: Callable[[McpTokenRecord], str]) -> tuple[int, int]:
        """Re-seal every server's secrets and every token (``switchboard secrets rotate``), in one
        transaction; how many of each changed. ``server`` gives the record as it is to be stored
        (its ``sealed`` value and its clear ``config``, which sealing a URL changes)."""
        ...
