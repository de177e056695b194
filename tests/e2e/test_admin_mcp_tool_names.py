"""A key's or a team's ``mcp_tools`` lists hold tool names (patterns), which are text.

The rule was read with the configuration file's leniency, which turns a number into text: a JSON
``{"allow": [1, 1.5]}`` was stored as ``["1", "1.5"]``. A number or a boolean in either list is
now a 400 ``invalid_value`` naming the element, as the other admin string lists (``models[0]``,
``tags[0]``) do, and nothing is written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
BAD = (({"allow": [1, 1.5]}, "mcp_tools.allow[0]"),
       ({"allow": ["notes__*", 2.5]}, "mcp_tools.allow[1]"),
       ({"deny": ["notes__x", 7]}, "mcp_tools.deny[1]"),
       ({"deny": [False]}, "mcp_tools.deny[0]"),
       # Nor is anything else that is not text: null, an object, a list.
       ({"allow": ["a__*", None]}, "mcp_tools.allow[1]"),
       ({"deny": [{"name": "a__x"}]}, "mcp_tools.deny[0]"),
       ({"allow": [["a__x"]]}, "mcp_tools.allow[0]"))


def _call(gateway: Gateway, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.request(method, gateway.url + path, json=body, headers=ADMIN, timeout=10)


def _refused(resp: httpx.Response, param: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_value", param)


@pytest.mark.parametrize(("rule", "param"), BAD)
def test_a_key_s_tool_names_are_text(gateway: Gateway, rule: dict[str, Any], param: str) -> None:
    _refused(_call(gateway, "POST", "/admin/v1/keys", {"models": ["*"], "mcp_tools": rule}), param)
    created = _call(gateway, "POST", "/admin/v1/keys", {"models": ["*"], "mcp_tools": {"allow": ["a__*"]}})
    assert created.status_code == 201, created.text
    path = f"/admin/v1/keys/{created.json()['id']}"
    _refused(_call(gateway, "PATCH", path, {"mcp_tools": rule}), param)
    shown = httpx.get(gateway.url + path, headers=ADMIN, timeout=10).json()
    assert shown["mcp_tools"] == {"allow": ["a__*"], "deny": []}


@pytest.mark.parametrize(("rule", "param"), BAD)
def test_a_team_s_tool_names_are_text(gateway: Gateway, rule: dict[str, Any], param: str) -> None:
    _refused(_call(gateway, "POST", "/admin/v1/teams", {"name": "tools", "mcp_tools": rule}), param)
    created = _call(gateway, "POST", "/admin/v1/teams", {"name": "tools", "mcp_tools": {"deny": ["b__*"]}})
    assert created.status_code == 201, created.text
    path = f"/admin/v1/teams/{created.json()['id']}"
    _refused(_call(gateway, "PATCH", path, {"mcp_tools": rule}), param)
    shown = httpx.get(gateway.url + path, headers=ADMIN, timeout=10).json()
    assert shown["mcp_tools"] == {"allow": None, "deny": ["b__*"]}
