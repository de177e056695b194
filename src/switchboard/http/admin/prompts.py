"""``/admin/v1/prompts``: the prompt registry (docs/prompts.md).

A prompt is a tenant's, owned by a team: chat messages as Jinja2 templates, a JSON schema of
their variables, a bound model, default parameters and an optional output schema. Saving makes a
new immutable version (``POST`` again with the same name); labels point at versions and moving
one is a rollback. Templates are checked when saved (syntax with its line, variables used but
not declared); ``render`` shows the exact messages a set of variables produces.

Who may do what: the ``prompt`` rows of the permission table (``access/roles.py``): every
member of a tenant reads its prompts, team admins write their team's, tenant admins all of the
tenant's. A prompt of another tenant is 404. Every change is audited and published on the
change feed (the request path's cache, ``prompts/cache.py``).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints

from switchboard.access.rules import model_allowed
from switchboard.errors import InvalidRequest, NotFound, PermissionDenied
from switchboard.http import validate
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import PROSE, AdminBody
from switchboard.http.admin.query import Limit, digits_only, query_params
from switchboard.http.admin.scoping import named_team_exists, tenant_in_reach
from switchboard.pipeline.prompt import invalid_variables
from switchboard.prompts.cache import publish_change
from switchboard.prompts.reference import MAX_VERSION, check_variables_size
from switchboard.prompts.sandbox import templates
from switchboard.stores.protocols import AuditEntry, PromptStore, PromptVersion

router = APIRouter(prefix="/admin/v1/prompts", tags=["prompts"])

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Label = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Role = Literal["system", "developer", "user", "assistant"]
# A version number (a larger one than the column holds is a 400, not an error of the driver).
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]

MAX_MESSAGES = 100
# A schema (variables, output, a tool list, a response format) as JSON, at most this long.
MAX_SCHEMA_BYTES = 64 * 1024
# The default parameters a prompt may carry, as the chat request names them.
PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
          "presence_penalty", "frequency_penalty", "tools", "tool_choice", "response_format",
          "parallel_tool_calls", "reasoning_effort")


class Message(AdminBody):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(description="A Jinja2 template (docs/prompts.md).")


class PromptCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="The prompt's name; the same name again makes a new version.")
    model: ModelName = Field(description="The bound model or model group.")
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    variables: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema (Draft 2020-12) of the variables: an object schema.",
    )
    output_schema: dict[str, Any] | None = Field(default=None, description="JSON schema of the output.")
    description: Annotated[str, StringConstraints(max_length=2000), PROSE] | None = None
    team: Ident | None = Field(default=None, description="The owning team; default: the caller's.")
    tenant: Ident | None = Field(default=None, description="Platform admin only; default: the caller's.")
    # Default parameters, applied to a call that does not set them.
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    stop: Annotated[str, StringConstraints(max_length=256)] | list[
        Annotated[str, StringConstraints(max_length=256)]] | None = Field(default=None, max_length=16)
    # Stored as JSON, whose encoder holds 64-bit integers (a larger one failed the save with a 500).
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class LabelSet(AdminBody):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber


class RenderBody(AdminBody):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)
    version: VersionNumber | None = None
    label: Label | None = None


def _check_render_variables(request: Request, variables: dict[str, Any]) -> None:
    """413 for variables a call of a prompt API could not send: larger as JSON than
    ``apis.max_body_bytes`` (a call's body is its variables). The render itself is held to the
    same template bounds as a call's (templates' render_async)."""
    check_variables_size(variables, request.app.state.services.settings.apis.max_body_bytes, "variables")


def _settings(request: Request) -> Any:
    return request.app.state.services.settings.prompts


def _store(request: Request) -> PromptStore:
    store = request.app.state.services.stores().prompts
    assert store is not None
    return store


def public(version: PromptVersion, labels: dict[str, int] | None = None) -> dict[str, Any]:
    """The version record as the API shows it: ``labels`` are those pointing at this version,
    ``prompt_labels`` every label of the prompt with the version it points at."""
    out: dict[str, Any] = {
        "object": "prompt",
        "name": version.name,
        "version": version.version,
        "model": version.model,
        "messages": [dict(m) for m in version.messages],
        "variables": dict(version.variables),
        "params": dict(version.params),
        "output_schema": None if version.output_schema is None else dict(version.output_schema),
        "description": version.description,
        "tenant": version.tenant_id,
        "team": version.team_id,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
    }
    if labels is not None:
        out["labels"] = sorted(label for label, number in labels.items() if number == version.version)
        out["prompt_labels"] = dict(sorted(labels.items()))
    return out


def _params(body: PromptCreate) -> dict[str, Any]:
    return {k: v for k in PARAMS if (v := getattr(body, k)) is not None}


def _bounded_json(field: str, value: Any) -> None:
    if value is not None and len(orjson.dumps(value)) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"{field}: larger than {MAX_SCHEMA_BYTES} bytes as JSON", param=field,
                             code="invalid_value")


async def _check(request: Request, body: PromptCreate, access: Access) -> None:
    limit = _settings(request).max_template_chars
    total = sum(len(m.content) for m in body.messages)
    if total > limit:
        raise InvalidRequest(f"messages: the templates hold {total} characters, more than the "
                             f"{limit} allowed (prompts.max_template_chars)", param="messages",
                             code="template_too_large")
    for field in ("variables", "output_schema", "tools", "response_format", "tool_choice"):
        _bounded_json(field, getattr(body, field))
    # The defaults become every call's parameters: one a chat request may not carry is refused
    # here (400 naming it), not at every call of the prompt, blamed on its callers.
    validate.chat_request({"model": body.model, "messages": [{"role": "user", "content": ""}],
                           **_params(body)})
    problems = await templates().check_prompt([m.model_dump() for m in body.messages], body.variables)
    if problems:
        param = "variables" if problems[0].startswith("variables") else "messages"
        raise InvalidRequest("invalid prompt: " + "; ".join(problems), param=param,
                             code="invalid_template")
    if body.output_schema is not None:
        problem = templates().check_schema(body.output_schema)
        if problem is not None:
            raise InvalidRequest(f"output_schema: {problem}", param="output_schema", code="invalid_value")
    # Only a model the creator may use itself, as /v1/models lists them to it: a prompt published
    # as an API serves its callers whatever their keys' model lists, so a key an admin restricted
    # would reach any model through one. Refused as a model not served: no name beyond it leaks.
    allowed = access.principal.allowed_models
    if not model_allowed(body.model, allowed) or not _served(request, body.model):
        raise InvalidRequest(f"model: no model '{body.model}' is served (GET /v1/models lists them)",
                             param="model", code="model_not_found")
    # Nor a model routing may serve by a group beyond the creator's (its own calls never are).
    beyond = beyond_caller(request, body.model, allowed) if allowed is not None else None
    if beyond:
        raise PermissionDenied(f"model: '{body.model[:256]}' may be served by a model beyond the models "
                               f"the caller may use itself{beyond}", param="model", code="permission_denied")


def _served(request: Request, model: str) -> bool:
    """Whether a call may name ``model``: a model or group of the live table (aliases included,
    as /v1/models lists them), or a name a routing rule or semantic router answers to."""
    services = request.app.state.services
    router = services.settings.router
    if any(r.model == model for r in router.rules) or any(s.model == model for s in router.semantic):
        return True
    if services.routing is None:  # no live table: the configured models
        return any(m.name == model for m in services.settings.models) or model in router.aliases
    return model in services.routing.current.groups


def beyond_caller(request: Request, model: str, allowed: tuple[str, ...]) -> str | None:
    """Why a caller allowed ``allowed`` may not give ``model`` to callers whatever their keys'
    model lists (a prompt API's): "" for the model itself, " (how)" for a group routing may
    serve it by (a rule, a split, a semantic route, a fallback: the caller's own calls are never
    served by one its key may not use); None when it may."""
    if not model_allowed(model, allowed):
        return ""
    for group, how in request.app.state.services.reached(model):
        if not model_allowed(group, allowed):
            return f" ({how[:600]})"
    return None


async def visible(request: Request, access: Access, name: str, tenant: str | None, *,
                  version: int | None = None, label: str | None = None) -> PromptVersion:
    """The version asked for, 404 when there is none or it is outside the caller's reach."""
    scope = access.tenant_for(tenant)
    found = await _store(request).get(scope, name, version=version, label=label)
    if found is None or not access.sees(found.tenant_id, found.team_id):
        what = f" version {version}" if version is not None else f" label '{label}'" if label else ""
        raise NotFound(f"no prompt '{name}'{what}", code="prompt_not_found")
    return found


TenantQuery = Annotated[Ident | None, Query(description="Platform admin only: another tenant.")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.post("", status_code=201, summary="Save a prompt: version 1, or the next version of its name")
async def create_prompt(
    body: PromptCreate,
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "create"))],
) -> JSONResponse:
    await _check(request, body, access)
    store = _store(request)
    tenant = await tenant_in_reach(access, request.app.state.services.stores(), body.tenant)
    latest = await store.get(tenant, body.name)
    if latest is not None and not access.sees(latest.tenant_id, latest.team_id):
        raise PermissionDenied(f"the prompt '{body.name}' belongs to team '{latest.team_id}'",
                               code="permission_denied")
    team = body.team or (latest.team_id if latest is not None else None) or access.principal.team_id
    if not access.sees(tenant, team):
        raise NotFound(f"no team '{team}'", code="team_not_found")
    if body.team is not None:
        await named_team_exists(access, request.app.state.services.stores(), tenant, body.team)
    params = _params(body)
    draft = PromptVersion(
        tenant_id=tenant, name=body.name, version=0,
        messages=[m.model_dump() for m in body.messages], variables=body.variables,
        model=body.model, params=params, output_schema=body.output_schema,
        description=body.description, team_id=team, created_by=access.principal.id,
    )
    labels = await store.labels(tenant, body.name)  # none on the new version yet: the prompt's

    def created(stored: PromptVersion) -> AuditEntry:
        return audit.entry(request, "prompt.create", "prompt", f"{stored.name}@{stored.version}",
                           after=public(stored, labels), tenant=tenant)

    # Saved with its audit entry (its number known only then): an error answered saved nothing.
    stored = await store.create_version(draft, audited=created)
    await publish_change(request.app.state.services.stores().feed, tenant, body.name)
    return JSONResponse(public(stored, labels), status_code=201)


