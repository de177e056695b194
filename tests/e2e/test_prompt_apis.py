"""Prompts published as REST APIs, end to end: publish a prompt label, a second team subscribes,
is approved and calls it with its own key by plain HTTP and through the generated OpenAPI
document, and the calls show in the usage report per API and version; structured output through
an OpenAI and an Anthropic upstream, repaired or refused with 502 (every try's usage counted
once); the lifecycle's headers and statuses; an A/B split within binomial bounds and sticky per
key; streaming; bad input.
Every test runs on the embedded default (SQLite, in-process state) and on a cluster
(PostgreSQL and Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import referencing
import referencing.jsonschema
from referencing.exceptions import Unresolvable

from tests.e2e.sdk import served_during
from tests.e2e.tenancy_world import Admin
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    captured,
    new_marker,
    openai_config,
    start_gateway,
)

SENTIMENT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
    "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
MAX_BODY = 4096
RULED = "api-auto"  # a name only a routing rule answers to (to "claude")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class World:
    """Tenant ``tenant``: team ``owners`` (a team admin key, every model) publishes, team
    ``consumers`` (a developer key) and team ``others`` call (gpt-4o-mini only); ``stranger`` is a
    key of another tenant."""

    gateway: Gateway
    admin: Admin
    tenant: str
    owners: str
    consumers: str
    others: str
    owner_key: str
    consumer_key: str
    other_key: str
    stranger_key: str

    @property
    def url(self) -> str:
        return self.gateway.url

    def key(self, team: str, role: str = "developer", tenant: str | None = None,
            models: tuple[str, ...] = ("gpt-4o-mini",)) -> str:
        body = {"tenant": tenant or self.tenant, "team": team, "role": role, "models": list(models)}
        return str(self.admin.ok("POST", "/admin/v1/keys", body, status=201)["key"])

    def as_owner(self) -> Admin:
        return self.admin.as_key(self.owner_key)

    def prompt(self, name: str, **body: Any) -> dict[str, Any]:
        body = {**SENTIMENT, "name": name, **body}
        return self.as_owner().ok("POST", "/admin/v1/prompts", body, status=201)

    def publish(self, name: str, **body: Any) -> dict[str, Any]:
        return self.as_owner().ok("POST", "/admin/v1/apis", {"name": name, **body}, status=201)

    def patch(self, name: str, **body: Any) -> httpx.Response:
        return self.as_owner().call("PATCH", f"/admin/v1/apis/{name}", body)

    def call(self, name: str, body: Any, key: str | None = None, path: str = "", **kw: Any) -> httpx.Response:
        headers = {**bearer(key or self.consumer_key), **kw.pop("headers", {})}
        return httpx.post(f"{self.url}/apis/{name}{path}", json=body, headers=headers, timeout=30, **kw)

    def sentiment_api(self, **api: Any) -> str:
        """A fresh prompt (one version) published under the same name."""
        name = unique("api")
        self.prompt(name)
        self.publish(name, prompt=name, version=1, **api)
        return name


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append({"name": "anthropic-mock", "type": "anthropic", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append({"name": "claude", "provider": "anthropic-mock", "model": "claude-sonnet-4-5"})
    config["apis"] = {"max_body_bytes": MAX_BODY, "repair_attempts": 2}
    # Names an API may bind beside its models: a routing rule's, and a group that falls back.
    config["router"] = {"rules": [{"name": "to-claude", "model": RULED, "to": "claude"}],
                        "fallbacks": {"unreachable": ["claude"]}}
    config["spend"] = {"flush_seconds": 0.2}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"apis_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"apis-{request.param}"))
    admin = Admin(gw.url)
    tenant, elsewhere = unique("acme"), unique("globex")
    for t in (tenant, elsewhere):
        admin.ok("POST", "/admin/v1/tenants", {"id": t, "name": t.upper()}, status=201)
    teams = [admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": n}, status=201)["id"]
             for n in ("owners", "consumers", "others")]
    far = admin.ok("POST", "/admin/v1/teams", {"tenant": elsewhere, "name": "far"}, status=201)["id"]
    w = World(gw, admin, tenant, *teams, owner_key="", consumer_key="", other_key="", stranger_key="")
    # The owners publish prompts bound to every model (a caller publishes only models it may use).
    w.owner_key = w.key(w.owners, "team_admin", models=("*",))
    w.consumer_key = w.key(w.consumers)
    w.other_key = w.key(w.others)
    w.stranger_key = w.key(far, tenant=elsewhere)
    yield w
    gw.process.stop()


def _usage(world: World, name: str, expect: dict[str, int], timeout: float = 20.0) -> dict[str, Any]:
    """The usage report of API ``name`` by version, once it counts ``expect`` (version -> calls)."""
    deadline = time.monotonic() + timeout
    while True:
        report = world.admin.ok("GET", "/admin/v1/usage", params={
            "tenant": world.tenant, "group_by": "api,api_version", "api": name})
        rows = {row["api_version"]: row for row in report["data"]}
        done = all(rows.get(v, {}).get("requests") == n for v, n in expect.items())
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_a_published_label_is_subscribed_to_and_called_by_http_and_openapi(world: World) -> None:
    name = unique("sentiment")
    assert world.prompt(name)["version"] == 1
    assert world.prompt(name, temperature=0.2)["version"] == 2
    world.as_owner().ok("PUT", f"/admin/v1/prompts/{name}/labels/production", {"version": 2})
    api = world.publish(name, prompt=name, label="production", require_approval=True,
                        description="Classifies a text")
    assert (api["name"], api["status"], api["label"], api["team"]) == (name, "published", "production",
                                                                        world.owners)
    # Approval: required, then pending, then approved.
    refused = world.call(name, {"text": "great"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "subscription_required"
    # The caller named the API in the path and sent no model: no parameter is blamed.
    assert refused.json()["error"]["param"] is None
    asked = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"api": name},
                       headers=bearer(world.consumer_key), timeout=10)
    assert asked.status_code == 201, asked.text
    assert (asked.json()["status"], asked.json()["team"]) == ("pending", world.consumers)
    pending = world.call(name, {"text": "great"})
    assert pending.status_code == 403 and pending.json()["error"]["code"] == "subscription_pending"
    assert pending.json()["error"]["param"] is None
    world.admin.ok("POST", f"/admin/v1/subscriptions/{asked.json()['id']}/approve", {},
                   params={"tenant": world.tenant})
    # Plain HTTP, the label's version.
    resp = world.call(name, {"text": "great"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == 2 and body["api"] == name and body["model"]
    assert body["output"] == "Hello from the Switchboard mock. You said: Classify: great"
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert resp.headers["x-switchboard-api-version"] == "2" and "deprecation" not in resp.headers
    # A pinned version; the owners' own team needs no subscription; another team still does.
    pinned = world.call(name, {"text": "pinned"}, path="/v1")
    assert pinned.status_code == 200 and pinned.json()["version"] == 1
    assert world.call(name, {"text": "own"}, key=world.owner_key).status_code == 200
    assert world.call(name, {"text": "x"}, key=world.other_key).json()["error"]["code"] == \
        "subscription_required"

    # Through the generated OpenAPI document: path, method and body built from it.
    doc = httpx.get(f"{world.url}/apis/{name}/openapi.json", headers=bearer(world.consumer_key), timeout=10)
    assert doc.status_code == 200, doc.text
    spec = doc.json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    (path, item), *_ = [(p, i) for p, i in spec["paths"].items() if "{" not in p]
    (method, operation), = item.items()
    media = operation["requestBody"]["content"]["application/json"]
    jsonschema.validate(media["example"], media["schema"])
    url = spec["servers"][0]["url"] + path
    generated = httpx.request(method.upper(), url, json=media["example"], headers=bearer(world.consumer_key),
                              timeout=30)
    assert generated.status_code == 200, generated.text
    response_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(generated.json(), response_schema)
    assert generated.json()["version"] == 2

    # The usage report, by API and version (plain, OpenAPI and own-team calls; the pinned one).
    rows = _usage(world, name, {"2": 3, "1": 1})
    assert rows["2"]["requests"] == 3 and rows["1"]["requests"] == 1, rows
    assert rows["2"]["latency_ms_avg"] is not None and rows["2"]["prompt_tokens"] > 0
    only = world.admin.ok("GET", "/admin/v1/usage", params={"tenant": world.tenant, "api": name,
                                                            "api_version": "1"})
    assert only["data"][0]["requests"] == 1


def test_the_owning_team_is_not_subscribed_to_its_own_api(world: World) -> None:
    """The owning team calls its API without a subscription, so it cannot ask for one either
    (nothing would ever read it: a tenant admin would be asked to decide for nothing), whoever
    asks for it; every other team still subscribes."""
    name = world.sentiment_api(require_approval=True)
    assert world.call(name, {"text": "own"}, key=world.owner_key).status_code == 200
    for key, body in ((world.owner_key, {"api": name}),
                      (MASTER_KEY, {"api": name, "team": world.owners, "tenant": world.tenant})):
        own = httpx.post(f"{world.url}/admin/v1/subscriptions", json=body, headers=bearer(key), timeout=10)
        assert own.status_code == 400, own.text
        assert (own.json()["error"]["code"], own.json()["error"]["param"]) == ("approval_not_required", "api")
    listed = world.admin.ok("GET", "/admin/v1/subscriptions", params={"tenant": world.tenant,
                                                                    "model": f"api:{name}"})
    assert listed["data"] == []
    asked = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"api": name},
                       headers=bearer(world.consumer_key), timeout=10)
    assert asked.status_code == 201 and asked.json()["status"] == "pending", asked.text


def test_an_api_of_no_team_that_needs_approval_serves_no_key_of_no_team_unsubscribed(world: World) -> None:
    """An API published without an owning team (by an admin whose key has none) that needs
    approval: a key of no team is not its owning team, and it can hold no subscription, so it is
    refused as any other caller without one, never served for its missing team matching the API's."""
    name = unique("teamless")
    prompt = {**SENTIMENT, "name": name, "tenant": world.tenant}
    world.admin.ok("POST", "/admin/v1/prompts", prompt, status=201)
    api = world.admin.ok("POST", "/admin/v1/apis", {"name": name, "prompt": name, "version": 1,
                                                    "tenant": world.tenant, "require_approval": True},
                         status=201)
    assert api["team"] is None
    teamless = world.admin.ok("POST", "/admin/v1/keys", {"tenant": world.tenant, "models": ["gpt-4o-mini"]},
                              status=201)
    assert teamless["team"] is None
    for key in (teamless["key"], world.consumer_key):
        refused = world.call(name, {"text": "great"}, key=key)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "subscription_required"


