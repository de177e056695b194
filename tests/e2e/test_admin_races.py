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
from tests.servers import Gateway

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


def patches(admin: Admin, path: str, *bodies: dict[str, Any]) -> list[httpx.Response]:
    calls = [lambda body=body: admin.call("PATCH", path, body) for body in bodies for _ in range(ROUNDS)]
    answers = together(calls)
    refused = [r.text for r in answers if r.status_code != 200]
    assert not refused, refused
    return answers


def audited(admin: Admin, tenant: str, action: str) -> int:
    entries = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "limit": 1000})["data"]
    return Counter(e["action"] for e in entries)[action]


def test_patches_of_different_fields_at_once_all_stick(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant = f"race-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant}, status=201)
    team = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "before"}, status=201)["id"]
    user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "before"}, status=201)["id"]

    patches(admin, f"/admin/v1/tenants/{tenant}", {"name": "Renamed"}, {"allowed_regions": ["eu"]})
    got = admin.ok("GET", f"/admin/v1/tenants/{tenant}")
    assert (got["name"], got["allowed_regions"]) == ("Renamed", ["eu"])

    patches(admin, f"/admin/v1/teams/{team}", {"name": "Renamed"}, {"allowed_regions": ["us"]})
    got = admin.ok("GET", f"/admin/v1/teams/{team}")
    assert (got["name"], got["allowed_regions"]) == ("Renamed", ["us"])

    patches(admin, f"/admin/v1/users/{user}", {"name": "Renamed"}, {"email": "new@example.com"},
            {"team": team})
    got = admin.ok("GET", f"/admin/v1/users/{user}")
    assert (got["name"], got["email"], got["team"]) == ("Renamed", "new@example.com", team)

    # Each answer showed the row as stored, and each change has its one audit entry.
    for action, count in (("tenant.update", 2), ("team.update", 2), ("user.update", 3)):
        assert audited(admin, tenant, action) == count * ROUNDS, action


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
        # One delete removes it; the others, and every PATCH that came after it, are 404s
        # (a second team delete is a 409: it cannot tell a gone team from one that gained a member).
        assert sorted(r.status_code for r in deletes)[0] == 200
        assert Counter(r.status_code for r in deletes)[200] == 1, [r.text for r in deletes]
        assert {r.status_code for r in deletes} <= {200, 404, 409}
        assert {r.status_code for r in updates} <= {200, 404}, [r.text for r in updates]
        assert admin.call("GET", url).status_code == 404
        kind = path[:-1]
        assert audited(admin, tenant, f"{kind}.delete") == 1
        assert audited(admin, tenant, f"{kind}.update") == Counter(r.status_code for r in updates)[200]
