"""Admins changing the same object at the same moment, on both deployments: each PATCH keeps
the fields the others set (none writes back a stale copy of the row), a PATCH racing a DELETE is
a 404, not a 200 for a change nobody stored, and the audit log holds one entry per change made.
The calls are released together by a barrier, from threads of their own."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.tenancy_world import Admin, deployment_fixture
from tests.servers import Gateway, Mock

gateway = deployment_fixture("gateway")

ROUNDS = 12  # PATCHes of each kind released together


def together(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call at once: each thread waits at the barrier until all are ready."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def patches(admin: Admin, path: str, *bodies: dict[str, Any]) -> int:
    """Send each body ROUNDS times, all at once, and return how many changes that made. On one
    instance the changes of one object are queued, so every one of them is a 200 (none lost its
    compare-and-set on every try); the first copy of each body to run makes its change, and the
    others, finding it made, change (and audit) nothing."""
    calls = [lambda body=body: admin.call("PATCH", path, body) for body in bodies for _ in range(ROUNDS)]
    answers = together(calls)
    for r in answers:
        assert r.status_code == 200, r.text
    return len(bodies)


def audited(admin: Admin, tenant: str, action: str) -> int:
    entries = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "limit": 1000})["data"]
    return Counter(e["action"] for e in entries)[action]


def test_patches_of_different_fields_at_once_all_stick(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "before"}, status=201)["id"]
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "before"}, status=201)["id"]

    done = Counter[str]()
    done["tenant.update"] += patches(admin, f"/admin/v1/tenants/{tenant}", {"name": "Renamed"},
                                     {"allowed_regions": ["eu"]})
    got = admin.ok("GET", f"/admin/v1/tenants/{tenant}")
    assert (got["name"], got["allowed_regions"]) == ("Renamed", ["eu"])

    done["team.update"] += patches(admin, f"/admin/v1/teams/{team}", {"name": "Renamed"},
                                   {"allowed_regions": ["us"]})
    got = admin.ok("GET", f"/admin/v1/teams/{team}")
    assert (got["name"], got["allowed_regions"]) == ("Renamed", ["us"])

    # A user's role and team are checked together, against the ones read.
    done["user.update"] += patches(admin, f"/admin/v1/users/{user}", {"name": "Renamed"},
                                   {"email": "new@example.com"}, {"team": team})
    got = admin.ok("GET", f"/admin/v1/users/{user}")
    assert (got["name"], got["email"], got["team"]) == ("Renamed", "new@example.com", team)

    # Each change made has its one audit entry.
    for action, count in done.items():
        assert audited(admin, tenant, action) == count, action


def test_patches_of_stored_objects_at_once_all_stick(gateway: Gateway, mock_upstream: Mock) -> None:
    """Providers, models, services, MCP servers and prompt APIs: each PATCH is written only over
    the version it read (tried again if another got there first), so none undoes another."""
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "owners"}, status=201)["id"]
    provider, model = f"prov-{tenant}", f"model-{tenant}"
    base = mock_upstream.url + "/v1"
    admin.ok("POST", "/admin/v1/providers", {"name": provider, "type": "openai", "api_base": base,
                                             "api_key": "sk-x"}, status=201)
    admin.ok("POST", "/admin/v1/models", {"name": model, "provider": provider, "model": "gpt-4o-mini"},
             status=201)
    owned = {"tenant": tenant, "team": team}
    admin.ok("POST", "/admin/v1/services", {"name": "svc", "url": "http://svc.example.invalid:9/", **owned},
             status=201)
    admin.ok("POST", "/admin/v1/mcp/servers", {"name": "mcp", "url": "https://mcp.example/mcp",
                                               "tenant": tenant}, status=201)
    prompt = {"name": "p", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **owned}
    admin.ok("POST", "/admin/v1/prompts", prompt, status=201)
    admin.ok("POST", "/admin/v1/apis", {"name": "api", "prompt": "p", "version": 1, **owned}, status=201)

    cases = [
        (f"/admin/v1/providers/{provider}", {"rpm": 77}, {"tpm": 8888}),
        (f"/admin/v1/models/{model}", {"drop_params": True}, {"require_approval": True}),
        (f"/admin/v1/services/svc?tenant={tenant}", {"description": "d"}, {"rpm": 55}),
        (f"/admin/v1/mcp/servers/mcp?tenant={tenant}", {"description": "d"},
         {"timeout_seconds": 12}),
        (f"/admin/v1/apis/api?tenant={tenant}", {"description": "d"},
         {"require_approval": True}),
    ]
    made = Counter[str]()
    for path, *bodies in cases:
        made[path.split("/")[3]] += patches(admin, path, *bodies)
        got = admin.ok("GET", path)
        for body in bodies:
            for field, value in body.items():
                assert got[field] == value, (path, field, got)
    for kind, action, name in (("providers", "provider.update", provider), ("models", "model.update", model)):
        entries = admin.ok("GET", "/admin/v1/audit", params={"limit": 1000, "action": action,
                                                             "resource_id": name})["data"]
        assert len(entries) == made[kind], kind
    for kind, action in (("services", "service.update"), ("mcp", "mcp_server.update"),
                         ("apis", "api.update")):
        assert audited(admin, tenant, action) == made[kind], kind

    # Retiring an API while others change it: a change made after it is refused (a retired API
    # does not change), never undoing it; retired exactly when the retirement answered 200.
    path = f"/admin/v1/apis/api?tenant={tenant}"
    answers = together([lambda: admin.call("PATCH", path, {"status": "retired"})]
                       + [lambda: admin.call("PATCH", path, {"description": "again"})] * 4)
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    assert (admin.ok("GET", path)["status"] == "retired") == (answers[0].status_code == 200)


def test_a_patch_racing_a_delete_is_not_found_and_nothing_comes_back(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    for path, body in (("teams", {"tenant": tenant, "name": "doomed"}),
                       ("users", {"tenant": tenant, "name": "doomed"})):
        made = admin.ok("POST", f"/admin/v1/{path}", body, status=201)["id"]
        url = f"/admin/v1/{path}/{made}"
        calls = [lambda url=url: admin.call("DELETE", url)] * 4
        calls += [lambda url=url: admin.call("PATCH", url, {"name": "still here?"})] * ROUNDS
        answers = together(calls)
        deletes, updates = answers[:4], answers[4:]
        # One delete removes it; the others, and every PATCH that came after it, are 404s.
        assert Counter(r.status_code for r in deletes) == {200: 1, 404: 3}, [r.text for r in deletes]
        assert {r.status_code for r in updates} <= {200, 404}, [r.text for r in updates]
        assert admin.call("GET", url).status_code == 404
        kind = path[:-1]
        assert audited(admin, tenant, f"{kind}.delete") == 1
        # The first PATCH through renames it; the others find it renamed and change nothing.
        renamed = any(r.status_code == 200 for r in updates)
        assert audited(admin, tenant, f"{kind}.update") == int(renamed)


def test_a_user_deleted_while_keys_are_issued_to_it_leaves_no_key_behind(gateway: Gateway) -> None:
    """The delete checks for unrevoked keys as it deletes (as a team's does): a key issued after
    the admin API counted them keeps the user (409), never a live key of a user that is gone."""
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    outcomes = Counter[int]()
    for _ in range(3):
        user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "leaving"}, status=201)["id"]
        issue = {"models": ["*"], "tenant": tenant, "user": user}
        answers = together([lambda user=user: admin.call("DELETE", f"/admin/v1/users/{user}")]
                           + [lambda issue=issue: admin.call("POST", "/admin/v1/keys", issue)] * 4)
        deleted, issued = answers[0], answers[1:]
        assert deleted.status_code in (200, 409), deleted.text
        assert {r.status_code for r in issued} <= {201, 404}, [r.text for r in issued]
        outcomes[deleted.status_code] += 1
        live = [k for k in admin.ok("GET", "/admin/v1/keys", params={"tenant": tenant, "user": user})["data"]
                if not k["revoked"]]
        gone = admin.call("GET", f"/admin/v1/users/{user}").status_code == 404
        assert gone == (deleted.status_code == 200)
        assert not (gone and live), live  # no live key of a user that is gone
        assert len(live) == sum(r.status_code == 201 for r in issued)
    assert audited(admin, tenant, "user.delete") == outcomes[200]


def test_the_master_key_issues_no_key_to_an_owner_that_was_deleted(gateway: Gateway) -> None:
    """The master key may name owners without a record (as before tenancy existed), but an id of
    the form Switchboard gives its own records names one that is gone: 404, as for any caller.
    Else a key issued just after its owner's delete would stay live for an owner nobody has."""
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "gone"}, status=201)["id"]
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "gone"}, status=201)["id"]
    account = admin.ok("POST", "/admin/v1/service-accounts", {"tenant": tenant, "name": "gone"},
                       status=201)["id"]
    for path, ident in (("users", user), ("service-accounts", account), ("teams", team)):
        admin.ok("DELETE", f"/admin/v1/{path}/{ident}")
    for owner, code in (({"user": user}, "user_not_found"),
                        ({"service_account": account}, "service_account_not_found"),
                        ({"team": team}, "team_not_found")):
        for scope in ({"tenant": tenant}, {}):
            r = admin.call("POST", "/admin/v1/keys", {"models": ["*"], **scope, **owner})
            assert (r.status_code, r.json()["error"]["code"]) == (404, code), r.text
    assert admin.ok("GET", "/admin/v1/keys", params={"tenant": tenant})["data"] == []
    # An owner named outside Switchboard still needs no record.
    made = admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant, "user": "alice",
                                               "team": "payments"}, status=201)
    assert (made["user"], made["team"]) == ("alice", "payments")


