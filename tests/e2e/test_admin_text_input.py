"""Text no database can hold, refused by every admin route with a 400 naming the parameter: a
NUL character (U+0000) in a query parameter of any list or search (logs, usage, analytics,
audit, keys, alerts, tenancy...), in a cursor, in a path segment or in a string of a JSON body,
and an unpaired surrogate in a body. PostgreSQL cannot store or compare either (it answered
500); SQLite's LIKE stopped at the NUL, so ``q=%00word`` matched every record. The gateway
keeps serving, and nothing is written. Likewise a number no store can write back: NaN,
Infinity or 1e309 (which Python's JSON parser reads), or an integer past 64 bits, nested in a
free-form field (a key's metadata, a prompt's schemas or parameters, a provider's options) was
a 500; it is a 400 naming the field. On the embedded default (SQLite) and a cluster
(PostgreSQL + Redis)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.test_usage import Deployment, deployment  # noqa: F401 - the module's gateways
from tests.servers import MASTER_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
NUL = "\x00"

# (path, parameter): every text filter and cursor of the admin lists and searches.
QUERY_CASES = [
    *(("/admin/v1/logs", p) for p in ("q", "request_id", "tenant", "team", "key", "user", "model",
                                      "deployment", "provider", "error_code")),
    *(("/admin/v1/usage", p) for p in ("model", "tenant", "key", "team", "user", "api")),
    *(("/admin/v1/analytics", p) for p in ("model", "tenant", "tag", "key")),
    *(("/admin/v1/audit", p) for p in ("action", "actor", "resource_id", "tenant")),
    *(("/admin/v1/keys", p) for p in ("team", "user", "service_account", "tag", "after")),
    *(("/admin/v1/alerts", p) for p in ("rule", "before", "tenant")),
    ("/admin/v1/users", "team"), ("/admin/v1/users", "after"), ("/admin/v1/teams", "after"),
    ("/admin/v1/tenants", "after"), ("/admin/v1/subscriptions", "model"), ("/admin/v1/prompts", "after"),
    ("/admin/v1/catalog", "q"),
]


def get(d: Deployment, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(d.gateway.url + path, params=params, headers=ADMIN, timeout=30)


def refused(resp: httpx.Response, param: str, code: str = "invalid_value") -> str:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param), error
    return str(error["message"])


@pytest.mark.parametrize(("path", "param"), QUERY_CASES, ids=[f"{p}?{q}" for p, q in QUERY_CASES])
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(deployment: Deployment, path: str,  # noqa: F811
                                                       param: str) -> None:
    for value in (NUL, f"{NUL}word", f"a{NUL}"):
        message = refused(get(deployment, path, {param: value}), param)
        assert "NUL" in message
    assert get(deployment, path).status_code == 200  # still serving


def test_a_nul_in_a_parameter_name_or_a_cursor_is_a_400(deployment: Deployment) -> None:  # noqa: F811
    refused(get(deployment, "/admin/v1/logs", {f"q{NUL}": "x"}), "q?")
    # A cursor is opaque, but a caller can make one: base64 of [time, request id "\u0000"].
    forged = base64.urlsafe_b64encode(json.dumps(["2026-12-04T12:29:35+00:00", NUL]).encode()).decode()
    refused(get(deployment, "/admin/v1/logs", {"cursor": forged.rstrip("=")}), "cursor", "invalid_cursor")
    assert get(deployment, "/admin/v1/logs").status_code == 200


@pytest.mark.parametrize(("path", "param"), [
    ("/admin/v1/keys/key_%00", "key_id"),
    ("/admin/v1/tenants/acme%00", "tenant_id"),
    ("/admin/v1/teams/%00", "team_id"),
    ("/admin/v1/models/gpt%00", "name"),
    ("/admin/v1/prompts/p%00", "name"),
])
def test_a_nul_in_a_path_segment_is_a_400_naming_it(deployment: Deployment, path: str,  # noqa: F811
                                                    param: str) -> None:
    refused(get(deployment, path), param)


def _post(d: Deployment, path: str, raw: str) -> httpx.Response:
    """A JSON body as written: ``\\u0000`` and lone surrogates are JSON escapes in it."""
    return httpx.post(d.gateway.url + path, content=raw.encode(), timeout=30,
                      headers={**ADMIN, "content-type": "application/json"})


def test_bad_text_in_a_json_body_is_a_400_naming_the_field(deployment: Deployment) -> None:  # noqa: F811
    tenant = f"nul-{uuid.uuid4().hex[:8]}"
    cases: list[tuple[str, str, str]] = [
        ("/admin/v1/tenants", f'{{"id": "{tenant}", "name": "acme\\u0000"}}', "name"),
        ("/admin/v1/teams", '{"name": "a\\u0000b"}', "name"),
        ("/admin/v1/users", '{"email": "a\\u0000@example.com", "name": "x"}', "email"),
        ("/admin/v1/keys", '{"models": ["*"], "name": "k\\u0000"}', "name"),
        ("/admin/v1/keys", '{"models": ["*"], "metadata": {"team": "x\\u0000"}}', "metadata.team"),
        ("/admin/v1/keys", '{"models": ["*"], "metadata": {"a\\u0000": "x"}}', "metadata.a?"),
        ("/admin/v1/prompts", '{"name": "p", "model": "gpt-4o-mini", "messages": [{"role": "user", '
                              '"content": "hi \\u0000"}]}', "messages[0].content"),
        # An unpaired surrogate, where the field takes any JSON (pydantic does not look inside).
        ("/admin/v1/prompts", '{"name": "p", "model": "gpt-4o-mini", "messages": [{"role": "user", '
                              '"content": "hi"}], "variables": {"type": "object", "properties": '
                              '{"a": {"description": "\\ud800"}}}}', "variables.properties.a.description"),
    ]
    for path, raw, param in cases:
        refused(_post(deployment, path, raw), param)
    # Nothing was written, and the same writes without the bad character succeed.
    assert get(deployment, f"/admin/v1/tenants/{tenant}").status_code == 404
    created = _post(deployment, "/admin/v1/tenants", json.dumps({"id": tenant, "name": "acme"}))
    assert created.status_code == 201, created.text
    meta = _post(deployment, "/admin/v1/keys", '{"models": ["*"], "metadata": {"team": "x"}}')
    assert meta.status_code == 201, meta.text


def test_the_refusal_names_no_more_than_the_parameter(deployment: Deployment) -> None:  # noqa: F811
    params: dict[str, Any] = {"model": "gpt-4o-mini", "q": f"x{NUL}"}
    message = refused(get(deployment, "/admin/v1/logs", params), "q")
    assert message == "q: must not contain a NUL character (U+0000)"


# (path, body with NUM where the number goes, param): free-form fields, where only the walk
# over the whole body sees the number, and typed ones.
PROMPT = '{"name": "NAME", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
NUMBER_CASES = [
    ("/admin/v1/keys", '{"models": ["*"], "metadata": {"a": NUM}}', "metadata.a"),
    ("/admin/v1/prompts", PROMPT + '"variables": {"type": "object", "properties": {"a": {"maximum": NUM}}}}',
     "variables.properties.a.maximum"),
    ("/admin/v1/prompts", PROMPT + '"output_schema": {"type": "object", "maxProperties": NUM}}',
     "output_schema.maxProperties"),
    ("/admin/v1/prompts", PROMPT + '"tools": [{"type": "function", "function": {"name": "f", '
                                   '"parameters": {"maximum": NUM}}}]}',
     "tools[0].function.parameters.maximum"),
    ("/admin/v1/prompts", PROMPT + '"seed": NUM}', "seed"),
    ("/admin/v1/providers", '{"name": "NAME", "type": "openai", "options": {"o": NUM}}', "options.o"),
    ("/admin/v1/tenants", '{"id": "NAME", "name": "n", "allowed_regions": [NUM]}', "allowed_regions[0]"),
]
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400", str(2**63), str(-(2**63) - 1), str(10**20)]


@pytest.mark.parametrize(("path", "template", "param"), NUMBER_CASES,
                         ids=[f"{p}:{param}" for p, _, param in NUMBER_CASES])
def test_a_number_no_store_can_hold_is_a_400_naming_the_field(deployment: Deployment, path: str,  # noqa: F811
                                                              template: str, param: str) -> None:
    def body(number: str) -> str:
        return template.replace("NAME", f"num-{uuid.uuid4().hex[:8]}").replace("NUM", number)

    for number in NUMBERS:
        message = refused(_post(deployment, path, body(number)), param)
        assert message.startswith(f"{param}: must be "), message
    # The edges of the range are numbers like any other: the route takes or refuses them itself.
    for number in (str(2**63 - 1), str(-(2**63)), "1.7976931348623157e308"):
        resp = _post(deployment, path, body(number))
        assert resp.status_code in (201, 400), resp.text
        if resp.status_code == 400:
            assert "must be an integer from" not in resp.text and "finite" not in resp.text
    assert get(deployment, "/admin/v1/keys").status_code == 200  # still serving


def test_what_only_looks_suspect_is_stored_as_sent(deployment: Deployment) -> None:  # noqa: F811
    """Bodies are walked only when their bytes may hold something refused (an escape, a long
    number, NaN...): those that merely look so are stored as sent."""
    meta = {"accent": "\u00e9t\u00e9", "emoji": "\U0001F600", "long": "12345678901234567890", "word": "NaN",
            "exp": "1e309", "big": 2**63 - 1}
    # json.dumps writes the accent and the emoji as \u escapes.
    created = _post(deployment, "/admin/v1/keys", json.dumps({"models": ["*"], "metadata": meta}))
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == meta
