"""The gateway's API keys, end to end: issued through the admin API, used with the official SDKs,
limited to models, listed without secrets, revoked. Every test runs on the embedded default
(SQLite, in-process state) and on a cluster (PostgreSQL and Redis); revocation is also shown
taking effect on a second instance."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class Deployment:
    kind: str
    config: dict[str, Any]
    gateway: Gateway

    def create(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        url = f"{self.gateway.url}/admin/v1/keys"
        return httpx.post(url, json=body, headers=headers or ADMIN, timeout=10)

    def key(self, models: list[str], **extra: Any) -> dict[str, Any]:
        resp = self.create({"models": models, **extra})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)


def _cluster_config(mock: Mock, postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    config = openai_config(mock)
    config["database"] = {"url": postgres.create_database(f"keys_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "embedded":
        config = openai_config(mock_upstream)
    else:
        config = _cluster_config(
            mock_upstream, request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        )
    config["auth"]["last_used_interval_seconds"] = 0.2
    gw = start_gateway(config, tmp_path_factory.mktemp(f"keys-{request.param}"))
    yield Deployment(request.param, config, gw)
    gw.process.stop()


def test_a_key_limited_to_one_model(deployment: Deployment) -> None:
    created = deployment.key(["gpt-4o-mini"], name="billing service", team="team-a", user="u-1",
                             metadata={"owner": "billing"})
    assert created["key"].startswith("sk-sb-") and created["key"].startswith(created["prefix"])
    assert created["id"].startswith("key_") and created["models"] == ["gpt-4o-mini"]
    assert (created["name"], created["team"], created["user"], created["created_by"]) == (
        "billing service", "team-a", "u-1", "master")
    # The master key may still name a team and a user that have no record: the default tenant's.
    assert (created["tenant"], created["role"], created["tags"], created["service_account"]) == (
        "default", "developer", [], None)
    client = deployment.sdk(created["key"])
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("hello key"))
    assert reply.choices[0].message.content.endswith("You said: hello key")
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="slow-model", messages=ask("x"))
    assert denied.value.status_code == 403
    assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("slow-model")
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


def test_patterns_allow_families_of_models(deployment: Deployment) -> None:
    client = deployment.sdk(deployment.key(["gpt-*"])["key"])
    assert {m.id for m in client.models.list()} == {"gpt-4o-mini", "gpt-3.5-turbo-instruct"}
    assert client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi").choices
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    everything = deployment.sdk(deployment.key(["*"])["key"])
    assert len(everything.models.list().data) == len(deployment.config["models"])


def test_keys_work_for_anthropic_clients_and_count_tokens(deployment: Deployment) -> None:
    key = deployment.key(["gpt-4o-mini"])["key"]
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=key, max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    message = client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=hi)  # type: ignore[arg-type]
    assert message.content
    assert client.messages.count_tokens(model="gpt-4o-mini", messages=hi).input_tokens > 0  # type: ignore[arg-type]
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="slow-model", messages=hi)  # type: ignore[arg-type]


def test_streams_work_with_a_key(deployment: Deployment) -> None:
    client = deployment.sdk(deployment.key(["gpt-4o-mini"])["key"])
    chunks = client.chat.completions.create(model="gpt-4o-mini", messages=ask("streamed"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("You said: streamed")


def test_listing_shows_no_secret_and_pages(deployment: Deployment) -> None:
    made = [deployment.key(["gpt-4o-mini"], name=f"page-{i}") for i in range(3)]
    keys_url = f"{deployment.gateway.url}/admin/v1/keys"
    resp = httpx.get(keys_url, headers=ADMIN, params={"limit": 1000}, timeout=10)
    assert resp.status_code == 200
    listed = resp.json()["data"]
    by_id = {k["id"]: k for k in listed}
    for key in made:
        shown = by_id[key["id"]]
        assert "key" not in shown and "key_hash" not in shown
        assert key["key"] not in resp.text
        assert shown["prefix"] == key["prefix"]
    pages, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = httpx.get(keys_url, headers=ADMIN, params=params, timeout=10).json()
        pages.extend(k["id"] for k in page["data"])
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == [k["id"] for k in listed]
    one = httpx.get(f"{keys_url}/{made[0]['id']}", headers=ADMIN, timeout=10)
    assert one.status_code == 200 and one.json()["name"] == "page-0" and "key" not in one.json()


def test_revoked_key_stops_working(deployment: Deployment) -> None:
    created = deployment.key(["gpt-4o-mini"])
    client = deployment.sdk(created["key"])
    assert client.models.list().data  # seen, so cached
    resp = httpx.delete(f"{deployment.gateway.url}/admin/v1/keys/{created['id']}", headers=ADMIN, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"id": created["id"], "object": "api_key", "deleted": True}
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.body["code"] == "key_disabled"  # type: ignore[index]
    shown = httpx.get(f"{deployment.gateway.url}/admin/v1/keys/{created['id']}", headers=ADMIN, timeout=10)
    assert shown.json()["enabled"] is False
    again = httpx.delete(f"{deployment.gateway.url}/admin/v1/keys/key_nope", headers=ADMIN, timeout=10)
    assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"


def test_a_developer_key_is_refused_what_its_role_may_not_do(deployment: Deployment) -> None:
    key = deployment.key(["*"])["key"]
    resp = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("sk-sb-short", "invalid_api_key"),
        ("sk-sb-" + "A" * 48, "invalid_api_key"),  # well-formed, unknown
        ("sk-sb-" + "A" * 47 + "!", "invalid_api_key"),
        ("x" * 8000, "invalid_api_key"),
    ],
)
def test_wrong_and_malformed_keys(deployment: Deployment, key: str, code: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    resp = httpx.get(f"{deployment.gateway.base_url}/models", headers=auth, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == code
    assert httpx.get(f"{deployment.gateway.url}/health/ready", timeout=10).status_code == 200


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "models", "missing_required_parameter"),
        ({"models": []}, "models", "invalid_value"),
        ({"models": "gpt-4o-mini"}, "models", "invalid_value"),
        ({"models": [1]}, "models[0]", "invalid_value"),
        ({"models": ["m"], "owner": "x"}, "owner", "unknown_parameter"),
        ({"models": ["m"], "name": "n" * 201}, "name", "invalid_value"),
        ({"models": ["m"], "team": "a b"}, "team", "invalid_value"),
        ({"models": ["m"], "team": "'; DROP TABLE api_keys; --"}, "team", "invalid_value"),
        ({"models": ["m"], "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "invalid_value"),
        ({"models": ["m"], "expires_at": "2999-01-01T00:00:00"}, "expires_at", "invalid_value"),
        ({"models": ["m"], "expires_at": "soon"}, "expires_at", "invalid_value"),
        # Past year 9999 once in UTC: no store holds it.
        ({"models": ["m"], "expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at", "invalid_value"),
        ({"models": ["m"], "metadata": {"rotated_to": "key_x"}}, "metadata", "invalid_value"),
        ({"models": ["m"], "metadata": {"rotated_from": "key_x"}}, "metadata", "invalid_value"),
        ({"models": ["m"], "metadata": {f"k{i}": i for i in range(51)}}, "metadata", "invalid_value"),
        ({"models": ["m"], "metadata": {"k": {"nested": 1}}}, "metadata.k", "invalid_value"),
        ({"models": ["m" * 201]}, "models[0]", "invalid_value"),
    ],
)
def test_bad_admin_bodies_are_400(
    deployment: Deployment, body: dict[str, Any], param: str, code: str
) -> None:
    resp = deployment.create(body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert error["param"] == param, error


def test_bad_admin_json_and_a_future_expiry(deployment: Deployment) -> None:
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", content=b"{nope", timeout=10,
                      headers={**ADMIN, "content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    created = deployment.key(["gpt-4o-mini"], expires_at=_in(3600))
    assert created["expires_at"] is not None
    assert deployment.sdk(created["key"]).models.list().data


def test_admin_schema_and_docs(deployment: Deployment) -> None:
    spec = httpx.get(f"{deployment.gateway.url}/admin/v1/openapi.json", headers=ADMIN, timeout=10)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"post", "get"} <= set(paths["/admin/v1/keys"])
    assert {"get", "patch", "delete"} <= set(paths["/admin/v1/keys/{key_id}"])
    # A change lists what may change; the fields it refuses by name are not offered.
    changeable = set(spec.json()["components"]["schemas"]["KeyUpdate"]["properties"])
    assert {"models", "name", "expires_at", "enabled", "allowed_regions"} <= changeable
    assert not changeable & {"team", "user", "tenant", "role", "rpm_limit", "max_budget_usd"}
    # Public: it describes the API, no data (the page /docs loads it; tests/e2e/test_admin_docs.py).
    assert httpx.get(f"{deployment.gateway.url}/admin/v1/openapi.json", timeout=10).json() == spec.json()
    missing = httpx.get(f"{deployment.gateway.url}/admin/v1/nothing", headers=ADMIN, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    wrong = httpx.put(f"{deployment.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


# -- on a cluster: two instances sharing PostgreSQL and Redis ---------------------------------


@pytest.fixture
def two_instances(
    mock_upstream: Mock,
    postgres: Postgres,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Gateway]]:
    config = _cluster_config(mock_upstream, postgres, redis_server)
    first = start_gateway(config, tmp_path_factory.mktemp("instance-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("instance-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def test_revocation_reaches_the_other_instance_within_a_second(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    body = {"models": ["gpt-4o-mini"]}
    created = httpx.post(f"{first.url}/admin/v1/keys", json=body, headers=ADMIN, timeout=10)
    key = created.json()["key"]
    on_second = openai.OpenAI(base_url=second.base_url, api_key=key, max_retries=0, timeout=10)
    assert on_second.models.list().data  # the second instance has seen (and cached) the key
    revoked = httpx.delete(f"{first.url}/admin/v1/keys/{created.json()['id']}", headers=ADMIN, timeout=10)
    assert revoked.status_code == 200
    done = time.monotonic()
    while True:
        status = httpx.get(f"{second.base_url}/models", headers={"Authorization": f"Bearer {key}"})
        if status.status_code == 401:
            break
        assert time.monotonic() - done < 1.0, "the revocation did not reach the second instance within 1 s"
    assert time.monotonic() - done < 1.0
    assert status.json()["error"]["code"] == "key_disabled"


def test_a_key_change_reaches_the_other_instance_within_a_second(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    created = httpx.post(f"{first.url}/admin/v1/keys", json={"models": ["gpt-4o-mini"]}, headers=ADMIN,
                         timeout=10).json()
    auth = {"Authorization": f"Bearer {created['key']}"}
    chat = {"model": "gpt-4o-mini", "messages": ask("x"), "max_tokens": 5}
    embed = {"model": "text-embedding-3-small", "input": "x"}

    def on_second(path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{second.base_url}/{path}", json=body, headers=auth, timeout=10)

    assert on_second("chat/completions", chat).status_code == 200  # seen (and cached) there
    assert on_second("embeddings", embed).status_code == 403

    def changed_on_first(body: dict[str, Any]) -> float:
        resp = httpx.patch(f"{first.url}/admin/v1/keys/{created['id']}", json=body, headers=ADMIN, timeout=10)
        assert resp.status_code == 200, resp.text
        return time.monotonic()

    done = changed_on_first({"models": ["text-embedding-3-small"]})
    while (refused := on_second("chat/completions", chat)).status_code != 403:
        assert time.monotonic() - done < 1.0, "the models change did not reach the second instance within 1 s"
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert on_second("embeddings", embed).status_code == 200

    done = changed_on_first({"enabled": False})
    while (blocked := on_second("embeddings", embed)).status_code != 401:
        assert time.monotonic() - done < 1.0, "the block did not reach the second instance within 1 s"
    assert blocked.json()["error"]["code"] == "key_disabled"
    done = changed_on_first({"enabled": True})
    while on_second("embeddings", embed).status_code != 200:
        assert time.monotonic() - done < 1.0, "the unblock did not reach the second instance within 1 s"


def test_a_key_issued_on_one_instance_works_on_the_other(two_instances: tuple[Gateway, Gateway]) -> None:
    first, second = two_instances
    created = httpx.post(f"{first.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    client = openai.OpenAI(base_url=second.base_url, api_key=created.json()["key"], max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("across instances"))
    assert reply.choices[0].message.content.endswith("You said: across instances")
    listed = httpx.get(f"{second.url}/admin/v1/keys", headers=ADMIN, params={"limit": 1000}, timeout=10)
    assert created.json()["id"] in {k["id"] for k in listed.json()["data"]}


def test_rotation_keeps_the_old_key_for_its_grace_period(deployment: Deployment) -> None:
    old = deployment.key(["gpt-4o-mini"], name="rotating", metadata={"owner": "ops"})
    url = f"{deployment.gateway.url}/admin/v1/keys/{old['id']}/rotate"
    # A grace a loaded machine cannot use up between the rotation and the next request (2 s did),
    # short enough to wait out.
    grace = 5
    resp = httpx.post(url, json={"grace_seconds": grace}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    assert deployment.sdk(old["key"]).models.list().data  # still inside its grace period
    new = resp.json()
    assert new["key"] != old["key"] and new["id"] != old["id"] and new["rotated_from"] == old["id"]
    assert (new["models"], new["name"], new["metadata"]["owner"]) == (["gpt-4o-mini"], "rotating", "ops")
    assert deployment.sdk(new["key"]).models.list().data
    deadline = time.monotonic() + grace + 10
    while True:
        auth = {"Authorization": f"Bearer {old['key']}"}
        status = httpx.get(f"{deployment.gateway.base_url}/models", headers=auth, timeout=10)
        if status.status_code == 401:
            break
        assert time.monotonic() < deadline, "the old key outlived its grace period"
    assert status.json()["error"]["code"] == "key_expired"
    assert deployment.sdk(new["key"]).models.list().data


def test_rotation_without_grace_and_of_revoked_keys(deployment: Deployment) -> None:
    old = deployment.key(["*"])
    url = f"{deployment.gateway.url}/admin/v1/keys/{old['id']}/rotate"
    new = httpx.post(url, json={"grace_seconds": 0}, headers=ADMIN, timeout=10).json()
    with pytest.raises(openai.AuthenticationError) as err:
        deployment.sdk(old["key"]).models.list()
    assert err.value.body["code"] == "key_expired"  # type: ignore[index]
    assert deployment.sdk(new["key"]).models.list().data
    keys_url = f"{deployment.gateway.url}/admin/v1/keys"
    httpx.delete(f"{keys_url}/{new['id']}", headers=ADMIN, timeout=10)
    again = httpx.post(f"{keys_url}/{new['id']}/rotate", headers=ADMIN, timeout=10)
    assert again.status_code == 400 and again.json()["error"]["code"] == "key_disabled"
    bad = httpx.post(url, json={"grace_seconds": -1}, headers=ADMIN, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "grace_seconds"
    missing = httpx.post(f"{keys_url}/key_nope/rotate", headers=ADMIN, timeout=10)
    assert missing.status_code == 404


def _rotate(deployment: Deployment, key_id: str, grace_seconds: int = 600) -> httpx.Response:
    url = f"{deployment.gateway.url}/admin/v1/keys/{key_id}/rotate"
    return httpx.post(url, json={"grace_seconds": grace_seconds}, headers=ADMIN, timeout=10)


def _refused(resp: httpx.Response, code: str) -> str:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    return str(error["message"])


def test_an_expired_key_is_not_rotated(deployment: Deployment) -> None:
    created = deployment.key(["*"], expires_at=_in(1))
    deadline = time.monotonic() + 10
    auth = {"Authorization": f"Bearer {created['key']}"}
    while httpx.get(f"{deployment.gateway.base_url}/models", headers=auth, timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the key outlived its expiry"
    assert "expired" in _refused(_rotate(deployment, created["id"]), "key_expired")
    # No successor was issued.
    keys = httpx.get(f"{deployment.gateway.url}/admin/v1/keys", params={"limit": 1000}, headers=ADMIN).json()
    assert not [k for k in keys["data"] if k["metadata"].get("rotated_from") == created["id"]]


@pytest.mark.parametrize("grace_seconds", [0, 600])
def test_a_key_already_rotated_is_not_rotated_again(deployment: Deployment, grace_seconds: int) -> None:
    old = deployment.key(["*"])
    new = _rotate(deployment, old["id"], grace_seconds).json()
    # Retired (at once, or still in its grace period): only its successor may be rotated.
    message = _refused(_rotate(deployment, old["id"]), "key_rotated")
    assert new["id"] in message
    newer = _rotate(deployment, new["id"])
    assert newer.status_code == 201, newer.text
    assert newer.json()["lineage"] == old["id"] == new["lineage"]
    assert old["lineage"] == old["id"]


def test_a_rotated_key_starts_unused(deployment: Deployment) -> None:
    old = deployment.key(["*"])
    assert deployment.sdk(old["key"]).models.list().data
    url = f"{deployment.gateway.url}/admin/v1/keys/{old['id']}"
    deadline = time.monotonic() + 10
    while (used := httpx.get(url, headers=ADMIN, timeout=10).json()["last_used_at"]) is None:
        assert time.monotonic() < deadline, "last_used_at was not written within 10 s"
    new = _rotate(deployment, old["id"]).json()
    assert new["last_used_at"] is None
    shown = httpx.get(f"{deployment.gateway.url}/admin/v1/keys/{new['id']}", headers=ADMIN, timeout=10).json()
    assert shown["last_used_at"] is None
    assert httpx.get(url, headers=ADMIN, timeout=10).json()["last_used_at"] == used


def test_last_used_time_is_recorded_in_batches(deployment: Deployment) -> None:
    created = deployment.key(["gpt-4o-mini"])
    assert created["last_used_at"] is None
    before = datetime.now(UTC)
    assert deployment.sdk(created["key"]).models.list().data
    url = f"{deployment.gateway.url}/admin/v1/keys/{created['id']}"
    deadline = time.monotonic() + 10
    while (used := httpx.get(url, headers=ADMIN, timeout=10).json()["last_used_at"]) is None:
        assert time.monotonic() < deadline, "last_used_at was not written within 10 s"
    assert datetime.fromisoformat(used) >= before - timedelta(seconds=1)


def test_every_key_change_is_audited_without_secrets(deployment: Deployment) -> None:
    created = deployment.key(["gpt-4o-mini"], name="audited")
    keys_url = f"{deployment.gateway.url}/admin/v1/keys/{created['id']}"
    rotated = httpx.post(f"{keys_url}/rotate", json={"grace_seconds": 0}, headers=ADMIN, timeout=10).json()
    httpx.delete(f"{deployment.gateway.url}/admin/v1/keys/{rotated['id']}", headers=ADMIN, timeout=10)
    audit_url = f"{deployment.gateway.url}/admin/v1/audit"
    mine = httpx.get(audit_url, headers=ADMIN, params={"resource_id": created["id"]}, timeout=10)
    assert mine.status_code == 200, mine.text
    entries = mine.json()["data"]
    assert [e["action"] for e in entries] == ["key.rotate", "key.create"]  # newest first
    create = entries[1]
    actor = (create["actor"], create["actor_role"], create["client"])
    assert actor == ("master", "platform_admin", "127.0.0.1")
    assert create["before"] is None and create["after"]["name"] == "audited" and create["request_id"]
    assert entries[0]["after"]["metadata"]["rotated_to"] == rotated["id"]
    filters = {"action": "key.revoke", "resource_id": rotated["id"]}
    revoked = httpx.get(audit_url, headers=ADMIN, params=filters, timeout=10)
    [entry] = revoked.json()["data"]
    assert entry["before"]["enabled"] is True and entry["after"]["enabled"] is False
    everything = httpx.get(audit_url, headers=ADMIN, params={"limit": 1000}, timeout=10).text
    for secret in (created["key"], rotated["key"]):
        assert secret not in everything
    page = httpx.get(audit_url, headers=ADMIN, params={"limit": 1}, timeout=10).json()
    older = httpx.get(audit_url, headers=ADMIN, params={"limit": 1, "before": page["last_id"]}).json()
    assert page["has_more"] and older["data"][0]["id"] < page["last_id"]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"since": "2026-01-01T00:00:00"}, "since"),
     ({"before": "x"}, "before"), ({"action": "a" * 129}, "action"),
     ({"since": "9999-12-31T23:59:59-23:59"}, "since"), ({"since": "0001-01-01T00:00:00+23:59"}, "since"),
     # Past the entry ids' 64-bit column; a parameter the log does not have, as on the other reports.
     ({"before": str(2**63)}, "before"), ({"before": "9" * 40}, "before"), ({"colour": "red"}, "colour"),
     ({"action": "key.create\x00"}, "action"), ({"resource_id": "\x00"}, "resource_id")],
)
def test_bad_audit_queries_are_400(deployment: Deployment, params: dict[str, Any], param: str) -> None:
    resp = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=ADMIN, params=params, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["code"] == ("unknown_parameter" if param == "colour" else "invalid_value")
    assert httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=ADMIN, timeout=10).status_code == 200


def test_the_audit_cursor_takes_any_id_and_each_parameter_once(deployment: Deployment) -> None:
    created = deployment.key(["gpt-4o-mini"], name="cursor")
    audit_url = f"{deployment.gateway.url}/admin/v1/audit"
    last = httpx.get(audit_url, headers=ADMIN, timeout=10, params={"before": str(2**63 - 1), "limit": 1})
    assert last.status_code == 200, last.text
    assert [e["resource_id"] for e in last.json()["data"]] == [created["id"]]  # the newest entry
    twice = httpx.get(f"{audit_url}?limit=1&limit=2", headers=ADMIN, timeout=10)
    assert twice.status_code == 400 and twice.json()["error"]["param"] == "limit", twice.text
    assert twice.json()["error"]["code"] == "duplicate_parameter"


async def _together(*calls: tuple[str, str, dict[str, Any] | None]) -> list[httpx.Response]:
    """The admin calls ``(method, url, body)``, sent at the same time."""
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        return list(await asyncio.gather(*(client.request(m, u, json=b) for m, u, b in calls)))


def _successors(deployment: Deployment, key_id: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"{deployment.gateway.url}/admin/v1/keys", params={"limit": 1000}, headers=ADMIN,
                       timeout=10).json()["data"]
    return [k for k in listed if k["metadata"].get("rotated_from") == key_id]


def test_of_concurrent_rotations_exactly_one_wins(deployment: Deployment) -> None:
    for _ in range(3):
        old = deployment.key(["*"])
        url = f"{deployment.gateway.url}/admin/v1/keys/{old['id']}/rotate"
        answers = asyncio.run(_together(*[("POST", url, {"grace_seconds": 600})] * 4))
        assert sorted(r.status_code for r in answers) == [201, 400, 400, 400], [r.text for r in answers]
        assert all(r.json()["error"]["code"] == "key_rotated" for r in answers if r.status_code == 400)
        (winner,) = [r.json() for r in answers if r.status_code == 201]
        assert [k["id"] for k in _successors(deployment, old["id"])] == [winner["id"]]


def test_a_revoke_racing_a_rotation_stands(deployment: Deployment) -> None:
    for _ in range(5):
        old = deployment.key(["*"])
        url = f"{deployment.gateway.url}/admin/v1/keys/{old['id']}"
        rotated, revoked = asyncio.run(_together(("POST", f"{url}/rotate", {"grace_seconds": 3600}),
                                                 ("DELETE", url, None)))
        assert revoked.status_code == 200, revoked.text
        assert rotated.status_code == 201 or rotated.json()["error"]["code"] == "key_disabled", rotated.text
        assert httpx.get(url, headers=ADMIN, timeout=10).json()["enabled"] is False
        with pytest.raises(openai.AuthenticationError) as refused:
            deployment.sdk(old["key"]).chat.completions.create(model="gpt-4o-mini", messages=ask("x"))
        assert refused.value.body["code"] == "key_disabled"  # type: ignore[index]