def test_a_rotation_racing_changes_of_the_key_rotates_it_as_changed(gateway: Gateway) -> None:
    """A PATCH landing between a rotation's read and its write is no reason to refuse the
    rotation as "already rotated": it reads the key again and rotates it. With fewer changes at
    once than its tries, each can overtake it only once, so it always gets through; the
    successor carries the changes made before it, and a change after it is refused."""
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    for _ in range(5):
        key = admin.ok("POST", "/admin/v1/keys", {"models": ["*"], "tenant": tenant}, status=201)["id"]
        path = f"/admin/v1/keys/{key}"
        answers = together([lambda path=path: admin.call("POST", path + "/rotate")]
                           + [lambda path=path, i=i: admin.call("PATCH", path, {"tags": [f"t{i}"]})
                              for i in range(2)])
        rotation, changes = answers[0], answers[1:]
        assert rotation.status_code == 201, rotation.text
        for r in changes:  # after the rotation: the successor holds the settings
            assert r.status_code == 200 or r.json()["error"]["code"] == "key_rotated", r.text
        successor = admin.ok("GET", f"/admin/v1/keys/{rotation.json()['id']}")
        assert successor["tags"] == admin.ok("GET", path)["tags"]  # the key as it was when rotated


def _provider(admin: Admin, name: str, mock: Mock) -> None:
    admin.ok("POST", "/admin/v1/providers", {"name": name, "type": "openai", "api_base": mock.url + "/v1"},
             status=201)


