"""More admins at the same moment, on both deployments (calls released together by a barrier, as
in test_admin_races.py): a delete that lost to another delete of the same record is that
record's 404, not a 409 for a member it never gained; and a model or user moved under a
provider or team being deleted at that moment either keeps it or is refused, never left
pointing at one that is gone."""

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
