"""Every admin change is audited: one table of every mutating admin route (POST, PUT, PATCH,
DELETE), each called once on a running gateway, each leaving the entry its docs name in the
audit log, with no secret in it. The table is checked against the admin API's own OpenAPI
document, so a route added without an audit entry (or left out of the table) fails here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
API = "/admin/v1"
# Mutating routes that change nothing stored: a render and a connection test.
NOT_CHANGES = {("POST", "/admin/v1/prompts/{name}/render"), ("POST", "/admin/v1/providers/{name}/test")}
STORED_KEY = "sk-audit-stored-credential-0123456789"
SPLIT = "audit-split"


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    config["models"] += [
        {"name": "audit-canary", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "can-a"},
        {"name": "audit-canary", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "can-b"},
    ]
    config["router"] = {"splits": [{"name": SPLIT, "model": "audit-canary", "sticky": "none",
                                    "arms": [{"deployment": "can-a", "percent": 50},
                                             {"deployment": "can-b", "percent": 50}]}]}
    gw = start_gateway(config, Path(tmp_path_factory.mktemp("audit-routes")))
    yield gw
    gw.process.stop()


@dataclass
class Step:
    """One call (``path`` may name earlier results as ``{name}``) and the audit entry it leaves;
    ``keep`` stores a field of the answer under a name for later steps."""

    method: str
    route: str  # the route as the OpenAPI document names it
    action: str
    path: str
    body: Any = None
    keep: tuple[str, Callable[[Any], str]] | None = None
    tenant: str | None = None  # whose log holds the entry (None: the default tenant's)


def _steps(u: str, mock: Mock) -> list[Step]:
    tenant, provider, model, prompt = f"t-{u}", f"p-{u}", f"m-{u}", f"pr-{u}"
    an_id: Callable[[Any], str] = lambda answer: str(answer["id"])  # noqa: E731
    return [
        Step("POST", "/tenants", "tenant.create", "/tenants", {"id": tenant}, tenant=tenant),
        Step("PATCH", "/tenants/{tenant_id}", "tenant.update", f"/tenants/{tenant}", {"name": "Audited"},
             tenant=tenant),
        Step("POST", "/teams", "team.create", "/teams", {"name": "a"}, keep=("team", an_id)),
        Step("POST", "/teams", "team.create", "/teams", {"name": "b"}, keep=("team_b", an_id)),
        Step("PATCH", "/teams/{team_id}", "team.update", "/teams/{team_b}", {"name": "b2"}),
        Step("POST", "/users", "user.create", "/users", {"name": "u"}, keep=("user", an_id)),
        Step("PATCH", "/users/{user_id}", "user.update", "/users/{user}", {"name": "u2"}),
        Step("POST", "/service-accounts", "service_account.create", "/service-accounts", {"name": "s"},
             keep=("sa", an_id)),
        Step("PATCH", "/service-accounts/{user_id}", "service_account.update", "/service-accounts/{sa}",
             {"name": "s2"}),
        Step("POST", "/keys", "key.create", "/keys", {"models": ["*"]}, keep=("key", an_id)),
        Step("PATCH", "/keys/{key_id}", "key.update", "/keys/{key}", {"name": "renamed"}),
        Step("POST", "/keys/{key_id}/rotate", "key.rotate", "/keys/{key}/rotate", keep=("rotated", an_id)),
        Step("DELETE", "/keys/{key_id}", "key.revoke", "/keys/{rotated}"),
        Step("PUT", "/limits", "limit.set", "/limits", {"scope": "team", "subject": "{team}", "rpm": 100},
             keep=("limit", an_id)),
        Step("DELETE", "/limits/{limit_id}", "limit.delete", "/limits/{limit}"),
        Step("PUT", "/budgets", "budget.set", "/budgets",
             {"scope": "team", "subject": "{team}", "max_amount": 5}, keep=("budget", an_id)),
        Step("DELETE", "/budgets/{budget_id}", "budget.delete", "/budgets/{budget}"),
        Step("POST", "/providers", "provider.create", "/providers",
             {"name": provider, "type": "openai", "api_base": f"{mock.url}/v1", "api_key": UPSTREAM_KEY}),
        Step("PATCH", "/providers/{name}", "provider.update", f"/providers/{provider}",
             {"max_connections": 5}),
        Step("POST", "/providers/{name}/credentials", "provider.credential.create",
             f"/providers/{provider}/credentials", {"api_key": STORED_KEY}, keep=("credential", an_id)),
        Step("DELETE", "/providers/{name}/credentials/{credential_id}", "provider.credential.delete",
             f"/providers/{provider}/credentials/{{credential}}"),
        Step("POST", "/models", "model.create", "/models",
             {"name": model, "provider": provider, "model": "gpt-4o-mini", "require_approval": True}),
        Step("PATCH", "/models/{name}", "model.update", f"/models/{model}", {"drop_params": True}),
        Step("POST", "/subscriptions", "subscription.request", "/subscriptions",
             {"model": model, "team": "{team}"}, keep=("sub", an_id)),
        Step("POST", "/subscriptions/{subscription_id}/approve", "subscription.approve",
             "/subscriptions/{sub}/approve"),
        Step("POST", "/subscriptions/{subscription_id}/revoke", "subscription.revoke",
             "/subscriptions/{sub}/revoke"),
        Step("POST", "/subscriptions", "subscription.request", "/subscriptions",
             {"model": model, "team": "{team_b}"}, keep=("sub_b", an_id)),
        Step("POST", "/subscriptions/{subscription_id}/reject", "subscription.reject",
             "/subscriptions/{sub_b}/reject", {"reason": "not now"}),
        Step("POST", "/subscriptions", "subscription.request", "/subscriptions",
             {"model": model, "team": "{team_b}"}),
        Step("POST", "/subscriptions/{subscription_id}/withdraw", "subscription.withdraw",
             "/subscriptions/{sub_b}/withdraw", {"reason": "asked by mistake"}),
        Step("DELETE", "/models/{name}", "model.delete", f"/models/{model}"),
        Step("DELETE", "/providers/{name}", "provider.delete", f"/providers/{provider}"),
        Step("PATCH", "/routing/groups/{path}", "routing.weight",
             "/routing/groups/audit-canary/deployments/can-a", {"weight": 3}),
        Step("PUT", "/routing/splits/{name}", "routing.split", f"/routing/splits/{SPLIT}",
             {"percents": {"can-a": 10, "can-b": 90}}),
        Step("DELETE", "/routing/splits/{name}", "routing.split", f"/routing/splits/{SPLIT}"),
        Step("POST", "/prompts", "prompt.create", "/prompts",
             {"name": prompt, "model": "gpt-4o-mini",
              "messages": [{"role": "user", "content": "Say {{ text }}"}],
              "variables": {"type": "object", "properties": {"text": {"type": "string"}}}}),
        Step("PUT", "/prompts/{name}/labels/{label}", "prompt.label", f"/prompts/{prompt}/labels/production",
             {"version": 1}),
        Step("POST", "/apis", "api.create", "/apis", {"name": prompt, "prompt": prompt, "version": 1}),
        Step("PATCH", "/apis/{name}", "api.update", f"/apis/{prompt}", {"description": "audited"}),
        Step("POST", "/services", "service.create", "/services",
             {"name": f"svc-{u}", "url": "http://127.0.0.1:9/api", "headers": {"X-Token": STORED_KEY}}),
        Step("PATCH", "/services/{name}", "service.update", f"/services/svc-{u}", {"description": "audited"}),
        Step("DELETE", "/services/{name}", "service.delete", f"/services/svc-{u}"),
        Step("POST", "/mcp/servers", "mcp_server.create", "/mcp/servers",
             {"name": f"mcp-{u}", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": STORED_KEY}}),
        Step("PATCH", "/mcp/servers/{name}", "mcp_server.update", f"/mcp/servers/mcp-{u}",
             {"description": "d"}),
        Step("DELETE", "/mcp/servers/{name}", "mcp_server.delete", f"/mcp/servers/mcp-{u}"),
        Step("POST", "/token-revocations", "token_revocation.create", "/token-revocations",
             {"user": f"jwt-{u}"}, keep=("revocation", an_id)),
        Step("DELETE", "/token-revocations/{revocation_id}", "token_revocation.delete",
             "/token-revocations/{revocation}"),
        Step("DELETE", "/users/{user_id}", "user.delete", "/users/{user}"),
        Step("DELETE", "/service-accounts/{user_id}", "service_account.delete", "/service-accounts/{sa}"),
        Step("POST", "/teams", "team.create", "/teams", {"name": "c"}, keep=("team_c", an_id)),
        Step("DELETE", "/teams/{team_id}", "team.delete", "/teams/{team_c}"),
        Step("DELETE", "/tenants/{tenant_id}", "tenant.delete", f"/tenants/{tenant}", tenant=tenant),
    ]


def _filled(value: Any, kept: dict[str, str]) -> Any:
    """``value`` with each ``{name}`` of a kept result replaced (other braces left alone)."""
    if isinstance(value, str):
        for name, found in kept.items():
            value = value.replace(f"{{{name}}}", found)
        return value
    if isinstance(value, dict):
        return {k: _filled(v, kept) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, kept) for v in value]
    return value


def _newest_id(gateway: Gateway, tenant: str | None) -> int:
    params = {"limit": 1, **({"tenant": tenant} if tenant else {})}
    resp = httpx.get(f"{gateway.url}{API}/audit", params=params, headers=ADMIN, timeout=10)
    if resp.status_code == 404:  # a tenant not created yet: no entry of its own
        return 0
    entries = resp.json()["data"]
    return int(entries[0]["id"]) if entries else 0


def test_every_admin_mutation_route_is_in_the_table(gateway: Gateway, mock_upstream: Mock) -> None:
    doc = httpx.get(f"{gateway.url}{API}/openapi.json", timeout=10).json()
    routes = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops
              if method in ("post", "put", "patch", "delete")}
    table = {(s.method, API + s.route) for s in _steps("x", mock_upstream)}
    assert routes - NOT_CHANGES == table, (sorted(routes - NOT_CHANGES - table), sorted(table - routes))


def test_every_admin_change_leaves_its_audit_entry(gateway: Gateway, mock_upstream: Mock) -> None:
    kept: dict[str, str] = {}
    for step in _steps(uuid.uuid4().hex[:8], mock_upstream):
        since = _newest_id(gateway, step.tenant)
        path = _filled(step.path, kept)
        resp = httpx.request(step.method, f"{gateway.url}{API}{path}", json=_filled(step.body, kept),
                             headers=ADMIN, timeout=30)
        assert resp.status_code in (200, 201, 204), (step.method, path, resp.text)
        if step.keep is not None:
            kept[step.keep[0]] = step.keep[1](resp.json())
        params: dict[str, Any] = {"action": step.action, "limit": 10}
        if step.tenant:
            params["tenant"] = step.tenant
        audit = httpx.get(f"{gateway.url}{API}/audit", params=params, headers=ADMIN, timeout=10)
        assert audit.status_code == 200, audit.text
        new = [e for e in audit.json()["data"] if int(e["id"]) > since]
        assert new, (step.method, path, step.action)
        assert all((e["actor"], e["actor_role"]) == ("master", "platform_admin") for e in new), new
        assert STORED_KEY not in audit.text and UPSTREAM_KEY not in audit.text
