"""Tenancy: tenants contain teams, teams contain users (people and service accounts)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow

if TYPE_CHECKING:
    from switchboard.stores.protocols.access import KeyRecord
    from switchboard.stores.protocols.budgets import BudgetRecord

USER = "user"
SERVICE_ACCOUNT = "service_account"


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None
    # Data residency (revision 0009): the regions its requests may be served in; None: anywhere.
    allowed_regions: list[str] | None = None


class TenantIdRetired(ValueError):
    """The id was a deleted tenant's: its data is still filed under it, so it is not reused."""


@dataclass(frozen=True)
class Team:
    id: str  # unique across tenants
    tenant_id: str
    name: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None
    allowed_regions: list[str] | None = None  # as Tenant's, narrowing it
    mcp_tools: Mapping[str, Any] | None = None  # MCP tool permissions (revision 0021), as the key's


@dataclass(frozen=True)
class User:
    """A person, or a service account (``kind``) standing for an application."""

    id: str  # unique across tenants
    tenant_id: str
    role: str  # one of access.roles.ROLES, never the platform admin
    kind: str = USER
    team_id: str | None = None
    name: str | None = None
    email: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None


@dataclass(frozen=True)
class UserQuery:
    team_id: str | None = None
    role: str | None = None
    kind: str | None = None
    after: str | None = None  # cursor: ids greater than this one
    limit: int = 100


class TenancyStore(Protocol):
    """Tenants, teams and users. Every team and user query takes the tenant, and a record of
    another tenant is "not found"; the ``find_*`` lookups across tenants are for the platform
    admin only. Lists are ordered by id, paged with ``after`` (the last id seen). ``create_*``
    raise ``ValueError`` when the id is taken."""

    # ``audited``, where a write takes it: its audit entry (or what makes it from the record as
    # written), appended in the write's transaction (both or neither), none when nothing is written.

    async def create_tenant(self, tenant: Tenant, *, audited: AuditEntry | None = None) -> None:
        """ValueError when the id is taken; TenantIdRetired when a deleted tenant had it."""

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def tenant_retired(self, tenant_id: str) -> bool:
        """Whether the id was a deleted tenant's (see :meth:`delete_tenant`)."""

    async def list_tenants(self, *, after: str | None = None, limit: int = 100) -> list[Tenant]: ...

    async def update_tenant(self, tenant: Tenant, fields: Collection[str] | None = None, *,
                            audited: Callable[[Tenant], AuditEntry] | None = None) -> Tenant | None:
        """Write the tenant's ``fields`` (all its changeable ones when None), leaving the others
        as they are now; the tenant as stored after it, None when there is no such tenant."""

    async def delete_tenant(self, tenant_id: str, *, audited: AuditEntry | None = None,
                            budget_audited: Callable[[BudgetRecord], AuditEntry] | None = None
                            ) -> list[BudgetRecord] | None:
        """Delete the tenant if it has no teams, users or enabled keys, checked by the delete
        itself (one added meanwhile keeps it), with its budgets and their claims; None when it is
        not there or not empty, else the budgets deleted. The id is retired with it: no tenant is
        ever created with it again. ``audited`` (the tenant's entry) and ``budget_audited``'s
        entry for each budget are appended to the audit log in the same transaction: all of it
        or none."""

    async def create_team(self, team: Team, *, audited: AuditEntry | None = None) -> None: ...

    async def get_team(self, tenant_id: str, team_id: str) -> Team | None: ...

    async def find_team(self, team_id: str) -> Team | None: ...

    async def list_teams(
        self, tenant_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[Team]: ...

    async def update_team(self, team: Team, fields: Collection[str] | None = None, *,
                          audited: Callable[[Team], AuditEntry] | None = None) -> Team | None:
        """As :meth:`update_tenant`; None too when the team is another tenant's."""

    async def delete_team(self, tenant_id: str, team_id: str, *, audited: AuditEntry | None = None) -> bool:
        """Delete the team if it has no users or enabled keys (as :meth:`delete_tenant`)."""

    async def count_members(self, tenant_id: str, *, team_id: str | None = None) -> tuple[int, int, int]:
        """How many teams, users and enabled keys the tenant has (with ``team_id``: 0, and that
        team's users and enabled keys)."""

    async def create_user(self, user: User, *, team_held: bool = False,
                          audited: AuditEntry | None = None) -> bool:
        """Store a new user (ValueError when the id is taken). With ``team_held`` (its team was
        read as a record), nothing is stored and False returned when that team is gone, deleted
        meanwhile: a team delete and a user created into it never both succeed."""

    async def get_user(self, tenant_id: str, user_id: str) -> User | None: ...

    async def find_user(self, user_id: str) -> User | None: ...

    async def list_users(self, tenant_id: str, query: UserQuery) -> list[User]: ...

    async def update_user(self, user: User, fields: Collection[str] | None = None, *,
                          read: User | None = None, keys_above: Collection[str] = (),
                          audited: Callable[[User], AuditEntry] | None = None,
                          keys_audited: Callable[[KeyRecord, KeyRecord], AuditEntry] | None = None
                          ) -> User | None:
        """As :meth:`update_team`. With ``read``, written only while the user's role and team
        are still ``read``'s (None otherwise, as when it is gone), and its keys follow in the same
        transaction: those of ``read``'s team move to the new one, those of a role in
        ``keys_above`` take the new role, each with ``keys_audited``'s entry (from the key as it
        was and as it is now). None too (nothing written) when the team it is put in is gone,
        deleted meanwhile."""

    async def delete_user(self, tenant_id: str, user_id: str, *, audited: AuditEntry | None = None) -> bool:
        """Delete the user or service account if it holds no enabled key (as :meth:`delete_team`);
        False when it is not there or holds one."""
