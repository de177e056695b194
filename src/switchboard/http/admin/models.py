"""``/admin/v1/models``: the model table, managed at run time.

Stored models are listed, added, changed and removed here; the YAML's are listed too, marked
``"source": "config", "read_only": true``. A stored model may use a provider from either source
but may not take a YAML model's name (``409 conflict``). A change is served at once by every
instance (routing/live.py); a request already routed finishes on what it started with.
(``GET /admin/models``, the catalog view, is http/admin/catalog.py.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from switchboard.access.rules import model_allowed
from switchboard.config.catalog import ModelEntryInfo
from switchboard.config.providers import (
    MODEL_NAME_MAX,
    MODEL_NAME_PATTERN,
    PROVIDER_NAME_MAX,
    PROVIDER_NAME_PATTERN,
)
from switchboard.config.schema import DEFAULT_TOTAL, ModelConfig
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import LINE, AdminBody
from switchboard.http.admin.errors import param_of
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.providers import TimeoutsBody, check_connect, read_only, routing_of, store_of
from switchboard.http.admin.query import Limit, query_params
from switchboard.http.admin.scoping import CHANGE_ATTEMPTS
from switchboard.http.admin.subscriptions import revoke_audited, revoked_with
from switchboard.routing.live import model_config
from switchboard.stores.protocols import ModelRecord, utcnow

router = APIRouter(prefix="/admin/v1/models", tags=["models"])

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=MODEL_NAME_MAX,
                                             pattern=MODEL_NAME_PATTERN)]
ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=PROVIDER_NAME_MAX,
                                                pattern=PROVIDER_NAME_PATTERN)]
# Part of the deployment's default name (<provider>/<model>), sent in x-switchboard-deployment:
# no control character (the HTTP server refuses a header holding one), as any one-line name.
Upstream = Annotated[str, StringConstraints(min_length=1, max_length=256), LINE]


class ModelFields(AdminBody):
    model_config = ConfigDict(extra="forbid")

    timeouts: TimeoutsBody | None = None
    drop_params: bool | None = None
    info: dict[Annotated[str, StringConstraints(max_length=100)], Any] | None = Field(
        default=None, description="Catalog overrides, as `models[].info` in the YAML (docs/catalog.md)."
    )
    require_approval: bool | None = Field(
        default=None, description="Keys need an approved subscription to call this model."
    )


class ModelCreate(ModelFields):
    name: ModelName
    provider: ProviderName
    model: Upstream = Field(description="The provider's own model id.")


class ModelUpdate(ModelFields):
    provider: ProviderName | None = None
    model: Upstream | None = None


def _timeouts(body: TimeoutsBody | None) -> dict[str, float] | None:
    if body is None:
        return None
    return {k: v for k, v in body.model_dump().items() if v is not None} or None


class InfoBody(AdminBody, ModelEntryInfo):
    """``models[].info``, as JSON. The YAML's model reads a number as text (``as_of: 2026``
    unquoted); JSON says what it means, so a number where text goes is a wrong type here (and
    text where a number goes), as on every other admin route."""

    model_config = ConfigDict(coerce_numbers_to_str=False)


def _info(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return InfoBody.model_validate(value).model_dump(mode="json", exclude_unset=True)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        loc = param_of(("info", *first["loc"])) or "info"  # info.capabilities[0], as elsewhere
        unknown = first["type"] == "extra_forbidden"  # an unknown name, as an unknown field anywhere else
        message = "unknown field" if unknown else str(first["msg"])
        raise InvalidRequest(f"{loc}: {message}", param=loc,
                             code="unknown_parameter" if unknown else "invalid_value") from None


def stored_public(r: ModelRecord) -> dict[str, Any]:
    return {
        "name": r.name, "object": "model_entry", "provider": r.provider, "model": r.model,
        "timeouts": None if r.timeouts is None else dict(r.timeouts), "drop_params": r.drop_params,
        "info": None if r.info is None else dict(r.info), "require_approval": r.require_approval,
        "source": "database", "read_only": False,
        "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat(),
    }


def config_public(m: ModelConfig) -> dict[str, Any]:
    return {
        "name": m.name, "object": "model_entry", "provider": m.provider, "model": m.model,
        "timeouts": m.timeouts.model_dump(exclude_none=True) if m.timeouts else None,
        "drop_params": m.drop_params,
        "info": m.info.model_dump(mode="json", exclude_unset=True) if m.info else None,
        "require_approval": m.require_approval, "source": "config", "read_only": True,
        "created_at": None, "updated_at": None,
    }


async def _check_provider(request: Request, provider: str) -> None:
    routing = routing_of(request)
    if routing.is_static_provider(provider):
        return
    if await store_of(request).get_provider(provider) is None:
        raise InvalidRequest(f"provider: no provider named '{provider}'", param="provider",
                             code="provider_not_found")


async def _check_connect(request: Request, record: ModelRecord) -> None:
    """The model's ``timeouts.connect`` within the total that bounds it: its own, else its
    provider's (looked up only then)."""
    timeouts = record.timeouts or {}
    if timeouts.get("connect") is None:
        return
    # Its own total bounds it when given: the provider's is read only when it is not.
    inherited = DEFAULT_TOTAL if "total" in timeouts else await _provider_total(request, record.provider)
    check_connect(timeouts, inherited, f"from provider '{record.provider}'")


