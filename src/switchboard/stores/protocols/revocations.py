"""Token revocations: an admin cutting off a JWT caller before its tokens expire
(docs/access.md, "Revoking a JWT caller"). One record per (tenant, user), the user being the JWT
caller's mapped user id, which need not have a user record. The request path never reads this
table: ``access/revocations.py`` keeps every record in memory."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class TokenRevocation:
    """Tokens of ``user`` in ``tenant`` issued before ``not_before`` (or without ``iat``) are
    refused; with ``block`` every token of the user is, until the record is deleted. Past
    ``expires_at`` (None: never) the record applies no more and is removed. It applies to
    tokens whose role is at most ``created_by_role`` (as a key's block, no one cuts off a caller
    above its own role)."""

    id: str
    tenant_id: str
    user_id: str
    not_before: datetime
    block: bool = False
    reason: str | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None
    created_by_role: str = "platform_admin"


# The audit entry of a revocation put: from it as stored and as it was (None: new).
RevocationAudited = Callable[[TokenRevocation, "TokenRevocation | None"], AuditEntry]


class TooManyRevocations(Exception):
    """A new record would take the tenant past the cap ``put`` was given."""


class RevocationOutranked(Exception):
    """The stored record was made by a role the caller may not override (as a key's block is
    lifted only by its blocker's role or above): it is left as it is."""

    def __init__(self, record: TokenRevocation) -> None:
        super().__init__(record.id)
        self.record = record


class TokenRevocationStore(Protocol):
    async def put(self, record: TokenRevocation, *, cap: int | None = None,
                  overrides: Collection[str] | None = None, audited: RevocationAudited | None = None
                  ) -> tuple[TokenRevocation, TokenRevocation | None]:
        """Insert, or replace the revocation of the same (tenant, user), keeping its id and
        ``created_at`` (the rest, ``created_by`` and its role included, is the new one's). Returns
        what is stored now and what was before (None: new); ``(before, before)``, nothing written,
        when the record would revoke the same tokens of the same roles (``not_before``, ``block``,
        ``reason``, ``expires_at``, ``created_by_role`` equal). A new record when the tenant has
        ``cap`` already raises TooManyRevocations; checked with the insert, so creations at once
        cannot pass it together (a replacement always may). A record to replace whose
        ``created_by_role`` is not in ``overrides`` (None: any) raises RevocationOutranked, checked
        on the row as locked for the replacement. ``audited``'s entry (from both) is appended to
        the audit log in the same transaction (both or neither; none when nothing is written)."""

    async def get(self, tenant_id: str, revocation_id: str) -> TokenRevocation | None: ...

    async def find(self, revocation_id: str) -> TokenRevocation | None:
        """A record by id in any tenant: for the platform admin only."""

    async def list_revocations(self, tenant_id: str, *, user_id: str | None = None, after: str | None = None,
                               limit: int = 100) -> list[TokenRevocation]:
        """The tenant's records by id, after the cursor ``after``."""

    async def count(self, tenant_id: str) -> int: ...

    async def active(self, now: datetime) -> list[TokenRevocation]:
        """Every tenant's records that still apply at ``now`` (for the in-memory set)."""

    async def purge_expired(self, now: datetime) -> int:
        """Delete the records whose ``expires_at`` has passed; how many were."""

    async def delete(self, tenant_id: str, revocation_id: str, *, overrides: Collection[str] | None = None,
                     audited: AuditEntry | None = None) -> bool:
        """Whether the record was there and is deleted; one whose ``created_by_role`` is not in
        ``overrides`` (None: any) is kept and raises RevocationOutranked (checked by the delete
        statement itself, so a replacement by a higher role meanwhile is never deleted).
        ``audited`` is appended to the audit log in the delete's transaction (both or neither)."""
