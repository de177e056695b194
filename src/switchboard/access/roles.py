"""Roles and what each may do: the permission table, as data.

One table says, for every role, action and resource, how far the permission reaches: every
tenant (``ANY``, the platform admin only), the caller's tenant, the caller's team, the caller's
own records (``SELF``), or not at all. The admin API enforces it (``http/admin/authz.py``), the
permission test walks it, and ``docs/access.md`` prints it (``python -m switchboard.access.roles``
writes the Markdown), so the three cannot drift.

An action the role may not take at all answers 403 ``permission_denied``; a record outside the
caller's reach answers 404 as if it did not exist (no existence leak across tenants or teams).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class Reach(IntEnum):
    """How far a permission extends; a larger value includes the smaller ones."""

    NONE = 0
    SELF = 1  # records the caller owns (its user, or keys it holds)
    TEAM = 2  # the caller's team
    TENANT = 3  # the caller's tenant
    ANY = 4  # every tenant


PLATFORM_ADMIN: Final = "platform_admin"
TENANT_ADMIN: Final = "tenant_admin"
TEAM_ADMIN: Final = "team_admin"
DEVELOPER: Final = "developer"
VIEWER: Final = "viewer"

# Most powerful first. A caller may grant (to a key, a user) only a role at or below its own.
ROLES: Final = (PLATFORM_ADMIN, TENANT_ADMIN, TEAM_ADMIN, DEVELOPER, VIEWER)
RANK: Final = {role: len(ROLES) - i for i, role in enumerate(ROLES)}

# The role a key gets when nobody names one.
DEFAULT_KEY_ROLE: Final = DEVELOPER

_ = Reach.NONE
S, T, N, A = Reach.SELF, Reach.TEAM, Reach.TENANT, Reach.ANY

# resource -> action -> reach per role, in the order of ROLES:
#             platform  tenant   team     developer viewer
#             admin     admin    admin
TABLE: Final[dict[str, dict[str, tuple[Reach, Reach, Reach, Reach, Reach]]]] = {
    "tenant": {
        "create": (A, _, _, _, _),
        "read": (A, N, N, N, N),
        "update": (A, N, _, _, _),
        "delete": (A, _, _, _, _),
    },
    "team": {
        "create": (A, N, _, _, _),
        "read": (A, N, T, T, T),
        "update": (A, N, T, _, _),
        "delete": (A, N, _, _, _),
    },
    "user": {  # people and service accounts
        "create": (A, N, T, _, _),
        "read": (A, N, T, S, T),
        "update": (A, N, T, _, _),
        "delete": (A, N, T, _, _),
    },
    "key": {
        "create": (A, N, T, S, _),
        "read": (A, N, T, S, T),
        "rotate": (A, N, T, S, _),
        "revoke": (A, N, T, S, _),
        "update": (A, N, T, S, _),  # models only within the caller's own (http/admin/keys.py)
    },
    "provider": {  # upstream providers and their credentials: shared by the platform
        "create": (A, _, _, _, _),
        "read": (A, _, _, _, _),
        "update": (A, _, _, _, _),
        "delete": (A, _, _, _, _),
        "test": (A, _, _, _, _),
    },
    "model": {  # the model table; reading it is reading the catalog
        "create": (A, _, _, _, _),
        "read": (A, N, N, N, N),
        "update": (A, _, _, _, _),
        "delete": (A, _, _, _, _),
    },
    "subscription": {
        "create": (A, N, T, T, _),
        "read": (A, N, T, T, T),
        "approve": (A, N, _, _, _),
        "reject": (A, N, _, _, _),
        "revoke": (A, N, _, _, _),
        "withdraw": (A, N, T, T, _),  # a team takes back its own pending request, as it may ask
    },
    "audit": {
        "read": (A, N, _, _, _),
    },
    "usage": {  # the usage ledger's reports (docs/spend.md, "Reporting")
        "read": (A, N, T, S, T),
    },
    "limit": {  # rate limits of tenants, teams, users and models (docs/limits.md)
        "set": (A, N, _, _, _),
        "read": (A, N, N, N, N),
        "delete": (A, N, _, _, _),
    },
    "budget": {  # budgets of tenants, teams, users and keys (docs/budgets.md)
        "set": (A, N, _, _, _),
        "read": (A, N, N, N, N),
        "delete": (A, N, _, _, _),
    },
    "routing": {  # model groups and run-time weights: gateway-wide (docs/routing.md)
        "read": (A, _, _, _, _),
        "update": (A, _, _, _, _),
    },
    "log": {  # the request log: records and stored bodies (docs/observability.md)
        "read": (A, N, T, S, _),
    },
    "analytics": {  # rollups of the usage ledger (docs/observability.md)
        "read": (A, N, T, S, T),
    },
    "alert": {  # alert incidents (docs/observability.md)
        "read": (A, N, _, _, _),
    },
    "prompt": {  # the prompt registry: versions, labels, render (docs/prompts.md)
        "create": (A, N, T, _, _),
        "read": (A, N, N, N, N),
        "update": (A, N, T, _, _),
    },
    "api": {  # prompts published as REST APIs (docs/prompt-apis.md): the owning team manages them
        "create": (A, N, T, _, _),
        "read": (A, N, N, N, N),
        "update": (A, N, T, _, _),
    },
    "catalog": {  # what a developer portal lists: APIs, services, models (docs/portal.md)
        "read": (A, N, N, N, N),
    },
    "service": {  # plain REST services under /services/{name}/ (docs/services.md); team: its owner
        "create": (A, N, T, _, _),
        "read": (A, N, N, N, N),
        "update": (A, N, T, _, _),
        "delete": (A, N, T, _, _),
    },
    "mcp_server": {  # MCP servers registered at run time (docs/mcp.md); global ones: platform admin
        "create": (A, N, _, _, _),
        "read": (A, N, N, N, N),
        "update": (A, N, _, _, _),
        "delete": (A, N, _, _, _),
    },
    # JWT callers cut off before their tokens expire (docs/access.md). Not team admins: the user
    # need not have a record, so nothing says which team it is in.
    "token_revocation": {
        "create": (A, N, _, _, _),
        "read": (A, N, _, _, _),
        "delete": (A, N, _, _, _),
    },
}


def reach(role: str, resource: str, action: str) -> Reach:
    """How far ``role`` may take ``action`` on ``resource``; NONE for an unknown role."""
    try:
        return TABLE[resource][action][ROLES.index(role)]
    except ValueError:
        return Reach.NONE


def may_grant(granter: str, role: str) -> bool:
    """Whether a caller with role ``granter`` may give ``role`` to a key or a user."""
    return role in RANK and RANK.get(granter, 0) >= RANK[role]


_REACH_WORDS = {
    Reach.NONE: "-", Reach.SELF: "own", Reach.TEAM: "team", Reach.TENANT: "tenant", Reach.ANY: "all",
}


def markdown() -> str:
    """The permission table as the Markdown ``docs/access.md`` holds."""
    head = "| resource | action | " + " | ".join(ROLES) + " |"
    rule = "|" + "---|" * (len(ROLES) + 2)
    rows = [
        f"| {resource} | {action} | " + " | ".join(_REACH_WORDS[r] for r in reaches) + " |"
        for resource, actions in TABLE.items()
        for action, reaches in actions.items()
    ]
    return "\n".join([head, rule, *rows]) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
