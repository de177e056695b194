"""One audit entry per change actually made: a call that leaves everything as it was (a
deployment set to the weight it has, a split set to the shares it has or reset while it has no
override, a label pointed at the version it points at, a key revoked again) answers as before,
writes nothing and leaves no entry, while the change itself leaves exactly one. And what
`switchboard secrets rotate` re-sealed before a value it could not open stopped it is committed,
so it is audited too (and reported as done)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, spawn, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
API = "/admin/v1"
SPLIT = "coverage-split"


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    config["models"] += [
        {"name": "cov-canary", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "cov-a"},
        {"name": "cov-canary", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "cov-b"},
        {"name": "cov-group", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "grp-a"},
        {"name": "cov-group", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "grp-b"},
    ]
    config["router"] = {"splits": [{"name": SPLIT, "model": "cov-canary", "sticky": "none",
                                    "arms": [{"deployment": "cov-a", "percent": 50},
                                             {"deployment": "cov-b", "percent": 50}]}]}
    gw = start_gateway(config, Path(tmp_path_factory.mktemp("audit-coverage")))
    yield gw
    gw.process.stop()


def _call(gateway: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    resp = httpx.request(method, f"{gateway.url}{API}{path}", json=body, headers=ADMIN, timeout=30)
    assert resp.status_code in (200, 201, 204), (method, path, resp.text)
    return resp


def _entries(gateway: Gateway, action: str, resource_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{gateway.url}{API}/audit", params={"action": action, "resource_id": resource_id},
                     headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def test_a_weight_set_to_the_one_it_has_is_not_audited(gateway: Gateway) -> None:
    path, rid = "/routing/groups/cov-group/deployments/grp-a", "cov-group/deployments/grp-a"
    first = _call(gateway, "PATCH", path, {"weight": 4}).json()
    again = _call(gateway, "PATCH", path, {"weight": 4}).json()
    assert again == first
    entries = _entries(gateway, "routing.weight", rid)
    assert len(entries) == 1, entries
    assert (entries[0]["before"]["weight"], entries[0]["after"]["weight"]) == (1, 4)


def test_a_split_left_as_it_is_is_not_audited(gateway: Gateway) -> None:
    path = f"/routing/splits/{SPLIT}"
    # No override yet: a reset changes nothing.
    _call(gateway, "DELETE", path)
    assert _entries(gateway, "routing.split", SPLIT) == []
    first = _call(gateway, "PUT", path, {"percents": {"cov-a": 20, "cov-b": 80}}).json()
    again = _call(gateway, "PUT", path, {"percents": {"cov-a": 20, "cov-b": 80}}).json()
    assert again == first
    entries = _entries(gateway, "routing.split", SPLIT)
    assert len(entries) == 1, entries
    assert entries[0]["before"]["percents"] == {"cov-a": 50, "cov-b": 50}
    assert entries[0]["after"]["percents"] == {"cov-a": 20, "cov-b": 80}
    reset = _call(gateway, "DELETE", path).json()  # back to the configured shares: a change
    assert _call(gateway, "DELETE", path).json() == reset
    entries = _entries(gateway, "routing.split", SPLIT)
    assert len(entries) == 2, entries
    assert entries[0]["after"]["percents"] == {"cov-a": 50, "cov-b": 50}


def test_a_label_pointed_at_its_own_version_is_not_audited(gateway: Gateway) -> None:
    name = f"cov-{uuid.uuid4().hex[:8]}"
    prompt = {"name": name, "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    _call(gateway, "POST", "/prompts", prompt)
    moved = _call(gateway, "PUT", f"/prompts/{name}/labels/production", {"version": 1}).json()
    assert moved["previous"] is None
    again = _call(gateway, "PUT", f"/prompts/{name}/labels/production", {"version": 1}).json()
    assert (again["version"], again["previous"], again["labels"]) == (1, 1, moved["labels"])
    entries = _entries(gateway, "prompt.label", f"{name}:production")
    assert len(entries) == 1, entries
    assert (entries[0]["before"]["version"], entries[0]["after"]["version"]) == (None, 1)


def test_a_key_revoked_again_is_not_audited_again(gateway: Gateway) -> None:
    key = _call(gateway, "POST", "/keys", {"models": ["*"]}).json()
    first = _call(gateway, "DELETE", f"/keys/{key['id']}").json()
    revoked = _call(gateway, "GET", f"/keys/{key['id']}").json()
    again = _call(gateway, "DELETE", f"/keys/{key['id']}").json()
    assert again == first == {"id": key["id"], "object": "api_key", "deleted": True}
    # Nothing written the second time: the revoke's time stays the one of the revoke.
    assert _call(gateway, "GET", f"/keys/{key['id']}").json() == revoked
    entries = _entries(gateway, "key.revoke", key["id"])
    assert len(entries) == 1, entries
    assert (entries[0]["before"]["revoked"], entries[0]["after"]["revoked"]) == (False, True)
    # An id no key has is still a 404, as it was.
    missing = httpx.delete(f"{gateway.url}{API}/keys/key_nope", headers=ADMIN, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"


def test_a_limit_or_budget_set_to_what_it_is_is_not_audited(gateway: Gateway) -> None:
    team = _call(gateway, "POST", "/teams", {"name": "cov"}).json()["id"]
    limit = {"scope": "team", "subject": team, "rpm": 10, "tpm": 1000}
    first = _call(gateway, "PUT", "/limits", limit).json()
    assert _call(gateway, "PUT", "/limits", limit).json() == first  # its updated_at included
    assert len(_entries(gateway, "limit.set", first["id"])) == 1
    _call(gateway, "PUT", "/limits", {**limit, "tpm": None})  # tpm dropped: a change
    entries = _entries(gateway, "limit.set", first["id"])
    assert len(entries) == 2 and entries[0]["after"]["tpm"] is None, entries
    budget = {"scope": "team", "subject": team, "max_amount": 5, "thresholds": [50]}
    first = _call(gateway, "PUT", "/budgets", budget).json()
    again = _call(gateway, "PUT", "/budgets", budget).json()
    assert again["updated_at"] == first["updated_at"]
    assert len(_entries(gateway, "budget.set", first["id"])) == 1
    _call(gateway, "PUT", "/budgets", {**budget, "max_amount": 6})
    entries = _entries(gateway, "budget.set", first["id"])
    assert len(entries) == 2 and entries[0]["after"]["max_amount"] != entries[1]["after"]["max_amount"]


SECRET_A = "first-server-secret-for-audit-0123456789abcdef"
SECRET_B = "second-server-secret-for-audit-0123456789abcdef"
SECRET_C = "third-server-secret-for-audit-0123456789abcdef"


def test_a_rotation_stopped_halfway_audits_what_it_re_sealed(mock_upstream: Mock, tmp_path: Path) -> None:
    config = openai_config(mock_upstream)

    def gateway_with(current: str, *previous: str) -> Gateway:
        return start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": current,
                                                    "SWITCHBOARD_PREVIOUS_SECRET_KEYS": ",".join(previous)})

    def rotate(*previous: str) -> tuple[int, str]:
        proc = spawn(["secrets", "rotate", "--config", str(first.config_path)], env={
            "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "SWITCHBOARD_SECRET_KEY": SECRET_B,
            "SWITCHBOARD_PREVIOUS_SECRET_KEYS": ",".join(previous)})
        return proc.wait_exit(60), proc.output

    # A service's header sealed under A; then, on an instance already given C (A its previous
    # one), a provider credential sealed under C.
    first = gateway_with(SECRET_A)
    service = {"name": "svc-rot", "url": f"{mock_upstream.url}/v1", "headers": {"X-Token": UPSTREAM_KEY}}
    _call(first, "POST", "/services", service)
    first.process.stop()
    second = gateway_with(SECRET_C, SECRET_A)
    provider = {"name": "p-rot", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                "api_key": UPSTREAM_KEY}
    _call(second, "POST", "/providers", provider)
    second.process.stop()
    # Rotating to B with only A as previous: the services' step is done, the providers' cannot open C.
    code, output = rotate(SECRET_A)
    assert code == 1 and "partly rotated" in output and "1 service(s)' headers" in output, output
    code, output = rotate(SECRET_A, SECRET_C)  # given C as well, the rest is done
    assert code == 0 and "0 service(s)' headers" in output and "1 provider credential(s)" in output, output
    third = gateway_with(SECRET_B)
    try:
        audit = _call(third, "GET", "/audit?action=secrets.rotate")
        assert SECRET_A not in audit.text and SECRET_C not in audit.text and UPSTREAM_KEY not in audit.text
        done, stopped = audit.json()["data"]
        assert (stopped["actor"], stopped["resource_type"]) == ("cli", "server_secret")
        assert (stopped["after"]["complete"], stopped["after"]["service_headers"],
                stopped["after"]["credentials"]) == (False, 1, 0)
        assert (done["after"]["complete"], done["after"]["service_headers"],
                done["after"]["credentials"]) == (True, 0, 1)
    finally:
        third.process.stop()


def test_a_service_header_given_a_new_value_is_named_in_its_audit_entry(gateway: Gateway) -> None:
    # Headers show by name only, alike before and after: the entry names the one that changed.
    name = f"svc-{uuid.uuid4().hex[:8]}"
    _call(gateway, "POST", "/services", {"name": name, "url": "http://127.0.0.1:9/api",
                                         "headers": {"X-Token": "first-value-1234", "X-Other": "same-5678"}})
    _call(gateway, "PATCH", f"/services/{name}", {"headers": {"X-Token": "second-value-9876"}})
    _call(gateway, "PATCH", f"/services/{name}", {"headers": {"X-Other": "same-5678"}})  # as it is
    _call(gateway, "PATCH", f"/services/{name}", {"description": "no header"})
    entries = _entries(gateway, "service.update", name)
    assert [e["after"].get("headers_changed") for e in entries] == [None, ["X-Token"]], entries
    assert entries[1]["before"]["headers"] == entries[1]["after"]["headers"] == ["X-Other", "X-Token"]
    text = json.dumps(entries)
    assert "first-value" not in text and "second-value" not in text and "same-5678" not in text


def test_a_subscription_asked_for_again_shows_what_it_was(gateway: Gateway, mock_upstream: Mock) -> None:
    # A rejected subscription asked for again is the same one reopened: not a new one.
    u = uuid.uuid4().hex[:8]
    _call(gateway, "POST", "/providers",
          {"name": f"p-{u}", "type": "openai", "api_base": f"{mock_upstream.url}/v1"})
    _call(gateway, "POST", "/models", {"name": f"m-{u}", "provider": f"p-{u}", "model": "gpt-4o-mini",
                                       "require_approval": True})
    team = _call(gateway, "POST", "/teams", {"name": "subs"}).json()["id"]
    sub = _call(gateway, "POST", "/subscriptions", {"model": f"m-{u}", "team": team}).json()
    _call(gateway, "POST", f"/subscriptions/{sub['id']}/reject", {"reason": "not now"})
    again = _call(gateway, "POST", "/subscriptions", {"model": f"m-{u}", "team": team}).json()
    assert (again["id"], again["status"]) == (sub["id"], "pending")
    entries = _entries(gateway, "subscription.request", sub["id"])
    assert [e["before"] and e["before"]["status"] for e in entries] == ["rejected", None], entries
    assert [e["after"]["status"] for e in entries] == ["pending", "pending"]


def test_a_tenant_admin_of_the_default_tenant_reads_no_platform_entries(
        gateway: Gateway, mock_upstream: Mock) -> None:
    # Gateway-wide changes are filed in the default tenant's log; providers and routing are the
    # platform admin's to read, in the log as on their own routes.
    u = uuid.uuid4().hex[:8]
    _call(gateway, "POST", "/providers", {"name": f"pp-{u}", "type": "openai",
                                          "api_key": "sk-platform-0123456789",
                                          "api_base": f"{mock_upstream.url}/v1"})
    _call(gateway, "PATCH", "/routing/groups/cov-group/deployments/grp-b", {"weight": 7})
    key = _call(gateway, "POST", "/keys", {"models": ["*"], "role": "tenant_admin", "name": f"ta-{u}"}).json()
    boss = {"Authorization": f"Bearer {key['key']}"}
    assert httpx.get(f"{gateway.url}{API}/providers", headers=boss, timeout=10).status_code == 403
    log = httpx.get(f"{gateway.url}{API}/audit", params={"limit": 1000}, headers=boss, timeout=10)
    assert log.status_code == 200, log.text
    types = {e["resource_type"] for e in log.json()["data"]}
    assert "api_key" in types, types
    assert not types & {"provider", "provider_credential", "deployment", "split"}, types
    for action in ("provider.create", "routing.weight"):
        only = httpx.get(f"{gateway.url}{API}/audit", params={"action": action}, headers=boss, timeout=10)
        assert only.status_code == 200 and only.json()["data"] == [], only.text
    # The platform admin reads them all.
    assert len(_entries(gateway, "provider.create", f"pp-{u}")) == 1


def test_a_tenant_admin_of_the_default_tenant_reads_no_model_entries(gateway: Gateway) -> None:
    # A key sees only the models it may use on /admin/v1/models; the log, which would name any
    # model and its upstream id, keeps model changes for the platform admin.
    u = uuid.uuid4().hex[:8]
    hidden = f"hidden-{u}"
    _call(gateway, "POST", "/models", {"name": hidden, "provider": "local-openai", "model": f"upstream-{u}"})
    _call(gateway, "PATCH", f"/models/{hidden}", {"drop_params": True})
    key = _call(gateway, "POST", "/keys", {"models": ["gpt-4o-mini"], "role": "tenant_admin"}).json()
    boss = {"Authorization": f"Bearer {key['key']}"}
    models = httpx.get(f"{gateway.url}{API}/models", headers=boss, timeout=10)
    assert models.status_code == 200 and hidden not in models.text, models.text
    log = httpx.get(f"{gateway.url}{API}/audit", params={"limit": 1000}, headers=boss, timeout=10)
    assert log.status_code == 200, log.text
    assert "api_key" in {e["resource_type"] for e in log.json()["data"]}
    assert hidden not in log.text and f"upstream-{u}" not in log.text
    for params in ({"action": "model.create"}, {"action": "model.update"}, {"resource_id": hidden}):
        only = httpx.get(f"{gateway.url}{API}/audit", params=params, headers=boss, timeout=10)
        assert only.status_code == 200 and only.json()["data"] == [], only.text
    # The platform admin reads them.
    assert len(_entries(gateway, "model.create", hidden)) == 1
    assert len(_entries(gateway, "model.update", hidden)) == 1
