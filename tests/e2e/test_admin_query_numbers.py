"""A number in an admin query string is written in ASCII decimal digits, on every route alike.

The list routes' ``limit`` (and the other integer parameters: a prompt's ``version``, a diff's
``from``/``to``, the audit log's ``before``) took what ``int()`` reads, " 5", "+5", "5.0" and
"1_0", where ``/admin/v1/logs`` and the usage report refuse them; the log search's
``min_cost_usd`` read U+0665 (an Arabic-Indic 5) as 5. Each is now a 400 ``invalid_value`` naming
the parameter, in the words the log search always used. Validation is the admin app's, whatever
the backend: the embedded default suffices."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
LISTS = ("/admin/v1/keys", "/admin/v1/audit", "/admin/v1/models", "/admin/v1/providers", "/admin/v1/users",
         "/admin/v1/service-accounts", "/admin/v1/teams", "/admin/v1/tenants", "/admin/v1/prompts",
         "/admin/v1/mcp/servers", "/admin/v1/subscriptions", "/admin/v1/catalog",
         "/admin/v1/token-revocations", "/admin/v1/alerts", "/admin/v1/logs")
# What int() or pydantic's lax mode read as a number, and what no reading makes one.
NOT_DIGITS = (" 5", "5 ", "+5", "5.0", "1_0", "\u0665", "\u00b2", "-1", "1e1", "")
OUT_OF_RANGE = ("0", "1001", "9" * 4400)  # the last past int()'s 4,300 digits


def _refused(resp: httpx.Response, param: str, low: int, high: int) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {"message": f"{param}: expected a whole number from {low} to {high}",
                                    "type": "invalid_request_error", "param": param,
                                    "code": "invalid_value"}, resp.text


@pytest.mark.parametrize("path", LISTS)
def test_a_list_limit_is_ascii_digits_only(gateway: Gateway, path: str) -> None:
    for value in (*NOT_DIGITS, *OUT_OF_RANGE):
        resp = httpx.get(gateway.url + path, params={"limit": value}, headers=ADMIN, timeout=10)
        if (value == "" or len(value) > 256) and path == "/admin/v1/logs":
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "limit", resp.text
            continue  # the log search refuses any blank or overlong parameter in its own words
        _refused(resp, "limit", 1, 1000)
    resp = httpx.get(gateway.url + path, params={"limit": "05"}, headers=ADMIN, timeout=10)
    assert resp.status_code in (200, 503), resp.text  # alerts: 503 with alerting off
    if resp.status_code == 200:
        assert resp.json()["object"] == "list"


def test_other_integer_parameters_are_ascii_digits_only(gateway: Gateway) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"
    created = httpx.post(gateway.url + "/admin/v1/prompts", headers=ADMIN, timeout=10, json={
        "name": name, "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert created.status_code == 201, created.text
    high = 2**31 - 1
    for value in NOT_DIGITS:
        _refused(httpx.get(f"{gateway.url}/admin/v1/prompts/{name}", params={"version": value},
                           headers=ADMIN, timeout=10), "version", 1, high)
        _refused(httpx.get(f"{gateway.url}/admin/v1/prompts/{name}/diff", params={"from": value, "to": "1"},
                           headers=ADMIN, timeout=10), "from", 1, high)
        _refused(httpx.get(f"{gateway.url}/admin/v1/prompts/{name}/diff", params={"to": value},
                           headers=ADMIN, timeout=10), "to", 1, high)
        _refused(httpx.get(gateway.url + "/admin/v1/audit", params={"before": value}, headers=ADMIN,
                           timeout=10), "before", 1, 2**63 - 1)
    shown = httpx.get(f"{gateway.url}/admin/v1/prompts/{name}", params={"version": "1"}, headers=ADMIN,
                      timeout=10)
    assert shown.status_code == 200 and shown.json()["version"] == 1, shown.text
    assert httpx.get(gateway.url + "/admin/v1/audit", params={"before": "9223372036854775807"}, headers=ADMIN,
                     timeout=10).status_code == 200


@pytest.mark.parametrize("param", ["min_cost_usd", "max_cost_usd"])
def test_a_cost_filter_is_a_plain_ascii_decimal(gateway: Gateway, param: str) -> None:
    message = f"{param}: expected a decimal number of US dollars from 0 to 1000000000"
    for value in ("\u0665", "\u0665.5", "1\u0665", " 5", "5 ", "+5", "1_0", "1e3", "-1", "NaN", "Infinity",
                  ".", "1.2.3", "1000000000.01"):
        resp = httpx.get(gateway.url + "/admin/v1/logs", params={param: value}, headers=ADMIN, timeout=10)
        assert resp.status_code == 400, (value, resp.text)
        assert resp.json()["error"] == {"message": message, "type": "invalid_request_error", "param": param,
                                        "code": "invalid_value"}, (value, resp.text)
    for value in ("5", "0.25", ".5", "5.", "1000000000"):
        resp = httpx.get(gateway.url + "/admin/v1/logs", params={param: value}, headers=ADMIN, timeout=10)
        assert resp.status_code == 200 and resp.json()["object"] == "list", (value, resp.text)
