"""``/admin/v1/apis``: publishing prompts as REST APIs (``POST /apis/{name}``) and moving them
along their lifecycle (draft, published, deprecated, retired); docs/prompt-apis.md.

An API belongs to a tenant and its owning team; the team's admins (and the tenant's) manage it,
everyone in the tenant reads it. It follows a prompt version or a prompt label, optionally split
between versions. Every change is published on the change feed, and every instance drops its
cached record (the request path's cache, ``apis/cache.py``). Teams subscribe to an API that
needs approval like to a gated model (``POST /admin/v1/subscriptions {"api": name}``): the
subject kind ``api`` is registered here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from switchboard.apis import sessions
from switchboard.apis.cache import publish_change
from switchboard.apis.lifecycle import split_problem, transition_problem
from switchboard.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import LINE, PROSE, AdminBody
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.prompts import beyond_caller
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    CHANGE_ATTEMPTS,
    Ident,
    TenantQuery,
    UtcTime,
    named_team_exists,
    tenant_in_reach,
    unchanged,
)
from switchboard.http.admin.subscriptions import register_subject
from switchboard.stores import Stores
from switchboard.stores.protocols import ApiExists, ApiRecord, ApiStore, AuditEntry, utcnow

router = APIRouter(prefix="/admin/v1/apis", tags=["apis"])

# An API's name is a URL path segment: /apis/{name}.
ApiName = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                           pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# Names whose /apis/{name} path is the gateway's own (http/apis/docs.py, CATALOG_PATH).
_RESERVED = frozenset({"openapi.json"})
PromptName = Annotated[str, StringConstraints(min_length=1, max_length=128), LINE]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Description = Annotated[str, StringConstraints(max_length=4000), PROSE]
Version = Annotated[int, Field(ge=1, le=1_000_000)]


class SplitArm(AdminBody):
    model_config = ConfigDict(extra="forbid")

    version: Version
    percent: Annotated[int, Field(ge=0, le=100)]


Split = Annotated[list[SplitArm], Field(min_length=2, max_length=10)]


class SessionsBody(AdminBody):
    """Server-side sessions (``x-switchboard-session``, docs/portal.md); absent fields default."""

    model_config = ConfigDict(extra="forbid")

    max_turns: Annotated[int, Field(ge=1, le=sessions.MAX_TURNS)] = sessions.DEFAULT_TURNS
    ttl_seconds: Annotated[int, Field(ge=sessions.MIN_TTL, le=sessions.MAX_TTL)] = sessions.DEFAULT_TTL
    max_bytes: Annotated[int, Field(ge=sessions.MIN_BYTES, le=sessions.MAX_BYTES)] = sessions.DEFAULT_BYTES


class ApiCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: ApiName = Field(description="Served at POST /apis/{name}.")
    prompt: PromptName = Field(description="The prompt (of the same tenant) the API renders.")
    version: Version | None = Field(default=None, description="Pin this prompt version.")
    label: Label | None = Field(default=None, description="Follow this prompt label (e.g. production).")
    status: Literal["draft", "published"] = "published"
    description: Description | None = None
    team: Ident | None = Field(default=None, description="The owning team; default: the caller's.")
    tenant: Ident | None = Field(default=None, description="Platform admin only; default: the caller's.")
    require_approval: bool = Field(default=False, description="Other teams need an approved subscription.")
    successor: ApiName | None = None
    sunset_at: UtcTime | None = None
    split: Split | None = Field(default=None,
                                description="A/B split between prompt versions, sticky per key.")
    sessions: SessionsBody | None = Field(default=None, description="Keep multi-turn sessions.")


class ApiUpdate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    status: Literal["draft", "published", "deprecated", "retired"] | None = None
    version: Version | None = None
    label: Label | None = None
    description: Description | None = None
    require_approval: bool | None = None
    successor: ApiName | None = None
    sunset_at: UtcTime | None = None
    # Two arms or more (checked below, 400 invalid_split); an empty list (or null) removes it.
    split: Annotated[list[SplitArm], Field(max_length=10)] | None = Field(
        default=None, description="Set a split; an empty list (or null) removes it.")
    sessions: SessionsBody | None = Field(default=None, description="Keep sessions; null turns them off.")


def public(record: ApiRecord) -> dict[str, Any]:
    return {
        "object": "api",
        "name": record.name,
        "tenant": record.tenant_id,
        "team": record.team_id,
        "prompt": record.prompt,
        "version": record.version,
        "label": record.label,
        "status": record.status,
        "description": record.description,
        "require_approval": record.require_approval,
        "successor": record.successor,
        "sunset_at": record.sunset_at.isoformat() if record.sunset_at else None,
        "deprecated_at": record.deprecated_at.isoformat() if record.deprecated_at else None,
        "split": [dict(arm) for arm in record.split] if record.split else None,
        "sessions": dict(record.sessions) if record.sessions is not None else None,
        "url": f"/apis/{record.name}",
        "openapi": f"/apis/{record.name}/openapi.json",
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    return stores


def _apis(request: Request) -> ApiStore:
    store = _stores(request).apis
    assert store is not None, "the SQL stores are open"
    return store


async def _check_prompt(request: Request, tenant: str, prompt: str, version: int | None,
                        label: str | None, split: list[SplitArm] | None) -> None:
    """400 unless the prompt (and the version or label named) exists in the tenant."""
    store = _stores(request).prompts
    if store is None:  # no registry in this deployment: nothing to check against
        return
    found = await store.get(tenant, prompt, version=version, label=label)
    if found is None:
        what = f"version {version} of " if version is not None else f"label '{label}' of " if label else ""
        raise InvalidRequest(f"prompt: no {what}prompt '{prompt[:128]}'", param="prompt",
                             code="prompt_not_found")
    for arm in split or ():
        if await store.get(tenant, prompt, version=arm.version) is None:
            raise InvalidRequest(f"split: prompt '{prompt[:128]}' has no version {arm.version}",
                                 param="split", code="prompt_not_found")


async def _check_models(request: Request, access: Access, tenant: str, prompt: str) -> None:
    """403 unless the caller may use the model of every version of the prompt: the API serves
    each (``/apis/{name}/v{N}``) to its callers whatever their keys' model lists, so publishing
    it gives those models, as issuing a key does (docs/access.md, "Who issues which keys").
    Every group routing may serve that model by (a rule, a split, a semantic route, a fallback)
    too: the caller's own calls are never served by one its key may not use (a rule to it is
    refused, a fallback to it skipped), while the API's calls would be."""
    store = _stores(request).prompts
    allowed = access.principal.allowed_models
    if store is None or allowed is None:
        return
    checked: set[str] = set()
    for version in await store.versions(tenant, prompt):
        if version.model in checked:
            continue
        checked.add(version.model)
        beyond = beyond_caller(request, version.model, allowed)
        if beyond is not None:
            raise PermissionDenied(
                f"prompt: version {version.version} of '{prompt[:128]}' is bound to the model "
                f"'{version.model[:256]}'{beyond}, beyond the models the caller may use itself",
                param="prompt", code="permission_denied")


