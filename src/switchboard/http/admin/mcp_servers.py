"""``/admin/v1/mcp/servers``: MCP servers registered at run time, per tenant or global.

A tenant admin registers servers its tenant's callers may use; the platform admin also registers
global ones (``"global": true``), which every tenant sees. The configuration file's servers
(``mcp_servers:``) are listed too, read-only. A name is unique among the servers a tenant sees.
Static credential headers and the OAuth client secret are sealed under the server secret (like
provider credentials): no answer, audit entry, log line or error shows them, only their names.
Its URL is sealed with them, its origin only kept in clear, and shown by its origin only (its
path may be its credential, as a hosted server's is).
Every change is audited and published on the change feed (mcp/stored.py), so every instance
serves it within moments. A change of a server's URL or of its OAuth authorization server or
client deletes every user's tokens for it (audited as ``mcp_server.tokens_deleted``, as is an
OAuth server's removal, with their number, when there were any): tokens issued for one
resource are never sent to another. Deleted tokens (those too of a removed server) are revoked
at the authorization server where it offers revocation, in the background (mcp/revocation.py):
the answer does not wait for it. Roles: the ``mcp_server`` rows of the permission table; another
tenant's server is 404.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from switchboard.access.roles import PLATFORM_ADMIN, Reach
from switchboard.config.base import filled_text
from switchboard.config.mcp import SERVER_NAME, McpServerConfig, server_name_problem
from switchboard.config.urls import ipv4_shorthand, same_origin, url_origin
from switchboard.crypto.keyring import DecryptError, Keyring
from switchboard.errors import Conflict, GatewayError, InvalidRequest, NotFound, PermissionDenied
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import PROSE, AdminBody
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.providers import headers_changed, routing_of
from switchboard.http.admin.query import Limit, query_params
from switchboard.http.admin.scoping import CHANGE_ATTEMPTS, tenant_in_reach
from switchboard.mcp.oauth import TOKEN_TOPIC
from switchboard.mcp.stored import Opened, clear_settings, seal, to_config, unseal, url_is_sealed
from switchboard.stores.feedcache import ALL, publish
from switchboard.stores.protocols import AuditEntry, McpServerRecord, McpStore, McpTokenRecord, utcnow
from switchboard.stores.protocols.mcp import TokensAudited
from switchboard.upstream.egress import OPERATOR, egress_rule

log = logging.getLogger("switchboard.mcp")

router = APIRouter(prefix="/admin/v1/mcp/servers", tags=["mcp"])

def _server_name(value: str) -> str:
    problem = server_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Name = Annotated[str, StringConstraints(pattern=SERVER_NAME), AfterValidator(_server_name)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")]
# Blank is refused here, not in McpServerConfig or McpOAuthConfig: they also rebuild the stored servers.
HeaderValue = Annotated[str, StringConstraints(min_length=1, max_length=8192, pattern=r"^[^\r\n\x00]+$"),
                        AfterValidator(filled_text)]
ClientSecret = Annotated[str, StringConstraints(min_length=1, max_length=8192, pattern=r"^[^\r\n\x00]+$"),
                         AfterValidator(filled_text)]
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Tenant = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Scope = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]
TenantQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$",
                                          description="Another tenant (platform admin only)")]
# Headers the gateway sets itself on every upstream request.
_RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "accept", "connection",
                               "transfer-encoding", "mcp-session-id", "mcp-protocol-version"})


class OAuthBody(AdminBody):
    model_config = ConfigDict(extra="forbid")

    client_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    client_secret: ClientSecret | None = Field(default=None, description="Sealed; never shown.")
    authorization_url: Url | None = None
    token_url: Url | None = None
    revocation_url: Url | None = Field(
        default=None, description="RFC 7009 revocation endpoint; else the authorization server's metadata's.")
    scopes: Annotated[list[Scope], Field(max_length=50)] = Field(default_factory=list)


def _refuse(code: str, why: str) -> Any:
    def refuse(value: Any) -> Any:
        raise PydanticCustomError(code, why)

    return BeforeValidator(refuse)


_YAML_ONLY = ("stdio servers (a command the gateway runs) are declared in the configuration file only "
              "(mcp_servers:, with mcp.allow_stdio), never through the API")


def _not_stdio(value: Any) -> Any:
    if value == "stdio":
        raise PydanticCustomError("invalid_value",
                                  _YAML_ONLY + "; the API registers 'streamable_http' or 'sse'")
    return value


class ServerFields(AdminBody):
    model_config = ConfigDict(extra="forbid")

    # Named first, so a body with both reports these: the API knows no such parameter.
    command: SkipJsonSchema[Annotated[Any, _refuse("unknown_parameter", _YAML_ONLY)]] = None
    env: SkipJsonSchema[Annotated[Any, _refuse("unknown_parameter", _YAML_ONLY)]] = None
    url: Url | None = None
    transport: Annotated[Literal["streamable_http", "sse"] | None, BeforeValidator(_not_stdio)] = None
    description: Annotated[str, StringConstraints(max_length=2000), PROSE] | None = None
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=32)] | None = Field(
        default=None, description="Static credential headers, sealed at rest; never shown.")
    oauth: OAuthBody | None = Field(default=None, description="Per-user OAuth 2.1.")
    allowed_tools: Annotated[list[ToolName], Field(max_length=1000)] | None = None
    denied_tools: Annotated[list[ToolName], Field(max_length=1000)] | None = None
    price_per_call: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    tool_prices: Annotated[dict[ToolName, Annotated[float, Field(ge=0, le=1_000_000)]],
                           Field(max_length=1000)] | None = None
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    health_check_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = None


class ServerCreate(ServerFields):
    name: Name
    url: Url
    tenant: Tenant | None = Field(default=None,
                                  description="Platform admin only; default: the caller's tenant.")
    is_global: bool = Field(default=False, alias="global",
                            description="Every tenant's callers see it (platform admin only).")


class ServerUpdate(ServerFields):
    """Fields given replace the stored ones; ``oauth: null`` turns OAuth off, ``headers: {}``
    removes the static headers, an ``oauth`` without ``client_secret`` keeps the stored one."""


_SETTINGS = ("url", "transport", "description", "allowed_tools", "denied_tools", "price_per_call",
             "tool_prices", "connect_timeout_seconds", "timeout_seconds", "max_concurrency",
             "health_check_seconds")


def store_of(request: Request) -> McpStore:
    store: McpStore | None = request.app.state.services.stores().mcp
    if store is None:
        raise GatewayError("MCP servers cannot be stored here", status=503)
    return store


def _keyring(request: Request) -> Keyring:
    keyring = routing_of(request).keyring
    if keyring is None:
        raise GatewayError("credentials cannot be stored: no server secret (auth.secret_key)", status=503)
    return keyring


def _missing(name: str) -> NotFound:
    return NotFound(f"no MCP server named '{name[:64]}'", code="mcp_server_not_found")


def _check_url(field: str, value: str | None) -> None:
    """An absolute http(s) URL with a host and no credentials in it (never echoed back: it may
    hold a secret by mistake)."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise InvalidRequest(f"{field}: not a valid URL", param=field, code="invalid_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{field}: must be an http:// or https:// URL with a host", param=field,
                             code="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(f"{field}: credentials do not belong in the URL; send them as headers",
                             param=field, code="invalid_url")
    if ipv4_shorthand(parts.hostname):
        # Never contacted as written (aiohttp refuses some forms) and not what the egress rules
        # read as an address: the one form every check agrees on is asked for instead.
        raise InvalidRequest(f"{field}: the host is an IPv4 address in a decimal, hexadecimal, octal or "
                             "shortened form; write it as four decimal numbers (e.g. 127.0.0.1)",
                             param=field, code="invalid_url")
    if re.search(r"[\s\x00-\x1f]", value):
        raise InvalidRequest(f"{field}: not a valid URL", param=field, code="invalid_url")


