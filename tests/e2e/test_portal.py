"""The catalog a developer portal reads (GET /admin/v1/catalog, /admin/v1/catalog/openapi.json),
end to end over HTTP: what each tenant and team discovers, the team's subscription state on
each entry as it moves from pending to approved, filters and pages, tenant isolation and bad
query parameters. Every test runs on the embedded default (SQLite, in-process state) and on a
cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

GATED = "gated-model"
GATED_ALIAS = "members-only"  # another name of GATED's group (router.aliases)


def portal_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["models"] += [
        {"name": GATED, "provider": "local-openai", "model": "gpt-4o-mini", "require_approval": True},
    ]
    config["router"] = {"aliases": {GATED_ALIAS: GATED}}
    config["services"] = [
        {"name": "weather", "url": f"{mock.url}/v1"},
        # Seen by the callers of one tenant only.
        {"name": "private-weather", "url": f"{mock.url}/v1", "tenant": "someone-else"},
    ]
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway

    def call(self, method: str, path: str, key: str = MASTER_KEY, json: Any = None,
             params: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.request(method, self.gateway.url + path, json=json, params=params,
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def ok(self, method: str, path: str, key: str = MASTER_KEY, json: Any = None,
           params: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
        resp = self.call(method, path, key, json, params)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def tenant(self) -> str:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        self.ok("POST", "/admin/v1/tenants", json={"id": tenant}, status=201)
        return tenant

    def team(self, tenant: str) -> str:
        return str(self.ok("POST", "/admin/v1/teams", json={"tenant": tenant, "name": "t"}, status=201)["id"])

    def key(self, tenant: str, team: str | None = None, role: str = "developer",
            models: list[str] | None = None) -> str:
        body: dict[str, Any] = {"tenant": tenant, "role": role, "models": models or ["*"]}
        if team is not None:
            body["team"] = team
        return str(self.ok("POST", "/admin/v1/keys", json=body, status=201)["key"])

    def catalog(self, key: str, **params: Any) -> dict[str, Any]:
        return self.ok("GET", "/admin/v1/catalog", key, params=params)

    def entries(self, key: str, **params: Any) -> dict[str, dict[str, Any]]:
        return {e["id"]: e for e in self.catalog(key, limit=1000, **params)["data"]}


def cluster_config(mock: Mock, postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    config = portal_config(mock)
    config["database"] = {"url": postgres.create_database(f"portal_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "embedded":
        config = portal_config(mock_upstream)
    else:
        config = cluster_config(
            mock_upstream, request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        )
    gw = start_gateway(config, tmp_path_factory.mktemp(f"portal-{request.param}"))
    yield Deployment(request.param, gw)
    gw.process.stop()


def test_any_key_of_a_tenant_reads_models_and_services(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    team = deployment.team(tenant)
    for role in ("viewer", "developer", "team_admin", "tenant_admin"):
        entries = deployment.entries(deployment.key(tenant, team, role=role))
        assert {"model:gpt-4o-mini", f"model:{GATED}", "service:weather"} <= set(entries), role
    entries = deployment.entries(deployment.key(tenant, team, role="viewer"))
    gated, free = entries[f"model:{GATED}"], entries["model:gpt-4o-mini"]
    assert (gated["object"], gated["kind"], gated["name"], gated["approval_required"]) == (
        "catalog_entry", "model", GATED, True)
    assert gated["subscription"] == {"status": "none", "id": None}
    assert (free["approval_required"], free["provider_type"]) == (False, "openai")
    assert {"tools", "streaming"} <= set(free["capabilities"]) and free["context_window"] > 0
    service = entries["service:weather"]
    assert (service["kind"], service["path"], service["approval_required"]) == (
        "service", "/services/weather/", False)
    # A key limited to some models discovers only those.
    limited = deployment.entries(deployment.key(tenant, team, models=["gpt-4o-mini"]), kind="model")
    assert set(limited) == {"model:gpt-4o-mini"}
    # No key: 401.
    assert httpx.get(f"{deployment.gateway.url}/admin/v1/catalog", timeout=10).status_code == 401


def test_a_team_sees_its_subscription_state_move_from_pending_to_approved(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    team, other = deployment.team(tenant), deployment.team(tenant)
    key, other_key = deployment.key(tenant, team), deployment.key(tenant, other)
    approver = deployment.key(tenant, role="tenant_admin")
    asked = deployment.ok("POST", "/admin/v1/subscriptions", key, json={"model": GATED}, status=201)

    def state(k: str) -> dict[str, Any]:
        return dict(deployment.entries(k, kind="model")[f"model:{GATED}"]["subscription"])

    assert state(key) == {"status": "pending", "id": asked["id"]}
    assert state(other_key)["status"] == "none"  # the subscription is the team's
    deployment.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/approve", json={}, key=approver)
    assert state(key) == {"status": "approved", "id": asked["id"]}
    assert state(deployment.key(tenant, team, role="viewer"))["status"] == "approved"  # the whole team
    deployment.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/revoke", json={}, key=approver)
    assert state(key)["status"] == "revoked"
    other_sub = deployment.ok("POST", "/admin/v1/subscriptions", other_key, json={"model": GATED}, status=201)
    deployment.ok("POST", f"/admin/v1/subscriptions/{other_sub['id']}/reject", json={"reason": "no"},
                  key=approver)
    assert state(other_key)["status"] == "rejected"
    # The team's members list their subscriptions and their state.
    listed = deployment.ok("GET", "/admin/v1/subscriptions", key)["data"]
    assert [(s["id"], s["status"], s["kind"], s["name"]) for s in listed] == [
        (asked["id"], "revoked", "model", GATED)]


def test_an_alias_shows_the_subscription_of_its_group(deployment: Deployment) -> None:
    """An alias answers as its group: the team's subscription to the group is the alias's too
    (an alias is no model of its own to subscribe to)."""
    tenant = deployment.tenant()
    team = deployment.team(tenant)
    key, approver = deployment.key(tenant, team), deployment.key(tenant, role="tenant_admin")
    refused = deployment.call("POST", "/admin/v1/subscriptions", key, json={"model": GATED_ALIAS})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_found"
    asked = deployment.ok("POST", "/admin/v1/subscriptions", key, json={"model": GATED}, status=201)
    deployment.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/approve", json={}, key=approver)
    entries = deployment.entries(key, kind="model")
    for name in (GATED, GATED_ALIAS):
        entry = entries[f"model:{name}"]
        assert (entry["name"], entry["approval_required"]) == (name, True)
        assert entry["subscription"] == {"status": "approved", "id": asked["id"]}, name
    served = deployment.call("POST", "/v1/chat/completions", key, json={
        "model": GATED_ALIAS, "messages": [{"role": "user", "content": "hi"}]})
    assert served.status_code == 200, served.text


def test_an_approval_shows_in_the_catalog_of_another_instance_within_a_second(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two instances of a cluster: each keeps the team's subscriptions for its catalog (no query
    per request), and an approval made through one shows in the other's catalog within a
    second, through the change feed: the cache would keep the old state for minutes."""
    config = cluster_config(mock_upstream, postgres, redis_server)
    config["apis"] = {"cache_seconds": 300}  # only the change feed can explain a change seen
    database = config["database"]["url"].rsplit("/", 1)[1]
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    here = Deployment("cluster", start_gateway(config, tmp_path / "here"))
    there = Deployment("cluster", start_gateway(config, tmp_path / "there"))
    try:
        tenant = here.tenant()
        team = here.team(tenant)
        key, approver = here.key(tenant, team), here.key(tenant, role="tenant_admin")
        asked = here.ok("POST", "/admin/v1/subscriptions", key, json={"model": GATED}, status=201)

        def state(deployment: Deployment) -> dict[str, Any]:
            return dict(deployment.entries(key, kind="model")[f"model:{GATED}"]["subscription"])

        assert state(there) == {"status": "pending", "id": asked["id"]}
        # Kept there: a change written behind the gateway's back (no change-feed message) is
        # not seen until the entry expires.
        postgres.psql(f"UPDATE subscriptions SET status = 'rejected' WHERE id = '{asked['id']}'", database)
        assert state(there)["status"] == "pending"
        postgres.psql(f"UPDATE subscriptions SET status = 'pending' WHERE id = '{asked['id']}'", database)
        here.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/approve", approver, json={})
        assert state(here) == {"status": "approved", "id": asked["id"]}  # at once where it was made
        approved = time.monotonic()
        while (seen := state(there)["status"]) != "approved":
            assert time.monotonic() - approved < 1.0, f"still {seen} on the other instance after 1 s"
            time.sleep(0.02)
    finally:
        here.gateway.process.stop()
        there.gateway.process.stop()


