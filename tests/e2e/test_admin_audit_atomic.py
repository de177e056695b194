"""Admin changes and their audit entries are stored together or not at all, on the embedded
default and on a cluster: with the database refusing one action's audit entries (a trigger on
SQLite, a constraint on PostgreSQL: ``Pair.audit_refused``), the change answers an error and
nothing of it is stored; once the entries are taken again, the same change goes through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard.stores.sql.tables import mcp_oauth_tokens
from tests.e2e.sdk import ask
from tests.e2e.test_budgets import CALL, GATED, LONG, Pair, started_pair
from tests.servers import Mock

GROUP, SPLIT = "audit-group", "audit-split"  # a group of two deployments, split between them


def _with_split(config: dict[str, Any]) -> None:
    config["models"] += [{"name": GROUP, "provider": "local-openai", "model": "gpt-4o-mini",
                          "deployment": name} for name in ("audit-a", "audit-b")]
    config["router"]["splits"] = [{"name": SPLIT, "model": GROUP, "sticky": "none", "arms": [
        {"deployment": "audit-a", "percent": 50}, {"deployment": "audit-b", "percent": 50}]}]


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def pair(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    yield from started_pair(request, mock_upstream, tmp_path_factory, _with_split)


@pytest.mark.parametrize("refused", ["tenant.delete", "budget.delete"])
def test_a_tenant_delete_whose_audit_entry_is_refused_changes_nothing(pair: Pair, refused: str) -> None:
    # Before, the tenant was deleted, then audited, then its budgets deleted, each on its own: a
    # refused entry answered an error for a tenant gone all the same (its budgets left behind,
    # or its delete unaudited).
    with pair.audit_refused(refused) as tenant:
        budget = pair.budget(scope="tenant", tenant=tenant, max_amount=5, period="total")
        resp = pair.admin("DELETE", f"/admin/v1/tenants/{tenant}")
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        # Nothing changed: the tenant and its budget are there, nothing is audited.
        assert pair.admin("GET", f"/admin/v1/tenants/{tenant}").status_code == 200
        assert pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 200
        assert pair.audited(tenant, tenant, "tenant.delete") == []
        assert pair.audited(tenant, budget["id"]) == []
    resp = pair.admin("DELETE", f"/admin/v1/tenants/{tenant}")
    assert resp.status_code == 200 and resp.json()["deleted"] is True, resp.text
    assert pair.admin("GET", f"/admin/v1/tenants/{tenant}").status_code == 404
    assert pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").status_code == 404
    assert pair.audited(tenant, tenant, "tenant.delete") == ["master"]
    assert pair.audited(tenant, budget["id"]) == ["master"]


def test_a_budget_set_whose_audit_entry_is_refused_changes_nothing(pair: Pair) -> None:
    # Before, the budget was written, then audited on its own: a refused entry answered an error
    # for a budget in force all the same, its change unaudited.
    with pair.audit_refused("budget.set") as tenant:
        resp = pair.admin("PUT", "/admin/v1/budgets", {"scope": "tenant", "tenant": tenant, "max_amount": 5,
                                                      "period": "total"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        listed = pair.admin("GET", f"/admin/v1/budgets?tenant={tenant}")
        assert listed.status_code == 200 and listed.json()["data"] == [], listed.text
    budget = pair.budget(scope="tenant", tenant=tenant, max_amount=5, period="total")
    with pair.audit_refused("budget.set", tenant=tenant):
        resp = pair.admin("PUT", "/admin/v1/budgets", {"scope": "tenant", "tenant": tenant, "max_amount": 7,
                                                      "period": "total"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        kept = pair.admin("GET", f"/admin/v1/budgets/{budget['id']}").json()
        assert kept["max_amount"] == budget["max_amount"]
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&action=budget.set").json()["data"]
    assert [(e["resource_id"], e["after"]["max_amount"]) for e in entries] == [
        (budget["id"], budget["max_amount"])]


def test_a_key_create_whose_audit_entry_is_refused_issues_no_key(pair: Pair) -> None:
    # Before, the key was stored, then audited on its own: a refused entry answered an error for a
    # key that existed all the same (unaudited, and its secret never shown to anyone).
    with pair.audit_refused("key.create") as tenant:
        resp = pair.admin("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        listed = pair.admin("GET", f"/admin/v1/keys?tenant={tenant}")
        assert listed.status_code == 200 and listed.json()["data"] == [], listed.text
    key = pair.key(tenant=tenant)
    assert pair.audited(tenant, key["id"], "key.create") == ["master"]


@pytest.mark.parametrize("refused", ["key.rotate", "key.create"])
def test_a_rotation_whose_audit_entry_is_refused_changes_nothing(pair: Pair, refused: str) -> None:
    # Before, the key was rotated, then each entry written on its own: a refused one answered an
    # error for a key retired all the same (its successor's secret never shown).
    with pair.audit_refused() as tenant:
        key = pair.key(tenant=tenant)
    with pair.audit_refused(refused, tenant=tenant):
        resp = pair.admin("POST", f"/admin/v1/keys/{key['id']}/rotate", {"grace_seconds": 0})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        # Nothing changed: the key still works, unretired, and has no successor.
        assert pair.sdk(key["key"]).chat.completions.create(messages=ask(LONG), **CALL).choices
        assert pair.admin("GET", f"/admin/v1/keys/{key['id']}").json()["expires_at"] is None
        listed = pair.admin("GET", f"/admin/v1/keys?tenant={tenant}").json()["data"]
        assert [k["id"] for k in listed] == [key["id"]]
        assert pair.audited(tenant, key["id"], "key.rotate") == []
    resp = pair.admin("POST", f"/admin/v1/keys/{key['id']}/rotate", {"grace_seconds": 0})
    assert resp.status_code == 201, resp.text
    assert pair.audited(tenant, key["id"], "key.rotate") == ["master"]
    assert pair.audited(tenant, resp.json()["id"], "key.create") == ["master"]


def test_provider_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair, mock_upstream: Mock
                                                                         ) -> None:
    # Before, each change was stored, then audited on its own: a refused entry answered an error
    # for a provider or credential created, changed or deleted all the same, unaudited.
    name = f"stored-{uuid.uuid4().hex[:8]}"
    path = f"/admin/v1/providers/{name}"

    def shown() -> dict[str, Any]:
        resp = pair.admin("GET", path)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def refused(action: str, method: str, at: str, body: Any = None) -> None:
        with pair.audit_refused(action, tenant="default"):
            resp = pair.admin(method, at, body)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text

    body = {"name": name, "type": "openai", "api_base": f"{mock_upstream.url}/v1",
            "api_key": "sk-upstream-one"}
    refused("provider.create", "POST", "/admin/v1/providers", body)
    assert pair.admin("GET", path).status_code == 404
    assert pair.admin("POST", "/admin/v1/providers", body).status_code == 201
    first = shown()
    refused("provider.credential.create", "POST", f"{path}/credentials", {"api_key": "sk-upstream-two"})
    assert shown()["credentials"] == first["credentials"]
    added = pair.admin("POST", f"{path}/credentials", {"api_key": "sk-upstream-two"})
    assert added.status_code == 201, added.text
    both = shown()
    refused("provider.credential.delete", "DELETE", f"{path}/credentials/{added.json()['id']}")
    refused("provider.update", "PATCH", path, {"rpm": 5})
    refused("provider.delete", "DELETE", path)
    assert shown() == both  # every change refused left it as it was
    assert pair.admin("DELETE", path).status_code == 200
    resp = pair.admin("GET", f"/admin/v1/audit?resource_id={name}")
    assert [e["action"] for e in resp.json()["data"]] == ["provider.delete", "provider.create"]
    resp = pair.admin("GET", f"/admin/v1/audit?resource_id={added.json()['id']}")
    assert [e["action"] for e in resp.json()["data"]] == ["provider.credential.create"]


def test_subscription_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a subscription was requested or decided, then audited on its own: a refused entry
    # answered an error for an approval (or a revoke) in force all the same, unaudited.
    with pair.audit_refused("subscription.request") as tenant:
        ask_for = {"model": GATED, "team": "crew", "tenant": tenant}
        resp = pair.admin("POST", "/admin/v1/subscriptions", ask_for)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/subscriptions?tenant={tenant}").json()["data"] == []
    asked = pair.admin("POST", "/admin/v1/subscriptions", ask_for)
    assert asked.status_code == 201, asked.text
    sub = f"/admin/v1/subscriptions/{asked.json()['id']}"
    for action, status in (("approve", "pending"), ("revoke", "approved")):
        with pair.audit_refused(f"subscription.{action}", tenant=tenant):
            resp = pair.admin("POST", f"{sub}/{action}?tenant={tenant}")
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", f"{sub}?tenant={tenant}").json()["status"] == status  # as it was
        assert pair.admin("POST", f"{sub}/{action}?tenant={tenant}").status_code == 200
    # A team's withdrawal of its request again: withdrawn and audited together, or neither.
    assert pair.admin("POST", "/admin/v1/subscriptions", ask_for).status_code == 201
    with pair.audit_refused("subscription.withdraw", tenant=tenant):
        resp = pair.admin("POST", f"{sub}/withdraw?tenant={tenant}")
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"{sub}?tenant={tenant}").json()["status"] == "pending"
    assert pair.admin("POST", f"{sub}/withdraw?tenant={tenant}").status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={asked.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == [
        "subscription.withdraw", "subscription.request", "subscription.revoke", "subscription.approve",
        "subscription.request"]


def test_team_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a team was created, changed or deleted, then audited on its own: a refused entry
    # answered an error for a change made all the same, unaudited.
    with pair.audit_refused("team.create") as tenant:
        resp = pair.admin("POST", "/admin/v1/teams", {"name": "crew", "tenant": tenant})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/teams?tenant={tenant}").json()["data"] == []
    created = pair.admin("POST", "/admin/v1/teams", {"name": "crew", "tenant": tenant})
    assert created.status_code == 201, created.text
    team = f"/admin/v1/teams/{created.json()['id']}"
    changes: list[tuple[str, str, Any]] = [("team.update", "PATCH", {"name": "renamed"}),
                                           ("team.delete", "DELETE", None)]
    for action, method, body in changes:
        with pair.audit_refused(action, tenant=tenant):
            resp = pair.admin(method, team, body)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", team).json() == created.json()  # as it was
    assert pair.admin("DELETE", team).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={created.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == ["team.delete", "team.create"]


@pytest.mark.parametrize("path", ["users", "service-accounts"])
def test_user_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair, path: str) -> None:
    # Before, a user (or service account) was created, changed or deleted, then audited on its
    # own: a refused entry answered an error for a change made all the same, unaudited.
    kind = "user" if path == "users" else "service_account"
    with pair.audit_refused(f"{kind}.create") as tenant:
        body = {"role": "developer", "name": "pat", "tenant": tenant}
        resp = pair.admin("POST", f"/admin/v1/{path}", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/{path}?tenant={tenant}").json()["data"] == []
    created = pair.admin("POST", f"/admin/v1/{path}", body)
    assert created.status_code == 201, created.text
    one = f"/admin/v1/{path}/{created.json()['id']}"
    changes: list[tuple[str, str, Any]] = [(f"{kind}.update", "PATCH", {"name": "sam"}),
                                           (f"{kind}.delete", "DELETE", None)]
    for action, method, change in changes:
        with pair.audit_refused(action, tenant=tenant):
            resp = pair.admin(method, one, change)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", one).json() == created.json()  # as it was
    assert pair.admin("PATCH", one, {"name": "sam"}).status_code == 200
    assert pair.admin("DELETE", one).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={created.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == [f"{kind}.delete", f"{kind}.update", f"{kind}.create"]


def test_a_key_update_whose_audit_entry_is_refused_changes_nothing(pair: Pair) -> None:
    # Before, the key was changed (here blocked), then audited on its own: a refused entry
    # answered an error for a key blocked all the same, unaudited.
    with pair.audit_refused("key.update") as tenant:
        key = pair.key(tenant=tenant)
        one = f"/admin/v1/keys/{key['id']}"
        resp = pair.admin("PATCH", one, {"enabled": False, "name": "blocked"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        shown = pair.admin("GET", one).json()
        assert shown["name"] is None and shown["enabled"] is True, shown  # as it was
        for gw in (pair.first, pair.second):  # and still serves
            assert pair.sdk(key["key"], on=gw).chat.completions.create(messages=ask(LONG), **CALL).choices
    assert pair.admin("PATCH", one, {"name": "renamed"}).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={key['id']}").json()
    assert [e["action"] for e in entries["data"]] == ["key.update", "key.create"]


def test_limit_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a rate limit was set or deleted, then audited on its own: a refused entry answered
    # an error for limits changed all the same, unaudited.
    with pair.audit_refused("limit.set") as tenant:
        body = {"scope": "tenant", "rpm": 5, "tenant": tenant}
        resp = pair.admin("PUT", "/admin/v1/limits", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/limits?tenant={tenant}").json()["data"] == []
    set_ = pair.admin("PUT", "/admin/v1/limits", body)
    assert set_.status_code == 200, set_.text
    with pair.audit_refused("limit.set", tenant=tenant):  # a change of the limits refused too
        resp = pair.admin("PUT", "/admin/v1/limits", {**body, "rpm": 7})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
    one = f"/admin/v1/limits/{set_.json()['id']}"
    with pair.audit_refused("limit.delete", tenant=tenant):
        resp = pair.admin("DELETE", one)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", one).json() == set_.json()  # as it was, through both refusals
    assert pair.admin("DELETE", one).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={set_.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == ["limit.delete", "limit.set"]


def test_model_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair, mock_upstream: Mock
                                                                      ) -> None:
    # Before, a stored model was created, changed or deleted, then audited on its own: a refused
    # entry answered an error for a model changed all the same, unaudited.
    provider = f"stored-{uuid.uuid4().hex[:8]}"
    made = pair.admin("POST", "/admin/v1/providers", {
        "name": provider, "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": "sk-up"})
    assert made.status_code == 201, made.text
    name = f"stored-model-{uuid.uuid4().hex[:8]}"
    one = f"/admin/v1/models/{name}"
    body = {"name": name, "provider": provider, "model": "gpt-4o-mini"}
    with pair.audit_refused("model.create", tenant="default"):
        resp = pair.admin("POST", "/admin/v1/models", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", one).status_code == 404
    created = pair.admin("POST", "/admin/v1/models", body)
    assert created.status_code == 201, created.text
    changes: list[tuple[str, str, Any]] = [("model.update", "PATCH", {"model": "gpt-4o"}),
                                           ("model.delete", "DELETE", None)]
    for action, method, change in changes:
        with pair.audit_refused(action, tenant="default"):
            resp = pair.admin(method, one, change)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", one).json() == created.json()  # as it was
    assert pair.admin("DELETE", one).status_code == 200
    assert pair.admin("DELETE", f"/admin/v1/providers/{provider}").status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?resource_id={name}").json()
    assert [e["action"] for e in entries["data"]] == ["model.delete", "model.create"]


def test_tenant_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a tenant was created or changed, then audited on its own: a refused entry answered
    # an error for a tenant created or renamed all the same, unaudited.
    tenant = f"refused-tenant-{uuid.uuid4().hex[:8]}"
    one = f"/admin/v1/tenants/{tenant}"
    with pair.audit_refused("tenant.create", tenant=tenant):
        resp = pair.admin("POST", "/admin/v1/tenants", {"id": tenant, "name": "acme"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", one).status_code == 404
    created = pair.admin("POST", "/admin/v1/tenants", {"id": tenant, "name": "acme"})
    assert created.status_code == 201, created.text
    with pair.audit_refused("tenant.update", tenant=tenant):
        resp = pair.admin("PATCH", one, {"name": "renamed"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", one).json() == created.json()  # as it was
    assert pair.admin("PATCH", one, {"name": "renamed"}).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={tenant}").json()
    assert [e["action"] for e in entries["data"]] == ["tenant.update", "tenant.create"]


def test_token_revocation_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a token revocation was made, replaced or lifted, then audited on its own: a refused
    # entry answered an error for a JWT caller cut off (or let back in) all the same, unaudited.
    path = "/admin/v1/token-revocations"
    with pair.audit_refused("token_revocation.create") as tenant:
        body = {"user": "bob", "block": True, "tenant": tenant}
        resp = pair.admin("POST", path, body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"{path}?tenant={tenant}").json()["data"] == []
    made = pair.admin("POST", path, body)
    assert made.status_code == 201, made.text
    one = f"{path}/{made.json()['id']}"
    changes: list[tuple[str, str, str, Any]] = [
        ("token_revocation.update", "POST", path, {**body, "block": False}),
        ("token_revocation.delete", "DELETE", one, None)]
    for action, method, at, change in changes:
        with pair.audit_refused(action, tenant=tenant):
            resp = pair.admin(method, at, change)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", one).json() == made.json()  # as it was: still blocking
    assert pair.admin("DELETE", one).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={made.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == ["token_revocation.delete", "token_revocation.create"]


def test_service_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a stored service was created, changed or deleted, then audited on its own: a
    # refused entry answered an error for a service changed all the same, unaudited.
    with pair.audit_refused("service.create") as tenant:
        body = {"name": "svc", "url": "http://svc.example.invalid:9/", "tenant": tenant}
        resp = pair.admin("POST", "/admin/v1/services", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/services?tenant={tenant}").json()["data"] == []
    created = pair.admin("POST", "/admin/v1/services", body)
    assert created.status_code == 201, created.text
    one = f"/admin/v1/services/svc?tenant={tenant}"
    shown = pair.admin("GET", one).json()
    changes: list[tuple[str, str, Any]] = [("service.update", "PATCH", {"url": "http://other.example.invalid:9/"}),
                                           ("service.delete", "DELETE", None)]
    for action, method, change in changes:
        with pair.audit_refused(action, tenant=tenant):
            resp = pair.admin(method, one, change)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", one).json() == shown  # as it was
    assert pair.admin("DELETE", one).status_code == 204
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id=svc").json()
    assert [e["action"] for e in entries["data"]] == ["service.delete", "service.create"]


def test_api_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, an API was created or changed, then audited on its own: a refused entry answered
    # an error for an API created or changed all the same, unaudited.
    with pair.audit_refused("api.create") as tenant:
        prompt = {"tenant": tenant, "name": "greeter", "model": "gpt-4o-mini",
                  "messages": [{"role": "user", "content": "hi"}]}
        assert pair.admin("POST", "/admin/v1/prompts", prompt).status_code == 201
        body = {"name": "greet", "prompt": "greeter", "version": 1, "tenant": tenant}
        resp = pair.admin("POST", "/admin/v1/apis", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/apis?tenant={tenant}").json()["data"] == []
    created = pair.admin("POST", "/admin/v1/apis", body)
    assert created.status_code == 201, created.text
    one = f"/admin/v1/apis/greet?tenant={tenant}"
    with pair.audit_refused("api.update", tenant=tenant):
        resp = pair.admin("PATCH", one, {"description": "says hello"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", one).json() == created.json()  # as it was
    assert pair.admin("PATCH", one, {"description": "says hello"}).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id=greet").json()
    assert [e["action"] for e in entries["data"]] == ["api.update", "api.create"]


def _approved(pair: Pair, tenant: str, **subject: str) -> str:
    """The path of a team's subscription to ``subject``, requested and approved."""
    asked = pair.admin("POST", "/admin/v1/subscriptions", {**subject, "team": "crew", "tenant": tenant})
    assert asked.status_code == 201, asked.text
    one = f"/admin/v1/subscriptions/{asked.json()['id']}?tenant={tenant}"
    assert pair.admin("POST", one.replace("?", "/approve?")).status_code == 200
    return one


