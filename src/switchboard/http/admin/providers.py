"""``/admin/v1/providers``: upstream providers and their credentials, managed at run time.

Stored providers are listed, added, changed, tested and removed here; the YAML's are listed too,
marked ``"source": "config", "read_only": true`` (changing or removing one is ``409
read_only``). A credential is sealed under the server secret (crypto/keyring.py) or is a
reference (``env:NAME``, ``file:/path``); no answer, audit entry or log line holds it: records
show its mask (``sk-…abcd``). Every change reloads the model table here and, through the change
feed, on every instance (routing/live.py). Platform admin only (the permission table).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from switchboard.config.base import MAX_CONNECTIONS, filled_text, refusing_text
from switchboard.config.providers import PROVIDER_NAME_MAX, PROVIDER_NAME_PATTERN
from switchboard.config.schema import DEFAULT_TOTAL, ProviderConfig, connect_past_total
from switchboard.crypto import refs
from switchboard.crypto.keyring import credential_aad
from switchboard.errors import Conflict, GatewayError, InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import LINE, AdminBody
from switchboard.http.admin.errors import param_of
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.query import Limit, query_params
from switchboard.http.admin.scoping import CHANGE_ATTEMPTS
from switchboard.observability.logs import redact_target
from switchboard.providers import registry
from switchboard.providers.target import Target
from switchboard.routing.live import LiveRouting, provider_config
from switchboard.stores.protocols import CredentialRecord, ProviderRecord, ProviderStore, utcnow
from switchboard.upstream.client import UpstreamClient
from switchboard.upstream.userinfo import split_userinfo

router = APIRouter(prefix="/admin/v1/providers", tags=["providers"])

Name = Annotated[str, StringConstraints(min_length=1, max_length=PROVIDER_NAME_MAX,
                                        pattern=PROVIDER_NAME_PATTERN)]
TypeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")]


def _not_masked(value: str) -> str:
    """Header values are shown masked (``sk-…wxyz``): a value sent back as shown would replace
    the real one with its mask."""
    if "\u2026" in value:
        raise ValueError("a masked value as the admin API shows it ('\u2026'): give the value itself")
    return value


HeaderValue = Annotated[
    str, StringConstraints(max_length=1000, pattern=r"^[^\r\n\x00]*$"), AfterValidator(_not_masked)
]
# Blank is refused here, not in ProviderConfig: that model also rebuilds the stored providers.
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\r\n\x00]+$"),
                   AfterValidator(filled_text)]
Ref = Annotated[str, StringConstraints(min_length=5, max_length=1024)]
OptionName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200), LINE]
MAX_OPTIONS_BYTES = 16 * 1024

# Credentials belong in credentials (sealed), not in headers or options stored in clear.
_SECRET_HEADER = re.compile(r"auth|key|token|secret|passw|signature|cookie|session|credential", re.I)
# An AWS access key id is half a credential (and scrubbed from errors as one): hidden like the rest.
# "token" but not "tokens": a count of tokens (Anthropic's default_max_tokens) is no secret.
_SECRET_OPTION = re.compile(r"secret|token(?!s)|passw|access_key|api_key|private_key", re.I)
# ProviderConfig's own fields: an option of that name would shadow them.
_RESERVED = frozenset(ProviderConfig.model_fields) | {"options"}


class TimeoutsBody(AdminBody):
    model_config = ConfigDict(extra="forbid")

    connect: Annotated[float, Field(gt=0, le=86400)] | None = None
    first_byte: Annotated[float, Field(gt=0, le=86400)] | None = None
    total: Annotated[float, Field(gt=0, le=86400)] | None = None


# What a provider deployment accepts per minute (docs/limits.md, "Provider deployments").
PerMinute = Annotated[StrictInt, Field(ge=1, le=1_000_000_000_000)]


class ProviderFields(AdminBody):
    model_config = ConfigDict(extra="forbid")

    api_base: Url | None = None
    options: Annotated[dict[OptionName, Any], Field(max_length=50)] = Field(
        default_factory=dict, description="The provider type's own keys (see docs/providers.md)."
    )
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=50)] = Field(default_factory=dict)
    timeouts: TimeoutsBody | None = None
    # Strict, as rpm and tpm: 1e3 and 5.0 are not a count of connections (nor 1e308 one too large).
    max_connections: Annotated[StrictInt, Field(ge=1, le=MAX_CONNECTIONS)] | None = None
    allow_caller_credentials: bool | None = Field(
        default=None, description="Callers may send their own credential (auth.caller_credentials)."
    )
    rpm: PerMinute | None = Field(default=None, description="Requests per minute the deployment accepts.")
    tpm: PerMinute | None = Field(default=None, description="Tokens per minute the deployment accepts.")


class ProviderCreate(ProviderFields):
    name: Name
    type: TypeName
    api_key: Secret | None = Field(default=None, description="A first credential, sealed at rest.")
    api_key_ref: Ref | None = Field(default=None, description="Or a reference: env:NAME or file:/path.")


class ProviderUpdate(ProviderFields):
    """Fields given replace the stored ones; ``api_base: null`` returns to the type's default."""