def test_a_caller_publishes_only_models_it_may_use_itself(world: World) -> None:
    """An API serves its callers whatever their keys' model lists, so publishing one gives its
    model, as issuing a key does: a team admin whose key may use only gpt-4o-mini binds no prompt
    to another model (as for a model not served: 400 model_not_found), nor publishes or re-points
    an API whose prompt has a version bound to one (403, nothing published or changed)."""
    restricted = world.admin.as_key(world.key(world.owners, "team_admin"))
    name = unique("bound")
    for model in ("claude", RULED, "no-such-model"):
        refused = restricted.call("POST", "/admin/v1/prompts", {**SENTIMENT, "name": name, "model": model})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert restricted.call("GET", f"/admin/v1/prompts/{name}").status_code == 404
    # Version 1 on its own model; version 2, by the unrestricted owner, on claude.
    restricted.ok("POST", "/admin/v1/prompts", {**SENTIMENT, "name": name}, status=201)
    world.prompt(name, model="claude")
    refused = restricted.call("POST", "/admin/v1/apis", {"name": name, "prompt": name, "version": 1})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("permission_denied", "prompt")
    assert "version 2" in error["message"]
    assert restricted.call("GET", f"/admin/v1/apis/{name}").status_code == 404
    assert world.call(name, {"text": "great"}, key=restricted.key).status_code == 404
    # Published by the owner (every model): the restricted admin may not re-point it either.
    world.publish(name, prompt=name, version=1)
    moved = restricted.call("PATCH", f"/admin/v1/apis/{name}", {"version": 2})
    assert moved.status_code == 403, moved.text
    assert world.admin.ok("GET", f"/admin/v1/apis/{name}", params={"tenant": world.tenant})["version"] == 1
    assert world.patch(name, version=2).status_code == 200


