"""Enforcing the permission table (``access/roles.py``) on the admin routes.

Every admin route declares what it does with one dependency, ``allow(resource, action)``; the
route then gets an :class:`Access` saying how far the caller reaches and uses it to scope every
query and to hide records outside that reach (404, never 403: no existence leak).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from switchboard.access.roles import Reach, reach
from switchboard.context import Principal
from switchboard.errors import NotFound, PermissionDenied
from switchboard.stores.protocols.access import NO_TEAM

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Access:
    """The caller, and how far this route's action reaches for it."""

    principal: Principal
    reach: Reach

    @property
    def tenant(self) -> str:
        """The caller's own tenant (the platform admin's is the default tenant)."""
        return self.principal.tenant_id or DEFAULT_TENANT

    def tenant_for(self, requested: str | None) -> str:
        """The tenant a list or a creation applies to: the platform admin may name any tenant,
        everyone else always gets their own (a different name reads as "no such tenant")."""
        if requested is None or requested == self.tenant:
            return self.tenant
        if self.reach >= Reach.ANY:
            return requested
        raise NotFound(f"no tenant '{requested[:64]}'", code="tenant_not_found")

    def sees(self, tenant_id: str, team_id: str | None = None, owner_id: str | None = None) -> bool:
        """Whether a record of this tenant, team and owning user is within reach."""
        p = self.principal
        if self.reach >= Reach.ANY:
            return True
        if tenant_id != self.tenant:
            return False
        if self.reach >= Reach.TENANT:
            return True
        if self.reach >= Reach.TEAM:
            return team_id is not None and team_id == p.team_id
        if self.reach >= Reach.SELF:
            return owner_id is not None and owner_id in (p.user_id, p.key_id, p.id)
        return False

    @property
    def owner_team(self) -> str | None:
        """The team a key of the "own" reach finds its user's other keys in (and their logs,
        usage and analytics): its own team, ``NO_TEAM`` for a key of none. Without it a key a team
        admin issued to a user who also holds another team's keys would reach those. None: no
        such limit (another reach, or a JWT caller, who is the user as its identity provider
        vouches, not one of its keys)."""
        p = self.principal
        if self.reach != Reach.SELF or p.key_id is None:
            return None
        return p.team_id or NO_TEAM


def allow(resource: str, action: str) -> Callable[[Request], Awaitable[Access]]:
    """A FastAPI dependency: 403 ``permission_denied`` unless the caller's role may take
    ``action`` on ``resource`` somewhere; otherwise the caller's :class:`Access`."""

    async def dependency(request: Request) -> Access:
        principal: Principal = request.state.principal
        level = reach(principal.role, resource, action)
        if level is Reach.NONE:
            raise PermissionDenied(
                f"the role '{principal.role}' may not {action} {resource}s", code="permission_denied"
            )
        return Access(principal, level)

    dependency.__name__ = f"allow_{resource}_{action}"
    return dependency
