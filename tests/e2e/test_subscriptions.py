"""Subscription approval, end to end with the official SDKs: a model marked ``require_approval``
serves a team's keys only once a tenant admin approved the team's subscription; pending, rejected
and revoked subscriptions are refused with their own codes; every decision is audited. Every test
runs on the embedded default (SQLite, in-process state) and on a cluster (PostgreSQL and Redis);
an approval is also shown reaching a second instance within a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# Who approves, rejects and revokes. The platform admin (master key) until keys can carry the
# tenant_admin role; then: a key created with {"role": "tenant_admin"}.
APPROVER = ADMIN
GATED = "gated-model"
MIXED = "mixed-approval"


def gated_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["models"] += [
        {"name": GATED, "provider": "local-openai", "model": "gpt-4o-mini", "require_approval": True},
        {"name": "gated-embeddings", "provider": "local-openai", "model": "text-embedding-3-small",
         "require_approval": True},
        # Unreachable: each falls back to a model of its own.
        {"name": "down-to-gated", "provider": "nowhere", "model": "gpt-4o-mini"},
        {"name": "down-to-open", "provider": "nowhere", "model": "gpt-4o-mini"},
        # Deployments that disagree: the ungated one always routed first (the other's weight 0).
        {"name": MIXED, "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "open"},
        {"name": MIXED, "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "gated",
         "require_approval": True, "weight": 0},
    ]
    config["router"] = {"fallbacks": {"down-to-gated": [GATED], "down-to-open": ["gpt-4o-mini"]}}
    return config


def cluster_config(mock: Mock, postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    config = gated_config(mock)
    config["database"] = {"url": postgres.create_database(f"subs_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway

    @property
    def subs(self) -> str:
        return f"{self.gateway.url}/admin/v1/subscriptions"

    def team_key(self, team: str | None, models: list[str] | None = None) -> str:
        body: dict[str, Any] = {"models": models or [GATED, "gated-embeddings", "gpt-4o-mini"]}
        if team is not None:
            body["team"] = team
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json=body, headers=ADMIN, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def subscribe(self, key: str, **body: Any) -> httpx.Response:
        return httpx.post(self.subs, json={"model": GATED, **body}, headers=bearer(key), timeout=10)

    def decide(self, sub_id: str, action: str, body: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
        url = f"{self.subs}/{sub_id}/{action}"
        return httpx.post(url, json=body, headers=headers or APPROVER, timeout=10)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_team() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def refusal(client: openai.OpenAI, model: str = GATED) -> str:
    """The error code a chat call to ``model`` is refused with (403)."""
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model=model, messages=ask("may I?"))
    assert denied.value.status_code == 403
    return str(denied.value.body["code"])  # type: ignore[index]


def answered(client: openai.OpenAI, text: str = "approved call") -> bool:
    reply = client.chat.completions.create(model=GATED, messages=ask(text))
    return bool(reply.choices[0].message.content and reply.choices[0].message.content.endswith(text))


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "embedded":
        config = gated_config(mock_upstream)
    else:
        config = cluster_config(
            mock_upstream, request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        )
    gw = start_gateway(config, tmp_path_factory.mktemp(f"subs-{request.param}"))
    yield Deployment(request.param, gw)
    gw.process.stop()


def test_a_team_subscribes_and_a_tenant_admin_decides(deployment: Deployment) -> None:
    team = new_team()
    key = deployment.team_key(team)
    client = deployment.sdk(key)
    assert refusal(client) == "subscription_required"
    with pytest.raises(openai.PermissionDeniedError) as chat:
        client.chat.completions.create(model=GATED, messages=ask("which parameter?"))
    assert chat.value.body["param"] == "model"  # type: ignore[index]  # the refused model the caller sent
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.embeddings.create(model="gated-embeddings", input="x")
    assert denied.value.body["code"] == "subscription_required"  # type: ignore[index]
    # A model that needs no approval is not affected.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("free")).choices

    asked = deployment.subscribe(key, reason="quarterly report")
    assert asked.status_code == 201, asked.text
    sub = asked.json()
    assert (sub["object"], sub["status"], sub["team"], sub["model"], sub["tenant"]) == (
        "subscription", "pending", team, GATED, "default")
    assert sub["reason"] == "quarterly report" and sub["decided_by"] is None
    assert refusal(client) == "subscription_pending"

    approved = deployment.decide(sub["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("approved", "master")
    assert answered(client)
    streamed = client.chat.completions.create(model=GATED, messages=ask("streamed"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).endswith("streamed")
    # Another team's key is still refused: the subscription is the team's.
    assert refusal(deployment.sdk(deployment.team_key(new_team()))) == "subscription_required"

    revoked = deployment.decide(sub["id"], "revoke", {"reason": "project ended"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert refusal(client) == "subscription_revoked"

    again = deployment.subscribe(key)
    assert again.status_code == 201 and again.json()["id"] == sub["id"]
    assert again.json()["status"] == "pending" and again.json()["decided_at"] is None
    assert refusal(client) == "subscription_pending"
    rejected = deployment.decide(sub["id"], "reject", {"reason": "use gpt-4o-mini instead"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert refusal(client) == "subscription_rejected"
    shown = httpx.get(f"{deployment.subs}/{sub['id']}", headers=bearer(key), timeout=10).json()
    assert (shown["status"], shown["reason"]) == ("rejected", "use gpt-4o-mini instead")


def test_refusals_reach_anthropic_clients_and_count_tokens(deployment: Deployment) -> None:
    key = deployment.team_key(new_team())
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=key, max_retries=0)
    hi: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.create(model=GATED, max_tokens=20, messages=hi)
    assert "subscription" in str(denied.value)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model=GATED, messages=hi)
    sub = deployment.subscribe(key).json()
    assert deployment.decide(sub["id"], "approve").status_code == 200
    assert client.messages.count_tokens(model=GATED, messages=hi).input_tokens > 0
    assert client.messages.create(model=GATED, max_tokens=20, messages=hi).content


def test_the_platform_admin_is_never_held_back(deployment: Deployment) -> None:
    assert answered(deployment.sdk(MASTER_KEY), "as the platform admin")


def test_a_key_without_a_team_cannot_use_or_subscribe(deployment: Deployment) -> None:
    key = deployment.team_key(None)
    assert refusal(deployment.sdk(key)) == "subscription_required"
    resp = deployment.subscribe(key)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "team_required"


def test_decisions_need_a_tenant_admin_and_the_right_state(deployment: Deployment) -> None:
    team = new_team()
    key = deployment.team_key(team)
    sub = deployment.subscribe(key).json()
    for action in ("approve", "reject", "revoke"):
        body = {"reason": "self-service"} if action == "reject" else None
        resp = deployment.decide(sub["id"], action, body, headers=bearer(key))
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    twice = deployment.subscribe(key)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "subscription_exists"
    early = deployment.decide(sub["id"], "revoke")
    assert early.status_code == 409 and early.json()["error"]["code"] == "subscription_not_approved"
    assert deployment.decide(sub["id"], "approve").status_code == 200
    late = deployment.decide(sub["id"], "reject", {"reason": "too late"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "subscription_not_pending"
    assert deployment.subscribe(key).json()["error"]["code"] == "subscription_exists"
    missing = deployment.decide("sub_nope", "approve")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "subscription_not_found"


def role_key(deployment: Deployment, team: str, role: str) -> str:
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10,
                      json={"models": [GATED], "team": team, "role": role})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def test_a_team_withdraws_its_own_pending_request(deployment: Deployment) -> None:
    """A team that asked by mistake takes its request back itself: a developer of the team may,
    a viewer of it or another team may not; the call is then refused as if it never asked, and
    the team may ask again (the same subscription, pending)."""
    team = new_team()
    key = deployment.team_key(team)
    client = deployment.sdk(key)
    sub = deployment.subscribe(key, reason="asked by mistake").json()
    assert refusal(client) == "subscription_pending"

    viewer = deployment.decide(sub["id"], "withdraw", headers=bearer(role_key(deployment, team, "viewer")))
    assert viewer.status_code == 403 and viewer.json()["error"]["code"] == "permission_denied", viewer.text
    stranger = deployment.decide(sub["id"], "withdraw", headers=bearer(deployment.team_key(new_team())))
    assert stranger.status_code == 404, stranger.text
    assert stranger.json()["error"]["code"] == "subscription_not_found"
    untouched = httpx.get(f"{deployment.subs}/{sub['id']}", headers=ADMIN, timeout=10).json()
    assert untouched["status"] == "pending"

    withdrawn = deployment.decide(sub["id"], "withdraw", {"reason": "wrong model"}, headers=bearer(key))
    assert withdrawn.status_code == 200, withdrawn.text
    shown = withdrawn.json()
    assert (shown["id"], shown["status"], shown["reason"]) == (sub["id"], "withdrawn", "wrong model")
    assert shown["decided_by"] == sub["requested_by"] and shown["decided_at"] is not None
    assert refusal(client) == "subscription_required"  # as if the team had never asked
    catalog = httpx.get(f"{deployment.gateway.url}/admin/v1/catalog", params={"kind": "model"},
                        headers=bearer(key), timeout=10).json()["data"]
    assert [e["subscription"] for e in catalog if e["name"] == GATED] == [
        {"status": "withdrawn", "id": sub["id"]}]
    listed = httpx.get(deployment.subs, headers=bearer(key), params={"status": "withdrawn"}, timeout=10)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()["data"]] == [sub["id"]]
    again = deployment.decide(sub["id"], "withdraw", headers=bearer(key))
    assert again.status_code == 409 and again.json()["error"]["code"] == "subscription_not_pending"
    # Only a pending request is the team's to withdraw: an approved one is a tenant admin's to revoke.
    asked = deployment.subscribe(key)
    assert asked.status_code == 201 and asked.json()["id"] == sub["id"], asked.text
    assert asked.json()["status"] == "pending" and asked.json()["decided_at"] is None
    assert deployment.decide(sub["id"], "approve").status_code == 200
    approved = deployment.decide(sub["id"], "withdraw", headers=bearer(key))
    assert approved.status_code == 409 and approved.json()["error"]["code"] == "subscription_not_pending"
    assert answered(client, "still approved")

    audit = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=ADMIN, timeout=10,
                      params={"resource_id": sub["id"]}).json()["data"]
    assert [e["action"] for e in audit] == [
        "subscription.approve", "subscription.request", "subscription.withdraw", "subscription.request"]
    entry = audit[2]
    assert (entry["resource_type"], entry["actor"], entry["actor_role"]) == (
        "subscription", sub["requested_by"], "developer")
    assert (entry["before"]["status"], entry["after"]["status"], entry["after"]["reason"]) == (
        "pending", "withdrawn", "wrong model")
    assert audit[1]["before"]["status"] == "withdrawn"  # asked again: the same one reopened


def test_a_decision_without_a_reason_keeps_the_requests(deployment: Deployment) -> None:
    """An approval, revocation or withdrawal without comment leaves the reason the team gave
    (shown by GET and in the audit entry); a decision's own reason replaces it."""
    team = new_team()
    key = deployment.team_key(team)
    sub = deployment.subscribe(key, reason="quarterly report").json()
    approved = deployment.decide(sub["id"], "approve", {})
    assert approved.status_code == 200 and approved.json()["reason"] == "quarterly report", approved.text
    revoked = deployment.decide(sub["id"], "revoke")
    assert revoked.status_code == 200 and revoked.json()["reason"] == "quarterly report", revoked.text
    shown = httpx.get(f"{deployment.subs}/{sub['id']}", headers=bearer(key), timeout=10).json()
    assert (shown["status"], shown["reason"]) == ("revoked", "quarterly report")
    audit = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=ADMIN, timeout=10,
                      params={"resource_id": sub["id"]}).json()["data"]
    assert [(e["action"], e["after"]["reason"]) for e in audit] == [
        ("subscription.revoke", "quarterly report"), ("subscription.approve", "quarterly report"),
        ("subscription.request", "quarterly report")]

    deployment.subscribe(key, reason="asked again")
    withdrawn = deployment.decide(sub["id"], "withdraw", headers=bearer(key))
    assert withdrawn.status_code == 200 and withdrawn.json()["reason"] == "asked again", withdrawn.text
    deployment.subscribe(key, reason="third time")
    commented = deployment.decide(sub["id"], "approve", {"reason": "until March"})
    assert commented.status_code == 200 and commented.json()["reason"] == "until March", commented.text