def _check_split(split: list[SplitArm] | None) -> None:
    if split:
        problem = split_problem([arm.model_dump() for arm in split])
        if problem:
            raise InvalidRequest(problem, param="split", code="invalid_split")


async def _visible(request: Request, access: Access, name: str, tenant: str | None) -> ApiRecord:
    scope = access.tenant_for(tenant)
    found = await _apis(request).get(scope, name)
    if found is None or not access.sees(found.tenant_id, found.team_id):
        raise NotFound(f"no API '{name[:128]}'", code="api_not_found")
    return found


@router.post("", summary="Publish a prompt version or label as POST /apis/{name}", status_code=201)
async def create_api(
    request: Request, body: ApiCreate, access: Annotated[Access, Depends(allow("api", "create"))],
) -> JSONResponse:
    tenant = await tenant_in_reach(access, _stores(request), body.tenant)
    team = body.team or access.principal.team_id
    if team is not None and not access.sees(tenant, team):
        raise NotFound(f"no team '{team}'", code="team_not_found")
    if body.team is not None:
        await named_team_exists(access, _stores(request), tenant, body.team)
    if body.version is not None and body.label is not None:
        raise InvalidRequest("give version or label, not both", param="label", code="invalid_value")
    if body.name in _RESERVED:
        raise InvalidRequest(f"the name '{body.name}' is reserved: GET /apis/{body.name} is the catalog "
                             "document of the tenant's APIs", param="name", code="reserved_name")
    _check_split(body.split)
    await _check_prompt(request, tenant, body.prompt, body.version, body.label, body.split)
    await _check_models(request, access, tenant, body.prompt)
    record = ApiRecord(
        tenant_id=tenant, name=body.name, prompt=body.prompt, version=body.version, label=body.label,
        status=body.status, description=body.description, team_id=team,
        require_approval=body.require_approval, successor=body.successor, sunset_at=body.sunset_at,
        split=[arm.model_dump() for arm in body.split] if body.split else None,
        sessions=body.sessions.model_dump() if body.sessions is not None else None,
        created_by=access.principal.id,
    )
    # Stored with its audit entry: an error answered means no API.
    created = audit.entry(request, "api.create", "api", record.name, after=public(record), tenant=tenant)
    try:
        stored = await _apis(request).create(record, audited=created)
    except ApiExists:
        raise Conflict(f"an API named '{body.name}' exists; PATCH it, or pick another name",
                       param="name", code="api_exists") from None
    await publish_change(_stores(request).feed, stored.tenant_id, stored.name)  # a cached "no such API"
    return JSONResponse(public(stored), status_code=201)