def _check(body: ServerFields) -> None:
    _check_url("url", body.url)
    if body.oauth is not None:
        _check_url("oauth.authorization_url", body.oauth.authorization_url)
        _check_url("oauth.token_url", body.oauth.token_url)
        _check_url("oauth.revocation_url", body.oauth.revocation_url)
    for name in body.headers or {}:
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidRequest(f"headers.{name}: set by the gateway itself", param=f"headers.{name}",
                                 code="invalid_value")
    if len({n.lower() for n in body.headers or {}}) != len(body.headers or {}):
        raise InvalidRequest("headers: a header is given twice", param="headers", code="invalid_value")


def _settings(body: ServerFields, given: set[str]) -> dict[str, Any]:
    out = {k: getattr(body, k) for k in _SETTINGS if k in given}
    return {k: v for k, v in out.items() if v is not None or k == "description"}


def _oauth_settings(oauth: OAuthBody | None) -> dict[str, Any] | None:
    if oauth is None:
        return None
    return {"client_id": oauth.client_id, "authorization_url": oauth.authorization_url,
            "token_url": oauth.token_url, "revocation_url": oauth.revocation_url,
            "scopes": list(oauth.scopes)}


def _validated(record: McpServerRecord, opened: Opened) -> McpServerConfig:
    """400 unless the record makes a valid server (the YAML's rules)."""
    try:
        return to_config(record, opened)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        # A check across the record's fields starts its message with the field it is about.
        named = re.match(r"([a-z_]+): ", message) if not first["loc"] else None
        if named is not None:
            message = message[named.end():]
        param = ".".join(str(p) for p in first["loc"]) or (named[1] if named else "url")
        if "got '" in message or 'got "' in message:  # a message quoting the value
            message = message.split(", got ")[0]
        raise InvalidRequest(f"{param}: {message}", param=param, code="invalid_value") from None