@pytest.mark.parametrize("kind", ["service", "model"])
def test_a_removal_whose_revocations_audit_entries_are_refused_changes_nothing(
        pair: Pair, mock_upstream: Mock, kind: str) -> None:
    # Before, a service or model was removed with its subscriptions revoked, then each revoke was
    # audited on its own: a refused entry answered an error for a removal made all the same.
    with pair.audit_refused() as tenant:
        name = f"gated-{uuid.uuid4().hex[:8]}"
        if kind == "service":
            made = pair.admin("POST", "/admin/v1/services", {
                "name": name, "url": "http://svc.example.invalid:9/", "require_approval": True,
                "tenant": tenant})
            one = f"/admin/v1/services/{name}?tenant={tenant}"
        else:
            provider = f"stored-{uuid.uuid4().hex[:8]}"
            assert pair.admin("POST", "/admin/v1/providers", {
                "name": provider, "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                "api_key": "sk-up"}).status_code == 201
            made = pair.admin("POST", "/admin/v1/models", {
                "name": name, "provider": provider, "model": "gpt-4o-mini", "require_approval": True})
            one = f"/admin/v1/models/{name}"
        assert made.status_code == 201, made.text
        shown = pair.admin("GET", one).json()
    sub = _approved(pair, tenant, **{kind: name})
    with pair.audit_refused("subscription.revoke", tenant=tenant):
        resp = pair.admin("DELETE", one)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        # Nothing changed: still there, the team's subscription still approved.
        assert pair.admin("GET", one).json() == shown
        assert pair.admin("GET", sub).json()["status"] == "approved"
    assert pair.admin("DELETE", one).status_code in (200, 204)
    assert pair.admin("GET", sub).json()["status"] == "revoked"
    sub_id = sub.split("/")[-1].split("?")[0]
    assert pair.audited(tenant, sub_id, "subscription.revoke") == ["master"]
    if kind == "model":
        assert pair.admin("DELETE", f"/admin/v1/providers/{provider}").status_code == 200


def test_a_user_move_whose_keys_audit_entries_are_refused_changes_nothing(pair: Pair) -> None:
    # Before, the user was moved (and demoted) with its keys, then each key's key.update was
    # written on its own: a refused entry answered an error for a move made all the same, its
    # keys in the new team and rank, unaudited.
    with pair.audit_refused("key.update") as tenant:
        teams = [pair.admin("POST", "/admin/v1/teams", {"name": n, "tenant": tenant}).json()["id"]
                 for n in ("old", "new")]
        made = pair.admin("POST", "/admin/v1/users", {"name": "sam", "role": "team_admin", "team": teams[0],
                                                     "tenant": tenant})
        assert made.status_code == 201, made.text
        user = f"/admin/v1/users/{made.json()['id']}"
        key = pair.key(tenant=tenant, user=made.json()["id"], role="team_admin")
        one = f"/admin/v1/keys/{key['id']}"
        shown = pair.admin("GET", one).json()
        resp = pair.admin("PATCH", user, {"team": teams[1], "role": "developer"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        # Nothing changed: the user and its key where and what they were, nothing audited.
        assert pair.admin("GET", user).json() == made.json()
        assert pair.admin("GET", one).json() == shown
        assert pair.audited(tenant, made.json()["id"], "user.update") == []
    moved = pair.admin("PATCH", user, {"team": teams[1], "role": "developer"})
    assert moved.status_code == 200, moved.text
    after = pair.admin("GET", one).json()
    assert (after["team"], after["role"]) == (teams[1], "developer")
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={key['id']}").json()["data"]
    assert [e["action"] for e in entries] == ["key.update", "key.create"]
    assert [(e["team"], e["role"]) for e in (entries[0]["before"], entries[0]["after"])] == [
        (teams[0], "team_admin"), (teams[1], "developer")]


def test_routing_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a deployment's weight or a split's shares were stored, then audited on their own: a
    # refused entry answered an error for traffic moved all the same, unaudited.
    group, split = f"/admin/v1/routing/groups/{GROUP}", f"/admin/v1/routing/splits/{SPLIT}"
    weight = f"{group}/deployments/audit-a"

    def shown() -> tuple[Any, Any]:
        return pair.admin("GET", group).json(), pair.admin("GET", "/admin/v1/routing/splits").json()

    configured = shown()
    # Changed, then set back (to the configured weight and shares).
    changes: list[tuple[str, str, str, Any]] = [
        ("routing.weight", "PATCH", weight, {"weight": 3}),
        ("routing.split", "PUT", split, {"percents": {"audit-a": 10, "audit-b": 90}}),
        ("routing.weight", "PATCH", weight, {"weight": None}),
        ("routing.split", "DELETE", split, None)]
    for action, method, at, body in changes:
        was = shown()
        with pair.audit_refused(action, tenant="default"):
            resp = pair.admin(method, at, body)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert shown() == was  # as it was
        assert pair.admin(method, at, body).status_code == 200
        assert shown() != was
    assert shown() == configured
    for action, resource in (("routing.weight", f"{GROUP}/deployments/audit-a"), ("routing.split", SPLIT)):
        entries = pair.admin("GET", f"/admin/v1/audit?action={action}&resource_id={resource}").json()["data"]
        assert len(entries) == 2, entries  # the change and its reset, no more


def test_prompt_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, a prompt version was saved or a label moved, then audited on its own: a refused
    # entry answered an error for a version saved (its number taken) or a label moved all the
    # same, unaudited.
    with pair.audit_refused("prompt.create") as tenant:
        body = {"tenant": tenant, "name": "greeter", "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}]}
        resp = pair.admin("POST", "/admin/v1/prompts", body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"/admin/v1/prompts?tenant={tenant}").json()["data"] == []
    for _ in range(2):
        saved = pair.admin("POST", "/admin/v1/prompts", body)
        assert saved.status_code == 201, saved.text
    assert saved.json()["version"] == 2  # the refused save took no number
    label = f"/admin/v1/prompts/greeter/labels/production?tenant={tenant}"
    assert pair.admin("PUT", label, {"version": 1}).status_code == 200
    with pair.audit_refused("prompt.label", tenant=tenant):
        for version in (2, 1):  # a label moved, and one set anew
            at = label if version == 2 else label.replace("production", "staging")
            resp = pair.admin("PUT", at, {"version": version})
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        shown = pair.admin("GET", f"/admin/v1/prompts/greeter?tenant={tenant}").json()
        assert shown["prompt_labels"] == {"production": 1}, shown  # as it was
    assert pair.admin("PUT", label, {"version": 2}).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&action=prompt.label").json()["data"]
    assert [(e["before"]["version"], e["after"]["version"]) for e in entries] == [(1, 2), (None, 1)]
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&action=prompt.create").json()["data"]
    assert [e["resource_id"] for e in entries] == ["greeter@2", "greeter@1"]


def test_mcp_server_changes_whose_audit_entries_are_refused_change_nothing(pair: Pair) -> None:
    # Before, an MCP server was registered, changed or removed (its users' OAuth tokens deleted
    # with a move or a removal), then audited on its own: a refused entry answered an error for a
    # change made all the same, unaudited; a removal's tokens were even deleted apart, first.
    servers = "/admin/v1/mcp/servers"
    with pair.audit_refused("mcp_server.create") as tenant:
        body = {"name": "wiki", "url": "https://wiki.example/mcp", "tenant": tenant,
                "oauth": {"client_id": "switchboard"}}
        resp = pair.admin("POST", servers, body)
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
        assert pair.admin("GET", f"{servers}?tenant={tenant}").json()["data"] == []
    created = pair.admin("POST", servers, body)
    assert created.status_code == 201, created.text
    one = f"{servers}/wiki?tenant={tenant}"
    shown = pair.admin("GET", one).json()
    # A user's tokens for it, which a new URL or the removal deletes.
    pair.sql(sa.insert(mcp_oauth_tokens).values(tenant_id=tenant, user_id="pat", server="wiki",
                                                sealed="sealed-token", updated_at=datetime.now(UTC)))
    tokens = sa.select(sa.func.count()).select_from(mcp_oauth_tokens).where(
        mcp_oauth_tokens.c.tenant_id == tenant)
    moved = {"url": "https://other.example/mcp"}
    changes: list[tuple[str, str, Any]] = [
        ("mcp_server.update", "PATCH", {"description": "the wiki"}), ("mcp_server.update", "PATCH", moved),
        ("mcp_server.tokens_deleted", "PATCH", moved), ("mcp_server.delete", "DELETE", None),
        ("mcp_server.tokens_deleted", "DELETE", None)]
    for action, method, change in changes:
        with pair.audit_refused(action, tenant=tenant):
            resp = pair.admin(method, one, change)
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error", resp.text
            assert pair.admin("GET", one).json() == shown  # as it was, its user's tokens kept
            assert pair.sql(tokens) == 1
    pair.sql(sa.delete(mcp_oauth_tokens).where(mcp_oauth_tokens.c.tenant_id == tenant))  # none to revoke
    assert pair.admin("DELETE", one).status_code == 200
    entries = pair.admin("GET", f"/admin/v1/audit?tenant={tenant}&resource_id={created.json()['id']}").json()
    assert [e["action"] for e in entries["data"]] == ["mcp_server.delete", "mcp_server.create"]