@router.get("", summary="The tenant's prompts: the latest version of each, with its labels")
async def list_prompts(
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "read"))],
    team: Annotated[Ident | None, Query()] = None,
    tenant: TenantQuery = None,
    after: Annotated[str | None, Query(max_length=64, description="Last name of the previous page")] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    query_params(request, ("team", "tenant", "after", "limit"))  # misspelt or repeated: a 400, never ignored
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    store = _store(request)
    found = await store.list_prompts(scope, team_id=team, after=after, limit=limit + 1)
    page = [p for p in found[:limit] if access.sees(p.tenant_id, p.team_id)]
    labels = await store.all_labels(scope, [p.name for p in page])
    data = []
    for p in page:
        data.append(public(p, labels.get(p.name, {})))
    last = found[:limit][-1].name if found[:limit] else None
    # last_id, as every other list names its cursor (a name here, as on models and MCP servers),
    # so one pager walks them all; last_name stays for the callers that read it.
    return {"object": "list", "data": data, "has_more": len(found) > limit,
            "last_id": last, "last_name": last}


@router.get("/{name}", summary="A prompt version: the latest, or ?version=N, or ?label=L")
async def get_prompt(
    name: NamePath,
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "read"))],
    version: Annotated[int | None, digits_only(1, MAX_VERSION), Query(ge=1, le=MAX_VERSION)] = None,
    label: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("version", "label", "tenant"))  # misspelt or repeated: a 400, never ignored
    if version is not None and label is not None:
        raise InvalidRequest("give version or label, not both", param="label", code="invalid_value")
    found = await visible(request, access, name, tenant, version=version, label=label)
    return public(found, await _store(request).labels(found.tenant_id, name))