class CredentialCreate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    api_key: Secret | None = None
    ref: Ref | None = Field(default=None, description="env:NAME or file:/path")
    label: Label | None = None

    @model_validator(mode="after")
    def _one(self) -> CredentialCreate:
        if (self.api_key is None) == (self.ref is None):
            raise ValueError("give exactly one of api_key and ref")
        return self


class ConnectionTest(AdminBody):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="The upstream model id to try (default: one the provider serves)."
    )


def services_of(request: Request) -> Any:
    return request.app.state.services


def routing_of(request: Request) -> LiveRouting:
    routing: LiveRouting | None = services_of(request).routing
    if routing is None:
        raise GatewayError("the model table is not available", status=503)
    return routing


def store_of(request: Request) -> ProviderStore:
    store: ProviderStore = services_of(request).stores().providers
    return store


def read_only(kind: str, name: str) -> GatewayError:
    return Conflict(
        f"the {kind} '{name[:128]}' is declared in the configuration file and is read-only here",
        code="read_only",
    )


def provider_missing(name: str) -> NotFound:
    return NotFound(f"no provider named '{name[:128]}'", code="provider_not_found")


def shown_url(url: str | None) -> str | None:
    """A URL as the admin API shows it (a provider's base URL): a password in
    it (``https://user:secret@host``) masked, and the value of each query parameter named as a
    credential (``?key=``, ``?token=``..., as the access log redacts them) too."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:[hidden]@{host}" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=netloc))
    return redact_target(url) if parts.query else url


def _masked_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[hidden]" if _SECRET_OPTION.search(k) else v) for k, v in options.items()}


def shown_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A provider's configured headers as the admin API (and so the CLI and the audit log) shows
    them: every name, every value masked as a credential is (``sk-…abcd``). Any value may be
    one ("X-Custom: sk-..."), whatever its header is called, and no heuristic can tell which."""
    return {name: refs.mask(value) for name, value in headers.items()}