def test_a_tenant_admin_or_team_admin_withdraws_for_the_team(deployment: Deployment) -> None:
    team = new_team()
    for who in (role_key(deployment, team, "team_admin"), role_key(deployment, team, "tenant_admin")):
        sub = deployment.subscribe(deployment.team_key(team)).json()
        resp = deployment.decide(sub["id"], "withdraw", headers=bearer(who))
        assert resp.status_code == 200 and resp.json()["status"] == "withdrawn", resp.text


def test_bad_withdrawals_are_400_and_change_nothing(deployment: Deployment) -> None:
    key = deployment.team_key(new_team())
    sub = deployment.subscribe(key).json()
    for body, param, code in [
        ({"note": "oops"}, "note", "unknown_parameter"),
        ({"reason": 7}, "reason", "invalid_value"),
        ({"reason": ["x"]}, "reason", "invalid_value"),
        ({"reason": ""}, "reason", "invalid_value"),
        ({"reason": "r" * 1001}, "reason", "invalid_value"),
    ]:
        resp = deployment.decide(sub["id"], "withdraw", body, headers=bearer(key))
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    misspelt = httpx.post(f"{deployment.subs}/{sub['id']}/withdraw", params={"tenantt": "default"},
                          headers=bearer(key), timeout=10)
    assert misspelt.status_code == 400 and misspelt.json()["error"]["code"] == "unknown_parameter"
    shown = httpx.get(f"{deployment.subs}/{sub['id']}", headers=bearer(key), timeout=10).json()
    assert shown["status"] == "pending"
    assert refusal(deployment.sdk(key)) == "subscription_pending"
    assert deployment.decide(sub["id"], "withdraw", headers=bearer(key)).status_code == 200  # no body


