"""``/admin/v1/limits``: rate limits for a tenant, a team, a user, a tenant's traffic to one
model, or one key on one model (docs/limits.md). Keys carry their own (``rpm_limit``,
``tpm_limit`` on the key); global and per-model defaults come from the config's ``limits:``.

``PUT /admin/v1/limits`` sets the limits of one (scope, subject), replacing what was set
before; ``GET`` lists or reads them; ``DELETE /admin/v1/limits/{id}`` removes them. Every change
is published on the change feed, so every instance applies it within milliseconds (and within
the cache's TTL if a message is lost). Tenant admins manage their tenant's limits; every role
may read them; a record of another tenant answers 404 ``limit_not_found``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ConfigDict, Field, StrictInt, StringConstraints

from switchboard.access.roles import Reach
from switchboard.errors import InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    TenantQuery,
    key_not_above,
    new_id,
    scoped_subject,
    tenant_in_reach,
)
from switchboard.stores import Stores
from switchboard.stores.protocols import LIMIT_SCOPES, AuditEntry, LimitRecord

router = APIRouter(prefix="/admin/v1/limits", tags=["limits"])

# Beyond these a limit is a typo, not a policy.
MAX_RPM = 100_000_000
MAX_TOKENS = 1_000_000_000_000
RpmLimit = Annotated[StrictInt, Field(ge=1, le=MAX_RPM)]
TokenLimit = Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Scope = Literal["tenant", "team", "user", "model", "key_model"]


class LimitSet(AdminBody):
    model_config = ConfigDict(extra="forbid")

    scope: Scope
    subject: Subject | None = Field(
        default=None, description="The team or user id, or the model name; `tenant`: the tenant (default)."
    )
    rpm: RpmLimit | None = None
    tpm: TokenLimit | None = None
    tpd: TokenLimit | None = None
    tenant: Ident | None = Field(default=None, description="Another tenant (platform admin only).")
    key: Ident | None = Field(default=None, description="`key_model` only: the key's id.")
    model: Subject | None = Field(default=None, description="`key_model` only: the model name.")


def public(record: LimitRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "rate_limit",
        "tenant": record.tenant_id,
        "scope": record.scope,
        "subject": record.subject,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "tpd": record.tpd,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "created_by": record.created_by,
    }


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    assert stores.limits is not None
    return stores


async def _changed(request: Request, tenant: str) -> None:
    cache = request.app.state.services.limit_cache()
    if cache is not None:
        await cache.changed(tenant)


async def _subject(access: Access, body: LimitSet, tenant: str, stores: Stores) -> str:
    subject = body.subject
    if (body.key is not None or body.model is not None) != (body.scope == "key_model"):
        raise InvalidRequest("key and model: for the scope 'key_model' (and only for it), name both",
                             param="key" if body.key is not None else "model", code="invalid_value")
    if body.scope == "key_model":
        if subject is not None or body.key is None or body.model is None:
            raise InvalidRequest("a key_model limit names the key and the model (no subject)",
                                 param="subject", code="invalid_value")
        key = await stores.keys.get(tenant, body.key)
        if key is None:
            raise NotFound(f"no key with id '{body.key[:64]}'", code="key_not_found")
        key_not_above(access, key)
        return f"{key.lineage}:{body.model}"  # held for the whole rotation chain
    return await scoped_subject(stores, tenant, body.scope, subject, "limit")


async def _in_reach(access: Access, stores: Stores, limit_id: str) -> LimitRecord:
    assert stores.limits is not None
    if access.reach >= Reach.ANY:
        record = await stores.limits.find(limit_id)
    else:
        record = await stores.limits.get(access.tenant, limit_id)
    if record is None or not access.sees(record.tenant_id):
        raise NotFound(f"no rate limit with id '{limit_id[:64]}'", code="limit_not_found")
    return record


@router.put("", summary="Set the rate limits of a tenant, team, user or model (replaces them)")
async def set_limits(
    body: LimitSet, request: Request, access: Annotated[Access, Depends(allow("limit", "set"))]
) -> dict[str, Any]:
    if body.rpm is None and body.tpm is None and body.tpd is None:
        raise InvalidRequest("set at least one of rpm, tpm, tpd (DELETE removes the limits)",
                             code="invalid_value")
    stores = _stores(request)
    assert stores.limits is not None
    # A limit on a model no caller can name would never apply: a typo is refused, not kept.
    model, param = (body.subject, "subject") if body.scope == "model" else (body.model, "model")
    routing = request.app.state.services.routing
    if (body.scope in ("model", "key_model") and model is not None and routing is not None
            and model not in routing.current.routes):
        raise InvalidRequest(f"{param}: no model '{model[:256]}' is served (GET /v1/models lists them)",
                             param=param, code="model_not_found")
    tenant = access.tenant_for(body.tenant)
    platform = access.reach >= Reach.ANY
    if platform and tenant != access.tenant and await stores.tenancy.get_tenant(tenant) is None:
        raise NotFound(f"no tenant '{tenant[:64]}'", code="tenant_not_found")
    now = datetime.now(UTC)
    record = LimitRecord(
        id=new_id("lim"), tenant_id=tenant, scope=body.scope,
        subject=await _subject(access, body, tenant, stores),
        rpm=body.rpm, tpm=body.tpm, tpd=body.tpd, created_at=now, updated_at=now,
        created_by=access.principal.id,
    )

    def audited(stored: LimitRecord, before: LimitRecord | None) -> AuditEntry:
        return audit.entry(request, "limit.set", "rate_limit", stored.id,
                           before=None if before is None else public(before), after=public(stored),
                           tenant=tenant)

    # Written with its audit entry: an error answered means the limits are as they were.
    stored, before = await stores.limits.put(record, audited=audited)
    if stored is before:  # the limits it has already: nothing written, published or audited
        return public(stored)
    await _changed(request, tenant)
    return public(stored)


@router.get("", summary="The rate limits set for a tenant")
async def list_limits(
    request: Request,
    access: Annotated[Access, Depends(allow("limit", "read"))],
    tenant: TenantQuery = None,
    scope: Annotated[Scope | None, Query()] = None,
) -> dict[str, Any]:
    query_params(request, ("tenant", "scope"))  # a misspelt or repeated filter is a 400, not ignored
    stores = _stores(request)
    assert stores.limits is not None
    records = await stores.limits.list_limits(await tenant_in_reach(access, stores, tenant))
    return {"object": "list", "data": [public(r) for r in records if scope is None or r.scope == scope]}


@router.get("/{limit_id}", summary="One rate limit record")
async def get_limits(
    limit_id: str, request: Request, access: Annotated[Access, Depends(allow("limit", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return public(await _in_reach(access, _stores(request), limit_id))


@router.delete("/{limit_id}", summary="Remove a rate limit record")
async def delete_limits(
    limit_id: str, request: Request, access: Annotated[Access, Depends(allow("limit", "delete"))]
) -> dict[str, Any]:
    stores = _stores(request)
    assert stores.limits is not None
    record = await _in_reach(access, stores, limit_id)
    if record.scope == "key_model":  # subject: "<key lineage>:<model>", the lineage a key id
        key_not_above(access, await stores.keys.get(record.tenant_id, record.subject.split(":", 1)[0]))
    # Deleted with its audit entry: an error answered means the limit still applies.
    deleted = audit.entry(request, "limit.delete", "rate_limit", limit_id, before=public(record),
                          tenant=record.tenant_id)
    if not await stores.limits.delete(record.tenant_id, limit_id, audited=deleted):
        raise NotFound(f"no rate limit with id '{limit_id[:64]}'", code="limit_not_found")
    await _changed(request, record.tenant_id)
    return {"id": limit_id, "object": "rate_limit", "deleted": True}


assert set(LIMIT_SCOPES) == {"tenant", "team", "user", "model", "key_model"}
