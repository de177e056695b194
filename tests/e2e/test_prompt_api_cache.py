"""Prompt API records are cached on the request path (apis/cache.py) and every admin change
reaches the next calls at once: lifecycle (draft, published, deprecated, retired), the version
or label followed, the A/B split, the successor and sunset, approval, and a created API replacing
a cached "no such API".

Changes are made through the admin API of one gateway and seen by the calls of ANOTHER gateway
sharing PostgreSQL and Redis (the cluster), or of the same gateway (the embedded default). The
record cache's TTL is set far above the test's one-second bound, so only the change feed can
explain what the calls see."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.tenancy_world import Admin
from tests.servers import Gateway, Mock, openai_config, start_gateway

SENTIMENT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
    "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
SEEN_WITHIN = 1.0  # seconds; the record cache's TTL is 600 s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Cluster:
    """``admin`` changes APIs through ``changes`` (as the owning team's admin); ``calls`` serves
    them (another gateway on the cluster, the same one embedded)."""

    changes: Gateway
    calls: Gateway
    admin: Admin
    tenant: str
    owner_key: str
    consumer_key: str

    def as_owner(self) -> Admin:
        return self.admin.as_key(self.owner_key)

    def prompt(self, name: str) -> int:
        return int(self.as_owner().ok("POST", "/admin/v1/prompts", {**SENTIMENT, "name": name},
                                      status=201)["version"])

    def publish(self, name: str, **body: Any) -> dict[str, Any]:
        return self.as_owner().ok("POST", "/admin/v1/apis", {"name": name, **body}, status=201)

    def patch(self, name: str, **body: Any) -> dict[str, Any]:
        return self.as_owner().ok("PATCH", f"/admin/v1/apis/{name}", body)

    def call(self, name: str, key: str | None = None) -> httpx.Response:
        return httpx.post(f"{self.calls.url}/apis/{name}", json={"text": "fine"}, timeout=30,
                          headers={"Authorization": f"Bearer {key or self.consumer_key}"})

    def api(self, **body: Any) -> str:
        """A fresh prompt with two versions, published (version 1) and called once on the
        serving gateway, so that its record is cached there."""
        name = unique("cached")
        self.prompt(name)
        self.prompt(name)
        self.publish(name, prompt=name, version=1, **body)
        first = self.call(name)
        assert first.status_code == 200, first.text
        return name

    def next_call(self, name: str, until: Callable[[httpx.Response], bool], key: str | None = None
                  ) -> httpx.Response:
        """The first call on the serving gateway that shows the change, within SEEN_WITHIN."""
        changed = time.monotonic()
        while True:
            resp = self.call(name, key)
            if until(resp):
                return resp
            assert time.monotonic() - changed < SEEN_WITHIN, \
                f"the change did not reach the serving gateway: {resp.status_code} {resp.text}"


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def cluster(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = openai_config(mock_upstream)
    config["apis"] = {"cache_seconds": 600}
    started: list[Gateway] = []
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"apicache_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
        for side in ("a", "b"):
            started.append(start_gateway(config, tmp_path_factory.mktemp(f"apicache-{side}")))
    else:
        started.append(start_gateway(config, tmp_path_factory.mktemp("apicache-embedded")))
    changes, calls = started[0], started[-1]
    admin = Admin(changes.url)
    tenant = unique("acme")
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant.upper()}, status=201)
    owners, consumers = (admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": n}, status=201)["id"]
                         for n in ("owners", "consumers"))

    def key(team: str, role: str) -> str:
        body = {"tenant": tenant, "team": team, "role": role, "models": ["gpt-4o-mini"]}
        return str(admin.ok("POST", "/admin/v1/keys", body, status=201)["key"])

    yield Cluster(changes, calls, admin, tenant, key(owners, "team_admin"), key(consumers, "developer"))
    for gateway in started:
        gateway.process.stop()


def test_lifecycle_changes_reach_the_next_call(cluster: Cluster) -> None:
    name = cluster.api()
    live = cluster.call(name)
    assert live.status_code == 200 and "deprecation" not in live.headers
    successor = cluster.api()
    cluster.patch(name, status="deprecated", successor=successor, sunset_at="2030-01-01T00:00:00Z")
    old = cluster.next_call(name, lambda r: "deprecation" in r.headers)
    assert old.status_code == 200 and old.json()["output"]
    assert old.headers["sunset"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert old.headers["link"] == f'</apis/{successor}>; rel="successor-version"'
    # The successor and the sunset of a deprecated API move too.
    other = cluster.api()
    cluster.patch(name, successor=other, sunset_at="2031-06-01T00:00:00Z")
    moved = cluster.next_call(name, lambda r: other in r.headers.get("link", ""))
    assert moved.headers["sunset"] == "Sun, 01 Jun 2031 00:00:00 GMT"
    cluster.patch(name, status="retired")
    gone = cluster.next_call(name, lambda r: r.status_code != 200)
    assert gone.status_code == 410
    error = gone.json()["error"]
    assert error["code"] == "api_retired" and other in error["message"]


def test_a_cached_miss_and_a_draft_give_way_to_the_published_api(cluster: Cluster) -> None:
    for draft_first in (False, True):
        name = unique("late")
        missing = cluster.call(name)  # "no such API", cached on the serving gateway
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "api_not_found"
        cluster.prompt(name)
        if draft_first:
            cluster.publish(name, prompt=name, version=1, status="draft")
            draft = cluster.call(name)
            assert draft.status_code == 404 and draft.json()["error"]["code"] == "api_not_found"
            cluster.patch(name, status="published")
        else:
            cluster.publish(name, prompt=name, version=1)
        served = cluster.next_call(name, lambda r: r.status_code == 200)
        assert served.json()["version"] == 1 and served.json()["api"] == name


def test_the_version_label_and_split_followed_reach_the_next_call(cluster: Cluster) -> None:
    name = cluster.api()
    assert cluster.call(name).json()["version"] == 1
    cluster.patch(name, version=2)
    assert cluster.next_call(name, lambda r: r.json().get("version") == 2).status_code == 200
    # A label of the prompt (version 1), then the API following it.
    cluster.as_owner().ok("PUT", f"/admin/v1/prompts/{name}/labels/stable", {"version": 1})
    cluster.patch(name, label="stable")
    assert cluster.next_call(name, lambda r: r.json().get("version") == 1).status_code == 200
    # A split sending every key to version 2, then removed.
    cluster.patch(name, split=[{"version": 1, "percent": 0}, {"version": 2, "percent": 100}])
    split = cluster.next_call(name, lambda r: r.json().get("version") == 2)
    assert split.headers["x-switchboard-api-version"] == "2"
    cluster.patch(name, split=[])  # removes it
    assert cluster.next_call(name, lambda r: r.json().get("version") == 1).status_code == 200
    path = f"/admin/v1/apis/{name}"
    one = cluster.as_owner().call("PATCH", path, {"split": [{"version": 2, "percent": 100}]})
    assert one.status_code == 400 and one.json()["error"]["code"] == "invalid_split"
    many = cluster.as_owner().call("PATCH", path, {"split": [{"version": 1, "percent": 0}] * 11})
    assert many.status_code == 400 and many.json()["error"]["param"] == "split"
    assert cluster.call(name).json()["version"] == 1  # nothing changed


def test_approval_reaches_the_next_call(cluster: Cluster) -> None:
    name = cluster.api()  # no approval needed: the consumers' team calls it
    cluster.patch(name, require_approval=True)
    refused = cluster.next_call(name, lambda r: r.status_code != 200)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "subscription_required"
    # The owning team is never held back.
    assert cluster.call(name, key=cluster.owner_key).status_code == 200
    cluster.patch(name, require_approval=False)
    assert cluster.next_call(name, lambda r: r.status_code == 200).json()["api"] == name


def test_the_openapi_documents_follow_every_change(cluster: Cluster) -> None:
    # The documents are open to any key of the tenant and kept in memory once built: an API or
    # prompt change made through another gateway is in the next document all the same.
    def document(path: str) -> httpx.Response:
        return httpx.get(f"{cluster.calls.url}{path}", timeout=30,
                         headers={"Authorization": f"Bearer {cluster.consumer_key}"})

    def next_document(path: str, until: Callable[[httpx.Response], bool]) -> httpx.Response:
        changed = time.monotonic()
        while not until(resp := document(path)):
            assert time.monotonic() - changed < SEEN_WITHIN, \
                f"the change did not reach the serving gateway: {resp.status_code} {resp.text}"
        return resp

    name = cluster.api()
    own, catalog = f"/apis/{name}/openapi.json", "/apis/openapi.json"
    assert document(own).json()["info"]["version"] == "1"
    assert f"/apis/{name}" in document(catalog).json()["paths"]
    cluster.patch(name, version=2, description="Sentiment, v2")
    moved = next_document(own, lambda r: r.json()["info"]["version"] == "2").json()
    assert moved["info"]["description"] == "Sentiment, v2"
    # A label the API follows, moved: a prompt change.
    cluster.as_owner().ok("PUT", f"/admin/v1/prompts/{name}/labels/stable", {"version": 2})
    cluster.patch(name, label="stable")
    assert document(own).json()["info"]["version"] == "2"
    cluster.as_owner().ok("PUT", f"/admin/v1/prompts/{name}/labels/stable", {"version": 1})
    next_document(own, lambda r: r.json()["info"]["version"] == "1")
    # A new API joins the catalog; a retired one leaves it and its document is 410.
    late = unique("late")
    cluster.prompt(late)
    cluster.publish(late, prompt=late, version=1)
    next_document(catalog, lambda r: f"/apis/{late}" in r.json()["paths"])
    cluster.patch(name, status="retired")
    gone = next_document(own, lambda r: r.status_code != 200)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "api_retired"
    next_document(catalog, lambda r: f"/apis/{name}" not in r.json()["paths"])
