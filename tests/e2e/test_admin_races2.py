"""More admins at the same moment, on both deployments (calls released together by a barrier, as
in test_admin_races.py): a delete that lost to another delete of the same record is that
record's 404, not a 409 for a member it never gained."""

from __future__ import annotations

import uuid
from collections import Counter

from tests.e2e.tenancy_world import Admin, deployment_fixture
from tests.e2e.test_admin_races import audited, together
from tests.servers import Gateway

gateway = deployment_fixture("gateway")

ROUNDS = 4  # records deleted at once, one after another


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
