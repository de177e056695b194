"""What the tenancy and key routes share: field types, id generation, pages, the conflict
error, and finding a record within the caller's reach (404 outside it, never 403)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

from switchboard.access.roles import Reach, may_grant
from switchboard.errors import Conflict, GatewayError, InvalidRequest, NotFound, PermissionDenied
from switchboard.http.admin.authz import Access
from switchboard.http.admin.body import LINE
from switchboard.http.admin.query import Limit as Limit  # the one page size of every list
from switchboard.stores import Stores, Team, User
from switchboard.stores.protocols import KeyRecord

Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), LINE]
# Data residency: the regions requests may be served in (docs/access.md, "Data residency").
Region = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Regions = Annotated[list[Region], Field(max_length=100)]


# A PATCH whose write lost a compare-and-set (the record changed since it was read) is read,
# checked and tried again this many times in all before it answers 409.
CHANGE_ATTEMPTS = 3


def unchanged(record: object, changes: Mapping[str, Any]) -> bool:
    """Every field a PATCH sets already holds that value: the change is answered with the record
    as it is, nothing written, audited or published (as a key's, http/admin/key_update.py)."""
    return all(getattr(record, name) == value for name, value in changes.items())


def regions_of(value: list[str] | None) -> list[str] | None:
    """A policy as stored: sorted, each region once; None stays None (anywhere)."""
    return None if value is None else sorted(set(value))


def in_utc(value: datetime) -> datetime:
    """The time in UTC. Near the ends of the calendar an offset can carry it past year 9999 or
    before year 1, which no store can hold: refused as a bad value, not a crash when stored."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: in UTC it must fall within the years 1 to 9999") from None


def as_text(value: Any) -> Any:
    """A time is given as RFC 3339 text. Pydantic would also take a number, as a Unix time in
    seconds or, past 2e10, in milliseconds (``-62135596800``, meant as year 1, read as 1968), so a
    wrong type turned into a date nobody asked for instead of a 400; and it takes the same number
    written as text (``"1900000000"``, 2030), as a query parameter always is."""
    if isinstance(value, datetime) or (isinstance(value, str) and not _numeric(value)):
        return value
    raise ValueError("expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z")


def _numeric(text: str) -> bool:
    """Whether ``text`` reads as a number (no RFC 3339 time does: each has its dashes)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# An RFC 3339 time with a zone (AwareDatetime), as UTC; out of range is a 400 naming the field.
UtcTime = Annotated[AwareDatetime, BeforeValidator(as_text), AfterValidator(in_utc)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"), LINE]
After = Annotated[str | None, Query(max_length=64, description="Last id of the previous page")]
TenantQuery = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$", description="Another tenant (platform admin only)"),
]

T = TypeVar("T")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def made_here(ident: str, prefix: str) -> bool:
    """Whether ``ident`` has the form of an id ``new_id(prefix)`` gives. Such an id without a
    record names a record deleted (or never made), not an owner from outside Switchboard."""
    head, _, tail = ident.partition("_")
    return head == prefix and len(tail) == 16 and all(c in "0123456789abcdef" for c in tail)


def conflict(message: str) -> GatewayError:
    return Conflict(message)


def page(items: Sequence[T], limit: int, public: Callable[[T], dict[str, Any]], ident: Callable[[T], str]
         ) -> dict[str, Any]:
    """A list answer from up to ``limit + 1`` items: the extra one only says there is more."""
    shown = list(items[:limit])
    return {
        "object": "list",
        "data": [public(item) for item in shown],
        "has_more": len(items) > limit,
        "last_id": ident(shown[-1]) if shown else None,
    }


async def tenant_in_reach(access: Access, stores: Stores, requested: str | None) -> str:
    """The tenant a list or a creation applies to. Another one the platform admin names must
    exist (404 ``tenant_not_found``): nothing is kept for, nor listed of, a tenant that is not
    there. A caller's own tenant is theirs whether or not it has a record (a token's tenant claim
    names it), and is not looked up."""
    tenant = access.tenant_for(requested)
    if (access.reach >= Reach.ANY and tenant != access.tenant
            and await stores.tenancy.get_tenant(tenant) is None):
        raise NotFound(f"no tenant '{tenant[:64]}'", code="tenant_not_found")
    return tenant


async def named_team_exists(access: Access, stores: Stores, tenant: str, team: str) -> None:
    """404 ``team_not_found`` unless a team a tenant or platform admin names as a record's owner
    is one of the tenant's: a record of a team that does not exist would be managed by nobody
    but the tenant's admins. The caller's own team passes without a lookup (a key's or a token's
    team may have no record); a team admin's reach is checked by the caller (Access.sees)."""
    if team == access.principal.team_id or access.reach < Reach.TENANT:
        return
    if await stores.tenancy.get_team(tenant, team) is None:
        raise NotFound(f"no team '{team[:64]}'", code="team_not_found")


async def scoped_subject(stores: Stores, tenant: str, scope: str, subject: str | None, what: str) -> str:
    """The subject a tenant-, team- or user-scoped ``what`` (a budget, a rate limit) applies to:
    the tenant itself, or a team or user that exists in it (404 otherwise: a record for nobody
    would never apply). Other scopes' subjects are only required here; their owners check them."""
    if scope == "tenant":
        if subject is not None and subject != tenant:
            raise InvalidRequest(f"subject: a tenant {what}'s subject is the tenant itself", param="subject",
                                 code="invalid_value")
        return tenant
    if subject is None:
        raise InvalidRequest(f"subject: required for the scope '{scope}'", param="subject",
                             code="invalid_value")
    if scope == "team" and await stores.tenancy.get_team(tenant, subject) is None:
        raise NotFound(f"no team '{subject[:64]}'", code="team_not_found")
    if scope == "user" and await stores.tenancy.get_user(tenant, subject) is None:
        raise NotFound(f"no user '{subject[:64]}'", code="user_not_found")
    return subject


def key_not_above(access: Access, key: KeyRecord | None) -> None:
    """A key's budget or rate limit can stop it as a block does, so, as blocking it, setting,
    replacing or removing one is not for a caller whose role is below the key's (403; it may
    still read them): a tenant admin does not throttle or unbudget a platform admin's key."""
    if key is not None and not may_grant(access.principal.role, key.role):
        raise PermissionDenied(f"the role '{access.principal.role}' may not set or remove the limits or "
                               f"budget of a key with the role '{key.role}'", code="permission_denied")


async def team_in_reach(access: Access, stores: Stores, team_id: str) -> Team:
    """A team the caller reaches (the platform admin: in any tenant), else 404."""
    if access.reach >= Reach.ANY:
        team = await stores.tenancy.find_team(team_id)
    else:
        team = await stores.tenancy.get_team(access.tenant, team_id)
    if team is None or not access.sees(team.tenant_id, team.id):
        raise NotFound(f"no team '{team_id[:64]}'", code="team_not_found")
    return team


async def user_in_reach(access: Access, stores: Stores, user_id: str, kind: str | None = None) -> User:
    """A user or service account the caller reaches (of ``kind`` if given), else 404."""
    if access.reach >= Reach.ANY:
        user = await stores.tenancy.find_user(user_id)
    else:
        user = await stores.tenancy.get_user(access.tenant, user_id)
    if (user is None or (kind is not None and user.kind != kind)
            or not access.sees(user.tenant_id, user.team_id, user.id)):
        what = "service account" if kind == "service_account" else "user"
        raise NotFound(f"no {what} '{user_id[:64]}'", code=f"{what.replace(' ', '_')}_not_found")
    return user