def test_filters_and_pages(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    key = deployment.key(tenant, deployment.team(tenant))
    models = deployment.catalog(key, kind="model", limit=1000)["data"]
    assert models and {e["kind"] for e in models} == {"model"}
    services = deployment.catalog(key, kind="service")["data"]
    assert [e["id"] for e in services] == ["service:weather"]
    assert deployment.catalog(key, kind="api")["data"] == []
    found = deployment.catalog(key, q="GATED")["data"]  # case-insensitive text search
    assert [e["id"] for e in found] == [f"model:{GATED}"]
    assert deployment.catalog(key, q="no-such-thing")["data"] == []
    everything = [e["id"] for e in deployment.catalog(key, limit=1000)["data"]]
    assert everything == sorted(everything)
    first = deployment.catalog(key, limit=2)
    assert first["has_more"] and [e["id"] for e in first["data"]] == everything[:2]
    second = deployment.catalog(key, limit=2, after=first["last_id"])
    assert [e["id"] for e in second["data"]] == everything[2:4]
    last = deployment.catalog(key, limit=1000, after=everything[-2])
    assert ([e["id"] for e in last["data"]], last["has_more"]) == ([everything[-1]], False)


@pytest.mark.parametrize("params", [
    {"kind": "nope"}, {"kind": ""}, {"limit": "0"}, {"limit": "1001"}, {"limit": "ten"},
    {"q": "x" * 201}, {"after": "x" * 301}, {"tenant": "bad tenant!"}, {"colour": "blue"},
    [("kind", "api"), ("kind", "model")],
])
def test_bad_query_parameters_are_400(deployment: Deployment, params: Any) -> None:
    resp = deployment.call("GET", "/admin/v1/catalog", params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    repeated = isinstance(params, list)
    expected = ("duplicate_parameter",) if repeated else ("invalid_value", "unknown_parameter")
    assert resp.json()["error"]["code"] in expected
    resp = deployment.call("GET", "/admin/v1/catalog/openapi.json", params={"kind": "api"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_parameter"


def test_another_tenant_is_out_of_reach(deployment: Deployment) -> None:
    tenant, other = deployment.tenant(), deployment.tenant()
    key = deployment.key(tenant, deployment.team(tenant), role="tenant_admin")
    resp = deployment.call("GET", "/admin/v1/catalog", key, params={"tenant": other})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "tenant_not_found"
    resp = deployment.call("GET", "/admin/v1/catalog/openapi.json", key, params={"tenant": other})
    assert resp.status_code == 404
    # The platform admin may read any tenant's.
    assert deployment.catalog(MASTER_KEY, tenant=other)["data"]


def test_one_openapi_document_for_the_whole_catalog(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    key = deployment.key(tenant, deployment.team(tenant), role="viewer")
    doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", key)
    assert doc["openapi"].startswith("3.1") and tenant in doc["info"]["title"]
    assert "/services/weather/{path}" in doc["paths"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    models = chat["requestBody"]["content"]["application/json"]["schema"]["properties"]["model"]["enum"]
    assert {"gpt-4o-mini", GATED} <= set(models)
    # The server is relative to the document: the gateway's root under any path prefix.
    served = "https://gw.example/prefix/admin/v1/catalog/openapi.json"
    assert urljoin(served, doc["servers"][0]["url"]) == "https://gw.example/prefix/"


# -- published prompt APIs ---------------------------------------------------------------------


def prompt(deployment: Deployment, tenant: str, team: str, name: str) -> None:
    body = {"name": name, "tenant": tenant, "team": team, "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
            "variables": {"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"]}}
    deployment.ok("POST", "/admin/v1/prompts", json=body, status=201)
    deployment.ok("POST", "/admin/v1/prompts", json={**body, "temperature": 0.2}, status=201)


def publish(deployment: Deployment, tenant: str, team: str, name: str, prompt_name: str,
            **extra: Any) -> dict[str, Any]:
    body = {"name": name, "prompt": prompt_name, "tenant": tenant, "team": team, **extra}
    return deployment.ok("POST", "/admin/v1/apis", json=body, status=201)


def test_published_apis_per_tenant_and_team(deployment: Deployment) -> None:
    tenant, elsewhere = deployment.tenant(), deployment.tenant()
    owners, consumers = deployment.team(tenant), deployment.team(tenant)
    name = f"sentiment-{uuid.uuid4().hex[:6]}"
    prompt(deployment, tenant, owners, name)
    deployment.ok("PUT", f"/admin/v1/prompts/{name}/labels/production", json={"version": 2},
                  params={"tenant": tenant})
    publish(deployment, tenant, owners, name, name, label="production", require_approval=True,
            description="Classifies the sentiment of a text")
    publish(deployment, tenant, owners, f"{name}-draft", name, version=1, status="draft")
    publish(deployment, tenant, owners, f"{name}-old", name, version=1, successor=name)
    at = {"tenant": tenant}
    deployment.ok("PATCH", f"/admin/v1/apis/{name}-old", json={"status": "deprecated"}, params=at)
    publish(deployment, tenant, owners, f"{name}-gone", name, version=1)
    deployment.ok("PATCH", f"/admin/v1/apis/{name}-gone", json={"status": "deprecated"}, params=at)
    deployment.ok("PATCH", f"/admin/v1/apis/{name}-gone", json={"status": "retired"}, params=at)

    consumer = deployment.key(tenant, consumers)
    apis = deployment.entries(consumer, kind="api")
    # Drafts and retired APIs are not discoverable.
    assert set(apis) == {f"api:{name}", f"api:{name}-old"}
    api = apis[f"api:{name}"]
    assert (api["kind"], api["name"], api["owner"], api["description"]) == (
        "api", name, owners, "Classifies the sentiment of a text")
    assert (api["status"], api["label"], api["version"], api["versions"]) == (
        "published", "production", None, [1, 2])
    assert (api["approval_required"], api["path"], api["openapi"]) == (
        True, f"/apis/{name}", f"/apis/{name}/openapi.json")
    assert api["deprecation"] is None and api["subscription"] == {"status": "none", "id": None}
    old = apis[f"api:{name}-old"]
    assert old["status"] == "deprecated" and old["deprecation"]["successor"] == name
    assert old["deprecation"]["deprecated"] is True and old["approval_required"] is False
    # The text filter finds it by description too.
    assert f"api:{name}" in deployment.entries(consumer, q="SENTIMENT of a")

    # The owning team calls its API without a subscription, and cannot ask for one: to it (and
    # in the document it reads) the API needs no approval.
    owner = deployment.key(tenant, owners)
    assert deployment.entries(owner, kind="api")[f"api:{name}"]["approval_required"] is False
    own_doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", owner)
    assert own_doc["paths"][f"/apis/{name}"]["post"]["x-switchboard-approval-required"] is False
    consumer_doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", consumer)
    assert consumer_doc["paths"][f"/apis/{name}"]["post"]["x-switchboard-approval-required"] is True

    # The consuming team subscribes; its state moves from pending to approved.
    asked = deployment.ok("POST", "/admin/v1/subscriptions", consumer, json={"api": name}, status=201)
    assert deployment.entries(consumer, kind="api")[f"api:{name}"]["subscription"] == {
        "status": "pending", "id": asked["id"]}
    call = deployment.call("POST", f"/apis/{name}", consumer, json={"text": "great"})
    assert call.status_code == 403 and call.json()["error"]["code"] == "subscription_pending"
    approver = deployment.key(tenant, role="tenant_admin")
    deployment.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/approve", approver, json={})
    assert deployment.entries(consumer, kind="api")[f"api:{name}"]["subscription"]["status"] == "approved"
    assert deployment.call("POST", f"/apis/{name}", consumer, json={"text": "great"}).status_code == 200
    # A member of the team lists the team's subscriptions: the API, and its state.
    listed = deployment.ok("GET", "/admin/v1/subscriptions", deployment.key(tenant, consumers, role="viewer"))
    assert [(s["kind"], s["name"], s["status"]) for s in listed["data"]] == [("api", name, "approved")]

    # Another tenant discovers none of it, whatever it asks.
    stranger = deployment.key(elsewhere, deployment.team(elsewhere), role="tenant_admin")
    assert deployment.entries(stranger, kind="api") == {}
    assert deployment.catalog(stranger, q=name)["data"] == []
    doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", stranger)
    assert not any(name in path for path in doc["paths"])


def test_the_catalog_openapi_document_describes_each_api(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    team = deployment.team(tenant)
    name = f"translate-{uuid.uuid4().hex[:6]}"
    prompt(deployment, tenant, team, name)
    publish(deployment, tenant, team, name, name, version=2, sessions={"max_turns": 5})
    doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", deployment.key(tenant, team, role="viewer"))
    operation = doc["paths"][f"/apis/{name}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["text"] == {"type": "string"} and schema["required"] == ["text"]
    assert f"/apis/{name}/v{{version}}" in doc["paths"]
    assert operation["x-switchboard-owner"] == team
    assert {"name": "x-switchboard-session", "in": "header"}.items() <= operation["parameters"][-1].items()
    # The entry says the API keeps sessions.
    entry = deployment.entries(deployment.key(tenant, team), kind="api")[f"api:{name}"]
    assert entry["sessions"] is True and entry["version"] == 2


# -- REST services -----------------------------------------------------------------------------


def test_services_registered_by_a_tenant_and_their_subscriptions(deployment: Deployment) -> None:
    tenant, elsewhere = deployment.tenant(), deployment.tenant()
    owners, consumers = deployment.team(tenant), deployment.team(tenant)
    name = f"invoices-{uuid.uuid4().hex[:6]}"
    deployment.ok("POST", "/admin/v1/services", status=201, json={
        "name": name, "tenant": tenant, "url": "http://invoices.example.invalid:9/api",
        "description": "Invoice lookup", "team": owners,
        "require_approval": True, "openapi_url": "http://127.0.0.1:9/api/openapi.json",
        "methods": ["GET", "HEAD"]})
    consumer = deployment.key(tenant, consumers)
    services = deployment.entries(consumer, kind="service")
    # The configured service every tenant sees, the tenant's own; not another tenant's.
    assert set(services) == {"service:weather", f"service:{name}"}
    entry = services[f"service:{name}"]
    assert (entry["description"], entry["owner"], entry["approval_required"], entry["path"]) == (
        "Invoice lookup", owners, True, f"/services/{name}/")
    assert entry["openapi"] == "http://127.0.0.1:9/api/openapi.json"
    assert entry["methods"] == ["GET", "HEAD"]
    assert set(deployment.entries(deployment.key(elsewhere), kind="service")) == {"service:weather"}
    # The subscription's state, pending then approved.
    asked = deployment.ok("POST", "/admin/v1/subscriptions", consumer, json={"service": name}, status=201)
    state = deployment.entries(consumer, kind="service")[f"service:{name}"]["subscription"]
    assert state == {"status": "pending", "id": asked["id"]}
    deployment.ok("POST", f"/admin/v1/subscriptions/{asked['id']}/approve",
                  deployment.key(tenant, role="tenant_admin"), json={})
    state = deployment.entries(consumer, kind="service")[f"service:{name}"]["subscription"]
    assert state == {"status": "approved", "id": asked["id"]}
    listed = deployment.ok("GET", "/admin/v1/subscriptions", consumer)["data"]
    assert [(s["kind"], s["name"], s["status"]) for s in listed] == [("service", name, "approved")]
    doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", consumer)
    # Only the methods the service takes (any other is 405).
    assert set(doc["paths"][f"/services/{name}/{{path}}"]) == {"get", "head"}
    assert "/services/private-weather/{path}" not in doc["paths"]


def test_the_catalog_follows_every_change_of_its_apis_and_services(deployment: Deployment) -> None:
    # What the catalog reads from the database is kept per tenant once read (any key may ask):
    # each change to the tenant's APIs, prompts and services is in the next answer all the same.
    tenant = deployment.tenant()
    team = deployment.team(tenant)
    reader = deployment.key(tenant, team, role="viewer")
    name = f"follow-{uuid.uuid4().hex[:6]}"
    prompt(deployment, tenant, team, name)
    assert f"api:{name}" not in deployment.entries(reader)  # read (and kept) before it exists
    assert f"/apis/{name}" not in deployment.ok("GET", "/admin/v1/catalog/openapi.json", reader)["paths"]
    publish(deployment, tenant, team, name, name, version=1)
    assert deployment.entries(reader, kind="api")[f"api:{name}"]["version"] == 1
    doc = deployment.ok("GET", "/admin/v1/catalog/openapi.json", reader)
    assert f"/apis/{name}" in doc["paths"]
    at = {"tenant": tenant}
    deployment.ok("PATCH", f"/admin/v1/apis/{name}", json={"description": "Now described"}, params=at)
    assert deployment.entries(reader, kind="api")[f"api:{name}"]["description"] == "Now described"
    # A new prompt version is a new pinnable version of the API.
    body = {"name": name, "tenant": tenant, "team": team, "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say {{ text }}"}],
            "variables": {"type": "object", "properties": {"text": {"type": "string"}}}}
    deployment.ok("POST", "/admin/v1/prompts", json=body, status=201)
    assert deployment.entries(reader, kind="api")[f"api:{name}"]["versions"] == [1, 2, 3]
    # The API following a label: the document describes the version the label names, when moved too.
    deployment.ok("PUT", f"/admin/v1/prompts/{name}/labels/live", json={"version": 1}, params=at)
    deployment.ok("PATCH", f"/admin/v1/apis/{name}", json={"label": "live"}, params=at)
    required = doc["paths"][f"/apis/{name}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert required["required"] == ["text"]
    deployment.ok("PUT", f"/admin/v1/prompts/{name}/labels/live", json={"version": 3}, params=at)
    moved = deployment.ok("GET", "/admin/v1/catalog/openapi.json", reader)["paths"][f"/apis/{name}"]
    assert "required" not in moved["post"]["requestBody"]["content"]["application/json"]["schema"]
    # A service registered for the tenant appears; a retired API leaves.
    service = f"svc-{uuid.uuid4().hex[:6]}"
    deployment.ok("POST", "/admin/v1/services", status=201, json={
        "name": service, "tenant": tenant, "url": "http://svc.example.invalid:9/api", "team": team})
    assert f"service:{service}" in deployment.entries(reader, kind="service")
    paths = deployment.ok("GET", "/admin/v1/catalog/openapi.json", reader)["paths"]
    assert f"/services/{service}/{{path}}" in paths
    deployment.ok("PATCH", f"/admin/v1/apis/{name}", json={"status": "retired"}, params=at)
    assert f"api:{name}" not in deployment.entries(reader)
    assert f"/apis/{name}" not in deployment.ok("GET", "/admin/v1/catalog/openapi.json", reader)["paths"]


def test_a_subscription_to_what_is_gone_is_not_approved(deployment: Deployment) -> None:
    """A pending subscription to a service deleted since, or an API retired since, cannot be
    approved (an approval would hold for a service registered again under the name); it can be
    rejected."""
    tenant = deployment.tenant()
    owners, consumers = deployment.team(tenant), deployment.team(tenant)
    at = {"tenant": tenant}
    service = f"ledger-{uuid.uuid4().hex[:6]}"
    deployment.ok("POST", "/admin/v1/services", status=201, json={
        "name": service, "tenant": tenant, "url": "http://ledger.example.invalid:9/api", "team": owners,
        "require_approval": True})
    api = f"summary-{uuid.uuid4().hex[:6]}"
    prompt(deployment, tenant, owners, api)
    publish(deployment, tenant, owners, api, api, version=1, require_approval=True)
    consumer = deployment.key(tenant, consumers)
    subs = "/admin/v1/subscriptions"
    to_service = deployment.ok("POST", subs, consumer, json={"service": service}, status=201)
    to_api = deployment.ok("POST", subs, consumer, json={"api": api}, status=201)
    assert deployment.call("DELETE", f"/admin/v1/services/{service}", params=at).status_code == 204
    deployment.ok("PATCH", f"/admin/v1/apis/{api}", json={"status": "deprecated"}, params=at)
    deployment.ok("PATCH", f"/admin/v1/apis/{api}", json={"status": "retired"}, params=at)

    approver = deployment.key(tenant, role="tenant_admin")
    for sub, kind in ((to_service, "service"), (to_api, "api")):
        resp = deployment.call("POST", f"/admin/v1/subscriptions/{sub['id']}/approve", approver, json={})
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"]["code"] == f"{kind}_not_found"
        assert deployment.ok("GET", f"/admin/v1/subscriptions/{sub['id']}", approver)["status"] == "pending"
        deployment.ok("POST", f"/admin/v1/subscriptions/{sub['id']}/reject", approver,
                      json={"reason": "it is gone"})
    # Registered again under the name, the service is not open to the team without a new approval.
    deployment.ok("POST", "/admin/v1/services", status=201, json={
        "name": service, "tenant": tenant, "url": "http://ledger.example.invalid:9/api", "team": owners,
        "require_approval": True})
    entry = deployment.entries(consumer, kind="service")[f"service:{service}"]
    assert entry["subscription"]["status"] == "rejected"
    approvals = {"tenant": tenant, "action": "subscription.approve"}
    audit = deployment.ok("GET", "/admin/v1/audit", params=approvals)
    assert audit["data"] == []