def test_the_catalog_document_lists_the_tenants_apis_only(world: World) -> None:
    mine = world.sentiment_api()
    draft = unique("draft")
    world.prompt(draft)
    world.publish(draft, prompt=draft, version=1, status="draft")
    catalog = f"{world.url}/apis/openapi.json"
    doc = httpx.get(catalog, headers=bearer(world.consumer_key), timeout=10).json()
    assert f"/apis/{mine}" in doc["paths"] and f"/apis/{draft}" not in doc["paths"]
    theirs = httpx.get(catalog, headers=bearer(world.stranger_key), timeout=10).json()
    assert f"/apis/{mine}" not in theirs["paths"]
    assert httpx.get(f"{world.url}/apis/openapi.json", timeout=10).status_code == 401
    gone = httpx.get(f"{world.url}/apis/{mine}/openapi.json", headers=bearer(world.stranger_key), timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "api_not_found"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_structured_output_is_schema_valid_json(world: World, model: str) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["positive", "negative"]},
                                               "score": {"type": "number"}},
              "required": ["label", "score"]}
    if model == "gpt-4o-mini":  # the mock's OpenAI answers {"answer": <text>} to any json_schema
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    name = unique("structured")
    world.prompt(name, model=model, output_schema=schema)
    world.publish(name, prompt=name, version=1)
    resp = world.call(name, {"text": "great"}, key=world.owner_key)
    assert resp.status_code == 200, resp.text
    output = resp.json()["output"]
    assert isinstance(output, dict)
    jsonschema.validate(output, schema)
    url = f"{world.url}/apis/{name}/openapi.json"
    doc = httpx.get(url, headers=bearer(world.owner_key), timeout=10).json()
    envelope = doc["paths"][f"/apis/{name}"]["post"]["responses"]["200"]["content"]["application/json"]
    assert envelope["schema"]["properties"]["output"] == schema


def test_an_integer_variable_bounded_past_64_bits_has_its_document(world: World) -> None:
    """Its example was an int past 64 bits: this API's document and the tenant's catalog were
    500s. The example is 1e20 written as a float, an integer to JSON Schema."""
    name = unique("bound")
    world.prompt(name, messages=[{"role": "user", "content": "n={{ n }}"}],
                 variables={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1e20}},
                            "required": ["n"]})
    world.publish(name, prompt=name, version=1)
    for url in (f"{world.url}/apis/{name}/openapi.json", f"{world.url}/apis/openapi.json"):
        doc = httpx.get(url, headers=bearer(world.owner_key), timeout=10)
        assert doc.status_code == 200, doc.text
    media = doc.json()["paths"][f"/apis/{name}"]["post"]["requestBody"]["content"]["application/json"]
    assert media["example"] == {"n": 1e20}
    assert world.call(name, media["example"], key=world.owner_key).status_code == 200


def test_operation_ids_are_unique_when_names_differ_only_in_punctuation(world: World) -> None:
    """``p.x``, ``p-x`` and ``p_x`` (and an API named ``p_x_version`` beside ``p_x``'s pinned
    operation) would make one id: each document's ids are unique, and the same on every fetch."""
    base = f"p{uuid.uuid4().hex[:8]}"
    prompt = unique("ids")
    world.prompt(prompt)
    names = [f"{base}.x", f"{base}-x", f"{base}_x", f"{base}_x_version"]
    for name in names:
        world.publish(name, prompt=prompt, version=1)

    def operation_ids(url: str) -> list[str]:
        doc = httpx.get(url, headers=bearer(world.owner_key), timeout=10)
        assert doc.status_code == 200, doc.text
        return [op["operationId"] for path, item in doc.json()["paths"].items() if base in path
                for op in item.values()]

    for url in (f"{world.url}/apis/openapi.json", f"{world.url}/admin/v1/catalog/openapi.json"):
        ids = operation_ids(url)
        assert len(ids) == 2 * len(names) and len(set(ids)) == len(ids), ids
        assert operation_ids(url) == ids


def _request_body(world: World, name: str) -> dict[str, Any]:
    doc = httpx.get(f"{world.url}/apis/{name}/openapi.json", headers=bearer(world.owner_key), timeout=10)
    return dict(doc.json()["paths"][f"/apis/{name}"]["post"]["requestBody"]["content"]["application/json"])


def test_the_documented_example_is_accepted(world: World) -> None:
    """The request example satisfies the variables schema (lengths, bounds, a simple pattern),
    so posting it back is a 200; a pattern the builder cannot satisfy gets no example."""
    variables = {"type": "object", "required": ["text", "n"], "properties": {
        "text": {"type": "string", "maxLength": 2},
        "n": {"type": "integer", "minimum": 0, "maximum": 0},
        "code": {"type": "string", "pattern": "^[0-9]{3}$"},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 6}, "maxItems": 1},
    }}
    name = unique("example")
    world.prompt(name, variables=variables, messages=[
        {"role": "user", "content": "{{ text }} {{ n }} {{ code }} {{ score }} {{ tags }}"}])
    world.publish(name, prompt=name, version=1)
    body = _request_body(world, name)
    jsonschema.validate(body["example"], variables)
    resp = world.call(name, body["example"], key=world.owner_key)
    assert resp.status_code == 200, resp.text

    odd = {"type": "object", "properties": {"text": {"type": "string", "pattern": "^zz[0-9]q$"}}}
    name = unique("noexample")
    world.prompt(name, variables=odd)
    world.publish(name, prompt=name, version=1)
    assert "example" not in _request_body(world, name)