def test_teams_and_tenants_see_only_their_own(deployment: Deployment) -> None:
    team_a, team_b = new_team(), new_team()
    key_a, key_b = deployment.team_key(team_a), deployment.team_key(team_b)
    team_admin_b = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10,
                              json={"models": ["*"], "team": team_b, "role": "team_admin"}).json()["key"]
    sub_a = deployment.subscribe(key_a).json()
    assert deployment.subscribe(key_b).status_code == 201
    # Team B neither reads nor lists team A's subscription, nor subscribes for team A.
    assert httpx.get(f"{deployment.subs}/{sub_a['id']}", headers=bearer(key_b), timeout=10).status_code == 404
    listed = httpx.get(deployment.subs, headers=bearer(key_b), params={"limit": 1000}, timeout=10).json()
    assert {s["team"] for s in listed["data"]} == {team_b}
    # Naming team A is 404, as the usage report answers a team role naming another team.
    other = httpx.get(deployment.subs, headers=bearer(key_b), params={"team": team_a}, timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "team_not_found"
    usage = httpx.get(f"{deployment.gateway.url}/admin/v1/usage", headers=bearer(team_admin_b),
                      params={"team": team_a}, timeout=10)
    assert usage.status_code == 404 and usage.json()["error"]["code"] == "team_not_found"
    for_admin_b = httpx.get(deployment.subs, headers=bearer(team_admin_b), params={"team": team_a},
                            timeout=10)
    assert for_admin_b.status_code == 404 and for_admin_b.json()["error"]["code"] == "team_not_found"
    own = httpx.get(deployment.subs, headers=bearer(team_admin_b), params={"team": team_b}, timeout=10)
    assert own.status_code == 200 and {s["team"] for s in own.json()["data"]} == {team_b}
    for_a = deployment.subscribe(key_b, team=team_a)
    assert for_a.status_code == 404 and for_a.json()["error"]["code"] == "team_not_found"
    # A subscription in another tenant is invisible from this one, to a team and to its admin.
    made = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": "tenant-x"}, headers=ADMIN,
                      timeout=10)
    assert made.status_code == 201, made.text
    elsewhere = httpx.post(deployment.subs, json={"model": GATED, "team": team_a, "tenant": "tenant-x"},
                           headers=ADMIN, timeout=10)
    assert elsewhere.status_code == 201 and elsewhere.json()["tenant"] == "tenant-x"
    x_id = elsewhere.json()["id"]
    assert httpx.get(f"{deployment.subs}/{x_id}", headers=bearer(key_a), timeout=10).status_code == 404
    assert httpx.get(f"{deployment.subs}/{x_id}", headers=ADMIN, timeout=10).status_code == 404
    assert deployment.decide(x_id, "approve").status_code == 404
    assert refusal(deployment.sdk(key_a)) == "subscription_pending"  # its own tenant's, not tenant-x's
    tenant_x = {"tenant": "tenant-x"}
    shown = httpx.get(f"{deployment.subs}/{x_id}", headers=ADMIN, params=tenant_x, timeout=10)
    assert shown.status_code == 200 and shown.json()["tenant"] == "tenant-x"
    approved = httpx.post(f"{deployment.subs}/{x_id}/approve", headers=APPROVER, params=tenant_x, timeout=10)
    assert approved.status_code == 200
    assert refusal(deployment.sdk(key_a)) == "subscription_pending"
    assert httpx.get(deployment.subs, headers=bearer(key_a), params=tenant_x, timeout=10).status_code == 404


