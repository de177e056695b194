"""Every admin GET, and every change, refuses a query parameter it does not take, and one given
twice.

The lists always did (``query_params``), but the unpriced-models report, the routing groups and
splits, and the GETs of one record (``/admin/v1/keys/{id}``, a prompt's ``/versions`` ...) read
the query string through FastAPI alone, which drops an unknown parameter and keeps the last of a
repeated one: ``/admin/v1/prompts/p?version=1&version=2`` answered version 2, a misspelt
``?tennant=`` the caller's own tenant. Each is now ``400 unknown_parameter`` or ``400
duplicate_parameter`` naming it, checked before the record is looked up. Validation is the admin
app's, whatever the backend: the embedded default suffices."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# Each GET and a parameter it takes (None: it takes none).
GETS = (
    ("/admin/v1/usage/unpriced", None),
    ("/admin/v1/routing/groups", None),
    ("/admin/v1/routing/groups/gpt-4o-mini", None),
    ("/admin/v1/routing/splits", None),
    ("/admin/v1/keys/key_x", None),
    ("/admin/v1/teams/team_x", None),
    ("/admin/v1/tenants/default", None),
    ("/admin/v1/users/usr_x", None),
    ("/admin/v1/service-accounts/usr_x", None),
    ("/admin/v1/budgets/bud_x", None),
    ("/admin/v1/limits/lim_x", None),
    ("/admin/v1/models/gpt-4o-mini", None),
    ("/admin/v1/providers/openai", None),
    ("/admin/v1/token-revocations/trv_x", None),
    ("/admin/v1/apis/weather", "tenant"),
    ("/admin/v1/mcp/servers/notes", "tenant"),
    ("/admin/v1/services/weather", "tenant"),
    ("/admin/v1/subscriptions/sub_x", "tenant"),
    ("/admin/v1/prompts/greeting", "version"),
    ("/admin/v1/prompts/greeting", "label"),
    ("/admin/v1/prompts/greeting/versions", "tenant"),
    ("/admin/v1/prompts/greeting/diff", "to"),
)


def _error(resp: httpx.Response, code: str, param: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param), resp.text


@pytest.mark.parametrize(("path", "param"), GETS)
def test_an_unknown_or_repeated_parameter_is_400(gateway: Gateway, path: str, param: str | None) -> None:
    resp = httpx.get(gateway.url + path, params={"tennant": "default"}, headers=ADMIN, timeout=10)
    _error(resp, "unknown_parameter", "tennant")
    if param is not None:
        value = {"version": "1", "label": "live", "tenant": "default", "to": "1"}[param]
        twice = [(param, value), (param, value)]
        resp = httpx.get(gateway.url + path, params=twice, headers=ADMIN, timeout=10)
        _error(resp, "duplicate_parameter", param)


def test_every_admin_get_in_the_api_description_refuses_an_unknown_parameter(gateway: Gateway) -> None:
    """Walks every GET the admin API describes (its OpenAPI document), so a route added later
    is held to the rule without being listed here. A path parameter is filled with a name no
    record has: the parameter is checked before the record is looked up."""
    doc = httpx.get(gateway.url + "/admin/v1/openapi.json", headers=ADMIN, timeout=10).json()
    paths = [path for path, item in doc["paths"].items() if "get" in item]
    assert "/admin/v1/usage/unpriced" in paths and "/admin/v1/catalog" in paths and len(paths) > 40
    for path in paths:
        url = gateway.url + re.sub(r"\{[^}]+\}", "zz-none", path)
        _error(httpx.get(url, params={"tennant": "default"}, headers=ADMIN, timeout=10),
               "unknown_parameter", "tennant")


def test_a_filter_is_as_long_as_the_value_it_finds(gateway: Gateway) -> None:
    """Query values are bounded at 256 characters, but a revocation takes a user claim of up to
    1,024: ``?user=`` of a longer claim was a 400, so its revocation could not be found by user.
    The catalog's ``?after=`` takes the id of its last entry, ``model:`` and a name of up to 256."""
    def get(path: str, params: dict[str, Any]) -> httpx.Response:
        return httpx.get(gateway.url + path, params=params, headers=ADMIN, timeout=10)

    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(gateway.url + path, json=body, headers=ADMIN, timeout=10)

    user = "u" * 1024
    made = post("/admin/v1/token-revocations", {"user": user})
    assert made.status_code == 201, made.text
    listed = get("/admin/v1/token-revocations", {"user": user})
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["data"]] == [made.json()["id"]]
    _error(get("/admin/v1/token-revocations", {"user": user + "u"}), "invalid_value", "user")
    name = "m" * 256
    made = post("/admin/v1/models", {"name": name, "provider": "local-openai", "model": "x"})
    assert made.status_code == 201, made.text
    try:
        ids = [e["id"] for e in get("/admin/v1/catalog", {"limit": 1000}).json()["data"]]
        at = ids.index(f"model:{name}")
        page = get("/admin/v1/catalog", {"after": ids[at], "limit": 1000})
        assert page.status_code == 200 and [e["id"] for e in page.json()["data"]] == ids[at + 1:], page.text
        _error(get("/admin/v1/catalog", {"after": "x" * 301}), "invalid_value", "after")
    finally:  # the gateway is shared: other tests list its models
        gone = httpx.delete(f"{gateway.url}/admin/v1/models/{name}", headers=ADMIN, timeout=10)
        assert gone.status_code == 200, gone.text