def headers_changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The headers kept through a change whose value changed. Their masks may read the same
    before and after (``…`` for any value under 6 characters, the same last 4 otherwise), so
    the audit entry names them: that a value changed, never what it was or became."""
    return sorted(name for name, value in new.items() if name in old and old[name] != value)


def _credential_public(c: CredentialRecord) -> dict[str, Any]:
    return {"id": c.id, "object": "provider_credential", "kind": "ref" if c.ref else "sealed",
            "mask": c.mask, "label": c.label, "created_at": c.created_at.isoformat()}


def stored_public(record: ProviderRecord, creds: list[CredentialRecord]) -> dict[str, Any]:
    """A stored provider as the API shows it: credentials by mask only."""
    return {
        "name": record.name,
        "object": "provider",
        "type": record.type,
        "api_base": shown_url(record.api_base),
        "options": _masked_options(dict(record.options)),
        "headers": shown_headers(record.headers),
        "timeouts": None if record.timeouts is None else dict(record.timeouts),
        "max_connections": record.max_connections,
        "allow_caller_credentials": record.allow_caller_credentials,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "credentials": [_credential_public(c) for c in creds],
        "source": "database",
        "read_only": False,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def config_public(p: ProviderConfig) -> dict[str, Any]:
    """A YAML provider: read-only; its credentials masked, secret-looking options hidden."""
    given = ([p.api_key] if p.api_key is not None else []) + list(p.api_keys)
    creds = []
    for i, value in enumerate(given):
        raw = value.get_secret_value()
        creds.append({"id": f"config-{i}", "object": "provider_credential",
                      "kind": "ref" if refs.is_ref(raw) else "config",
                      "mask": raw if refs.is_ref(raw) else refs.mask(raw), "label": None, "created_at": None})
    return {
        "name": p.name,
        "object": "provider",
        "type": p.type,
        "api_base": shown_url(p.api_base),
        "options": _masked_options(p.options),
        "headers": shown_headers(p.headers),
        "timeouts": p.timeouts.model_dump(),
        "max_connections": p.max_connections,
        "allow_caller_credentials": p.allow_caller_credentials,
        "rpm": p.rpm,
        "tpm": p.tpm,
        # The proxy with its password masked, and the TLS files by path (their content is never read out).
        "proxy": shown_url(p.proxy.get_secret_value()) if p.proxy is not None else None,
        "tls": p.tls.model_dump() if p.tls is not None else None,
        "credentials": creds,
        "source": "config",
        "read_only": True,
        "created_at": None,
        "updated_at": None,
    }


def _check_fields(body: ProviderFields) -> None:
    for name in body.headers:
        if _SECRET_HEADER.search(name):
            raise InvalidRequest(
                f"headers.{name}: a credential header; add the key as a credential instead",
                param=f"headers.{name}", code="secret_header",
            )
    for key in body.options:
        if key in _RESERVED:
            raise InvalidRequest(f"options.{key}: a provider field, not an option", param=f"options.{key}",
                                 code="invalid_value")
        if _SECRET_OPTION.search(key):
            raise InvalidRequest(
                f"options.{key}: secret options are not stored through the API; declare this provider "
                "in the configuration file", param=f"options.{key}", code="secret_option",
            )
    if len(orjson.dumps(body.options)) > MAX_OPTIONS_BYTES:
        raise InvalidRequest(f"options: larger than {MAX_OPTIONS_BYTES} bytes", param="options",
                             code="invalid_value")


def validate_record(record: ProviderRecord, keyed: bool) -> None:
    """400 unless the record makes a valid provider of a registered type (``keyed``: with the
    credentials it has or is given: user info in api_base may not go with one sent in
    Authorization)."""
    known = registry.providers()
    if record.type not in known:
        raise InvalidRequest(
            f"type: unknown provider type '{record.type[:64]}' (known: {', '.join(sorted(known))})",
            param="type", code="invalid_provider_type",
        )
    try:
        config = provider_config(record)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "options"
        param = loc if loc in ("api_base", "timeouts", "max_connections", "headers") or "." in loc else (
            f"options.{loc}")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"{param}: {message}", param=param, code="invalid_value") from None
    problems = registry.check_provider(config, keyed)
    if problems:
        key, _, message = problems[0].partition(": ")
        param = key if key == "api_base" else f"options.{key}"
        code = "invalid_value"
        if message == "unknown key":  # an unknown name, as an unknown field anywhere else
            message, code = "unknown option for this provider type", "unknown_parameter"
        raise InvalidRequest(f"{param}: {message}", param=param, code=code)


@cache
def _json_options(model: type[BaseModel]) -> type[BaseModel]:
    """A provider type's options model as JSON is read: a number where text goes is a wrong type.
    The configuration file's model reads it as text (YAML writes ``api_version: 2024-10-21``
    unquoted); JSON says what it means, as services and a model's ``info`` on this API. So is
    text where a number or a boolean goes (``check_option_types`` reads them with
    ``refusing_text``; the CLI's ``--option k=v`` converts it by the option's type)."""
    config = ConfigDict(coerce_numbers_to_str=False)
    return type(f"Json{model.__name__}", (model,), {"model_config": config, "__module__": model.__module__})


def check_option_types(type_name: str, options: Mapping[str, Any]) -> None:
    """400 naming ``options.<name>`` when a text option is given as a number, or a number or
    boolean option as text; run after validate_record, so the type is known and every other
    problem already answered."""
    spec = registry.providers().get(type_name)
    if spec is None or not options:
        return
    try:
        with refusing_text():
            _json_options(spec.options).model_validate(options)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        param = param_of(("options", *first["loc"])) or "options"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"{param}: {message}", param=param, code="invalid_value") from None


def seal_credential(request: Request, provider: str, api_key: str | None, ref: str | None,
                    label: str | None, ref_param: str = "ref") -> CredentialRecord:
    cid = "cred_" + secrets.token_hex(8)
    if ref is not None:
        problem = refs.check_ref(ref) or _blank_ref(ref)
        if problem:
            raise InvalidRequest(f"{ref_param}: {problem}", param=ref_param, code="invalid_value")
        return CredentialRecord(id=cid, provider=provider, mask=ref, ref=ref, label=label)
    assert api_key is not None
    keyring = routing_of(request).keyring
    if keyring is None:
        raise GatewayError("credentials cannot be stored: no server secret (auth.secret_key)", status=503)
    return CredentialRecord(id=cid, provider=provider, mask=refs.mask(api_key), label=label,
                            ciphertext=keyring.encrypt(api_key, credential_aad(provider, cid)))


def _blank_ref(ref: str) -> str | None:
    """Why ``ref`` is refused now: it resolves here, to a blank value. One that does not resolve
    yet is kept (the variable or file may be given before the provider is used, and on every
    instance); its use is refused then (routing/live.py)."""
    try:
        refs.resolve(ref)
    except refs.BlankRef as exc:
        return f"{exc}, which is no credential"
    except refs.RefError:
        pass
    return None


async def stored_or_404(request: Request, name: str) -> ProviderRecord:
    routing = routing_of(request)
    if routing.is_static_provider(name):
        raise read_only("provider", name)
    record = await store_of(request).get_provider(name)
    if record is None:
        raise provider_missing(name)
    return record


def _timeouts(body: TimeoutsBody | None) -> dict[str, float] | None:
    if body is None:
        return None
    return {k: v for k, v in body.model_dump().items() if v is not None}


def check_connect(timeouts: Mapping[str, float] | None, inherited: float, whose: str) -> None:
    """400 naming ``timeouts.connect`` when it is longer than the total that bounds it (the
    body's, else ``inherited``), as the configuration file refuses it."""
    given = timeouts or {}
    problem = connect_past_total(given.get("connect"), given.get("total"), inherited, whose)
    if problem:
        raise InvalidRequest(f"timeouts.connect: {problem}", param="timeouts.connect", code="invalid_value")


async def _check_models_connect(store: ProviderStore, provider: str, total: float) -> None:
    """400 naming the first stored model of ``provider`` whose written-out ``timeouts.connect``
    the provider's new ``total`` would leave past the total that bounds it (the model gives none
    of its own): as a model's create or move is refused, so is the provider's change that would
    make it so."""
    for model in (await store.load()).models:
        timeouts = model.timeouts or {}
        connect = timeouts.get("connect")
        if model.provider != provider or "total" in timeouts or connect is None or connect <= total:
            continue
        raise InvalidRequest(
            f"timeouts.total: {total:g} s is shorter than the timeouts.connect ({connect:g} s) of the "
            f"stored model '{model.name}', which takes its total from this provider: lower that "
            "model's connect (or give it a total of its own) first, or keep a longer total",
            param="timeouts.total", code="invalid_value")


@router.get("", summary="Providers: the configuration file's (read-only) and the stored ones")
async def list_providers(
    request: Request,
    access: Annotated[Access, Depends(allow("provider", "read"))],
    limit: Limit = 100,
    after: Annotated[str | None, Query(max_length=128, description="Last name of the previous page")] = None,
) -> dict[str, Any]:
    query_params(request, ("limit", "after"))  # misspelt or repeated: a 400, never ignored
    routing = routing_of(request)
    state = await store_of(request).load()
    creds: dict[str, list[CredentialRecord]] = {}
    for c in state.credentials:
        creds.setdefault(c.provider, []).append(c)
    items = [config_public(p) for p in routing.settings.providers]
    items += [stored_public(p, creds.get(p.name, [])) for p in state.providers
              if not routing.is_static_provider(p.name)]
    items.sort(key=lambda item: item["name"])
    if after is not None:
        items = [item for item in items if item["name"] > after]
    page = items[:limit]
    return {"object": "list", "data": page, "has_more": len(items) > limit,
            "last_id": page[-1]["name"] if page else None}


@router.post("", status_code=201, summary="Add a provider (usable at once on every instance)")
async def create_provider(
    body: ProviderCreate, request: Request, access: Annotated[Access, Depends(allow("provider", "create"))]
) -> JSONResponse:
    _check_fields(body)
    routing = routing_of(request)
    if body.api_key is not None and body.api_key_ref is not None:
        raise InvalidRequest("give api_key or api_key_ref, not both", param="api_key", code="invalid_value")
    record = ProviderRecord(name=body.name, type=body.type, api_base=body.api_base, options=body.options,
                            headers=body.headers, timeouts=_timeouts(body.timeouts),
                            max_connections=body.max_connections,
                            allow_caller_credentials=bool(body.allow_caller_credentials),
                            rpm=body.rpm, tpm=body.tpm)
    validate_record(record, body.api_key is not None or body.api_key_ref is not None)
    check_option_types(record.type, record.options)
    check_connect(record.timeouts, DEFAULT_TOTAL, "the default")
    if routing.is_static_provider(body.name):
        raise Conflict(f"a provider named '{body.name}' is declared in the configuration file")
    cred = None
    if body.api_key is not None or body.api_key_ref is not None:
        cred = seal_credential(request, body.name, body.api_key, body.api_key_ref, None, "api_key_ref")
    store = store_of(request)
    public = stored_public(record, [cred] if cred else [])
    # The provider, its credential and its audit entry in one transaction: a delete at that moment
    # either finds nothing (404) or the provider as created, and so always follows a create that
    # is audited; an error answered means nothing was created.
    created = audit.entry(request, "provider.create", "provider", record.name, after=public)
    if not await store.create_provider(record, cred, audited=created):
        raise Conflict(f"a provider named '{body.name}' exists")
    await routing.changed()
    return JSONResponse(public, status_code=201)


@router.get("/{name}", summary="One provider (credentials masked)")
async def get_provider(
    name: str, request: Request, access: Annotated[Access, Depends(allow("provider", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    routing = routing_of(request)
    for p in routing.settings.providers:
        if p.name == name:
            return config_public(p)
    store = store_of(request)
    record = await store.get_provider(name)
    if record is None:
        raise provider_missing(name)
    return stored_public(record, await store.credentials(name))


def _updated(old: ProviderRecord, body: ProviderUpdate) -> ProviderRecord:
    """The provider with the body's fields applied."""
    given = body.model_fields_set
    changes: dict[str, Any] = {"updated_at": utcnow()}
    for field in ("api_base", "options", "headers", "max_connections", "rpm", "tpm"):
        if field in given:
            changes[field] = getattr(body, field)
    if "timeouts" in given:
        changes["timeouts"] = _timeouts(body.timeouts)
    if "allow_caller_credentials" in given:
        changes["allow_caller_credentials"] = bool(body.allow_caller_credentials)
    return replace(old, **changes)


async def _check_not_refused(request: Request, old: ProviderRecord) -> None:
    """After an update that wrote nothing: back to the caller's loop when the provider changed
    meanwhile (the next try reads it again), its 404 when it went; else the database refused the
    row itself (a constraint), which no retry changes: ``409 conflict``."""
    current = await stored_or_404(request, old.name)
    if current.updated_at == old.updated_at:
        raise _refused(f"the provider '{old.name}'")


def _refused(what: str) -> Conflict:
    return Conflict(f"{what} could not be stored: the database refused it as conflicting with "
                    "what it holds; nothing was stored")


@router.patch("/{name}", summary="Change a stored provider")
async def update_provider(
    name: str, body: ProviderUpdate, request: Request,
    access: Annotated[Access, Depends(allow("provider", "update"))],
) -> dict[str, Any]:
    _check_fields(body)
    if "timeouts" in body.model_fields_set:  # replaced whole: checked on its own
        check_connect(_timeouts(body.timeouts), DEFAULT_TOTAL, "the default")
    store = store_of(request)
    async with one_writer("provider", name):
        for _ in range(CHANGE_ATTEMPTS):
            old = await stored_or_404(request, name)
            new = _updated(old, body)
            total = (new.timeouts or {}).get("total", DEFAULT_TOTAL)
            # Only a shorter total can leave a model's connect past it (one stored so is left).
            if total < (old.timeouts or {}).get("total", DEFAULT_TOTAL):
                await _check_models_connect(store, name, total)
            creds = await store.credentials(name)
            validate_record(new, bool(creds))
            if "options" in body.model_fields_set:  # options stored before this check are left as they are
                check_option_types(new.type, new.options)
            if replace(new, updated_at=old.updated_at) == old:
                return stored_public(old, creds)  # nothing to change: nothing written, nothing audited
            before, after = stored_public(old, creds), stored_public(new, creds)
            changed = headers_changed(old.headers, new.headers)
            updated = audit.entry(request, "provider.update", "provider", name, before=before,
                                  after={**after, "headers_changed": changed} if changed else after)
            # Written (with its audit entry) only while the provider is still the version read:
            # another admin's change made meanwhile is read and kept, not overwritten.
            if await store.update_provider(new, old.updated_at, audited=updated):
                break
            await _check_not_refused(request, old)
        else:
            raise Conflict("the provider kept changing while it was being updated: try again",
                           code="provider_changed")
    await routing_of(request).changed()
    return after


@router.delete("/{name}", summary="Remove a stored provider (refused while a model uses it)")
async def delete_provider(
    name: str, request: Request, access: Annotated[Access, Depends(allow("provider", "delete"))]
) -> dict[str, Any]:
    old = await stored_or_404(request, name)
    store = store_of(request)
    creds = await store.credentials(name)
    deleted = audit.entry(request, "provider.delete", "provider", name, before=stored_public(old, creds))
    outcome = await store.delete_provider(name, audited=deleted)
    if outcome == "missing":
        raise provider_missing(name)
    if outcome == "in_use":
        raise Conflict(
            f"the provider '{name}' is used by stored models; remove or move them first",
            code="provider_in_use",
        )
    await routing_of(request).changed()
    return {"name": name, "object": "provider", "deleted": True}


@router.post("/{name}/credentials", status_code=201, summary="Add a credential (used in turn)")
async def add_credential(
    name: str, body: CredentialCreate, request: Request,
    access: Annotated[Access, Depends(allow("provider", "update"))],
) -> JSONResponse:
    record = await stored_or_404(request, name)
    if record.api_base is not None and split_userinfo(record.api_base)[1] is not None:
        validate_record(record, True)  # the key may clash with the user info, sent in Authorization
    cred = seal_credential(request, name, body.api_key, body.ref, body.label)
    store = store_of(request)
    public = _credential_public(cred)
    created = audit.entry(request, "provider.credential.create", "provider_credential", cred.id,
                          after={**public, "provider": record.name})
    if not await store.add_credential(cred, audited=created):
        await stored_or_404(request, name)  # the provider was deleted meanwhile
        # It is there: the database refused the row itself (a constraint), nothing was stored.
        raise _refused(f"the credential for provider '{name}'")
    await routing_of(request).changed()
    return JSONResponse(public, status_code=201)


@router.delete("/{name}/credentials/{credential_id}", summary="Remove a credential")
async def delete_credential(
    name: str, credential_id: str, request: Request,
    access: Annotated[Access, Depends(allow("provider", "update"))],
) -> dict[str, Any]:
    await stored_or_404(request, name)
    store = store_of(request)
    found = [c for c in await store.credentials(name) if c.id == credential_id]
    deleted = None if not found else audit.entry(
        request, "provider.credential.delete", "provider_credential", credential_id,
        before={**_credential_public(found[0]), "provider": name})
    if deleted is None or not await store.delete_credential(name, credential_id, audited=deleted):
        raise NotFound(f"provider '{name[:128]}' has no credential '{credential_id[:64]}'",
                       code="credential_not_found")
    await routing_of(request).changed()
    return {"id": credential_id, "object": "provider_credential", "deleted": True}


@router.post("/{name}/test", summary="Test connection: one small real call with the provider's credential")
async def test_provider(
    name: str, request: Request, access: Annotated[Access, Depends(allow("provider", "test"))],
    body: Annotated[ConnectionTest | None, Body()] = None,
) -> dict[str, Any]:
    routing = routing_of(request)
    client: UpstreamClient | None = routing.static_client(name) or routing.stored_client(name)
    if client is None:
        if not routing.is_static_provider(name) and await store_of(request).get_provider(name) is not None:
            return {"ok": False, "status": None, "latency_ms": 0,
                    "error": "the provider is stored but not usable (see the server log)"}
        raise provider_missing(name)
    snapshot = routing.current
    model = (body.model if body else None) or next(
        (r.target.model for r in snapshot.routes.values() if r.target.provider == name), None)
    if model is None:
        raise InvalidRequest("no model uses this provider: name one to try ({\"model\": \"...\"})",
                             param="model", code="missing_required_parameter")
    resolved = routing.resolved(name)
    assert resolved is not None
    target = Target(name=model, model=model, provider=name, provider_type=resolved.config.type,
                    api_base=resolved.api_base, options=resolved.options, timeouts=resolved.config.timeouts,
                    drop_params=True)
    adapter = resolved.spec.adapter
    ping = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_completion_tokens": 1}
    started = time.perf_counter()
    try:
        upstream = adapter.chat_request(ping, target)
        reply = await client.send(upstream, None)
        status = reply.status
        error = None if status < 400 else adapter.error(status, reply.headers, reply.body, target).message
    except GatewayError as exc:
        status, error = None, exc.message
    except NotImplementedError:
        status, error = None, "this provider type has no chat operation to test with"
    latency = int((time.perf_counter() - started) * 1000)
    return {"ok": error is None, "status": status, "latency_ms": latency, "error": error}
