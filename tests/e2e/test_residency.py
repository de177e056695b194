"""Data residency on a real gateway: deployments carry regions, tenants, teams and keys allow
sets of regions (each narrowing the one above), and a request that cannot be served inside its
regions is a 403 ``region_not_allowed`` that never reaches an upstream elsewhere, cooldowns or
not. Every test runs embedded (SQLite) and as a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.oidc_provider import IdentityProvider
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, spawn, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    p = "local-openai"
    config["models"] += [
        {"name": "anywhere", "deployment": "eu", "provider": p, "model": "gpt-4o-mini", "region": "eu-west"},
        {"name": "anywhere", "deployment": "us", "provider": p, "model": "gpt-4o", "region": "us-east"},
        {"name": "sturdy", "deployment": "eu", "provider": p, "model": "gpt-4o-mini", "region": "eu-west"},
        {"name": "sturdy", "deployment": "us", "provider": p, "model": "gpt-4o", "region": "us-east"},
        {"name": "us-only", "provider": p, "model": "gpt-4o", "region": "us-east"},
        # A budget's cheaper model, its us deployment first in the table.
        {"name": "cheaper", "deployment": "us", "provider": p, "model": "gpt-4o", "region": "us-east"},
        {"name": "cheaper", "deployment": "eu", "provider": p, "model": "gpt-4o-mini", "region": "eu-west"},
        # Semantic routing embeds the caller's own text: only inside the caller's regions.
        {"name": "embedder", "deployment": "eu", "provider": p, "model": "text-embedding-3-small",
         "region": "eu-west"},
        {"name": "embedder", "deployment": "us", "provider": p, "model": "text-embedding-3-large",
         "region": "us-east"},
        # Pinnable, with a fallback outside eu-west: a pin refused for residency is not its to serve.
        {"name": "pinnable", "deployment": "eu", "provider": p, "model": "gpt-4o-mini", "region": "eu-west"},
        {"name": "pinnable", "deployment": "us", "provider": p, "model": "gpt-4o", "region": "us-east"},
        # Files: the eu deployment's provider is Azure (the mock's /openai/files), the us one's
        # OpenAI (/v1/files), so the path says where a file's bytes went.
        {"name": "filed", "deployment": "eu", "provider": "azure-eu", "model": "gpt-4o-mini",
         "region": "eu-west"},
        {"name": "filed", "deployment": "us", "provider": p, "model": "gpt-4o", "region": "us-east"},
    ]
    config["providers"].append({"name": "azure-eu", "type": "azure", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["files"] = {"provider": "azure-eu"}
    config["router"] = {
        "num_retries": 0, "fallbacks": {"sturdy": ["us-only"], "pinnable": ["us-only"]},
        "groups": {"pinnable": {"allow_pinning": True}},
        "cooldown": {"failures": 2, "seconds": 60},
        "semantic": [{"model": "smart", "embedding_model": "embedder", "threshold": -1, "default": "anywhere",
                      "routes": [{"to": "anywhere", "examples": ["hello there"]}]}],
    }
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None,
              key: str = MASTER_KEY) -> httpx.Response:
        return httpx.request(method, f"{self.gateway.url}{path}", json=body,
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        resp = self.admin(method, path, body)
        assert resp.status_code == status, resp.text
        return resp.json()

    def key(self, **body: Any) -> str:
        created = self.ok("POST", "/admin/v1/keys", {"models": ["*"], **body}, status=201)
        return str(created["key"])

    def chat(self, key: str, model: str, text: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        return httpx.post(f"{self.gateway.base_url}/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def served_by(self, key: str, model: str, times: int = 4) -> set[str]:
        """The upstream models that served ``times`` requests (all must succeed)."""
        marker = new_marker()
        for i in range(times):
            resp = self.chat(key, model, f"mock:capture={marker} {i}")
            assert resp.status_code == 200, resp.text
        return {r["body"]["model"] for r in captured(self.mock, marker, count=times)}


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(realm="/realms/residency").start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, idp: IdentityProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    config = _config(mock_upstream)
    config["auth"]["oidc"] = [{
        "issuer": idp.issuer, "audience": "switchboard",
        "claims": {"tenant": "tenant", "team": "team", "user": "preferred_username",
                   "role": "realm_access.roles"},
        "roles": {"sb-dev": "developer"}, "models": ["anywhere"],
    }]
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"residency_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"residency-{request.param}"))
    yield Deployment(request.param, gw, mock_upstream)
    gw.process.stop()


def _refused(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "region_not_allowed")
    return error


def test_a_key_is_served_only_inside_its_regions(deployment: Deployment) -> None:
    eu = deployment.key(allowed_regions=["eu-west"])
    assert deployment.served_by(eu, "anywhere") == {"gpt-4o-mini"}
    marker = new_marker()
    error = _refused(deployment.chat(eu, "us-only", f"mock:capture={marker} x"))
    assert "'us-only'" in error["message"] and "eu-west" in error["message"]
    assert captured(deployment.mock, marker, timeout=0.5) == []
    nowhere = deployment.key(allowed_regions=["ap-south"])
    _refused(deployment.chat(nowhere, "anywhere", "x"))
    # No policy: anywhere.
    assert deployment.served_by(deployment.key(), "anywhere", times=8) <= {"gpt-4o-mini", "gpt-4o"}


def test_tenant_team_and_key_policies_narrow_each_other(deployment: Deployment) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    created = deployment.ok("POST", "/admin/v1/tenants",
                            {"id": tenant, "allowed_regions": ["us-east", "eu-west", "eu-west"]}, status=201)
    assert created["allowed_regions"] == ["eu-west", "us-east"]
    team = deployment.ok("POST", "/admin/v1/teams", {"name": "t", "tenant": tenant,
                                                     "allowed_regions": ["us-east", "ap-south"]}, status=201)
    assert deployment.ok("GET", f"/admin/v1/teams/{team['id']}")["allowed_regions"] == ["ap-south", "us-east"]
    # The team's ap-south is outside the tenant's: only us-east is left.
    member = deployment.key(tenant=tenant, team=team["id"])
    assert deployment.served_by(member, "anywhere") == {"gpt-4o"}
    issued = deployment.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant, "team": team["id"],
                                                     "allowed_regions": ["eu-west"]}, status=201)
    assert issued["allowed_regions"] == ["eu-west"]
    assert deployment.ok("GET", f"/admin/v1/keys/{issued['id']}")["allowed_regions"] == ["eu-west"]
    eu_key = issued["key"]
    _refused(deployment.chat(eu_key, "anywhere", "x"))  # eu-west is not the team's
    # The team widened: the key's eu-west holds now, on every instance, within a second or so.
    deployment.ok("PATCH", f"/admin/v1/teams/{team['id']}", {"allowed_regions": ["eu-west", "us-east"]})
    end = time.monotonic() + 5
    while deployment.chat(eu_key, "anywhere", "x").status_code != 200:
        assert time.monotonic() < end, "the new team policy never applied"
    assert deployment.served_by(eu_key, "anywhere") == {"gpt-4o-mini"}
    # The tenant narrowed to us-east: the eu key has nowhere left.
    deployment.ok("PATCH", f"/admin/v1/tenants/{tenant}", {"allowed_regions": ["us-east"]})
    end = time.monotonic() + 5
    while deployment.chat(eu_key, "anywhere", "x").status_code != 403:
        assert time.monotonic() < end, "the new tenant policy never applied"
    assert deployment.served_by(member, "anywhere") == {"gpt-4o"}


def test_only_those_above_may_widen_a_policy(deployment: Deployment) -> None:
    tenant = f"policy-{uuid.uuid4().hex[:6]}"
    deployment.ok("POST", "/admin/v1/tenants", {"id": tenant, "allowed_regions": ["eu-west"]}, status=201)
    team = deployment.ok("POST", "/admin/v1/teams", {"name": "t", "tenant": tenant}, status=201)
    boss = deployment.key(tenant=tenant, role="tenant_admin")
    lead = deployment.key(tenant=tenant, team=team["id"], role="team_admin")
    body = {"allowed_regions": ["eu-west", "us-east"]}
    denied = deployment.admin("PATCH", f"/admin/v1/tenants/{tenant}", body, key=boss)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    denied = deployment.admin("PATCH", f"/admin/v1/teams/{team['id']}", body, key=lead)
    assert denied.status_code == 403, denied.text
    # The tenant admin narrows a team; renaming the tenant is still theirs.
    narrowed = deployment.admin("PATCH", f"/admin/v1/teams/{team['id']}", {"allowed_regions": []}, key=boss)
    assert narrowed.status_code == 200 and narrowed.json()["allowed_regions"] == []
    renamed = deployment.admin("PATCH", f"/admin/v1/tenants/{tenant}", {"name": "P"}, key=boss)
    assert renamed.status_code == 200 and renamed.json()["allowed_regions"] == ["eu-west"]
    # An empty list allows no region at all.
    _refused(deployment.chat(lead, "anywhere", "x"))


def test_a_cooling_deployment_is_never_replaced_by_one_outside_the_regions(deployment: Deployment) -> None:
    eu = deployment.key(allowed_regions=["eu-west"])
    statuses = [deployment.chat(eu, "sturdy", "mock:status=500").status_code for _ in range(2)]
    assert all(s >= 500 for s in statuses), statuses
    marker = new_marker()
    # Its group has a us deployment and a us fallback: neither may serve this key.
    resp = deployment.chat(eu, "sturdy", f"mock:capture={marker} x")
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "no_healthy_deployment"
    assert captured(deployment.mock, marker, timeout=0.5) == []
    # Without a policy the same group is served, by its us deployment.
    assert deployment.served_by(deployment.key(), "sturdy") == {"gpt-4o"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/v1/keys", {"models": ["*"], "allowed_regions": "eu-west"}, "allowed_regions"),
        ("/admin/v1/keys", {"models": ["*"], "allowed_regions": ["eu west"]}, "allowed_regions[0]"),
        ("/admin/v1/keys", {"models": ["*"], "allowed_regions": ["r" * 65]}, "allowed_regions[0]"),
        ("/admin/v1/keys", {"models": ["*"], "allowed_regions": [f"r{i}" for i in range(101)]},
         "allowed_regions"),
        ("/admin/v1/keys", {"models": ["*"], "allowed_regions": [7]}, "allowed_regions[0]"),
        ("/admin/v1/tenants", {"id": "bad-regions", "allowed_regions": {"eu": True}}, "allowed_regions"),
        ("/admin/v1/tenants", {"id": "bad-regions", "allowed_region": ["eu"]}, "allowed_region"),
        ("/admin/v1/teams", {"name": "t", "allowed_regions": [""]}, "allowed_regions[0]"),
    ],
)
def test_bad_policies_are_400(deployment: Deployment, path: str, body: dict[str, Any], param: str) -> None:
    resp = deployment.admin("POST", path, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    code = "unknown_parameter" if param == "allowed_region" else "invalid_value"
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param), error
    assert deployment.chat(MASTER_KEY, "anywhere", "still serving").status_code == 200


def test_the_cli_issues_a_key_held_to_its_regions(deployment: Deployment) -> None:
    gw = deployment.gateway
    proc = spawn(["keys", "create", "-m", "*", "--region", "us-east", "--region", "us-east", "--json",
                  "--url", gw.url, "--key", MASTER_KEY], env={"COLUMNS": "250"})
    assert proc.wait_exit(60) == 0, proc.output
    created = json.loads(proc.output)
    assert created["allowed_regions"] == ["us-east"]
    assert deployment.served_by(created["key"], "anywhere") == {"gpt-4o"}
    bad = spawn(["keys", "create", "-m", "*", "--region", "not a region", "--url", gw.url,
                 "--key", MASTER_KEY])
    assert bad.wait_exit(60) == 1 and "HTTP 400" in bad.output and "allowed_regions" in bad.output


def test_token_callers_are_held_to_their_tenants_and_teams_regions(
    deployment: Deployment, idp: IdentityProvider
) -> None:
    tenant = f"sso-{uuid.uuid4().hex[:6]}"
    deployment.ok("POST", "/admin/v1/tenants", {"id": tenant, "allowed_regions": ["eu-west", "us-east"]},
                  status=201)
    team = deployment.ok("POST", "/admin/v1/teams", {"name": "t", "tenant": tenant,
                                                     "allowed_regions": ["us-east"]}, status=201)

    def token(**claims: Any) -> str:
        return idp.token(tenant=tenant, preferred_username="alice",
                         realm_access={"roles": ["sb-dev"]}, **claims)

    assert deployment.served_by(token(), "anywhere", times=8) <= {"gpt-4o-mini", "gpt-4o"}
    assert deployment.served_by(token(team=team["id"]), "anywhere") == {"gpt-4o"}
    deployment.ok("POST", "/admin/v1/tenants", {"id": tenant + "-x", "allowed_regions": ["ap-south"]},
                  status=201)
    _refused(deployment.chat(idp.token(tenant=tenant + "-x", preferred_username="bob",
                                       realm_access={"roles": ["sb-dev"]}), "anywhere", "x"))


def test_semantic_routing_embeds_the_callers_text_only_inside_its_regions(deployment: Deployment) -> None:
    eu = deployment.key(allowed_regions=["eu-west"])
    marker = new_marker()
    for i in range(6):
        resp = deployment.chat(eu, "smart", f"mock:capture={marker} hello {i}")
        assert resp.status_code == 200, resp.text
    seen = captured(deployment.mock, marker, count=12)
    embedded = [r["body"]["model"] for r in seen if r["path"].endswith("/embeddings")]
    chats = [r["body"]["model"] for r in seen if r["path"].endswith("/chat/completions")]
    assert len(embedded) == 6 and set(embedded) == {"text-embedding-3-small"}
    assert chats == ["gpt-4o-mini"] * 6
    # Nowhere to embed it: the semantic choice falls back to its default, still in region.
    us = deployment.key(allowed_regions=["ap-south"])
    _refused(deployment.chat(us, "smart", "hello"))


def test_a_pin_outside_the_callers_regions_is_refused_and_never_served_by_a_fallback(
    deployment: Deployment,
) -> None:
    us = deployment.key(allowed_regions=["us-east"])
    eu = deployment.key(allowed_regions=["eu-west"])
    body = {"model": "pinnable", "messages": [{"role": "user", "content": "x"}]}
    for key, pin, region in ((us, "eu", "us-east"), (eu, "us", "eu-west")):
        marker = new_marker()
        body["messages"] = [{"role": "user", "content": f"mock:capture={marker} pinned"}]
        resp = httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}", "x-switchboard-deployment": pin})
        error = _refused(resp)
        assert f"deployment '{pin}'" in error["message"] and region in error["message"], error
        # Neither the pinned deployment nor the group's fallback (us-only) was sent anything.
        assert captured(deployment.mock, marker, timeout=0.5) == []
    # A pin inside the regions is served as usual.
    pinned = httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {us}", "x-switchboard-deployment": "us"})
    assert pinned.status_code == 200 and pinned.headers["x-switchboard-deployment"] == "us", pinned.text


def test_a_budgets_cheaper_model_is_served_inside_the_callers_regions(deployment: Deployment) -> None:
    eu = deployment.ok("POST", "/admin/v1/keys", {"models": ["*"], "allowed_regions": ["eu-west"]},
                       status=201)
    deployment.ok("PUT", "/admin/v1/budgets", {"scope": "key", "subject": eu["id"], "unit": "tokens",
                                              "max_amount": 1000, "period": "total",
                                              "downgrade": {"model": "cheaper", "at_percent": 1}})

    def chat(text: str) -> httpx.Response:
        body = {"model": "anywhere", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
        resp = httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {eu['key']}"})
        assert resp.status_code == 200, resp.text
        return resp

    # The first request is served as asked; once its tokens are counted (past 1 % of the budget),
    # every request goes to "cheaper", whose first deployment is outside the key's regions.
    chat("one request to use up more than ten tokens of the budget before the next ones")
    end = time.monotonic() + 10
    while "x-switchboard-budget-downgrade" not in chat("x").headers:
        assert time.monotonic() < end, "the budget never sent a request to the cheaper model"
    for i in range(4):
        marker = new_marker()
        resp = chat(f"mock:capture={marker} {i}")
        assert resp.headers["x-switchboard-budget-downgrade"] == "anywhere -> cheaper"
        served = (resp.headers["x-switchboard-model"], resp.headers["x-switchboard-deployment"])
        assert served == ("cheaper", "eu")
        assert [r["body"]["model"] for r in captured(deployment.mock, marker)] == ["gpt-4o-mini"]


def _upload(deployment: Deployment, key: str, text: str, model: str | None) -> httpx.Response:
    data = {"purpose": "batch", **({"model": model} if model else {})}
    return httpx.post(f"{deployment.gateway.base_url}/files", data=data, timeout=30,
                      files={"file": ("in.jsonl", text.encode())},
                      headers={"Authorization": f"Bearer {key}"})


def test_a_file_is_uploaded_only_inside_the_callers_regions(deployment: Deployment) -> None:
    us = deployment.key(allowed_regions=["us-east"])
    marker = new_marker()
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"mock:capture={marker}"}]}}
    uploaded = _upload(deployment, us, json.dumps(line) + "\n", "filed")
    assert uploaded.status_code == 200, uploaded.text
    # The us deployment's provider got it (OpenAI's path), never the eu one's (Azure's).
    assert [r["path"] for r in captured(deployment.mock, marker)] == ["/v1/files"]
    # So the key can run a batch on it: every line inside its regions.
    batch = openai.OpenAI(base_url=deployment.gateway.base_url, api_key=us, max_retries=0).batches.create(
        input_file_id=uploaded.json()["id"], endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "validating"
    # Nowhere to put it: refused as a chat request is, and nothing reaches any provider.
    for key in (deployment.key(allowed_regions=[]), deployment.key(allowed_regions=["ap-south"])):
        marker = new_marker()
        error = _refused(_upload(deployment, key, f"mock:capture={marker}\n", "filed"))
        assert "'filed'" in error["message"] and error["param"] == "model", error
        assert captured(deployment.mock, marker, timeout=0.5) == []
    # Without a model: the configured files provider, whose deployments are all in eu-west.
    marker = new_marker()
    error = _refused(_upload(deployment, us, f"mock:capture={marker}\n", None))
    assert "'azure-eu'" in error["message"] and "us-east" in error["message"], error
    assert captured(deployment.mock, marker, timeout=0.5) == []
    # Without a model the configured provider takes it, for a key inside its deployments' regions.
    marker = new_marker()
    eu = deployment.key(allowed_regions=["eu-west"])
    assert _upload(deployment, eu, f"mock:capture={marker}\n", None).status_code == 200
    assert [r["path"] for r in captured(deployment.mock, marker)] == ["/openai/files"]
