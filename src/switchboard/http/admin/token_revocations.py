"""``/admin/v1/token-revocations``: cutting off a JWT caller before its tokens expire
(docs/access.md, "Revoking a JWT caller").

``POST`` revokes the tokens of one user of a tenant issued before ``not_before`` (default: now),
or with ``block`` every token of the user until the revocation is deleted (201); a second
revocation of the same user replaces the first (200, the same id and ``created_at``). ``GET``
lists them (paginated by id) or reads one; ``DELETE`` lifts one. Every change is read again here
before the answer and published on the change feed, so every instance applies it within about a
second (access/revocations.py). Tenant admins manage their tenant's; the platform admin any
tenant's; another tenant's record answers 404 ``token_revocation_not_found``. As a key's block,
a revocation is replaced or lifted only by its maker's role or above: a tenant admin may read
the platform admin's, not weaken or delete it (403 ``permission_denied``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StringConstraints

from switchboard.access.revocations import TOPIC
from switchboard.access.roles import ROLES, Reach, may_grant
from switchboard.access.tokens import mapped_user
from switchboard.errors import Conflict, NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import PROSE, AdminBody
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import After, Ident, Limit, TenantQuery, UtcTime, new_id, page
from switchboard.stores import Stores
from switchboard.stores.protocols import (
    AuditEntry,
    RevocationOutranked,
    TokenRevocation,
    TokenRevocationStore,
    TooManyRevocations,
)

router = APIRouter(prefix="/admin/v1/token-revocations", tags=["token revocations"])

# Every instance keeps every revocation in memory: a tenant cannot make that unbounded.
MAX_PER_TENANT = 10_000
# A user claim's value as the identity provider sends it (printable ASCII, as the verifier
# takes it); over 64 characters it is hashed as the verifier hashes it.
MAX_USER = 1024  # characters of a user claim
UserClaim = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER, pattern=r"^[\x21-\x7e]+$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500), PROSE]


def whole_second(value: datetime) -> datetime:
    """``value`` rounded up to a whole second: a token's ``iat`` counts whole seconds, so one in
    the revocation's second may have been issued before it and is refused; ``not_before`` says
    the first ``iat`` that works."""
    if value.microsecond == 0:
        return value
    return value.replace(microsecond=0) + timedelta(seconds=1)


def _not_future(value: datetime) -> datetime:
    # Up to the current second rounded up: the not_before of a revocation made now, sent again.
    if value > whole_second(datetime.now(UTC)):
        raise ValueError("must not be in the future (tokens issued later are a new sign-in)")
    return value


def _future(value: datetime) -> datetime:
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class RevocationCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    user: UserClaim = Field(description="The JWT caller's user id: the value of the issuer's user claim.")
    tenant: Ident | None = Field(default=None, description="Another tenant (platform admin only).")
    not_before: Annotated[UtcTime, AfterValidator(_not_future)] | None = Field(
        default=None, description="Tokens issued before this time (RFC 3339, not in the future) are "
                                  "refused; default now. Stored rounded up to a whole second, as "
                                  "a token's iat counts.")
    block: StrictBool = Field(default=False, description="Refuse every token of the user, new ones "
                                                         "included, until the revocation is deleted.")
    reason: Reason | None = None
    expires_at: Annotated[UtcTime, AfterValidator(_future)] | None = Field(
        default=None, description="When the revocation stops applying and is removed (RFC 3339, in "
                                  "the future); default never.")


def public(record: TokenRevocation) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "token_revocation",
        "tenant": record.tenant_id,
        "user": record.user_id,
        "not_before": record.not_before.isoformat(),
        "block": record.block,
        "reason": record.reason,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "created_by_role": record.created_by_role,
    }


def _store(request: Request) -> TokenRevocationStore:
    stores: Stores = request.app.state.services.stores()
    assert stores.token_revocations is not None
    return stores.token_revocations


async def _changed(request: Request) -> None:
    """Apply the change here before answering, and tell every other instance."""
    revocations = request.app.state.services.token_revocations()
    if revocations is not None:
        await revocations.changed()
    else:  # no identity provider here: others may have one
        await request.app.state.services.stores().feed.publish(TOPIC, "changed")


def _overrides(access: Access) -> tuple[str, ...]:
    """The roles whose revocations the caller may replace or delete: its own and those below."""
    return tuple(role for role in ROLES if may_grant(access.principal.role, role))


def _outranked(access: Access, error: RevocationOutranked, doing: str) -> PermissionDenied:
    return PermissionDenied(
        f"the revocation of '{error.record.user_id}' was made by a caller with the role "
        f"'{error.record.created_by_role}': the role '{access.principal.role}' may not {doing} it",
        code="permission_denied")


def _not_found(revocation_id: str) -> NotFound:
    return NotFound(f"no token revocation with id '{revocation_id[:64]}'", code="token_revocation_not_found")


async def _in_reach(access: Access, store: TokenRevocationStore, revocation_id: str) -> TokenRevocation:
    if access.reach >= Reach.ANY:
        record = await store.find(revocation_id)
    else:
        record = await store.get(access.tenant, revocation_id)
    if record is None or not access.sees(record.tenant_id):
        raise _not_found(revocation_id)
    return record


@router.post("", status_code=201, summary="Revoke a JWT caller's tokens (replaces its earlier revocation)")
async def create_revocation(
    body: RevocationCreate, request: Request, response: Response,
    access: Annotated[Access, Depends(allow("token_revocation", "create"))],
) -> dict[str, Any]:
    store = _store(request)
    tenant = access.tenant_for(body.tenant)  # a JWT tenant need not have a record
    user = mapped_user(body.user)
    now = datetime.now(UTC)
    record = TokenRevocation(
        id=new_id("trv"), tenant_id=tenant, user_id=user, not_before=whole_second(body.not_before or now),
        block=body.block, reason=body.reason, expires_at=body.expires_at, created_at=now,
        created_by=access.principal.id, created_by_role=access.principal.role,
    )

    def audited(stored: TokenRevocation, before: TokenRevocation | None) -> AuditEntry:
        action = "token_revocation.create" if before is None else "token_revocation.update"
        return audit.entry(request, action, "token_revocation", stored.id,
                           before=None if before is None else public(before), after=public(stored),
                           tenant=tenant)

    try:
        # Written with its audit entry: an error answered means nothing changed.
        stored, before = await store.put(record, cap=MAX_PER_TENANT, overrides=_overrides(access),
                                         audited=audited)
    except RevocationOutranked as error:
        raise _outranked(access, error, "replace") from None
    except TooManyRevocations:
        raise Conflict(f"the tenant has {MAX_PER_TENANT} token revocations, the most it may have: delete "
                       "those that no longer matter (older than the longest token lifetime)") from None
    if stored is before:
        # The revocation as it is already (another admin of the same role asking again changes
        # nothing): 200 with the record, nothing written, published or audited, as for any
        # write that changes nothing.
        response.status_code = 200
        return public(stored)
    await _changed(request)
    if before is not None:  # replaced: the record existed already, as a budget set again is 200
        response.status_code = 200
    return public(stored)


@router.get("", summary="The token revocations of a tenant, by id")
async def list_revocations(
    request: Request,
    access: Annotated[Access, Depends(allow("token_revocation", "read"))],
    limit: Limit = 100,
    after: After = None,
    tenant: TenantQuery = None,
    user: Annotated[str | None, Query(max_length=MAX_USER)] = None,
) -> dict[str, Any]:
    # A misspelt filter is a 400; a user claim is as long as a revocation takes one.
    query_params(request, ("limit", "after", "tenant", "user"), longer={"user": MAX_USER})
    # Not tenant_in_reach: a JWT tenant has revocations without a tenant record (as on creation).
    records = await _store(request).list_revocations(
        access.tenant_for(tenant), user_id=None if user is None else mapped_user(user), after=after,
        limit=limit + 1)
    return page(records, limit, public, lambda r: r.id)


@router.get("/{revocation_id}", summary="One token revocation")
async def get_revocation(
    revocation_id: str, request: Request,
    access: Annotated[Access, Depends(allow("token_revocation", "read"))],
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return public(await _in_reach(access, _store(request), revocation_id))


@router.delete("/{revocation_id}", summary="Lift a token revocation")
async def delete_revocation(
    revocation_id: str, request: Request,
    access: Annotated[Access, Depends(allow("token_revocation", "delete"))],
) -> dict[str, Any]:
    store = _store(request)
    record = await _in_reach(access, store, revocation_id)
    # Deleted with its audit entry: an error answered means the revocation still applies.
    lifted = audit.entry(request, "token_revocation.delete", "token_revocation", revocation_id,
                         before=public(record), tenant=record.tenant_id)
    try:
        deleted = await store.delete(record.tenant_id, revocation_id, overrides=_overrides(access),
                                     audited=lifted)
    except RevocationOutranked as error:
        raise _outranked(access, error, "lift") from None
    if not deleted:
        raise _not_found(revocation_id)
    await _changed(request)
    return {"id": revocation_id, "object": "token_revocation", "deleted": True}
