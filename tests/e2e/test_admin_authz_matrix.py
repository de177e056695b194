"""The admin API's authorisation as a matrix: every route of the admin application (those outside
``/admin/v1`` too) x the caller kinds ``test_permissions.py`` does not walk (JWT callers of every
role, a JWT platform admin and the master key), against the real server. Embedded only, to stay
well under 30 s: the stores' tenant and team scoping is the same code for a JWT caller as for a
key, and ``test_permissions.py`` walks it on both backends.

For each (route, caller) the documented outcome (docs/access.md):

- the role's permission: a ``-`` cell of the table is ``403 permission_denied``, any other cell
  never a 403 for the mere action; a route without an ``allow(resource, action)`` decision fails;
- a record of another tenant in the path is ``404 *_not_found``;
- another tenant named in the query (``?tenant=``) or in a body (``"tenant"``) is never served to
  anyone but the platform admin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.access.roles import ROLES, Reach, reach
from tests.e2e.admin_routes import Route, admin_routes
from tests.e2e.tenancy_world import GATED, Admin, TenantWorld, build_world
from tests.oidc_provider import IdentityProvider
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

PROBE = "nope_0000"  # an id nothing has
SHARED = {"provider", "model", "routing"}  # the platform's, not a tenant's: no "other tenant" record
ROLE_CLAIMS = {"platform_admin": "sb-platform", "tenant_admin": "sb-admin", "team_admin": "sb-team-admin",
               "developer": "sb-dev", "viewer": "sb-viewer"}


ROUTES = admin_routes("/admin/")  # those outside /admin/v1 too
BODIES: dict[str, Any] = {"PATCH": {"name": "hijacked"}, "POST": {}}
BODY_BY_SUFFIX: dict[str, Any] = {"/reject": {"reason": "probe"},
                                  "/mcp/servers/{name}": {"description": "probe"}}


def _body(route: Route) -> Any:
    for suffix, body in BODY_BY_SUFFIX.items():
        if route.path.endswith(suffix):
            return body
    return BODIES.get(route.method)


@dataclass
class Matrix:
    gateway: Gateway
    idp: IdentityProvider
    worlds: tuple[TenantWorld, TenantWorld]
    client: httpx.Client

    def token(self, world: TenantWorld, role: str) -> str:
        claims: dict[str, Any] = {"tenant": world.tenant, "preferred_username": f"jwt-{role}",
                                  "realm_access": {"roles": [ROLE_CLAIMS[role]]},
                                  "exp": int(time.time()) + 600}
        if role != "platform_admin":
            claims["team"] = world.team1
        return self.idp.token(**claims)

    def call(self, credential: str, route: Route, url: str, body: Any = None,
             params: dict[str, str] | None = None) -> httpx.Response:
        return self.client.request(route.method, url, json=body, params=params,
                                   headers={"Authorization": f"Bearer {credential}"})


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def matrix(mock_upstream: Mock, idp: IdentityProvider,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    config = openai_config(mock_upstream)
    config["models"].append({"name": GATED, "provider": "local-openai", "model": "gpt-4o-mini",
                             "require_approval": True})
    config["auth"]["oidc"] = [{
        "issuer": idp.issuer, "audience": "switchboard", "default_role": None,
        "claims": {"tenant": "tenant", "team": "team", "user": "preferred_username",
                   "role": "realm_access.roles"},
        "roles": {claim: role for role, claim in ROLE_CLAIMS.items()},
    }]
    gw = start_gateway(config, Path(tmp_path_factory.mktemp("authz")))
    admin = Admin(gw.url)
    worlds = (build_world(admin, "authz-a"), build_world(admin, "authz-b"))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        yield Matrix(gw, idp, worlds, client)
    gw.process.stop()


def _foreign(other: TenantWorld) -> dict[str, str]:
    return {
        "/admin/v1/tenants": other.tenant, "/admin/v1/teams": other.team1,
        "/admin/v1/users": other.users["developer"], "/admin/v1/service-accounts": other.sa2,
        "/admin/v1/keys": other.key_ids["developer"], "/admin/v1/subscriptions": other.sub1,
        "/admin/v1/limits": other.limit, "/admin/v1/budgets": other.budget, "/admin/v1/prompts": other.prompt,
        "/admin/v1/apis": other.api, "/admin/v1/services": other.service,
        "/admin/v1/mcp/servers": other.mcp_server, "/admin/v1/token-revocations": other.token_revocation,
    }


def _code(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"<not an OpenAI-shaped error: {resp.text[:80]}>"


def test_every_admin_route_has_a_decision_and_admin_models_is_walked() -> None:
    paths = {r.path for r in ROUTES}
    assert "/admin/models" in paths  # outside /admin/v1: test_permissions.py does not walk it
    assert len(ROUTES) >= 90


def test_jwt_callers_and_the_master_key_get_what_the_table_says(matrix: Matrix) -> None:
    wrong: list[str] = []
    world, other = matrix.worlds
    foreign = _foreign(other)
    callers = [("master key", ROLES[0], MASTER_KEY)] + [
        (f"JWT {role}", role, matrix.token(world, role)) for role in ROLES]
    checked = 0
    for who, role, credential in callers:
        for route in ROUTES:
            level = reach(role, route.resource, route.action)
            resp = matrix.call(credential, route, route.url(PROBE), _body(route))
            checked += 1
            got = f"{route.method} {route.path} as {who}: {resp.status_code} {_code(resp)}"
            if level is Reach.NONE:
                if resp.status_code != 403 or _code(resp) != "permission_denied":
                    wrong.append("expected 403 permission_denied, " + got)
                continue
            if resp.status_code == 403 or resp.status_code >= 500:
                wrong.append("expected no refusal for the action, " + got)
            if role == ROLES[0] or route.resource in SHARED:
                continue
            if route.by_id:  # another tenant's record, by id
                resp = matrix.call(credential, route, route.url(foreign[route.collection]), _body(route))
                checked += 1
                if resp.status_code != 404 or not _code(resp).endswith("_not_found"):
                    wrong.append(f"expected 404 for {other.tenant}'s record, {got}")
            # Another tenant named in the query, or in the body of a write.
            attempts = [({"tenant": other.tenant}, _body(route))]
            if route.method in ("POST", "PUT", "PATCH"):
                attempts.append(({}, {**(_body(route) or {}), "tenant": other.tenant}))
            for params, body in attempts:
                url = route.url(foreign.get(route.collection, PROBE))
                resp = matrix.call(credential, route, url, body, params)
                checked += 1
                if resp.status_code < 400 and route.path != "/admin/v1/openapi.json":
                    wrong.append(f"{route.method} {url} {params} {body} as {who} served another tenant: "
                                 f"{resp.status_code} {resp.text[:120]}")
    assert checked > 600
    assert not wrong, "\n".join(wrong)
