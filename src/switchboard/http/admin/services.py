"""``/admin/v1/services``: plain REST services proxied under ``/services/{name}/``.

A service is stored for one tenant (its name unique there); its settings are those of a
``services:`` entry (config/services.py). The headers it adds upstream are sealed with the
provider-credential keyring (crypto/keyring.py) and never returned: their names are. Services of
the YAML are listed too (``origin: config``) and cannot be changed here. Every change is audited
and published on the change feed, so every instance's cache forgets the old record at once.
What each role may do is the ``service`` rows of the permission table (``access/roles.py``); a
team admin manages its own team's services; another tenant's service is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from switchboard.access.roles import PLATFORM_ADMIN, Reach
from switchboard.config.services import (
    SERVICE_NAME,
    Ident,
    Method,
    ServiceConfig,
    ServiceSettings,
    ServiceTimeouts,
    check_headers,
)
from switchboard.config.urls import same_origin
from switchboard.crypto.keyring import DecryptError
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import PROSE, AdminBody
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import CHANGE_ATTEMPTS, tenant_in_reach
from switchboard.http.admin.subscriptions import register_subject, revoke_audited, revoked_with
from switchboard.services.table import Service, ServiceTable, header_aad
from switchboard.stores.protocols import ServiceExists, ServiceRecord, ServiceStore, utcnow
from switchboard.upstream.egress import OPERATOR, egress_rule

router = APIRouter(prefix="/admin/v1/services", tags=["services"])

NameParam = Annotated[str, Field(pattern=SERVICE_NAME)]
Description = Annotated[str, Field(max_length=2000), PROSE]
TenantQuery = Annotated[Ident | None, Query(description="Platform admin only: another tenant.")]


class ServiceCreate(AdminBody, ServiceConfig):
    """A ``services:`` entry, as JSON. The YAML's model reads a number as text, as YAML writes
    ``name: 2024`` or a header value ``1`` unquoted; JSON says what it means, so a number where
    text goes (``"description": 5``, a header's value) is a wrong type here, as is text where a
    number or a boolean goes, as on every other admin route."""

    model_config = ConfigDict(coerce_numbers_to_str=False)

    # Checked as it comes in, not where the YAML's and the stored services are read.
    description: Description | None = None


class ServicePatch(AdminBody):
    """The fields to change; ``headers`` are merged (a null value removes that header)."""

    model_config = ConfigDict(extra="forbid")

    # A service keeps its name (the path callers use); given, it must be the same.
    name: str | None = None
    url: str | None = None
    description: Description | None = None
    team: Ident | None = None
    require_approval: bool | None = None
    timeout_seconds: ServiceTimeouts | None = None
    max_request_bytes: int | None = None
    max_response_bytes: int | None = None
    headers: Annotated[dict[str, SecretStr | None], Field(max_length=32)] | None = None
    rpm: int | None = None
    methods: list[Method] | None = None
    openapi_url: str | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr | None] | None) -> dict[str, SecretStr | None] | None:
        if value:
            check_headers({k: v for k, v in value.items() if v is not None})
        return value


def _table(request: Request) -> ServiceTable:
    table = request.app.state.services.services
    assert table is not None, "the gateway passes its service table"
    return table


def _store(request: Request) -> ServiceStore:
    store = request.app.state.services.stores().services
    assert store is not None, "services are stored in SQL"
    return store


def _spec(settings: ServiceSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude={"headers"})


def _public(name: str, tenant: str | None, spec: dict[str, Any], headers: list[str], origin: str,
            egress: str, record: ServiceRecord | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"object": "service", "name": name, "tenant": tenant, "origin": origin,
                           "path": f"/services/{name}/", **spec, "headers": sorted(headers),
                           "egress": egress}
    if record is not None:
        out.update(created_by=record.created_by, created_at=record.created_at.isoformat(),
                   updated_at=record.updated_at.isoformat())
    return out


def _of_record(record: ServiceRecord) -> dict[str, Any]:
    # Read-only: whoever registered the record or last changed its URL decides it (docs/access.md).
    egress = egress_rule(record.tenant_id, by_platform_admin=record.by_platform_admin)
    return _public(record.name, record.tenant_id, dict(record.spec), list(record.headers), "admin", egress,
                   record)


def _of_config(service: Service) -> dict[str, Any]:
    # The configuration file is the operator's: its services are never held back.
    return _public(service.name, service.tenant, _spec(service.settings), [h for h, _ in service.headers],
                   "config", OPERATOR)


def _sealed(request: Request, tenant: str, name: str, headers: dict[str, str]) -> dict[str, str]:
    if not headers:
        return {}
    keyring = _table(request).keyring
    if keyring is None:
        raise InvalidRequest("headers: storing header values needs the server secret (auth.secret_key)",
                             param="headers", code="secret_key_required")
    return {h: keyring.encrypt(v, header_aad(tenant, name, h)) for h, v in headers.items()}


def _check_team(access: Access, tenant: str, team: str | None) -> None:
    """A team admin registers and manages its own team's services only."""
    if access.reach < Reach.TENANT and (team is None or not access.sees(tenant, team)):
        raise InvalidRequest("team: a team admin manages its own team's services only", param="team",
                             code="team_not_allowed")


async def _check_team_exists(request: Request, access: Access, tenant: str, team: str) -> None:
    """A team a tenant or platform admin names must be one of the service's tenant (404
    ``team_not_found``, as on the other admin routes): a service of a team that does not exist
    would be managed by nobody but the tenant's admins. A team admin's is its own."""
    if access.reach < Reach.TENANT:
        return
    if await request.app.state.services.stores().tenancy.get_team(tenant, team) is None:
        raise NotFound(f"no team '{team[:64]}'", code="team_not_found")


def _by_platform_admin(access: Access) -> bool:
    """Whether the caller is the operator (the master key, a platform_admin key or token): only
    what it points at stays exempt from the egress rules in the default tenant
    (upstream/egress.py); a tenant or team admin of the default tenant is not the operator."""
    return access.principal.role == PLATFORM_ADMIN


def _missing(name: str) -> NotFound:
    return NotFound(f"no service '{name[:64]}'", code="service_not_found")


async def _stored(request: Request, access: Access, name: str, tenant: str | None) -> ServiceRecord:
    scope = access.tenant_for(tenant)
    record = await _store(request).get(scope, name) if len(name) <= 64 else None
    if record is None or not access.sees(record.tenant_id, record.spec.get("team")):
        if record is None and _table(request).configured(scope, name) is not None:
            raise InvalidRequest(f"the service '{name}' is configured in the YAML and cannot be changed here",
                                 code="service_configured")
        raise _missing(name)
    return record


@router.post("", status_code=201, summary="Register a REST service under /services/{name}/")
async def create_service(
    body: ServiceCreate,
    request: Request,
    access: Annotated[Access, Depends(allow("service", "create"))],
) -> dict[str, Any]:
    tenant = await tenant_in_reach(access, request.app.state.services.stores(), body.tenant)
    team = body.team if body.team is not None or access.reach >= Reach.TENANT else access.principal.team_id
    _check_team(access, tenant, team)
    if body.team is not None:
        await _check_team_exists(request, access, tenant, body.team)
    by_platform_admin = _by_platform_admin(access)
    request.app.state.services.egress.check_registered(tenant, "url", body.url,
                                                       by_platform_admin=by_platform_admin)
    if _table(request).configured(tenant, body.name) is not None:
        raise Conflict(f"a service '{body.name}' is configured in the YAML", param="name",
                       code="service_exists")
    settings = ServiceSettings.model_validate({**body.model_dump(exclude={"name", "tenant"}), "team": team})
    headers = {k: v.get_secret_value() for k, v in body.headers.items()}
    record = ServiceRecord(tenant_id=tenant, name=body.name, spec=_spec(settings),
                           headers=_sealed(request, tenant, body.name, headers),
                           created_by=access.principal.id, by_platform_admin=by_platform_admin)
    public = _of_record(record)
    # Stored with its audit entry: an error answered means no service.
    created = audit.entry(request, "service.create", "service", body.name, after=public, tenant=tenant)
    try:
        await _store(request).create(record, audited=created)
    except ServiceExists:
        raise Conflict(f"a service '{body.name}' exists already", param="name",
                       code="service_exists") from None
    await _table(request).changed(tenant, body.name)
    return public


@router.get("", summary="Services the caller's tenant sees: the YAML's and the stored ones")
async def list_services(
    request: Request,
    access: Annotated[Access, Depends(allow("service", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    configured = [_of_config(s) for s in _table(request).visible(scope)]
    stored = [_of_record(r) for r in await _store(request).list_services(scope)]
    data = sorted([*configured, *stored], key=lambda s: s["name"])
    return {"object": "list", "data": data}


@router.get("/{name}", summary="One service")
async def get_service(
    name: str,
    request: Request,
    access: Annotated[Access, Depends(allow("service", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    scope = access.tenant_for(tenant)
    configured = _table(request).configured(scope, name)
    if configured is not None:
        return _of_config(configured)
    record = await _store(request).get(scope, name) if len(name) <= 64 else None
    if record is None:
        raise _missing(name)
    return _of_record(record)


async def _patched(request: Request, access: Access, record: ServiceRecord, body: ServicePatch
                   ) -> ServiceRecord:
    """The service with the body's changes applied, checked as a registration is."""
    name = record.name
    if body.name is not None and body.name != name:
        raise InvalidRequest("name: a service cannot be renamed; register it under the new name",
                             param="name", code="invalid_value")
    changes = {k: getattr(body, k) for k in body.model_fields_set if k not in ("headers", "name")}
    spec = {**record.spec,
            **{k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in changes.items()}}
    try:
        settings = ServiceSettings.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # In a registration's words (errors.py): a check's own message, not pydantic's "Value error, ...".
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"{where}: {message}", param=where, code="invalid_value") from None
    _check_team(access, record.tenant_id, settings.team)
    if "team" in body.model_fields_set and settings.team is not None:
        await _check_team_exists(request, access, record.tenant_id, settings.team)
    # Whoever points the service elsewhere decides its egress rules from then on; a change that
    # keeps the URL keeps the rules the URL was registered under.
    moved = settings.url != record.spec.get("url")
    by_platform_admin = _by_platform_admin(access) if moved else record.by_platform_admin
    request.app.state.services.egress.check_registered(record.tenant_id, "url", settings.url,
                                                       by_platform_admin=by_platform_admin)
    if moved and record.headers:
        _check_headers_given(record, settings.url, body)
    headers = dict(record.headers)
    for header, value in (body.headers or {}).items():
        for existing in [h for h in headers if h.lower() == header.lower()]:
            del headers[existing]
        if value is not None:
            headers.update(_sealed(request, record.tenant_id, name, {header: value.get_secret_value()}))
    return ServiceRecord(tenant_id=record.tenant_id, name=name, spec=_spec(settings), headers=headers,
                         created_by=record.created_by, created_at=record.created_at, updated_at=utcnow(),
                         by_platform_admin=by_platform_admin)


def _check_headers_given(record: ServiceRecord, url: str, body: ServicePatch) -> None:
    """A service moved to another origin (scheme, host or port) takes its stored headers there
    only if the change gives each again (a value, or null to drop it): otherwise whoever may
    change the URL (a team admin, say) could send credentials someone else stored to a host of
    their choosing, and read them there, though the API never shows them."""
    if same_origin(url, str(record.spec.get("url", ""))):
        return
    given = {h.lower() for h in body.headers or {}}
    missing = sorted(h for h in record.headers if h.lower() not in given)
    if missing:
        raise InvalidRequest(
            f"headers: the service moves to another origin; give its headers again (or null to drop "
            f"them) in the same change: {', '.join(missing)}", param="headers", code="headers_required")


def _unchanged(request: Request, record: ServiceRecord, updated: ServiceRecord, body: ServicePatch) -> bool:
    """The change leaves the service as it was: its settings, and each header value given the
    one stored (sealed again it would read differently, each sealing being new)."""
    if ((dict(updated.spec), updated.by_platform_admin, set(updated.headers))
            != (dict(record.spec), record.by_platform_admin, set(record.headers))):
        return False
    # A header removed (None) with the names alike was not there.
    return all(value is None or _holds(request, record, header, value.get_secret_value())
               for header, value in (body.headers or {}).items())


def _holds(request: Request, record: ServiceRecord, header: str, value: str) -> bool:
    """Whether the stored ``header`` has ``value`` (sealed again it would read differently, each
    sealing being new, so it is opened); one that does not open is taken as another value."""
    keyring = _table(request).keyring
    if keyring is None or header not in record.headers:
        return False
    try:
        stored = keyring.decrypt(record.headers[header], header_aad(record.tenant_id, record.name, header))
    except DecryptError:
        return False
    return stored == value


def _headers_changed(request: Request, record: ServiceRecord, body: ServicePatch) -> list[str]:
    """The headers kept through a change whose value changed. The audit entry shows headers by
    name only, the same before and after, so it names these (never a value), as a provider's
    and an MCP server's entries do."""
    kept = {h.lower(): h for h in record.headers}
    return sorted(h for h, value in (body.headers or {}).items()  # by the name it has now
                  if value is not None and h.lower() in kept
                  and not _holds(request, record, kept[h.lower()], value.get_secret_value()))


@router.patch("/{name}", summary="Change a stored service")
async def update_service(
    name: str,
    body: ServicePatch,
    request: Request,
    access: Annotated[Access, Depends(allow("service", "update"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    async with one_writer("service", tenant, name):
        for _ in range(CHANGE_ATTEMPTS):
            record = await _stored(request, access, name, tenant)
            updated = await _patched(request, access, record, body)
            if _unchanged(request, record, updated, body):
                return _of_record(record)  # nothing to change: nothing written, nothing audited
            before, after = _of_record(record), _of_record(updated)
            changed = _headers_changed(request, record, body)
            entry = audit.entry(request, "service.update", "service", name, before=before,
                                after={**after, "headers_changed": changed} if changed else after,
                                tenant=record.tenant_id)
            # Written only while the service is still the version read: a change another admin made
            # meanwhile is read and kept, not overwritten with what this one read. Its audit entry
            # is written with it: an error answered means nothing changed.
            if await _store(request).update(updated, record.updated_at, audited=entry) is not None:
                break
        else:
            raise Conflict(f"the service '{name}' kept changing while it was being updated: try again",
                           code="service_changed")
    await _table(request).changed(record.tenant_id, name)
    return after


@router.delete("/{name}", status_code=204, summary="Remove a stored service")
async def delete_service(
    name: str,
    request: Request,
    access: Annotated[Access, Depends(allow("service", "delete"))],
    tenant: TenantQuery = None,
) -> Response:
    record = await _stored(request, access, name, tenant)
    # Deleted with its audit entry and its subscriptions' revokes and theirs: an error answered
    # means the service is still there, its subscriptions as they were.
    deleted = audit.entry(request, "service.delete", "service", name, before=_of_record(record),
                          tenant=record.tenant_id)
    revoked = await _store(request).delete(record.tenant_id, name, access.principal.id, audited=deleted,
                                           revoke_audited=revoke_audited(request))
    if revoked is None:  # another delete came first (after the read above): not this one's to answer
        raise _missing(name)
    await _table(request).changed(record.tenant_id, name)
    await revoked_with(request, revoked)
    return Response(status_code=204)


async def _needs_approval(request: Request, tenant: str, name: str, team: str) -> bool | None:
    """Subscriptions to services (POST /admin/v1/subscriptions {"service": name}): every team,
    its owning team included, needs approval when the service asks for it."""
    table: ServiceTable | None = request.app.state.services.services
    if table is None:
        return None
    service = await table.lookup(tenant, name) if len(name) <= 64 else None
    return None if service is None else service.settings.require_approval


register_subject("service", _needs_approval)