async def _provider_total(request: Request, provider: str) -> float:
    """A provider's ``timeouts.total``, from either source."""
    config = next((p for p in routing_of(request).settings.providers if p.name == provider), None)
    if config is not None:
        return config.timeouts.total
    stored = await store_of(request).get_provider(provider)
    return ((stored.timeouts if stored else None) or {}).get("total", DEFAULT_TOTAL)


def _missing(name: str) -> NotFound:
    return NotFound(f"no model named '{name[:256]}'", code="model_not_found")


def _refused(name: str) -> Conflict:
    return Conflict(f"the model '{name}' could not be stored: the database refused it as "
                    "conflicting with what it holds; nothing was stored")


async def _check_not_refused(request: Request, old: ModelRecord, provider: str) -> None:
    """After an update that wrote nothing: back to the caller's loop when the model changed or
    went meanwhile (the next try reads it again), ``400 provider_not_found`` when its new
    provider went; else the database refused the row itself (a constraint), which no retry
    changes: ``409 conflict``."""
    current = await store_of(request).get_model(old.name)
    if current is None or current.updated_at != old.updated_at:
        return
    await _check_provider(request, provider)
    raise _refused(old.name)


def _validate(record: ModelRecord) -> None:
    try:
        model_config(record)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "model"
        raise InvalidRequest(f"{loc}: {first['msg']}", param=loc, code="invalid_value") from None


@router.get("", summary="Models: the configuration file's (read-only) and the stored ones")
async def list_models(
    request: Request,
    access: Annotated[Access, Depends(allow("model", "read"))],
    limit: Limit = 100,
    after: Annotated[str | None, Query(max_length=256, description="Last name of the previous page")] = None,
) -> dict[str, Any]:
    query_params(request, ("limit", "after"))  # misspelt or repeated: a 400, never ignored
    routing = routing_of(request)
    state = await store_of(request).load()
    items = [config_public(m) for m in routing.settings.models]
    items += [stored_public(m) for m in state.models if not routing.is_static_model(m.name)]
    allowed = access.principal.allowed_models  # a key sees the models it may use, as in the catalog
    if allowed is not None:
        items = [item for item in items if model_allowed(item["name"], allowed)]
    items.sort(key=lambda item: item["name"])  # stable: a group's deployments in the file's order
    if after is not None:
        items = [item for item in items if item["name"] > after]
    end = _page_end(items, limit)
    page = items[:end]
    return {"object": "list", "data": page, "has_more": len(items) > end,
            "last_id": page[-1]["name"] if page else None}


def _page_end(items: list[dict[str, Any]], limit: int) -> int:
    """Where a page of ``limit`` entries ends, moved past the rest of its last group: entries of
    one group (the file's entries with one name) share the cursor, their name, so a page that
    split them would have the next page (``after=<name>``) skip the group's other deployments."""
    end = min(limit, len(items))
    while 0 < end < len(items) and items[end]["name"] == items[end - 1]["name"]:
        end += 1
    return end


