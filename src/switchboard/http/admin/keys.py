"""``/admin/v1/keys``: issue, list and revoke the gateway's API keys.

Minimal contract (other tools depend on it): ``POST /admin/v1/keys`` with ``{"models": [...]}``
(optional ``team``, ``user``, ``expires_at``, ``metadata``, ``name``) answers 201 with the new
key's ``id`` and ``key`` (shown this once, never again); ``GET /admin/v1/keys`` lists keys
without their secrets; ``DELETE /admin/v1/keys/{id}`` revokes. Rotation
(``POST /admin/v1/keys/{id}/rotate``) issues a new key with the same settings and lets the old
one work for a grace period. Every change is published on the
change feed, so every instance stops (or starts) accepting the key at once.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from switchboard.access import keys as keyfmt
from switchboard.context import Principal
from switchboard.errors import GatewayError, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.stores.protocols import KeyRecord

router = APIRouter(prefix="/admin/v1/keys", tags=["keys"])

DEFAULT_TENANT = "default"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
MetaValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool | None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: Annotated[list[Name], Field(min_length=1, max_length=1000)] = Field(
        description="Model names or `*` patterns the key may use; `[\"*\"]` for every model."
    )
    name: Name | None = None
    team: Ident | None = None
    user: Ident | None = None
    expires_at: AwareDatetime | None = Field(default=None, description="RFC 3339 with a time zone.")
    metadata: Annotated[dict[Name, MetaValue], Field(max_length=50)] = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _tenant(principal: Principal) -> str:
    return principal.tenant_id or DEFAULT_TENANT


def _public(record: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never the key or its hash."""
    return {
        "id": record.id,
        "object": "api_key",
        "prefix": record.prefix,
        "name": record.name,
        "models": list(record.allowed_models) if record.allowed_models is not None else None,
        "tenant": record.tenant_id,
        "team": record.team_id,
        "user": record.user_id,
        "role": record.role,
        "enabled": record.enabled,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "metadata": dict(record.metadata),
    }


@router.post("", status_code=201, summary="Issue a key (the key is shown once, in this answer)")
async def create_key(
    body: KeyCreate, request: Request, access: Annotated[Access, Depends(allow("key", "create"))]
) -> JSONResponse:
    services = request.app.state.services
    if services.hashing is None:
        raise GatewayError("keys cannot be issued: no server secret (auth.secret_key)", status=503)
    principal = _principal(request)
    key = keyfmt.new_key()
    record = KeyRecord(
        id="key_" + secrets.token_hex(8),
        key_hash=keyfmt.key_hash(key, services.hashing),
        prefix=keyfmt.prefix_of(key),
        tenant_id=_tenant(principal),
        team_id=body.team,
        user_id=body.user,
        role="developer",
        allowed_models=tuple(body.models),
        expires_at=body.expires_at,
        metadata=body.metadata,
        name=body.name,
        created_by=principal.id,
    )
    await services.stores().keys.put(record)
    await services.key_cache().changed(record.key_hash)  # forget a cached "no such key" anywhere
    await audit.record(request, "key.create", "api_key", record.id, after=_public(record))
    return JSONResponse({**_public(record), "key": key}, status_code=201)


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: Annotated[int, Field(ge=0, le=30 * 86400)] = Field(
        default=3600, description="How long the old key keeps working (0: it stops at once)."
    )


@router.post("/{key_id}/rotate", status_code=201, summary="Replace a key after a grace period")
async def rotate_key(
    key_id: str,
    request: Request,
    access: Annotated[Access, Depends(allow("key", "rotate"))],
    body: Annotated[KeyRotate | None, Body()] = None
) -> JSONResponse:
    services = request.app.state.services
    if services.hashing is None:
        raise GatewayError("keys cannot be issued: no server secret (auth.secret_key)", status=503)
    principal = _principal(request)
    tenant = _tenant(principal)
    store = services.stores().keys
    old = await store.get(tenant, key_id)
    if old is None:
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    if not old.enabled:
        raise InvalidRequest("a revoked or disabled key cannot be rotated", code="key_disabled")
    now = datetime.now(UTC)
    grace_end = now + timedelta(seconds=(body or KeyRotate()).grace_seconds)
    key = keyfmt.new_key()
    new = replace(
        old,
        id="key_" + secrets.token_hex(8),
        key_hash=keyfmt.key_hash(key, services.hashing),
        prefix=keyfmt.prefix_of(key),
        created_at=now,
        created_by=principal.id,
        metadata={**old.metadata, "rotated_from": old.id},
    )
    retired = replace(
        old,
        expires_at=min(old.expires_at, grace_end) if old.expires_at else grace_end,
        metadata={**old.metadata, "rotated_to": new.id},
    )
    await store.put(new)
    await store.put(retired)
    await services.key_cache().changed(old.key_hash)
    await services.key_cache().changed(new.key_hash)
    await audit.record(request, "key.rotate", "api_key", old.id, before=_public(old), after=_public(retired))
    await audit.record(request, "key.create", "api_key", new.id, after=_public(new))
    answer = {**_public(new), "key": key, "rotated_from": old.id}
    answer["previous_expires_at"] = _public(retired)["expires_at"]
    return JSONResponse(answer, status_code=201)


@router.get("", summary="List keys (never their secrets)")
async def list_keys(
    request: Request,
    access: Annotated[Access, Depends(allow("key", "read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64, description="Last id of the previous page")] = None,
) -> dict[str, Any]:
    services = request.app.state.services
    records = await services.stores().keys.list_keys(_tenant(_principal(request)))
    if after is not None:
        ids = [r.id for r in records]
        if after not in ids:
            raise InvalidRequest("after: unknown cursor", param="after", code="invalid_value")
        records = records[ids.index(after) + 1:]
    page = records[:limit]
    return {
        "object": "list",
        "data": [_public(r) for r in page],
        "has_more": len(records) > limit,
        "last_id": page[-1].id if page else None,
    }


@router.get("/{key_id}", summary="One key (never its secret)")
async def get_key(
    key_id: str, request: Request, access: Annotated[Access, Depends(allow("key", "read"))]
) -> dict[str, Any]:
    services = request.app.state.services
    record = await services.stores().keys.get(_tenant(_principal(request)), key_id)
    if record is None:
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    return _public(record)


@router.delete("/{key_id}", summary="Revoke a key: it stops working on every instance")
async def revoke_key(
    key_id: str, request: Request, access: Annotated[Access, Depends(allow("key", "revoke"))]
) -> dict[str, Any]:
    services = request.app.state.services
    tenant = _tenant(_principal(request))
    store = services.stores().keys
    record = await store.get(tenant, key_id)
    if record is None or not await store.disable(tenant, key_id):
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    await services.key_cache().changed(record.key_hash)
    revoked = await store.get(tenant, key_id)
    after = _public(revoked) if revoked else None
    await audit.record(request, "key.revoke", "api_key", key_id, before=_public(record), after=after)
    return {"id": key_id, "object": "api_key", "deleted": True}