def _documents(world: World, name: str) -> dict[str, dict[str, Any]]:
    """The three documents that describe API ``name``: its own, the tenant's APIs, the catalog."""
    found = {}
    for path in (f"/apis/{name}/openapi.json", "/apis/openapi.json", "/admin/v1/catalog/openapi.json"):
        resp = httpx.get(f"{world.url}{path}", headers=bearer(world.consumer_key), timeout=30)
        assert resp.status_code == 200, (path, resp.text[:300])
        assert len(resp.content) < 1_000_000, (path, len(resp.content))
        found[path] = resp.json()
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _unresolved(doc: dict[str, Any]) -> list[str]:
    """The references of ``doc`` that point at nothing in it."""
    resource = referencing.jsonschema.DRAFT202012.create_resource(doc)
    resolver = referencing.Registry().with_resource("urn:doc", resource).resolver("urn:doc")
    bad = []
    for ref in _refs(doc):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            bad.append(ref)
    return bad


def test_schema_references_resolve_in_every_document(world: World) -> None:
    """Variables and output schemas with $defs (one recursive): every $ref of the generated
    documents resolves in that document, and the example built through them is accepted."""
    variables = {"type": "object", "required": ["ref", "tree"],
                 "properties": {"ref": {"$ref": "#/$defs/thing"}, "tree": {"$ref": "#/$defs/node"}},
                 "$defs": {"thing": {"type": "string", "minLength": 2},
                           "node": {"type": "object", "properties": {
                               "label": {"type": "string"},
                               "children": {"type": "array", "maxItems": 0,
                                            "items": {"$ref": "#/$defs/node"}}}}}}
    output = {"type": "object", "properties": {"answer": {"$ref": "#/$defs/answer"}},
              "$defs": {"answer": {"type": "string"}}}
    name = unique("rich.api")
    world.prompt(name, variables=variables, output_schema=output,
                 messages=[{"role": "user", "content": "{{ ref }} {{ tree }}"}])
    world.publish(name, prompt=name, version=1)
    docs = _documents(world, name)
    for path, doc in docs.items():
        refs = _refs(doc)
        assert any("api." in ref for ref in refs), path
        assert _unresolved(doc) == [], path
    own = docs[f"/apis/{name}/openapi.json"]
    assert own["components"]["schemas"][f"api.{name}.variables"]["$defs"]["thing"]["minLength"] == 2
    example = own["paths"][f"/apis/{name}"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert len(example["ref"]) >= 2
    assert world.call(name, example, key=world.owner_key).status_code == 200


def test_examples_are_bounded_whatever_the_schema_asks(world: World) -> None:
    """A minLength of 200 million, or arrays of arrays of wide objects, give no example rather
    than a document of hundreds of megabytes; the document stays small in every view."""
    wide = {"type": "object",
            "properties": {f"p{i}": {"type": "string", "minLength": 900} for i in range(60)}}
    nested: dict[str, Any] = wide
    for _ in range(3):  # 27 copies of 60 strings of 900 characters, in each operation
        nested = {"type": "array", "minItems": 3, "items": nested}
    for variables in ({"type": "object", "properties": {"t": {"type": "string", "minLength": 200_000_000}}},
                      {"type": "object", "properties": {"t": nested}}):
        name = unique("big")
        world.prompt(name, variables=variables, messages=[{"role": "user", "content": "{{ t }}"}])
        world.publish(name, prompt=name, version=1)
        for path, doc in _documents(world, name).items():
            for item in (i for p, i in doc["paths"].items() if p.startswith(f"/apis/{name}")):
                assert "example" not in item["post"]["requestBody"]["content"]["application/json"], path


def test_a_costly_render_is_refused_and_the_gateway_keeps_serving(world: World) -> None:
    """A prompt whose render time a caller chooses (a macro calling itself twice, the depth a
    variable) is refused at prompts.max_render_seconds; /v1/models is answered meanwhile."""
    name = unique("bomb")
    world.prompt(name, variables={"type": "object", "properties": {"depth": {"type": "integer"}}}, messages=[
        {"role": "user", "content": "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                                    "{% endmacro %}Depth {{ f(depth) }}"}])
    world.publish(name, prompt=name, version=1)
    resp, took, served = served_during(lambda: world.call(name, {"depth": 40}), world.url, MASTER_KEY)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "prompt_render_failed"
    assert took < 10 and served >= 1, (took, served)


def test_invalid_output_is_repaired_once_or_answered_502(world: World) -> None:
    # The mock echoes the last user message: the repair request ("Your previous answer ...")
    # makes an answer this pattern accepts, the first answer does not.
    repaired = {"type": "object", "required": ["answer"],
                "properties": {"answer": {"type": "string", "pattern": "previous answer"}}}
    name = unique("repair")
    world.prompt(name, output_schema=repaired)
    world.publish(name, prompt=name, version=1)
    resp = world.call(name, {"text": "fix me"}, key=world.owner_key)
    assert resp.status_code == 200, resp.text
    assert "previous answer does not satisfy" in resp.json()["output"]["answer"]
    plain = world.sentiment_api()
    single = world.call(plain, {"text": "fix me"}, key=world.owner_key).json()["usage"]
    assert resp.json()["usage"]["prompt_tokens"] > single["prompt_tokens"]  # both tries counted

    never = {"type": "object", "required": ["answer"],
             "properties": {"answer": {"type": "string", "pattern": "^NEVER$"}}}
    name = unique("unrepairable")
    world.prompt(name, output_schema=never)
    world.publish(name, prompt=name, version=1)
    failed = world.call(name, {"text": "x"}, key=world.owner_key)
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert error["code"] == "invalid_model_output" and "answer" in error["message"]


def _tries_usage(mock: Mock, marker: str, tries: int) -> dict[str, int]:
    """The usage of each upstream try recorded under ``marker``, summed: each body replayed on the
    mock as the gateway sent it (the mock counts tokens by the request, the same every time)."""
    sent = captured(mock, marker, count=tries, outcome="completed")
    assert len(sent) == tries, sent
    total = {"prompt_tokens": 0, "completion_tokens": 0}
    for record in sent:
        again = httpx.post(mock.url + record["path"], json=record["body"], timeout=30,
                           headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
        assert again.status_code == 200, again.text
        for field in total:
            total[field] += again.json()["usage"][field]
    return total


def test_the_usage_of_every_repair_try_is_counted_once(world: World, mock_upstream: Mock) -> None:
    """Two repairs (apis.repair_attempts: 2): the reply's usage and the ledger's are the sum of
    the three tries, each once, whether the last try satisfies the schema or not."""
    # The mock answers with the last user message. Only the third try's (the second repair
    # request) quotes a previous repair request, so only it has the phrase twice; the
    # pattern's own text (in the schema the repair requests show) does not match itself.
    third = {"type": "object", "required": ["answer"], "properties": {"answer": {
        "type": "string", "pattern": "Y[o]ur previous answer[\\s\\S]*Y[o]ur previous answer"}}}
    never = {"type": "object", "required": ["answer"],
             "properties": {"answer": {"type": "string", "pattern": "^NEVER$"}}}
    for schema, status in ((third, 200), (never, 502)):
        name, marker = unique("tries"), new_marker()
        world.prompt(name, output_schema=schema)
        world.publish(name, prompt=name, version=1)
        resp = world.call(name, {"text": f"mock:capture={marker}"}, key=world.owner_key)
        assert resp.status_code == status, resp.text
        expected = _tries_usage(mock_upstream, marker, 3)
        if status == 200:
            usage = resp.json()["usage"]
            assert {k: usage[k] for k in expected} == expected
            assert usage["total_tokens"] == sum(expected.values())
        row = _usage(world, name, {"1": 1})["1"]
        assert {k: row[k] for k in expected} == expected, row


def test_repair_tries_cannot_spend_past_the_callers_budget(world: World) -> None:
    """A key's token budget that holds one try of an API call but not its three (two repairs):
    each repair try reserves its own cost before it goes, so the call stops with the budget's
    429 when the next try could pass it, and what the tries sent cost is spent, never more than
    the budget."""
    never = {"type": "object", "required": ["answer"],
             "properties": {"answer": {"type": "string", "pattern": "^NEVER$"}}}
    name = unique("budgeted")
    world.prompt(name, output_schema=never, max_tokens=5)
    world.publish(name, prompt=name, version=1)
    # Without a budget: the three tries' tokens.
    assert world.call(name, {"text": "spend"}, key=world.owner_key).status_code == 502
    tries = _usage(world, name, {"1": 1})["1"]
    total = tries["prompt_tokens"] + tries["completion_tokens"]
    issued = world.admin.ok("POST", "/admin/v1/keys", {"tenant": world.tenant, "team": world.owners,
                                                       "role": "team_admin", "models": ["*"]}, status=201)
    budget = world.admin.ok("PUT", "/admin/v1/budgets", {
        "tenant": world.tenant, "scope": "key", "subject": issued["id"], "unit": "tokens",
        "max_amount": total - 1, "period": "total"})
    resp = world.call(name, {"text": "spend"}, key=issued["key"])
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["code"] == "budget_exceeded"
    deadline = time.monotonic() + 20
    while True:  # settled after the response
        status = world.admin.ok("GET", f"/admin/v1/budgets/{budget['id']}")["status"]
        if (status["reserved"] == 0 and status["spent"] > 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["reserved"] == 0 and 0 < status["spent"] < total - 1, status
    # The ledger holds the tries that were sent, under the budget's 429.
    row = _usage(world, name, {"1": 2})["1"]
    assert row["prompt_tokens"] + row["completion_tokens"] == total + status["spent"], (row, status)


def test_the_lifecycle_headers_and_statuses(world: World) -> None:
    name = world.sentiment_api(status="draft")
    owner = world.owner_key
    draft = world.call(name, {"text": "x"}, key=owner)
    assert draft.status_code == 404 and draft.json()["error"]["code"] == "api_not_found"
    bad = world.patch(name, status="deprecated")
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "invalid_transition"
    assert world.patch(name, status="published").json()["status"] == "published"
    live = world.call(name, {"text": "x"}, key=owner)
    assert live.status_code == 200 and not {"deprecation", "sunset", "link"} & set(live.headers)
    doc = httpx.get(f"{world.url}/apis/{name}/openapi.json", headers=bearer(owner), timeout=10).json()
    assert "deprecated" not in doc["paths"][f"/apis/{name}"]["post"]

    successor = world.sentiment_api()
    patched = world.patch(name, status="deprecated", successor=successor, sunset_at="2030-01-01T00:00:00Z")
    assert patched.status_code == 200 and patched.json()["status"] == "deprecated"
    old = world.call(name, {"text": "x"}, key=owner)
    assert old.status_code == 200, old.text
    deprecated_at = datetime.fromisoformat(patched.json()["deprecated_at"])
    assert old.headers["deprecation"] == f"@{int(deprecated_at.timestamp())}"
    assert old.headers["sunset"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert old.headers["link"] == f'</apis/{successor}>; rel="successor-version"'
    doc = httpx.get(f"{world.url}/apis/{name}/openapi.json", headers=bearer(owner), timeout=10).json()
    assert doc["paths"][f"/apis/{name}"]["post"]["deprecated"] is True

    assert world.patch(name, status="retired").json()["status"] == "retired"
    retired = world.call(name, {"text": "x"}, key=owner)
    assert retired.status_code == 410
    error = retired.json()["error"]
    assert error["code"] == "api_retired" and successor in error["message"]
    back = world.patch(name, status="published")
    assert back.status_code == 409 and back.json()["error"]["code"] == "invalid_transition"
    # Repeating what a retired API already holds changes nothing: 200, nothing written or audited.
    stored = world.as_owner().ok("GET", f"/admin/v1/apis/{name}")
    log = {"tenant": world.tenant, "limit": 1000}
    entries = len(world.admin.ok("GET", "/admin/v1/audit", params=log)["data"])
    same = world.patch(name, status="retired", successor=successor, sunset_at="2030-01-01T00:00:00Z")
    assert same.status_code == 200, same.text
    assert same.json() == stored
    assert len(world.admin.ok("GET", "/admin/v1/audit", params=log)["data"]) == entries
    changed = world.patch(name, status="retired", description="changed")
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "invalid_transition"
    listed = world.admin.ok("GET", "/admin/v1/apis", params={"tenant": world.tenant, "status": "retired"})
    assert name in [a["name"] for a in listed["data"]]
    # Each change is audited.
    audit = world.admin.ok("GET", "/admin/v1/audit", params={"tenant": world.tenant, "limit": 1000})
    actions = {e["action"] for e in audit["data"] if e.get("resource_id") == name}
    assert {"api.create", "api.published", "api.deprecated", "api.retired"} <= actions


def test_an_ab_split_is_within_binomial_bounds_and_sticky_per_key(world: World) -> None:
    name = unique("split")
    world.prompt(name)
    world.prompt(name)
    world.publish(name, prompt=name, version=1)
    resp = world.patch(name, split=[{"version": 1, "percent": 50}, {"version": 2, "percent": 50}])
    assert resp.status_code == 200, resp.text
    keys = 40
    seen: dict[int, int] = {1: 0, 2: 0}
    for _ in range(keys):
        key = world.key(world.owners)
        first = world.call(name, {"text": "a"}, key=key).json()["version"]
        again = world.call(name, {"text": "b"}, key=key).json()["version"]
        assert first == again  # sticky
        seen[first] += 1
    # Binomial(40, 0.5): mean 20, sd 3.2; 4.4 sd either side.
    assert 6 <= seen[1] <= 34 and seen[1] + seen[2] == keys, seen
    # A pinned version is outside the split.
    assert world.call(name, {"text": "p"}, key=world.owner_key, path="/v2").json()["version"] == 2
    bad = world.patch(name, split=[{"version": 1, "percent": 50}, {"version": 2, "percent": 40}])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_split"


def test_a_rotated_key_keeps_its_arm_of_a_split(world: World) -> None:
    """Rotation replaces a key's secret, not its history: the new key (and the old one in its
    grace period) gets the arm its lineage had."""
    name = unique("split")
    world.prompt(name)
    world.prompt(name)
    world.publish(name, prompt=name, split=[{"version": 1, "percent": 50}, {"version": 2, "percent": 50}])
    for _ in range(8):  # each rotation a fresh draw were the arm the new key id's: 1 in 256 to pass
        body = {"tenant": world.tenant, "team": world.consumers, "role": "developer",
                "models": ["gpt-4o-mini"]}
        issued = world.admin.ok("POST", "/admin/v1/keys", body, status=201)
        arm = world.call(name, {"text": "a"}, key=issued["key"]).json()["version"]
        rotated = world.admin.ok("POST", f"/admin/v1/keys/{issued['id']}/rotate", {"grace_seconds": 600},
                                 status=201)
        assert world.call(name, {"text": "b"}, key=rotated["key"]).json()["version"] == arm
        assert world.call(name, {"text": "c"}, key=issued["key"]).json()["version"] == arm


def _events(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_stream_true_streams_the_text(world: World) -> None:
    name = world.sentiment_api()
    for extra in ({"params": {"stream": "true"}}, {"params": {"stream": "1"}},
                  {"headers": {"Accept": "text/event-stream"}}):
        resp = world.call(name, {"text": "streamed words"}, key=world.owner_key, **extra)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _events(resp.text)
        text = "".join(e.get("delta", "") for e in events)
        assert text == "Hello from the Switchboard mock. You said: Classify: streamed words"
        final = events[-1]
        assert final["done"] is True and final["version"] == 1 and final["api"] == name
        assert final["usage"]["completion_tokens"] > 0
    plain = world.call(name, {"text": "x"}, key=world.owner_key, params={"stream": "False"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    # The documents declare stream a boolean: another value is refused, not read as false.
    for odd in ("maybe", "", "yes"):
        refused = world.call(name, {"text": "x"}, key=world.owner_key, params={"stream": odd})
        assert refused.status_code == 400, (odd, refused.text)
        error = refused.json()["error"]
        assert (error["param"], error["code"]) == ("stream", "invalid_value")


def test_bad_input(world: World) -> None:
    name = unique("strict")
    variables = {"type": "object", "additionalProperties": False, "required": ["text", "count"],
                 "properties": {"text": {"type": "string"}, "count": {"type": "integer"}}}
    world.prompt(name, variables=variables, messages=[{"role": "user", "content": "{{ text }} {{ count }}"}])
    world.publish(name, prompt=name, version=1)
    owner = world.owner_key
    invalid = world.call(name, {"count": "three"}, key=owner)
    assert invalid.status_code == 400
    error = invalid.json()["error"]
    assert error["code"] == "invalid_variables"
    assert "text" in error["message"] and "count" in error["message"], error
    # A variable the schema does not allow is named in param, as a missing one is.
    extra = world.call(name, {"text": "x", "count": 1, "colour": "red"}, key=owner)
    assert extra.status_code == 400, extra.text
    error = extra.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_variables", "colour"), error
    assert "colour" in error["message"], error
    for body in ([1, 2], "text", 3):
        wrong = world.call(name, body, key=owner)
        assert wrong.status_code == 400
        assert (wrong.json()["error"]["code"], wrong.json()["error"]["message"]) == (
            "invalid_json", "the request body must be a JSON object")
    garbled = httpx.post(f"{world.url}/apis/{name}", content=b"{nope", headers=bearer(owner), timeout=10)
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "invalid_json"
    huge = world.call(name, {"text": "x" * (MAX_BODY + 10), "count": 1}, key=owner)
    assert huge.status_code == 413
    unknown = world.call(unique("nothing"), {"text": "x"}, key=owner)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "api_not_found"
    other_tenant = world.call(name, {"text": "x", "count": 1}, key=world.stranger_key)
    assert other_tenant.status_code == 404 and other_tenant.json()["error"]["code"] == "api_not_found"
    assert world.call(name, {"text": "x", "count": 1}).status_code == 200  # approval not required
    # A version the prompt does not have is the documented 404, whatever its digits.
    for version in ("v2", "v0", "v00", "v1234567", "v" + "9" * 40):
        missing = world.call(name, {"text": "x", "count": 1}, key=owner, path=f"/{version}")
        assert missing.status_code == 404, (version, missing.text)
        assert missing.json()["error"]["code"] == "version_not_found", (version, missing.text)
    assert world.call(name, {"text": "x", "count": 1}, key=owner, path="/v" + "9" * 41).status_code == 404
    url = f"{world.url}/apis/{name}"
    assert httpx.post(url, json={"text": "x", "count": 1}, timeout=10).status_code == 401
    assert httpx.put(url, json={}, headers=bearer(owner), timeout=10).status_code == 404

    # The admin API's own refusals.
    owner_admin = world.as_owner()
    for body, status, code in [
        ({"name": unique("x"), "prompt": unique("missing"), "version": 1}, 400, "prompt_not_found"),
        ({"name": unique("x"), "prompt": name, "version": 9}, 400, "prompt_not_found"),
        ({"name": unique("x"), "prompt": name, "version": 1, "label": "production"}, 400, "invalid_value"),
        ({"name": name, "prompt": name, "version": 1}, 409, "api_exists"),
        ({"name": unique("x"), "prompt": name, "split": [{"version": 1, "percent": 100}]}, 400, None),
        ({"name": "has/slash", "prompt": name, "version": 1}, 400, None),
        # GET /apis/openapi.json is the tenant's catalog document, not an API's.
        ({"name": "openapi.json", "prompt": name, "version": 1}, 400, "reserved_name"),
        ({"name": unique("x"), "prompt": name, "version": 1, "unknown": True}, 400, None),
        # Past year 9999 once in UTC: no store holds it.
        ({"name": unique("x"), "prompt": name, "version": 1, "sunset_at": "9999-12-31T23:59:59-23:59"},
         400, "invalid_value"),
    ]:
        resp = owner_admin.call("POST", "/admin/v1/apis", body)
        assert resp.status_code == status, (body, resp.text)
        if code:
            assert resp.json()["error"]["code"] == code
    late = owner_admin.call("PATCH", f"/admin/v1/apis/{name}", {"sunset_at": "9999-12-31T23:59:59-23:59"})
    assert late.status_code == 400, late.text
    assert (late.json()["error"]["code"], late.json()["error"]["param"]) == ("invalid_value", "sunset_at")
    # A developer may not publish; another tenant's API is 404 to its admin.
    denied = world.admin.as_key(world.consumer_key).call("POST", "/admin/v1/apis",
                                                         {"name": unique("x"), "prompt": name, "version": 1})
    assert denied.status_code == 403
    assert world.admin.as_key(world.stranger_key).call("GET", f"/admin/v1/apis/{name}").status_code == 404
    # Subscribing to an API that needs no approval, or to none.
    for api, code in ((name, "approval_not_required"), (unique("none"), "api_not_found")):
        resp = httpx.post(f"{world.url}/admin/v1/subscriptions", json={"api": api},
                          headers=bearer(world.consumer_key), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code


def test_a_pattern_that_backtracks_without_end_is_refused_not_run(world: World) -> None:
    """A tenant's `pattern` against a caller's value: matched with a bounded engine."""
    name = unique("patterned")
    variables = {"type": "object", "required": ["text"],
                 "properties": {"text": {"type": "string", "pattern": "^(a|a)*$"}}}
    world.prompt(name, variables=variables, messages=[{"role": "user", "content": "{{ text }}"}])
    world.publish(name, prompt=name, version=1)
    refused = world.call(name, {"text": "a" * 40 + "!"}, key=world.owner_key)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_variables" and "took longer than" in error["message"], error
    assert world.call(name, {"text": "aaaa"}, key=world.owner_key).status_code == 200


def test_many_patterns_share_one_bound_while_others_are_served(world: World) -> None:
    """The bound on a tenant's patterns is for one validation in all: 100 patterns that each
    backtrack without end were 100 times the bound (10 s and more, the gateway frozen)."""
    name = unique("patterns")
    fields = [f"f{i}" for i in range(100)]
    slow = {"type": "string", "pattern": "^(a|a)*$"}
    variables = {"type": "object", "properties": dict.fromkeys(fields, slow)}
    world.prompt(name, variables=variables, messages=[{"role": "user", "content": "{{ f0 }}"}])
    world.publish(name, prompt=name, version=1)
    body = {f: "a" * 24 + "!" for f in fields}  # within the test's apis.max_body_bytes
    began = time.monotonic()
    resp = world.call(name, body, key=world.owner_key)
    took = time.monotonic() - began
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_variables" and "took longer than" in error["message"], error
    assert took < 6, f"answered after {took:.1f} s"
    assert world.call(name, dict.fromkeys(fields, "aaaa"), key=world.owner_key).status_code == 200


def test_an_example_is_built_without_running_a_pattern_unbounded(world: World) -> None:
    """The OpenAPI example is tried against a tenant's pattern: with the same bounded engine (a
    sample of 81 characters against this pattern was 2^40 steps of Python's re: a frozen
    gateway), and the document is served without an example for that schema."""
    name = unique("sampled")
    variables = {"type": "object", "properties": {
        "t": {"type": "string", "pattern": "^(x1|x1)*$", "minLength": 81, "maxLength": 81}}}
    world.prompt(name, variables=variables, messages=[{"role": "user", "content": "{{ t }}"}])
    world.publish(name, prompt=name, version=1)
    assert "example" not in _request_body(world, name)
    assert world.call(name, {"t": "x1" * 40 + "x"}, key=world.owner_key).status_code == 400


def test_property_name_patterns_are_bounded_and_unevaluated_beside_them_refused(world: World) -> None:
    """patternProperties match a caller's property names: bounded like `pattern`; the keyword
    that would match them unbounded (unevaluatedProperties) is refused when the prompt is saved."""
    name = unique("named")
    variables = {"type": "object", "patternProperties": {"^(a|a)*$": {"type": "string"}}}
    world.prompt(name, variables=variables, messages=[{"role": "user", "content": "hi"}])
    world.publish(name, prompt=name, version=1)
    refused = world.call(name, {"a" * 40 + "!": "v"}, key=world.owner_key)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_variables" and "took longer than" in error["message"], error
    assert world.call(name, {"aaaa": "v"}, key=world.owner_key).status_code == 200
    resp = world.as_owner().call("POST", "/admin/v1/prompts", {
        **SENTIMENT, "name": unique("unevaluated"),
        "variables": {"type": "object", "patternProperties": {"^x": {}}, "unevaluatedProperties": False}})
    assert resp.status_code == 400, resp.text
    assert "unevaluatedProperties is not supported" in resp.json()["error"]["message"]


def test_a_document_answers_head_as_it_answers_get(world: World) -> None:
    """HEAD of a document is its GET without the body (as for /v1/models), not an unknown URL."""
    name = world.sentiment_api()
    for path in (f"/apis/{name}/openapi.json", "/apis/openapi.json"):
        got = httpx.get(f"{world.url}{path}", headers=bearer(world.consumer_key), timeout=10)
        head = httpx.head(f"{world.url}{path}", headers=bearer(world.consumer_key), timeout=10)
        assert (head.status_code, got.status_code) == (200, 200), (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == str(len(got.content))
    missing = httpx.head(f"{world.url}/apis/{unique('nothing')}/openapi.json",
                         headers=bearer(world.consumer_key), timeout=10)
    assert missing.status_code == 404 and missing.content == b""
    assert httpx.head(f"{world.url}/apis/{name}/openapi.json", timeout=10).status_code == 401


@pytest.mark.parametrize("model", [RULED, "unreachable"])
def test_the_callers_model_list_does_not_apply_behind_a_rule_or_a_fallback(world: World, model: str) -> None:
    """Access to an API is the API's: a caller whose key may use only gpt-4o-mini calls an API
    whose model a routing rule sends to another group, or whose group falls back to one."""
    name = unique("routed")
    world.prompt(name, model=model)
    world.publish(name, prompt=name, version=1)
    resp = world.call(name, {"text": "great"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["output"].endswith("Classify: great")


@pytest.mark.parametrize("model", [RULED, "unreachable"])
def test_a_caller_publishes_no_model_routing_serves_by_a_group_beyond_its_own(world: World,
                                                                              model: str) -> None:
    """A team admin whose key may use only ``model`` is never served by claude calling it itself:
    the rule sending RULED to claude is refused (403 model_not_allowed), the fallback from
    unreachable to claude skipped. An API's callers would be served by claude (the key's list
    does not apply behind an API), so it neither publishes an API of a prompt on that model nor
    adds a version on it to a prompt an API serves (403 naming claude and the route: the rule's
    target or the fallback), nothing published or saved."""
    restricted = world.admin.as_key(world.key(world.owners, "team_admin", models=(model,)))
    how = "to 'claude'" if model == RULED else "'unreachable' falls back to 'claude'"
    direct = httpx.post(f"{world.url}/v1/chat/completions", headers=bearer(restricted.key), timeout=30,
                        json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert direct.status_code >= 400, direct.text
    if model == RULED:
        assert direct.json()["error"]["code"] == "model_not_allowed"
    name = unique("reach")
    world.prompt(name, model=model)  # by the owner (every model)
    refused = restricted.call("POST", "/admin/v1/apis", {"name": name, "prompt": name, "version": 1})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("permission_denied", "prompt")
    assert how in error["message"] and f"'{model}'" in error["message"], error["message"]
    assert world.call(name, {"text": "great"}).status_code == 404
    # A key that may use claude too publishes it.
    allowed = world.admin.as_key(world.key(world.owners, "team_admin", models=(model, "claude")))
    allowed.ok("POST", "/admin/v1/apis", {"name": name, "prompt": name, "version": 1}, status=201)
    # Published: a version the restricted admin saved would be served at once (/v2).
    saved = restricted.call("POST", "/admin/v1/prompts", {**SENTIMENT, "name": name, "model": model})
    assert saved.status_code == 403, saved.text
    error = saved.json()["error"]
    assert (error["code"], error["param"]) == ("permission_denied", "model")
    assert how in error["message"], error["message"]
    assert world.call(name, {"text": "great"}, path="/v2").status_code == 404


def test_publishing_a_draft_checks_every_version_saved_since(world: World) -> None:
    """Publishing a draft (or a deprecated API again) serves every version of its prompt, so it
    is checked as a re-point is: a team admin whose key may use only gpt-4o-mini does not publish
    its draft once another admin saved a version bound to claude (403, still a draft, nothing
    served), and does not re-publish it once deprecated; moving it towards retirement it may."""
    restricted = world.admin.as_key(world.key(world.owners, "team_admin"))
    name = unique("draft")
    restricted.ok("POST", "/admin/v1/prompts", {**SENTIMENT, "name": name}, status=201)
    restricted.ok("POST", "/admin/v1/apis", {"name": name, "prompt": name, "version": 1, "status": "draft"},
                  status=201)
    world.prompt(name, model="claude")  # version 2, by the owner (every model)
    refused = restricted.call("PATCH", f"/admin/v1/apis/{name}", {"status": "published"})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("permission_denied", "prompt")
    assert "version 2" in error["message"]
    assert _status(world, name) == "draft"
    assert world.call(name, {"text": "great"}, path="/v2").status_code == 404
    assert world.patch(name, status="published").status_code == 200
    assert restricted.call("PATCH", f"/admin/v1/apis/{name}", {"status": "deprecated"}).status_code == 200
    again = restricted.call("PATCH", f"/admin/v1/apis/{name}", {"status": "published"})
    assert again.status_code == 403, again.text
    assert _status(world, name) == "deprecated"


def _status(world: World, name: str) -> str:
    return str(world.admin.ok("GET", f"/admin/v1/apis/{name}", params={"tenant": world.tenant})["status"])