@router.post("", status_code=201, summary="Add a model (callable at once on every instance)")
async def create_model(
    body: ModelCreate, request: Request, access: Annotated[Access, Depends(allow("model", "create"))]
) -> JSONResponse:
    routing = routing_of(request)
    if routing.is_static_model(body.name):
        raise Conflict(f"a model named '{body.name}' is declared in the configuration file")
    await _check_provider(request, body.provider)
    record = ModelRecord(name=body.name, provider=body.provider, model=body.model,
                         timeouts=_timeouts(body.timeouts), drop_params=bool(body.drop_params),
                         info=_info(body.info), require_approval=bool(body.require_approval))
    _validate(record)
    await _check_connect(request, record)
    store = store_of(request)
    public = stored_public(record)
    # A stored provider must still be there as the model is written (a delete of it may be
    # under way): the store checks, so no model is left pointing at a deleted provider. Its audit
    # entry is written with it: an error answered means no model.
    created = audit.entry(request, "model.create", "model", record.name, after=public)
    if not await store.create_model(record, provider_stored=not routing.is_static_provider(body.provider),
                                    audited=created):
        if await store.get_model(body.name) is not None:
            raise Conflict(f"a model named '{body.name}' exists")
        await _check_provider(request, body.provider)  # a stored provider deleted meanwhile
        raise _refused(body.name)  # both there: the database refused the row itself
    await routing.changed()
    return JSONResponse(public, status_code=201)


@router.get("/{name:path}", summary="One model entry")
async def get_model(
    name: str, request: Request, access: Annotated[Access, Depends(allow("model", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    if not model_allowed(name, access.principal.allowed_models):
        raise _missing(name)  # as if it did not exist: names do not leak
    routing = routing_of(request)
    for m in routing.settings.models:
        if m.name == name:
            return config_public(m)
    record = await store_of(request).get_model(name)
    if record is None:
        raise _missing(name)
    return stored_public(record)


async def _stored(request: Request, name: str) -> ModelRecord:
    if routing_of(request).is_static_model(name):
        raise read_only("model", name)
    record = await store_of(request).get_model(name)
    if record is None:
        raise _missing(name)
    return record


def _updated(old: ModelRecord, body: ModelUpdate) -> ModelRecord:
    """The model with the body's fields applied."""
    given = body.model_fields_set
    changes: dict[str, Any] = {"updated_at": utcnow()}
    if "provider" in given and body.provider is not None:
        changes["provider"] = body.provider
    if "model" in given and body.model is not None:
        changes["model"] = body.model
    if "timeouts" in given:
        changes["timeouts"] = _timeouts(body.timeouts)
    if "info" in given:
        changes["info"] = _info(body.info)
    for flag in ("drop_params", "require_approval"):
        if flag in given:
            changes[flag] = bool(getattr(body, flag))
    return replace(old, **changes)


@router.patch("/{name:path}", summary="Change a stored model")
async def update_model(
    name: str, body: ModelUpdate, request: Request,
    access: Annotated[Access, Depends(allow("model", "update"))],
) -> dict[str, Any]:
    async with one_writer("model", name):
        for _ in range(CHANGE_ATTEMPTS):
            old = await _stored(request, name)
            if "provider" in body.model_fields_set and body.provider is not None:
                await _check_provider(request, body.provider)
            new = _updated(old, body)
            _validate(new)
            if body.model_fields_set & {"timeouts", "provider"}:  # a model stored before is left as it is
                await _check_connect(request, new)
            if replace(new, updated_at=old.updated_at) == old:
                return stored_public(old)  # nothing to change: nothing written, nothing audited
            # Written only while the model is still the version read: another admin's change made
            # meanwhile is read and kept, not overwritten with what this one read. Re-pointed at a
            # stored provider, only while that provider is there (a delete of it may be under
            # way): the next try's check then finds it gone.
            moved = new.provider != old.provider and not routing_of(request).is_static_provider(new.provider)
            after = stored_public(new)
            # Written with its audit entry: an error answered means nothing changed.
            updated = audit.entry(request, "model.update", "model", name, before=stored_public(old),
                                  after=after)
            if await store_of(request).update_model(new, old.updated_at, provider_stored=moved,
                                                    audited=updated):
                break
            await _check_not_refused(request, old, new.provider)
        else:
            raise Conflict(f"the model '{name}' kept changing while it was being updated: try again",
                           code="model_changed")
    await routing_of(request).changed()
    return after


@router.delete("/{name:path}", summary="Remove a stored model")
async def delete_model(
    name: str, request: Request, access: Annotated[Access, Depends(allow("model", "delete"))]
) -> dict[str, Any]:
    old = await _stored(request, name)
    # Deleted with its audit entry and its subscriptions' revokes and theirs: an error answered
    # means the model is still served, its subscriptions as they were.
    deleted = audit.entry(request, "model.delete", "model", name, before=stored_public(old))
    revoked = await store_of(request).delete_model(name, access.principal.id, audited=deleted,
                                                   revoke_audited=revoke_audited(request))
    if revoked is None:
        raise _missing(name)
    await routing_of(request).changed()
    await revoked_with(request, revoked)
    return {"name": name, "object": "model_entry", "deleted": True}