@router.get("/{name}/versions", summary="Every version of a prompt, oldest first, and its labels")
async def list_versions(
    name: NamePath,
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    latest = await visible(request, access, name, tenant)
    store = _store(request)
    labels = await store.labels(latest.tenant_id, name)
    versions = await store.versions(latest.tenant_id, name)
    return {"object": "list", "name": name, "labels": labels,
            "data": [public(v, labels) for v in versions]}


def _lines(version: PromptVersion) -> list[str]:
    """The parts a diff compares, as stable text."""
    def dump(value: Any) -> str:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()

    out = [f"model: {version.model}"]
    for index, message in enumerate(version.messages):
        out.append(f"messages[{index}].role: {message.get('role')}")
        out += [f"messages[{index}].content: {line}" for line in str(message.get("content")).split("\n")]
    out += [f"params: {line}" for line in dump(dict(version.params)).split("\n")]
    out += [f"variables: {line}" for line in dump(dict(version.variables)).split("\n")]
    output = None if version.output_schema is None else dict(version.output_schema)
    out += [f"output_schema: {line}" for line in dump(output).split("\n")]
    out.append(f"description: {version.description or ''}")
    return out


def _changes(a: PromptVersion, b: PromptVersion) -> list[dict[str, Any]]:
    """Which fields differ, with their values in each version."""
    changes: list[dict[str, Any]] = []

    def compare(path: str, before: Any, after: Any) -> None:
        if before != after:
            changes.append({"field": path, "from": before, "to": after})

    compare("model", a.model, b.model)
    for index in range(max(len(a.messages), len(b.messages))):
        before = dict(a.messages[index]) if index < len(a.messages) else None
        after = dict(b.messages[index]) if index < len(b.messages) else None
        compare(f"messages[{index}]", before, after)
    for key in sorted(set(a.params) | set(b.params)):
        compare(f"params.{key}", a.params.get(key), b.params.get(key))
    compare("variables", dict(a.variables), dict(b.variables))
    compare("output_schema", a.output_schema and dict(a.output_schema),
            b.output_schema and dict(b.output_schema))
    compare("description", a.description, b.description)
    return changes


@router.get("/{name}/diff", summary="What changed between two versions (unified diff and fields)")
async def diff_versions(
    name: NamePath,
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "read"))],
    from_: Annotated[int | None, digits_only(1, MAX_VERSION), Query(alias="from", ge=1, le=MAX_VERSION,
                                       description="Default: the version before `to`")]
    = None,
    to: Annotated[int | None, digits_only(1, MAX_VERSION),
                  Query(ge=1, le=MAX_VERSION, description="Default: the latest version")] = None,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("from", "to", "tenant"))  # misspelt or repeated: a 400, never ignored
    b = await visible(request, access, name, tenant, version=to)
    to = b.version
    from_ = from_ if from_ is not None else max(to - 1, 1)
    a = await visible(request, access, name, tenant, version=from_)
    text = "\n".join(difflib.unified_diff(_lines(a), _lines(b), f"{name}@{from_}", f"{name}@{to}",
                                          lineterm=""))
    return {"object": "prompt.diff", "name": name, "from": from_, "to": to, "diff": text,
            "changes": _changes(a, b)}