def test_listing_filters_and_pages(deployment: Deployment) -> None:
    team = new_team()
    key = deployment.team_key(team)
    first = deployment.subscribe(key).json()
    second = deployment.subscribe(key, model="gated-embeddings").json()
    assert deployment.decide(second["id"], "approve").status_code == 200

    def ids(**params: Any) -> list[str]:
        resp = httpx.get(deployment.subs, headers=ADMIN, params={"team": team, **params}, timeout=10)
        assert resp.status_code == 200, resp.text
        return [s["id"] for s in resp.json()["data"]]

    assert ids() == [first["id"], second["id"]]
    assert ids(status="approved") == [second["id"]]
    assert ids(status="pending", model=GATED) == [first["id"]]
    page = httpx.get(deployment.subs, headers=ADMIN, params={"team": team, "limit": 1}, timeout=10).json()
    assert page["has_more"] and page["last_id"] == first["id"]
    assert ids(after=page["last_id"]) == [second["id"]]


def test_every_change_is_audited(deployment: Deployment) -> None:
    key = deployment.team_key(new_team())
    sub = deployment.subscribe(key, reason="needed").json()
    deployment.decide(sub["id"], "approve")
    deployment.decide(sub["id"], "revoke")
    deployment.subscribe(key)
    deployment.decide(sub["id"], "reject", {"reason": "no"})
    resp = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", headers=ADMIN,
                     params={"resource_id": sub["id"]}, timeout=10)
    entries = resp.json()["data"]
    assert [e["action"] for e in entries] == [
        "subscription.reject", "subscription.request", "subscription.revoke", "subscription.approve",
        "subscription.request"]
    assert all(e["resource_type"] == "subscription" for e in entries)
    reject, approve, request = entries[0], entries[3], entries[4]
    assert (reject["before"]["status"], reject["after"]["status"], reject["after"]["reason"]) == (
        "pending", "rejected", "no")
    assert (approve["actor"], approve["before"]["status"], approve["after"]["status"]) == (
        "master", "pending", "approved")
    assert request["before"] is None and request["after"]["status"] == "pending"
    assert request["actor_role"] == "developer" and request["actor"] != "master"
    assert key not in resp.text