def _delete_racing_additions(admin: Admin, name: str, models: int) -> list[httpx.Response]:
    """DELETE the provider while 4 credentials are added to it and ``models`` models created."""
    provider = f"/admin/v1/providers/{name}"
    adds = [lambda i=i: admin.call("POST", f"{provider}/credentials",
                                   {"api_key": f"sk-old-secret-{i}-0123456789"}) for i in range(4)]
    made = [lambda i=i: admin.call("POST", "/admin/v1/models",
                                   {"name": f"{name}-m{i}", "provider": name, "model": "gpt-4o-mini"})
            for i in range(models)]
    return together([lambda: admin.call("DELETE", provider), *adds, *made])


def test_a_deleted_provider_leaves_no_credential_or_model_behind(gateway: Gateway, mock_upstream: Mock
                                                                  ) -> None:
    """Credentials added and models created while the provider is being deleted are refused or
    deleted with it: nothing of it comes back with a new provider of the same name (its secret
    least of all), and no model is left pointing at no provider."""
    admin = Admin(gateway.url)
    for round_ in range(4):
        name = f"doomed-{uuid.uuid4().hex[:8]}"
        _provider(admin, name, mock_upstream)
        answers = _delete_racing_additions(admin, name, 3 if round_ % 2 else 0)
        deleted = answers[0]
        assert deleted.status_code in (200, 409), deleted.text
        assert {r.status_code for r in answers[1:5]} <= {201, 404}, [r.text for r in answers[1:5]]
        assert {r.status_code for r in answers[5:]} <= {201, 400}, [r.text for r in answers[5:]]
        if deleted.status_code == 409:  # a model came first: the provider stays, with what was added
            continue
        _provider(admin, name, mock_upstream)  # the same name again
        assert admin.ok("GET", f"/admin/v1/providers/{name}")["credentials"] == []
        listed = admin.ok("GET", "/admin/v1/models", params={"limit": 1000})["data"]
        assert [m["name"] for m in listed if m.get("provider") == name] == []


def test_a_provider_deleted_as_it_is_created_has_its_create_in_the_audit(gateway: Gateway,
                                                                           mock_upstream: Mock) -> None:
    """The provider and its credential are stored together: a DELETE released with the POST
    either finds nothing (404) or the provider as created, so the create is never refused after
    its provider existed, and every delete in the audit log has its create."""
    admin = Admin(gateway.url)
    for _ in range(ROUNDS):
        name = f"brief-{uuid.uuid4().hex[:8]}"
        created, deleted = together([
            lambda name=name: admin.call("POST", "/admin/v1/providers", {
                "name": name, "type": "openai", "api_base": mock_upstream.url + "/v1",
                "api_key": "sk-brief-secret-0123456789"}),
            lambda name=name: admin.call("DELETE", f"/admin/v1/providers/{name}")])
        assert created.status_code == 201, created.text
        assert deleted.status_code in (200, 404), deleted.text
        if deleted.status_code == 404:  # came first: the provider stays, with its credential
            assert len(admin.ok("GET", f"/admin/v1/providers/{name}")["credentials"]) == 1
            admin.ok("DELETE", f"/admin/v1/providers/{name}")
        entries = admin.ok("GET", "/admin/v1/audit", params={"resource_id": name, "limit": 10})["data"]
        assert sorted(e["action"] for e in entries) == ["provider.create", "provider.delete"], entries
