"""Shared by the tenancy and permission tests: a gateway per deployment (embedded: SQLite and
in-process state; cluster: PostgreSQL and Redis), an admin client, and a small world of two
teams with one user and one key per role, built through the admin API like a user would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.access.roles import ROLES
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

TENANT_ROLES = ROLES[1:]  # every role a tenant's people can have
GATED = "gated-model"  # a model that needs an approved subscription


@dataclass
class Admin:
    """The admin API as one caller (the master key by default)."""

    url: str
    key: str = MASTER_KEY

    def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
             ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.request(method, self.url + path, json=json, params=params, headers=headers, timeout=30)

    def ok(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None,
           status: int = 200) -> dict[str, Any]:
        resp = self.call(method, path, json, params)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def as_key(self, key: str) -> Admin:
        return Admin(self.url, key)


@dataclass
class TenantWorld:
    """One tenant: teams ``team1`` and ``team2``; in team1 a user and a key per role (a tenant
    admin too) and a peer developer with a key; in team2 a member, a service account, a key each."""

    tenant: str
    team1: str = ""
    team2: str = ""
    users: dict[str, str] = field(default_factory=dict)  # role -> user id (team1)
    keys: dict[str, str] = field(default_factory=dict)  # role -> the key itself
    key_ids: dict[str, str] = field(default_factory=dict)  # role -> key id
    peer: str = ""  # another developer of team1
    peer_key: str = ""  # its key's id
    member2: str = ""  # a developer of team2
    member2_key: str = ""
    sa2: str = ""  # a service account of team2
    sa2_key: str = ""
    sub1: str = ""  # team1's pending subscription to the gated model
    sub2: str = ""  # team2's
    limit: str = ""  # rate limits set for team2 (generous: they never refuse anything here)
    budget: str = ""  # a budget set for team2 (generous too)
    prompt: str = ""  # a registry prompt of team1 (its name, unique to the tenant)
    prompt2: str = ""  # one of team2
    api: str = ""  # a prompt published as an API by team2
    service: str = ""  # a REST service owned by team2 (its name)
    mcp_server: str = ""  # the name of an MCP server registered for the tenant
    token_revocation: str = ""  # a JWT caller of the tenant cut off (its id)

    def caller(self, admin: Admin, role: str) -> Admin:
        return admin if role == ROLES[0] else admin.as_key(self.keys[role])


def _key(admin: Admin, tenant: str, **owner: Any) -> dict[str, Any]:
    return admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant, **owner}, status=201)


def build_world(admin: Admin, tenant: str) -> TenantWorld:
    world = TenantWorld(tenant)
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant.upper()}, status=201)
    team = {"tenant": tenant}
    world.team1 = admin.ok("POST", "/admin/v1/teams", {**team, "name": "one"}, status=201)["id"]
    world.team2 = admin.ok("POST", "/admin/v1/teams", {**team, "name": "two"}, status=201)["id"]
    for role in TENANT_ROLES:
        body = {"tenant": tenant, "name": f"{role} of {tenant}", "role": role, "team": world.team1}
        user = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
        key = _key(admin, tenant, user=user, role=role)
        world.users[role], world.keys[role], world.key_ids[role] = user, key["key"], key["id"]
    body = {"tenant": tenant, "name": "peer", "team": world.team1}
    world.peer = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
    world.peer_key = _key(admin, tenant, user=world.peer)["id"]
    body = {"tenant": tenant, "name": "member of two", "team": world.team2}
    world.member2 = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
    world.member2_key = _key(admin, tenant, user=world.member2)["id"]
    body = {"tenant": tenant, "name": "robot of two", "team": world.team2}
    world.sa2 = admin.ok("POST", "/admin/v1/service-accounts", body, status=201)["id"]
    world.sa2_key = _key(admin, tenant, service_account=world.sa2)["id"]
    for team in ("team1", "team2"):
        body = {"model": GATED, "team": getattr(world, team), "tenant": tenant}
        sub = admin.ok("POST", "/admin/v1/subscriptions", body, status=201)["id"]
        setattr(world, "sub" + team[-1], sub)
    body = {"scope": "team", "subject": world.team2, "tenant": tenant, "rpm": 1_000_000}
    world.limit = admin.ok("PUT", "/admin/v1/limits", body)["id"]
    body = {"scope": "team", "subject": world.team2, "tenant": tenant, "max_amount": 1_000_000}
    world.budget = admin.ok("PUT", "/admin/v1/budgets", body)["id"]
    for team in ("team1", "team2"):
        body = {"tenant": tenant, "team": getattr(world, team), "name": f"prompt-{team}-of-{tenant}",
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        setattr(world, "prompt" + ("2" if team == "team2" else ""),
                admin.ok("POST", "/admin/v1/prompts", body, status=201)["name"])
    body = {"name": f"api-{tenant}", "prompt": world.prompt2, "version": 1, "tenant": tenant,
            "team": world.team2}
    world.api = admin.ok("POST", "/admin/v1/apis", body, status=201)["name"]
    body = {"name": f"svc-{tenant}", "url": "http://svc.example.invalid:9/", "tenant": tenant,
            "team": world.team2}
    world.service = admin.ok("POST", "/admin/v1/services", body, status=201)["name"]
    body = {"name": f"mcp-{tenant}", "url": "https://mcp.example/mcp", "tenant": tenant}
    world.mcp_server = admin.ok("POST", "/admin/v1/mcp/servers", body, status=201)["name"]
    body = {"user": f"jwt-caller-of-{tenant}", "tenant": tenant}
    world.token_revocation = admin.ok("POST", "/admin/v1/token-revocations", body, status=201)["id"]
    return world


def start_deployment(kind: str, request: pytest.FixtureRequest, mock: Mock, tmp: Path) -> Gateway:
    config = openai_config(mock)
    config["models"].append({"name": GATED, "provider": "local-openai", "model": "gpt-4o-mini",
                             "require_approval": True})
    if kind == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"tenancy_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    return start_gateway(config, tmp)


def deployment_fixture(name: str) -> Any:
    """A module-scoped fixture: one gateway per deployment kind for the whole module."""

    @pytest.fixture(scope="module", params=["embedded", "cluster"], name=name)
    def fixture(request: pytest.FixtureRequest, mock_upstream: Mock,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
        gw = start_deployment(request.param, request, mock_upstream, tmp_path_factory.mktemp(request.param))
        yield gw
        gw.process.stop()

    return fixture
