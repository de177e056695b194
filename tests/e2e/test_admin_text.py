"""Names, display names, descriptions and reasons given on the admin API refuse control
characters (C0, DEL, C1) and bidirectional overrides and isolates (U+202A-U+202E,
U+2066-U+2069) with a 400 ``invalid_value`` naming the field: they would hide or reorder what a
console, a log or the portal shows. A description or a reason keeps line breaks and tabs. One
table over the admin routes' free-text fields. Validation is the admin app's, whatever the
backend: the embedded default suffices."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from switchboard.stores import Team
from switchboard.stores.factory import open_at
from tests import ledger
from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
LINE, PROSE = "line", "prose"
KEY = "key_0123456789abcdef"
SUB = "sub_0123456789abcdef"

# (method, path, a body valid but for the field, the field, which kind of text it is).
# PATCH and sub-resource routes name a resource that does not exist: the body is refused first.
PROMPT = {"name": "p", "model": "m", "messages": [{"role": "user", "content": "hi"}]}
MCP = {"name": "s", "url": "https://mcp.example.com/mcp"}
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("POST", "/admin/v1/tenants", {"id": "t-text"}, "name", LINE),
    ("PATCH", "/admin/v1/tenants/none", {}, "name", LINE),
    ("POST", "/admin/v1/teams", {}, "name", LINE),
    ("PATCH", "/admin/v1/teams/none", {}, "name", LINE),
    ("POST", "/admin/v1/users", {}, "name", LINE),
    ("PATCH", "/admin/v1/users/none", {}, "name", LINE),
    ("POST", "/admin/v1/service-accounts", {}, "name", LINE),
    ("POST", "/admin/v1/users", {"name": "n"}, "email", LINE),
    ("POST", "/admin/v1/keys", {"models": ["*"]}, "name", LINE),
    ("PATCH", f"/admin/v1/keys/{KEY}", {}, "name", LINE),
    ("POST", "/admin/v1/providers/none/credentials", {"api_key": "sk-test"}, "label", LINE),
    ("POST", "/admin/v1/apis", {"name": "a"}, "prompt", LINE),
    ("POST", "/admin/v1/apis", {"name": "a", "prompt": "p"}, "description", PROSE),
    ("POST", "/admin/v1/prompts", PROMPT, "description", PROSE),
    ("POST", "/admin/v1/mcp/servers", MCP, "description", PROSE),
    ("PATCH", "/admin/v1/mcp/servers/none", {}, "description", PROSE),
    ("POST", "/admin/v1/services", {"name": "s", "url": "https://svc.example.com"}, "description", PROSE),
    ("PATCH", "/admin/v1/services/none", {}, "description", PROSE),
    ("POST", "/admin/v1/subscriptions", {"model": "m"}, "reason", PROSE),
    ("POST", f"/admin/v1/subscriptions/{SUB}/reject", {}, "reason", PROSE),
    ("POST", f"/admin/v1/subscriptions/{SUB}/withdraw", {}, "reason", PROSE),
    ("POST", "/admin/v1/token-revocations", {"user": "u"}, "reason", PROSE),
]

# Refused in every kind of text: an escape sequence, NUL, DEL, a C1 control (NEL), a carriage
# return, each bidirectional override and isolate.
REFUSED = ["\x1b[2J", "a\x00b", "a\x7fb", "a\x85b", "a\rb", "\u202aa", "abc\u202e", "\u2066x", "x\u2069"]
# Refused in a one-line text only.
LINE_BREAKS = ["a\nb", "a\tb"]


@pytest.mark.parametrize(("method", "path", "body", "field", "kind"), CASES,
                         ids=[f"{m} {p} {f}" for m, p, _, f, _ in CASES])
def test_control_and_bidi_characters_are_refused(gateway: Gateway, method: str, path: str,
                                                 body: dict[str, Any], field: str, kind: str) -> None:
    for value in [*REFUSED, *(LINE_BREAKS if kind == LINE else [])]:
        sent = f"{value}@example.com" if field == "email" else value
        resp = httpx.request(method, gateway.url + path, json={**body, field: sent}, headers=ADMIN,
                             timeout=10)
        assert resp.status_code == 400, (value, resp.text)
        error = resp.json()["error"]
        assert (error["param"], error["code"]) == (field, "invalid_value"), error
        # NUL has its own words, as in every text the admin API takes; an email's pattern
        # refuses white space (\r, \n, \t, NEL) first.
        white = field == "email" and any(c in value for c in "\r\n\t\x85")
        words = ("must not contain a NUL" if "\x00" in value
                 else "String should match pattern" if white else "control and bidirectional override")
        assert error["message"].startswith(f"{field}: {words}"), error


def test_readable_text_is_kept(gateway: Gateway) -> None:
    """Letters of any script, marks such as U+200F (right-to-left mark, no override) and, in a
    description, line breaks and tabs are stored as given."""
    name = "Zoë \u05e9\u05dc\u05d5\u05dd\u200f 東京"
    team = httpx.post(gateway.url + "/admin/v1/teams", headers=ADMIN, timeout=10, json={"name": name})
    assert team.status_code == 201, team.text
    assert team.json()["name"] == name
    description = "First line.\n\tIndented second line."
    service = httpx.post(gateway.url + "/admin/v1/services", headers=ADMIN, timeout=10,
                         json={"name": f"s{uuid.uuid4().hex[:8]}", "url": "https://svc.example.com",
                               "description": description})
    assert service.status_code == 201, service.text
    assert service.json()["description"] == description


async def _stored_team(database: str, team: Team) -> None:
    stores = await open_at(database, None)
    try:
        await stores.tenancy.create_team(team)
    finally:
        await stores.close()


def test_text_stored_before_is_read_and_kept(gateway: Gateway) -> None:
    """Only what comes in is checked: a team whose name was stored with such characters (before
    the check) is read and listed, and a change of its other fields keeps the name."""
    team = Team(id=f"team-{uuid.uuid4().hex[:8]}", tenant_id="default", name="old \x1b[1mname\u202e")
    asyncio.run(_stored_team(ledger.database_of({}, gateway.config_path.parent), team))
    got = httpx.get(f"{gateway.url}/admin/v1/teams/{team.id}", headers=ADMIN, timeout=10)
    assert got.status_code == 200 and got.json()["name"] == team.name, got.text
    listed = httpx.get(f"{gateway.url}/admin/v1/teams", headers=ADMIN, timeout=10, params={"limit": 1000})
    assert listed.status_code == 200 and team.name in [t["name"] for t in listed.json()["data"]], listed.text
    changed = httpx.patch(f"{gateway.url}/admin/v1/teams/{team.id}", headers=ADMIN, timeout=10,
                          json={"allowed_regions": None})
    assert changed.status_code == 200 and changed.json()["name"] == team.name, changed.text