def test_a_prompt_version_given_twice_is_not_the_last_one(gateway: Gateway) -> None:
    for text in ("Hello", "Hi"):
        body = {"name": "twice", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        resp = httpx.post(gateway.url + "/admin/v1/prompts", json=body, headers=ADMIN, timeout=10)
        assert resp.status_code in (200, 201), resp.text
    path = gateway.url + "/admin/v1/prompts/twice"
    resp = httpx.get(path, params=[("version", "1"), ("version", "2")], headers=ADMIN, timeout=10)
    _error(resp, "duplicate_parameter", "version")
    resp = httpx.get(path, params={"version": "1"}, headers=ADMIN, timeout=10)
    assert resp.status_code == 200 and resp.json()["version"] == 1, resp.text


def test_a_change_refuses_a_parameter_its_route_does_not_take(gateway: Gateway) -> None:
    """POST, PUT, PATCH and DELETE ignored an unknown query parameter (a misspelt ``?tennant=``
    acted on the caller's own tenant) and kept the last of a repeated one: each is now a 400
    before anything is changed; a parameter the route takes still works."""
    url = gateway.url + "/admin/v1/prompts"
    body = {"name": "qs-change", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    resp = httpx.post(url, params={"tennant": "default"}, json=body, headers=ADMIN, timeout=10)
    _error(resp, "unknown_parameter", "tennant")
    assert httpx.get(f"{url}/qs-change", headers=ADMIN, timeout=10).status_code == 404  # not created
    assert httpx.post(url, json=body, headers=ADMIN, timeout=10).status_code == 201
    key = httpx.post(gateway.url + "/admin/v1/keys", json={"name": "qs", "models": ["gpt-4o-mini"]},
                     headers=ADMIN, timeout=10)
    assert key.status_code in (200, 201), key.text
    key_url = f"{gateway.url}/admin/v1/keys/{key.json()['id']}"
    resp = httpx.patch(key_url, params={"name": "x"}, json={"name": "renamed"}, headers=ADMIN, timeout=10)
    _error(resp, "unknown_parameter", "name")
    resp = httpx.delete(key_url, params={"force": "true"}, headers=ADMIN, timeout=10)
    _error(resp, "unknown_parameter", "force")
    kept = httpx.get(key_url, headers=ADMIN, timeout=10).json()
    assert kept["name"] == "qs" and kept.get("revoked_at") is None and kept.get("enabled", True), kept
    label = f"{url}/qs-change/labels/live"
    resp = httpx.put(label, params=[("tenant", "default"), ("tenant", "other")], json={"version": 1},
                     headers=ADMIN, timeout=10)
    _error(resp, "duplicate_parameter", "tenant")
    resp = httpx.put(label, params={"tenant": "default"}, json={"version": 1}, headers=ADMIN, timeout=10)
    assert resp.status_code == 200 and resp.json()["labels"] == {"live": 1}, resp.text