@router.put("/{name}/labels/{label}", summary="Point a label at a version (moving it back: rollback)")
async def set_label(
    name: NamePath,
    label: Annotated[str, Path(pattern=NAME_PATTERN)],
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "update"))],
    body: LabelSet | None = None,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    # The prompt's team is its latest version's (as for a new version), not the target's: a
    # version saved before the prompt passed to another team is not its old team's to point at.
    # A prompt outside the caller's reach is 404 before the body is looked at.
    latest = await visible(request, access, name, tenant)
    if body is None:
        raise InvalidRequest("version: required", param="version", code="missing_required_parameter")
    store = _store(request)
    target = await store.get(latest.tenant_id, name, version=body.version)
    if target is None:
        raise NotFound(f"no prompt '{name}' version {body.version}", code="prompt_not_found")
    version = body.version

    def moved(previous: int | None) -> AuditEntry:
        return audit.entry(request, "prompt.label", "prompt", f"{name}:{label}",
                           before={"label": label, "version": previous},
                           after={"label": label, "version": version}, tenant=target.tenant_id)

    # Read in the move itself: concurrent moves each get the version they replaced. Moved with
    # its audit entry: an error answered moved nothing.
    previous = await store.set_label(target.tenant_id, name, label, body.version, audited=moved)
    if previous != body.version:  # already there: nothing written, published or audited
        await publish_change(request.app.state.services.stores().feed, target.tenant_id, name)
    after = await store.labels(target.tenant_id, name)
    return {"object": "prompt.labels", "name": name, "label": label, "version": body.version,
            "previous": previous, "labels": after}


@router.post("/{name}/render", summary="The exact messages a set of variables produces")
async def render_prompt(
    name: NamePath,
    body: RenderBody,
    request: Request,
    access: Annotated[Access, Depends(allow("prompt", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    if body.version is not None and body.label is not None:
        raise InvalidRequest("give version or label, not both", param="label", code="invalid_value")
    _check_render_variables(request, body.variables)
    found = await visible(request, access, name, tenant, version=body.version, label=body.label)
    invalid = templates().validate_variables(found.variables, body.variables)
    if invalid:
        raise invalid_variables(invalid, prefix="variables")
    messages = await templates().render_async(found, body.variables)
    return {"object": "prompt.render", "name": name, "version": found.version, "model": found.model,
            "messages": messages, "params": dict(found.params)}
