"""More admins at the same moment, on both deployments (calls released together by a barrier, as
in test_admin_races.py): a delete that lost to another delete of the same record is that
record's 404, not a 409 for a member it never gained; a PATCH that changes nothing writes and
audits nothing; and a model or user moved under a provider or team being deleted at that moment
either keeps it or is refused, never left pointing at one that is gone."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from tests.e2e.tenancy_world import Admin, deployment_fixture
from tests.e2e.test_admin_races import audited, together
from tests.servers import Gateway, Mock

gateway = deployment_fixture("gateway")

ROUNDS = 4  # records deleted at once, one after another
MOVES = 12  # moves racing a delete, one after another


def _tenant(admin: Admin) -> str:
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    return tenant


def test_a_delete_that_another_delete_beat_is_not_found(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant = _tenant(admin)
    for path, code in (("teams", "team_not_found"), ("users", "user_not_found"),
                       ("tenants", "tenant_not_found")):
        for _ in range(ROUNDS):
            if path == "tenants":
                made = _tenant(admin)
            else:
                made = admin.ok("POST", f"/admin/v1/{path}", {"tenant": tenant, "name": "doomed"},
                                status=201)["id"]
            url = f"/admin/v1/{path}/{made}"
            answers = together([lambda url=url: admin.call("DELETE", url)] * 4)
            assert Counter(r.status_code for r in answers) == {200: 1, 404: 3}, [r.text for r in answers]
            for r in answers:
                if r.status_code == 404:
                    assert r.json()["error"]["code"] == code, r.text
            assert admin.call("GET", url).status_code == 404
    assert audited(admin, tenant, "team.delete") == ROUNDS
    assert audited(admin, tenant, "user.delete") == ROUNDS
    # A team that still has a member is still a 409, whoever asks how many times.
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "kept"}, status=201)["id"]
    admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "member", "team": team}, status=201)
    answers = together([lambda: admin.call("DELETE", f"/admin/v1/teams/{team}")] * 3)
    assert {r.status_code for r in answers} == {409}, [r.text for r in answers]


def _audit_count(admin: Admin, tenant: str) -> int:
    """Entries in the tenant's log and in the platform's (providers and models)."""
    return sum(len(admin.ok("GET", "/admin/v1/audit", params={"limit": 1000, **scope})["data"])
               for scope in ({"tenant": tenant}, {}))


def test_a_patch_that_changes_nothing_writes_and_audits_nothing(gateway: Gateway, mock_upstream: Mock
                                                                ) -> None:
    admin = Admin(gateway.url)
    tenant = _tenant(admin)
    admin.ok("PATCH", f"/admin/v1/tenants/{tenant}", {"name": "Named", "allowed_regions": ["eu", "us"]})
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "t", "allowed_regions": ["eu"]},
                    status=201)["id"]
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "u", "email": "u@example.com",
                                                "team": team}, status=201)["id"]
    provider, model = f"prov-{tenant}", f"model-{tenant}"
    admin.ok("POST", "/admin/v1/providers", {"name": provider, "type": "openai", "rpm": 60,
                                             "api_base": mock_upstream.url + "/v1"}, status=201)
    admin.ok("POST", "/admin/v1/models", {"name": model, "provider": provider, "model": "gpt-4o-mini",
                                          "drop_params": True}, status=201)
    owned = {"tenant": tenant, "team": team}
    admin.ok("POST", "/admin/v1/services", {"name": "svc", "url": "http://svc.example.invalid:9/",
                                            "description": "d", **owned}, status=201)
    admin.ok("POST", "/admin/v1/mcp/servers", {"name": "mcp", "url": "https://mcp.example/mcp",
                                               "description": "d", "tenant": tenant}, status=201)
    prompt = {"name": "p", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **owned}
    admin.ok("POST", "/admin/v1/prompts", prompt, status=201)
    admin.ok("POST", "/admin/v1/apis", {"name": "api", "prompt": "p", "version": 1, "description": "d",
                                        **owned}, status=201)

    same = [
        (f"/admin/v1/tenants/{tenant}", {"name": "Named", "allowed_regions": ["us", "eu"]}),
        (f"/admin/v1/teams/{team}", {"name": "t", "allowed_regions": ["eu"]}),
        (f"/admin/v1/users/{user}", {"name": "u", "email": "u@example.com", "team": team}),
        (f"/admin/v1/providers/{provider}", {"rpm": 60, "api_base": mock_upstream.url + "/v1"}),
        (f"/admin/v1/models/{model}", {"provider": provider, "drop_params": True}),
        (f"/admin/v1/services/svc?tenant={tenant}", {"description": "d", "team": team}),
        (f"/admin/v1/mcp/servers/mcp?tenant={tenant}", {"description": "d", "url": "https://mcp.example/mcp"}),
        (f"/admin/v1/apis/api?tenant={tenant}", {"description": "d", "version": 1}),
    ]
    for path, body in same:
        stored = admin.ok("GET", path)
        entries = _audit_count(admin, tenant)
        answer = admin.ok("PATCH", path, body)
        assert answer == stored, path  # the record as it is (updated_at not moved)
        assert admin.ok("GET", path) == stored, path
        assert _audit_count(admin, tenant) == entries, path  # no audit entry
    # A change of one field among unchanged ones is still written and audited once.
    for path, body in same[:2]:
        entries = _audit_count(admin, tenant)
        assert admin.ok("PATCH", path, {**body, "name": "Other"})["name"] == "Other"
        assert _audit_count(admin, tenant) == entries + 1, path


def test_a_model_moved_to_a_provider_being_deleted_keeps_it_or_is_refused(gateway: Gateway,
                                                                        mock_upstream: Mock) -> None:
    """The move writes the model, then reads the provider under a shared lock (as a new model
    does): the delete either waits and finds the model (409 provider_in_use) or went first and
    the move finds no provider (400 provider_not_found)."""
    admin = Admin(gateway.url)
    home, model = f"home-{uuid.uuid4().hex[:8]}", f"moved-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/providers", {"name": home, "type": "openai",
                                             "api_base": mock_upstream.url + "/v1"}, status=201)
    admin.ok("POST", "/admin/v1/models", {"name": model, "provider": home, "model": "gpt-4o-mini"},
             status=201)
    for _ in range(MOVES):
        doomed = f"doomed-{uuid.uuid4().hex[:8]}"
        admin.ok("POST", "/admin/v1/providers", {"name": doomed, "type": "openai",
                                                 "api_base": mock_upstream.url + "/v1"}, status=201)
        deleted, moved = together([
            lambda doomed=doomed: admin.call("DELETE", f"/admin/v1/providers/{doomed}"),
            lambda doomed=doomed: admin.call("PATCH", f"/admin/v1/models/{model}", {"provider": doomed})])
        outcome = (deleted.status_code, moved.status_code)
        assert outcome in ((200, 400), (409, 200)), (deleted.text, moved.text)
        now = admin.ok("GET", f"/admin/v1/models/{model}")["provider"]
        if deleted.status_code == 200:
            assert moved.json()["error"]["code"] == "provider_not_found", moved.text
            assert now == home
        else:
            assert deleted.json()["error"]["code"] == "provider_in_use", deleted.text
            assert now == doomed
            admin.ok("PATCH", f"/admin/v1/models/{model}", {"provider": home})
            admin.ok("DELETE", f"/admin/v1/providers/{doomed}")


def test_a_user_moved_into_a_team_being_deleted_keeps_it_or_is_refused(gateway: Gateway) -> None:
    """As a key issued to a team: the move writes the user, then reads the team under a shared
    lock; the delete locks the team first, so one of them sees the other."""
    admin = Admin(gateway.url)
    tenant = _tenant(admin)
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "mover"}, status=201)["id"]
    for _ in range(MOVES):
        team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "doomed"}, status=201)["id"]
        deleted, moved = together([lambda team=team: admin.call("DELETE", f"/admin/v1/teams/{team}"),
                                   lambda team=team: admin.call("PATCH", f"/admin/v1/users/{user}",
                                                                {"team": team})])
        outcome = (deleted.status_code, moved.status_code)
        assert outcome in ((200, 404), (409, 200)), (deleted.text, moved.text)
        now: Any = admin.ok("GET", f"/admin/v1/users/{user}")["team"]
        if deleted.status_code == 200:
            assert moved.json()["error"]["code"] == "team_not_found", moved.text
            assert now is None
        else:
            assert now == team
            admin.ok("PATCH", f"/admin/v1/users/{user}", {"team": None})
            admin.ok("DELETE", f"/admin/v1/teams/{team}")


def test_a_user_created_into_a_team_being_deleted_keeps_it_or_is_refused(gateway: Gateway) -> None:
    """As a move: the insert reads the team under a shared lock after writing the user, so a
    team delete and a user created into it never both succeed (no member of a team that is gone)."""
    admin = Admin(gateway.url)
    tenant = _tenant(admin)
    for _ in range(MOVES):
        team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "doomed"}, status=201)["id"]
        body = {"tenant": tenant, "name": "new", "team": team}
        deleted, created = together([lambda team=team: admin.call("DELETE", f"/admin/v1/teams/{team}"),
                                     lambda body=body: admin.call("POST", "/admin/v1/users", body)])
        outcome = (deleted.status_code, created.status_code)
        assert outcome in ((200, 404), (409, 201)), (deleted.text, created.text)
        members = admin.ok("GET", "/admin/v1/users", params={"tenant": tenant, "team": team})["data"]
        if deleted.status_code == 200:
            assert created.json()["error"]["code"] == "team_not_found", created.text
            assert members == []
        else:
            assert [m["id"] for m in members] == [created.json()["id"]]
            admin.ok("DELETE", f"/admin/v1/users/{created.json()['id']}")
            admin.ok("DELETE", f"/admin/v1/teams/{team}")