def shown_server_url(url: str | None) -> str | None:
    """A server's URL as answers (and so the CLI and the audit log) show it: scheme, host and
    port, ``/…`` for the rest. Hosted servers put the credential in the path
    (``https://actions.zapier.com/mcp/<token>/sse``), as Slack's webhooks do, and nothing tells
    such a path from a plain one; whoever needs the whole URL has it where it was registered."""
    return None if url is None else url_origin(url)


def stored_public(record: McpServerRecord, has_client_secret: bool) -> dict[str, Any]:
    c = record.config
    oauth = c.get("oauth")
    return {
        "id": record.id,
        "object": "mcp_server",
        "name": record.name,
        "tenant": record.tenant_id,
        "global": record.tenant_id is None,
        "url": shown_server_url(c.get("url")),
        "transport": c.get("transport", "streamable_http"),
        "description": c.get("description"),
        # Names only: the values are sealed and never shown.
        "headers": sorted(record.header_names),
        # revocation_url: absent from records stored before it existed.
        "oauth": None if oauth is None else {"revocation_url": None, **oauth,
                                             "client_secret_set": has_client_secret},
        "allowed_tools": c.get("allowed_tools"),
        "denied_tools": c.get("denied_tools", []),
        "price_per_call": c.get("price_per_call", 0.0),
        "tool_prices": c.get("tool_prices", {}),
        "connect_timeout_seconds": c.get("connect_timeout_seconds"),
        "timeout_seconds": c.get("timeout_seconds"),
        "max_concurrency": c.get("max_concurrency"),
        "health_check_seconds": c.get("health_check_seconds"),
        "source": "database",
        "read_only": False,
        # Read-only: whoever registered the record or last changed its URL decides it (docs/access.md).
        "egress": egress_rule(record.tenant_id, by_platform_admin=record.by_platform_admin),
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def config_public(s: McpServerConfig) -> dict[str, Any]:
    oauth = None
    if s.oauth is not None:
        oauth = {"client_id": s.oauth.client_id, "authorization_url": s.oauth.authorization_url,
                 "token_url": s.oauth.token_url, "revocation_url": s.oauth.revocation_url,
                 "scopes": list(s.oauth.scopes),
                 "client_secret_set": s.oauth.client_secret is not None}
    return {
        "id": None, "object": "mcp_server", "name": s.name, "tenant": s.tenant, "global": s.tenant is None,
        "url": shown_server_url(s.url), "transport": s.transport, "description": s.description,
        "headers": sorted(s.headers), "oauth": oauth, "allowed_tools": s.allowed_tools,
        "denied_tools": list(s.denied_tools), "price_per_call": s.price_per_call,
        "tool_prices": dict(s.tool_prices), "connect_timeout_seconds": s.connect_timeout_seconds,
        "timeout_seconds": s.timeout_seconds, "max_concurrency": s.max_concurrency,
        "health_check_seconds": s.health_check_seconds, "source": "config", "read_only": True,
        "egress": OPERATOR,  # the configuration file is the operator's: never held back
        "created_by": None, "created_at": None, "updated_at": None,
    }


def _yaml_servers(request: Request, tenant: str | None, every_tenant: bool = False) -> list[McpServerConfig]:
    servers: list[McpServerConfig] = request.app.state.services.settings.mcp_servers
    return [s for s in servers if every_tenant or s.tenant is None or s.tenant == tenant]


async def _name_taken(request: Request, store: McpStore, tenant: str | None, name: str) -> bool:
    """Whether a server of this name is already seen where the new one would be: a tenant sees
    the global servers and its own; a global server is seen by every tenant."""
    if any(s.name == name for s in _yaml_servers(request, tenant, every_tenant=tenant is None)):
        return True
    if tenant is None:
        return any(r.name == name for r in await store.list_servers(None, every_tenant=True))
    return any(r.name == name for r in await store.list_servers(tenant))


async def _changed(request: Request, tenant: str | None) -> None:
    mcp = request.app.state.services.mcp()
    if mcp is not None and mcp.stored is not None:
        await mcp.stored.changed(tenant)
    else:  # not started here: tell the instances that are
        from switchboard.mcp.stored import GLOBAL, TOPIC

        await request.app.state.services.stores().feed.publish(TOPIC, GLOBAL if tenant is None else tenant)


async def _visible(request: Request, access: Access, name: str, tenant: str | None) -> McpServerRecord:
    """The stored server of this name the caller reaches: its tenant's own, else a global one."""
    store = store_of(request)
    scope = access.tenant_for(tenant)
    record = await store.find_server(scope, name) or await store.find_server(None, name)
    if record is None:
        if any(s.name == name for s in _yaml_servers(request, scope)):
            raise Conflict(f"the MCP server '{name[:64]}' is declared in the configuration file and is "
                           "read-only here", code="read_only")
        raise _missing(name)
    return record


def _may_change(access: Access, record: McpServerRecord) -> None:
    if record.tenant_id is None and access.reach < Reach.ANY:
        raise PermissionDenied("global MCP servers are managed by the platform admin",
                               code="permission_denied")


@router.get("", summary="MCP servers: the configuration file's (read-only) and the stored ones")
async def list_servers(
    request: Request,
    access: Annotated[Access, Depends(allow("mcp_server", "read"))],
    tenant: TenantQuery = None,
    limit: Limit = 100,
    after: Annotated[str | None, Query(max_length=64, description="Last name of the previous page")] = None,
) -> dict[str, Any]:
    query_params(request, ("tenant", "limit", "after"))  # misspelt or repeated: a 400, never ignored
    scope = await tenant_in_reach(access, request.app.state.services.stores(), tenant)
    items = [config_public(s) for s in _yaml_servers(request, scope)]
    for record in await store_of(request).list_servers(scope):
        items.append(stored_public(record, _has_secret(record)))
    items.sort(key=lambda item: (item["name"], item["tenant"] or ""))
    if after is not None:
        items = [item for item in items if item["name"] > after]
    page = items[:limit]
    return {"object": "list", "data": page, "has_more": len(items) > limit,
            "last_id": page[-1]["name"] if page else None}


def _has_secret(record: McpServerRecord) -> bool:
    """Whether the sealed secrets hold an OAuth client secret (a marker kept in clear)."""
    return bool(record.config.get("_client_secret"))


@router.get("/{name}", summary="One MCP server (its secrets by name only)")
async def get_server(
    name: str, request: Request, access: Annotated[Access, Depends(allow("mcp_server", "read"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    query_params(request, ("tenant",))  # misspelt or repeated: a 400, never ignored
    scope = access.tenant_for(tenant)
    for s in _yaml_servers(request, scope):
        if s.name == name:
            return config_public(s)
    record = await _visible(request, access, name, tenant)
    return stored_public(record, _has_secret(record))


@router.post("", status_code=201, summary="Register an MCP server (usable at once on every instance)")
async def create_server(
    body: ServerCreate, request: Request, access: Annotated[Access, Depends(allow("mcp_server", "create"))],
) -> JSONResponse:
    _check(body)
    if body.is_global and (access.reach < Reach.ANY or body.tenant is not None):
        if access.reach < Reach.ANY:
            raise PermissionDenied("only the platform admin registers global MCP servers",
                                   code="permission_denied")
        raise InvalidRequest("give tenant or global, not both", param="global", code="invalid_value")
    stores = request.app.state.services.stores()
    tenant = None if body.is_global else await tenant_in_reach(access, stores, body.tenant)
    # Only the operator's own servers of the default tenant are exempt from the egress rules
    # (upstream/egress.py); a tenant or team admin of the default tenant is not the operator.
    by_platform_admin = access.principal.role == PLATFORM_ADMIN
    if body.url is not None:
        request.app.state.services.egress.check_registered(tenant, "url", body.url,
                                                           by_platform_admin=by_platform_admin)
    store = store_of(request)
    opened = Opened(dict(body.headers or {}), body.oauth.client_secret if body.oauth else None, body.url)
    # The whole URL is sealed with the headers (its path may be its credential); its origin stays.
    config = clear_settings(_settings(body, body.model_fields_set), body.url)
    if body.oauth is not None:
        config["oauth"] = _oauth_settings(body.oauth)
    if opened.client_secret is not None:
        config["_client_secret"] = True
    sid = "mcp_" + secrets.token_hex(8)
    record = McpServerRecord(id=sid, name=body.name, tenant_id=tenant, config=config,
                             header_names=tuple(sorted(opened.headers)), created_by=access.principal.id,
                             by_platform_admin=by_platform_admin)
    _validated(record, opened)
    record = replace(record, sealed=seal(_keyring(request), sid, opened))
    public = stored_public(record, opened.client_secret is not None)
    # Stored with its audit entry: an error answered means no server.
    created = audit.entry(request, "mcp_server.create", "mcp_server", record.id, after=public, tenant=tenant)
    if (await _name_taken(request, store, tenant, body.name)
            or not await store.create_server(record, audited=created)):
        raise Conflict(f"an MCP server named '{body.name}' already exists", code="mcp_server_exists")
    await _changed(request, tenant)
    return JSONResponse(public, status_code=201)


def _patched(request: Request, access: Access, old: McpServerRecord, body: ServerUpdate
             ) -> tuple[McpServerRecord, Opened, Opened, McpServerConfig | None]:
    """The server with the body's changes applied and sealed, checked as a registration is; its
    sealed values before and after, and the server as its users' tokens were issued (to revoke
    them)."""
    given = body.model_fields_set
    if "url" in given and body.url is None:
        raise InvalidRequest("url: an MCP server needs a url", param="url", code="invalid_value")
    keyring = routing_of(request).keyring
    try:
        was = unseal(keyring, old)
    except DecryptError:
        anew = ("url", "headers", "oauth") if url_is_sealed(old.config) else ("headers", "oauth")
        if any(field not in given for field in anew):
            raise GatewayError("the stored secrets of this server do not open with the server secret; "
                               f"give {', '.join(anew)} anew", status=409, code="sealed_unreadable") from None
        was = Opened({}, None, None if url_is_sealed(old.config) else old.config.get("url"))
    headers, client_secret, url = was
    # Whoever points the server elsewhere decides its egress rules from then on (as at creation);
    # a change that keeps the URL keeps the rules it was registered under.
    moved = body.url is not None and body.url != was.url
    by_platform_admin = access.principal.role == PLATFORM_ADMIN if moved else old.by_platform_admin
    if body.url is not None:
        url = body.url
        request.app.state.services.egress.check_registered(old.tenant_id, "url", body.url,
                                                           by_platform_admin=by_platform_admin)
    _check_secrets_given(old, was, body)
    issuer = _as_configured(old, was)  # whose tokens any deleted below are
    config = clear_settings({**old.config, **_settings(body, given)}, url)
    if "headers" in given:
        headers = dict(body.headers or {})
    if "oauth" in given:
        if body.oauth is None:
            config.pop("oauth", None)
            client_secret = None
        else:
            config["oauth"] = _oauth_settings(body.oauth)
            if body.oauth.client_secret is not None:
                client_secret = body.oauth.client_secret
    config.pop("_client_secret", None)
    if client_secret is not None:
        config["_client_secret"] = True
    new = replace(old, config=config, header_names=tuple(sorted(headers)), updated_at=utcnow(),
                  by_platform_admin=by_platform_admin)
    opened = Opened(headers, client_secret, url)
    _validated(new, opened)
    return replace(new, sealed=seal(_keyring(request), old.id, opened)), was, opened, issuer


def _check_secrets_given(old: McpServerRecord, was: Opened, body: ServerUpdate) -> None:
    """Stored secrets follow a server to another origin only when the change gives them again:
    its static headers (sent to ``url``) and its OAuth client secret (sent to the token and
    revocation endpoints). They are never shown, so otherwise whoever may change the URL could
    send them to a host of their choosing."""
    given = body.model_fields_set
    url = body.url if body.url is not None else was.url
    if (was.headers and "headers" not in given and url is not None and was.url is not None
            and not same_origin(url, was.url)):
        raise InvalidRequest(
            "headers: the server moves to another origin; give its headers again ({} to drop them) in "
            f"the same change: {', '.join(sorted(was.headers))}", param="headers", code="headers_required")
    stored = old.config.get("oauth")
    if was.client_secret is None or not isinstance(stored, dict) or ("oauth" in given and (
            body.oauth is None or body.oauth.client_secret is not None)):
        return  # no secret stored, OAuth turned off, or the secret given anew
    # The secret goes to the token and revocation endpoints: each configured, or discovered from
    # the metadata the server's URL names (mcp/oauth.py, _discover).
    after = body.oauth.model_dump() if body.oauth is not None else stored
    for field in ("token_url", "revocation_url"):
        before_at = stored.get(field) or was.url
        after_at = after.get(field) or url
        if not same_origin(str(after_at or ""), str(before_at or "")):
            endpoint = field.removesuffix("_url")
            raise InvalidRequest(
                f"oauth.client_secret: its {endpoint} endpoint moves to another origin; give the client "
                "secret again in the same change", param="oauth.client_secret", code="client_secret_required")


@router.patch("/{name}", summary="Change a stored MCP server")
async def update_server(
    name: str, body: ServerUpdate, request: Request,
    access: Annotated[Access, Depends(allow("mcp_server", "update"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    _check(body)
    async with one_writer("mcp_server", tenant, name):
        for _ in range(CHANGE_ATTEMPTS):
            old = await _visible(request, access, name, tenant)
            _may_change(access, old)
            new, was, opened, issuer = _patched(request, access, old, body)
            if _unchanged(old, new, was, opened):
                # Nothing to change: nothing written, nothing audited.
                return stored_public(old, _has_secret(old))
            uses_oauth = bool(old.config.get("oauth") or new.config.get("oauth"))
            before_audience = _token_audience(old.config, was.url)
            after_audience = _token_audience(new.config, opened.url)
            after = stored_public(new, opened.client_secret is not None)
            updated = audit.entry(request, "mcp_server.update", "mcp_server", old.id,
                                  before=stored_public(old, _has_secret(old)),
                                  after={**after, **_secrets_changed(was, opened)}, tenant=old.tenant_id)
            # Written only while the server is still the version read: a change another admin made
            # meanwhile is read and kept, not overwritten with what this one read. The users'
            # tokens go in the same transaction when they were issued for what changes, and the
            # audit entries with them: an error answered means nothing changed.
            deleted: list[McpTokenRecord] | None = None
            if uses_oauth and before_audience != after_audience:
                moved = before_audience[0] != after_audience[0]
                why = _tokens_deleted(request, old, "its url changed" if moved
                                      else "its oauth settings changed")
                deleted = await store_of(request).move_server(new, old.updated_at, audited=updated,
                                                              tokens_audited=why)
                if deleted is not None:
                    break
            elif await store_of(request).update_server(new, old.updated_at, audited=updated):
                break
        else:
            raise Conflict(f"the MCP server '{name}' kept changing while it was being updated: try again",
                           code="mcp_server_changed")
    if deleted is not None:
        await _forget_tokens(request, old, deleted, issuer)
    await _changed(request, old.tenant_id)
    return after


def _unchanged(old: McpServerRecord, new: McpServerRecord, was: Opened, opened: Opened) -> bool:
    """The change leaves the server as it was: its settings, and its secrets once opened (sealed
    again they would read differently, each sealing being new)."""
    return ((dict(new.config), tuple(new.header_names), new.by_platform_admin, opened)
            == (dict(old.config), tuple(old.header_names), old.by_platform_admin, was))


def _secrets_changed(old: Opened, new: Opened) -> dict[str, Any]:
    """What the audit entry of a change adds about the sealed values, whose change the answers
    (names, ``client_secret_set``, the URL's origin) cannot show: the headers kept whose value
    changed, whether the OAuth client secret or the URL (past its origin) changed. Never a value."""
    out: dict[str, Any] = {}
    headers = headers_changed(old.headers, new.headers)
    if headers:
        out["headers_changed"] = headers
    if None not in (old.client_secret, new.client_secret) and old.client_secret != new.client_secret:
        out["client_secret_changed"] = True
    if None not in (old.url, new.url) and old.url != new.url:
        out["url_changed"] = True
    return out


def _token_audience(config: Mapping[str, Any], url: str | None) -> tuple[Any, ...]:
    """What users' OAuth tokens for a server were issued for and by: its URL (the token's
    resource: the whole URL, opened) and the authorization server and client that issued them."""
    oauth = config.get("oauth") or {}
    return (url, oauth.get("client_id"), oauth.get("authorization_url"),
            oauth.get("token_url"), bool(config.get("oauth")))


async def _forget_tokens(request: Request, record: McpServerRecord, deleted: list[McpTokenRecord],
                         issuer: McpServerConfig | None) -> None:
    """The server now lives elsewhere or answers to another authorization server or client:
    every user's tokens for it were deleted with the change (never sent to the new URL); every
    instance forgets them, and each user authorizes again. They are revoked where they were
    issued (``issuer``: the server as it was)."""
    await publish(request.app.state.services.stores().feed, TOKEN_TOPIC, ALL)
    _revoke(request, record, issuer, deleted)


def _tokens_deleted(request: Request, record: McpServerRecord, reason: str) -> TokensAudited:
    """The audit entry saying how many users' tokens for the server went, and why (the change
    or removal's own entry cannot: the tokens are no field of the server), written with the
    change or removal when it deleted some."""

    def entry(count: int) -> AuditEntry:
        return audit.entry(request, "mcp_server.tokens_deleted", "mcp_server", record.id,
                           after={"name": record.name, "tokens_deleted": count, "reason": reason},
                           tenant=record.tenant_id)

    return entry


def _as_configured(record: McpServerRecord, opened: Opened) -> McpServerConfig | None:
    """The stored server as its users' tokens were issued for it (its OAuth client and secret),
    to revoke them; None if it has no OAuth or no longer makes a valid server."""
    if not record.config.get("oauth"):
        return None
    try:
        return to_config(record, opened)
    except ValidationError:
        return None


def _revoke(request: Request, record: McpServerRecord, issuer: McpServerConfig | None,
            tokens: list[McpTokenRecord]) -> None:
    """Revoke deleted tokens at the authorization server, in the background (mcp/revocation.py),
    from where the server's own requests may go (its egress rules as registered)."""
    if not tokens or issuer is None:
        return
    mcp = request.app.state.services.mcp()
    if mcp is None or mcp.oauth is None:  # not started here (never once the admin API serves)
        log.warning("%d OAuth token(s) of the MCP server %r were deleted without being revoked: the MCP "
                    "gateway is not started", len(tokens), record.name)
        return
    egress = request.app.state.services.egress.guard(record.tenant_id,
                                                     by_platform_admin=record.by_platform_admin)
    mcp.oauth.revoke_deleted(issuer, tokens, egress)


@router.delete("/{name}", summary="Remove a stored MCP server and every user's tokens for it")
async def delete_server(
    name: str, request: Request, access: Annotated[Access, Depends(allow("mcp_server", "delete"))],
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    old = await _visible(request, access, name, tenant)
    _may_change(access, old)
    issuer = None
    if old.config.get("oauth"):
        try:
            issuer = _as_configured(old, unseal(routing_of(request).keyring, old))
        except DecryptError:  # the client secret is lost: revoked without it, as a public client
            # (unless the URL, the tokens' resource, was sealed with it: then not at all)
            issuer = _as_configured(old, Opened({}, None, None if url_is_sealed(old.config)
                                                else old.config.get("url")))
    # Removed with its users' tokens (returned, to revoke them) and the audit entries, its own
    # and, as a PATCH moving the server writes, how many users must authorize again: an error
    # answered means nothing changed. Only an OAuth server has users' tokens (a PATCH that drops
    # its OAuth deletes them).
    deleted = audit.entry(request, "mcp_server.delete", "mcp_server", old.id,
                          before=stored_public(old, _has_secret(old)), tenant=old.tenant_id)
    why = _tokens_deleted(request, old, "the server was deleted") if old.config.get("oauth") else None
    removed = await store_of(request).delete_server(old.id, audited=deleted, tokens_audited=why)
    if removed is None:
        raise _missing(name)
    _revoke(request, old, issuer, removed[1])
    await _changed(request, old.tenant_id)
    return {"id": old.id, "object": "mcp_server", "name": old.name, "deleted": True}