@router.get("", summary="The APIs of the caller's tenant, by name")
async def list_apis(
    request: Request,
    access: Annotated[Access, Depends(allow("api", "read"))],
    status: Annotated[Literal["draft", "published", "deprecated", "retired"] | None, Query()] = None,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("status", "tenant"))  # misspelt or repeated: a 400, never ignored
    scope = await tenant_in_reach(access, _stores(request), tenant)
    found = await _apis(request).list_apis(scope)
    data = [public(r) for r in found if access.sees(r.tenant_id, r.team_id) and status in (None, r.status)]
    return {"object": "list", "data": data, "has_more": False}


@router.get("/{name}", summary="One API")
async def get_api(
    name: str, request: Request, access: Annotated[Access, Depends(allow("api", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    return public(await _visible(request, access, name, tenant))


def _changes(before: ApiRecord, body: ApiUpdate) -> dict[str, Any]:
    """The fields the body changes on the API as it is now (its status moves checked)."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if body.status is not None and body.status != before.status:
        problem = transition_problem(before.status, body.status)
        if problem:
            raise Conflict(problem, param="status", code="invalid_transition")
        changes["status"] = body.status
        if body.status == "deprecated":
            changes["deprecated_at"] = utcnow()
        elif body.status == "published":
            changes["deprecated_at"] = None
    if "version" in given or "label" in given:
        if body.version is not None and body.label is not None:
            raise InvalidRequest("give version or label, not both", param="label", code="invalid_value")
        changes["version"], changes["label"] = body.version, body.label
    for field in ("description", "successor", "sunset_at"):
        if field in given:
            changes[field] = getattr(body, field)
    if body.require_approval is not None:
        changes["require_approval"] = body.require_approval
    if "split" in given:
        _check_split(body.split)
        changes["split"] = [arm.model_dump() for arm in body.split] if body.split else None
    if "sessions" in given:
        changes["sessions"] = body.sessions.model_dump() if body.sessions is not None else None
    return changes


@router.patch("/{name}", summary="Move an API along its lifecycle, re-point it, split it",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ApiUpdate.model_json_schema()}}}})
async def update_api(
    name: str, request: Request, raw: Annotated[dict[str, Any], Body()],
    access: Annotated[Access, Depends(allow("api", "update"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    before = await _visible(request, access, name, tenant)  # another tenant's or team's: 404 first
    try:
        body = ApiUpdate.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    async with one_writer("api", tenant, name):
        for _ in range(CHANGE_ATTEMPTS):
            # Read again inside: the change queued before this one may have just been written.
            before = await _visible(request, access, name, tenant)
            changes = _changes(before, body)
            if unchanged(before, changes):
                return public(before)  # nothing to change: nothing written, nothing audited
            # After the no-op check: a PATCH that repeats a retired API's fields changes nothing
            # and is answered 200, as for any other API; only a real change is refused.
            if before.status == "retired":
                raise Conflict("a retired API cannot change", param="status", code="invalid_transition")
            after = replace(before, **changes)
            # Publishing (a draft, or a deprecated API again) serves the prompt's versions as a
            # re-point does, those saved since it was last checked included: checked alike.
            if "version" in changes or "split" in changes or changes.get("status") == "published":
                await _check_prompt(request, after.tenant_id, after.prompt, after.version, after.label,
                                    body.split if "split" in changes else None)
                await _check_models(request, access, after.tenant_id, after.prompt)
            action = f"api.{changes['status']}" if "status" in changes else "api.update"

            def audited(stored: ApiRecord, action: str = action, before: ApiRecord = before) -> AuditEntry:
                return audit.entry(request, action, "api", stored.name, before=public(before),
                                   after=public(stored), tenant=stored.tenant_id)

            try:
                # Written only while the API is still the version read: a change another admin
                # made meanwhile (a retirement, say) is read and checked again, never undone. Its
                # audit entry is written with it: an error answered means nothing changed.
                stored = await _apis(request).update(after, before.updated_at, audited=audited)
                break
            except KeyError:
                continue
        else:
            raise Conflict(f"the API '{name}' kept changing while it was being updated: try again",
                           code="api_changed")
    await publish_change(_stores(request).feed, stored.tenant_id, stored.name)  # every instance's cache
    return public(stored)


async def _needs_approval(request: Request, tenant: str, name: str, team: str) -> bool | None:
    """Subscriptions to APIs: whether ``team`` needs approval to call the tenant's API ``name``
    (None: no such API, or a draft or retired one nobody can subscribe to). The owning team never
    does (http/apis/stages.py): its subscription would be one nobody's call ever reads."""
    found = await _apis(request).get(tenant, name)
    if found is None or found.status in ("draft", "retired"):
        return None
    return found.require_approval and found.team_id != team


register_subject("api", _needs_approval)