def test_models_that_need_no_approval_and_unknown_models(deployment: Deployment) -> None:
    key = deployment.team_key(new_team())
    free = deployment.subscribe(key, model="gpt-4o-mini")
    assert free.status_code == 400 and free.json()["error"]["code"] == "approval_not_required"
    unknown = deployment.subscribe(key, model="no-such-model")
    assert unknown.status_code == 400
    assert (unknown.json()["error"]["code"], unknown.json()["error"]["param"]) == ("model_not_found", "model")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "model", "missing_required_parameter"),
        ({"model": GATED, "plan": "gold"}, "plan", "unknown_parameter"),
        ({"model": 42}, "model", "invalid_value"),
        ({"model": [GATED]}, "model", "invalid_value"),
        ({"model": "m" * 257}, "model", "invalid_value"),
        ({"model": GATED, "team": "a b"}, "team", "invalid_value"),
        ({"model": GATED, "team": "t" * 65}, "team", "invalid_value"),
        ({"model": GATED, "reason": "r" * 1001}, "reason", "invalid_value"),
        ({"model": GATED, "reason": 7}, "reason", "invalid_value"),
        ({"model": GATED, "tenant": "'; DROP TABLE subscriptions; --"}, "tenant", "invalid_value"),
    ],
)
def test_bad_subscription_bodies_are_400(
    deployment: Deployment, body: dict[str, Any], param: str, code: str
) -> None:
    resp = httpx.post(deployment.subs, json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert httpx.get(f"{deployment.gateway.url}/health/ready", timeout=10).status_code == 200


def test_bad_decisions_and_queries_are_400(deployment: Deployment) -> None:
    sub = deployment.subscribe(deployment.team_key(new_team())).json()
    cases: list[tuple[httpx.Response, str, str]] = [
        (deployment.decide(sub["id"], "reject"), "reason", "missing_required_parameter"),
        (deployment.decide(sub["id"], "reject", {"reason": ""}), "reason", "invalid_value"),
        (deployment.decide(sub["id"], "reject", {"reason": "x" * 1001}), "reason", "invalid_value"),
        (deployment.decide(sub["id"], "approve", {"note": "ok"}), "note", "unknown_parameter"),
        (deployment.decide(sub["id"], "revoke", {"reason": ["x"]}), "reason", "invalid_value"),
    ]
    bad_queries: list[tuple[dict[str, Any], str]] = [
        ({"status": "maybe"}, "status"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
        ({"team": "t" * 65}, "team"), ({"after": "a" * 65}, "after"),
    ]
    for params, param in bad_queries:
        resp = httpx.get(deployment.subs, headers=ADMIN, params=params, timeout=10)
        cases.append((resp, param, "invalid_value"))
    # A misspelt filter or one given twice is not ignored (that would list what was not asked).
    misspelt = httpx.get(deployment.subs, headers=ADMIN, params={"statuss": "approved"}, timeout=10)
    cases.append((misspelt, "statuss", "unknown_parameter"))
    twice = httpx.get(f"{deployment.subs}?status=approved&status=pending", headers=ADMIN, timeout=10)
    cases.append((twice, "status", "duplicate_parameter"))
    for resp, param, code in cases:
        assert resp.status_code == 400, resp.text
        assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == (param, code)
    json_headers = {**ADMIN, "content-type": "application/json"}
    bad_json = httpx.post(deployment.subs, content=b"{nope", headers=json_headers, timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    unchanged = httpx.get(f"{deployment.subs}/{sub['id']}", headers=ADMIN, timeout=10)
    assert unchanged.json()["status"] == "pending"


def test_a_misspelt_or_repeated_query_parameter_on_a_change_is_400(deployment: Deployment) -> None:
    """A subscription's tenant is named in the body of POST, in the query of a decision: the
    other way round, misspelt or given twice, it is a 400, never ignored (ignored, the platform
    admin's request landed in its own tenant, or a decision read one of two tenants)."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    made = httpx.post(f"{deployment.gateway.url}/admin/v1/tenants", json={"id": tenant}, headers=ADMIN,
                      timeout=10)
    assert made.status_code == 201, made.text
    team = new_team()
    wrong_place = httpx.post(deployment.subs, params={"tenant": tenant}, json={"model": GATED, "team": team},
                             headers=ADMIN, timeout=10)
    assert wrong_place.status_code == 400, wrong_place.text
    assert (wrong_place.json()["error"]["param"], wrong_place.json()["error"]["code"]) == (
        "tenant", "unknown_parameter")
    # Nothing was asked for, in that tenant or the admin's own.
    for params in ({"team": team}, {"team": team, "tenant": tenant}):
        listed = httpx.get(deployment.subs, headers=ADMIN, params=params, timeout=10)
        assert listed.status_code == 200 and listed.json()["data"] == [], listed.text
    sub = httpx.post(deployment.subs, json={"model": GATED, "team": team, "tenant": tenant}, headers=ADMIN,
                     timeout=10).json()
    url = f"{deployment.subs}/{sub['id']}"
    cases = [
        (f"{url}/approve?tenant={tenant}&tenant={tenant}", {}, "tenant", "duplicate_parameter"),
        (f"{url}/approve?tenant={tenant}&reason=ok", {}, "reason", "unknown_parameter"),
        (f"{url}/reject?tennant={tenant}", {"reason": "no"}, "tennant", "unknown_parameter"),
        (f"{url}/revoke?tenant={tenant}&x=1", {}, "x", "unknown_parameter"),
    ]
    for target, body, param, code in cases:
        resp = httpx.post(target, json=body, headers=APPROVER, timeout=10)
        assert resp.status_code == 400, f"{target}: {resp.text}"
        assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == (param, code)
    shown = httpx.get(url, headers=ADMIN, params={"tenant": tenant}, timeout=10).json()
    assert shown["status"] == "pending"
    approved = httpx.post(f"{url}/approve", params={"tenant": tenant}, headers=APPROVER, timeout=10)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


# -- on a cluster: two instances sharing PostgreSQL and Redis ---------------------------------


@pytest.fixture
def two_instances(
    mock_upstream: Mock,
    postgres: Postgres,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Gateway]]:
    config = cluster_config(mock_upstream, postgres, redis_server)
    first = start_gateway(config, tmp_path_factory.mktemp("subs-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("subs-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def test_an_approval_reaches_the_other_instance_within_a_second(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    on_first, on_second = Deployment("cluster", first), Deployment("cluster", second)
    key = on_first.team_key(new_team())
    client = on_second.sdk(key)
    sub = on_first.subscribe(key).json()
    assert refusal(client) == "subscription_pending"  # the second instance has it cached as pending
    assert on_first.decide(sub["id"], "approve").status_code == 200
    done = time.monotonic()
    auth = bearer(key)
    while True:
        resp = httpx.post(f"{second.base_url}/chat/completions", headers=auth, timeout=10,
                          json={"model": GATED, "messages": ask("across instances")})
        if resp.status_code == 200:
            break
        assert resp.json()["error"]["code"] == "subscription_pending"
        assert time.monotonic() - done < 1.0, "the approval did not reach the second instance within 1 s"
    assert time.monotonic() - done < 1.0
    assert on_first.decide(sub["id"], "revoke").status_code == 200
    done = time.monotonic()
    while (code := refusal_or_none(client)) != "subscription_revoked":
        assert code is None, code
        assert time.monotonic() - done < 1.0, "the revocation did not reach the second instance"


def refusal_or_none(client: openai.OpenAI) -> str | None:
    try:
        client.chat.completions.create(model=GATED, messages=ask("still?"))
    except openai.PermissionDeniedError as denied:
        return str(denied.body["code"])  # type: ignore[index]
    return None


def served_by(client: openai.OpenAI, model: str) -> str | None:
    """The group that answered a chat call to ``model``, or None when it failed."""
    try:
        reply = client.chat.completions.with_raw_response.create(model=model, messages=ask("fall back"))
    except openai.APIStatusError as failed:
        assert failed.status_code in (502, 503), failed.body  # the unreachable primary's failure
        return None
    return reply.headers["x-switchboard-model"]


def test_a_fallback_is_served_only_where_the_key_may_use_it(deployment: Deployment) -> None:
    # A fallback group passes the same checks as the model asked for: the key's models...
    narrow = deployment.sdk(deployment.team_key(new_team(), ["down-to-gated", "down-to-open"]))
    assert served_by(narrow, "down-to-open") is None
    wide = deployment.sdk(deployment.team_key(new_team(), ["down-to-open", "gpt-4o-mini"]))
    assert served_by(wide, "down-to-open") == "gpt-4o-mini"
    # ... and the team's approved subscription to a model that needs one.
    key = deployment.team_key(new_team(), ["down-to-gated", GATED])
    client = deployment.sdk(key)
    assert served_by(client, "down-to-gated") is None
    sub = deployment.subscribe(key).json()
    assert served_by(client, "down-to-gated") is None  # pending
    assert deployment.decide(sub["id"], "approve").status_code == 200
    assert served_by(client, "down-to-gated") == GATED
    assert served_by(deployment.sdk(MASTER_KEY), "down-to-gated") == GATED  # never held back


def test_a_model_added_at_run_time_that_needs_approval_can_be_subscribed_to(deployment: Deployment) -> None:
    name = f"gated-stored-{uuid.uuid4().hex[:6]}"
    created = httpx.post(f"{deployment.gateway.url}/admin/v1/models", headers=ADMIN, timeout=10, json={
        "name": name, "provider": "local-openai", "model": "gpt-4o-mini", "require_approval": True})
    assert created.status_code == 201, created.text
    key = deployment.team_key(new_team(), [name])
    client = deployment.sdk(key)
    assert refusal(client, name) == "subscription_required"
    asked = deployment.subscribe(key, model=name)
    assert asked.status_code == 201, asked.text
    assert (asked.json()["status"], asked.json()["model"]) == ("pending", name)
    assert deployment.decide(asked.json()["id"], "approve").status_code == 200
    assert client.chat.completions.create(model=name, messages=ask("stored and approved")).choices


def test_removing_a_model_revokes_its_approved_subscriptions(deployment: Deployment) -> None:
    """A model added again under a removed one's name is not open at once to the teams approved
    for the old one: the removal revokes their subscriptions, audited as a revoke."""
    name = f"gated-removed-{uuid.uuid4().hex[:6]}"
    models = f"{deployment.gateway.url}/admin/v1/models"
    body = {"name": name, "provider": "local-openai", "model": "gpt-4o-mini", "require_approval": True}
    assert httpx.post(models, headers=ADMIN, timeout=10, json=body).status_code == 201
    key = deployment.team_key(new_team(), [name])
    client = deployment.sdk(key)
    sub = deployment.subscribe(key, model=name).json()["id"]
    assert deployment.decide(sub, "approve").status_code == 200
    assert client.chat.completions.create(model=name, messages=ask("approved")).choices
    assert httpx.delete(f"{models}/{name}", headers=ADMIN, timeout=10).status_code == 200
    shown = httpx.get(f"{deployment.subs}/{sub}", headers=ADMIN, timeout=10).json()
    assert shown["status"] == "revoked", shown
    revoked = {"resource_id": sub, "action": "subscription.revoke"}
    audit = httpx.get(f"{deployment.gateway.url}/admin/v1/audit", params=revoked, headers=ADMIN,
                      timeout=10).json()["data"]
    assert [(e["before"]["status"], e["after"]["status"]) for e in audit] == [("approved", "revoked")]
    assert httpx.post(models, headers=ADMIN, timeout=10, json=body).status_code == 201
    assert refusal(client, name) == "subscription_revoked"


def test_a_model_needs_approval_when_any_of_its_deployments_does(deployment: Deployment) -> None:
    """Whichever deployment is routed first, the answer is the model's: refused until approved,
    and the catalog says so too."""
    key = deployment.team_key(new_team(), [MIXED])
    client = deployment.sdk(key)
    assert {refusal(client, MIXED) for _ in range(3)} == {"subscription_required"}
    catalog = httpx.get(f"{deployment.gateway.url}/admin/v1/catalog", params={"kind": "model"},
                        headers=bearer(key), timeout=10)
    assert [(e["name"], e["approval_required"]) for e in catalog.json()["data"]] == [(MIXED, True)]
    sub = deployment.subscribe(key, model=MIXED)
    assert sub.status_code == 201, sub.text
    assert refusal(client, MIXED) == "subscription_pending"
    assert deployment.decide(sub.json()["id"], "approve").status_code == 200
    reply = client.chat.completions.with_raw_response.create(model=MIXED, messages=ask("mixed"))
    assert reply.headers["x-switchboard-deployment"] == "open"
    assert reply.parse().choices[0].message.content.endswith("mixed")
