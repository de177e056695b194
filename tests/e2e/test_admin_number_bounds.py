"""Counts are integers, and a number too large is refused in its field's own words.

A provider's ``max_connections`` took ``1e3`` and ``5.0`` (pydantic's lax int) where ``rpm`` and
``tpm`` refuse them, and ``1e308`` answered "exceeded maximum size"; the configuration file took
``max_connections: 10**29``. An integer past 64 bits in a decimal field (``max_budget_usd``)
answered "must be an integer from -2^63 to 2^63-1", which it never was: it now gets the field's
own message, the one the same number written ``1e20`` gets. Validation is the admin app's (and
the configuration's), whatever the backend: the embedded default suffices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Process, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HUGE = 10**20  # past 64 bits, written as an integer
INT = "Input should be a valid integer"


def _error(resp: httpx.Response, param: str, message: str) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {"message": f"{param}: {message}", "type": "invalid_request_error",
                                    "param": param, "code": "invalid_value"}, resp.text


def _raw(gateway: Gateway, method: str, path: str, body: str) -> httpx.Response:
    """A body sent as written: ``1e3`` and ``5.0`` stay what JSON says they are."""
    return httpx.request(method, gateway.url + path, content=body, timeout=10,
                         headers={**ADMIN, "content-type": "application/json"})


@pytest.mark.parametrize("value", ["1e3", "5.0", "1e308", "1.5", "-1e308"])
def test_max_connections_is_an_integer_like_rpm(gateway: Gateway, value: str) -> None:
    _error(_raw(gateway, "POST", "/admin/v1/providers",
                f'{{"name": "p", "type": "openai", "max_connections": {value}}}'), "max_connections", INT)
    _error(_raw(gateway, "PATCH", "/admin/v1/providers/none", f'{{"max_connections": {value}}}'),
           "max_connections", INT)
    _error(_raw(gateway, "POST", "/admin/v1/providers", f'{{"name": "p", "type": "openai", "rpm": {value}}}'),
           "rpm", INT)


def test_max_connections_is_bounded_and_taken_as_an_integer(gateway: Gateway) -> None:
    body = '{"name": "%s", "type": "openai", "max_connections": %d}'
    _error(_raw(gateway, "POST", "/admin/v1/providers", body % ("p", 100001)),
           "max_connections", "Input should be less than or equal to 100000")
    made = _raw(gateway, "POST", "/admin/v1/providers", body % ("bounded", 100000))
    assert made.status_code == 201 and made.json()["max_connections"] == 100000, made.text


DECIMAL_FIELDS: list[tuple[str, dict[str, Any], str, str]] = [
    ("/admin/v1/keys", {"models": ["*"]}, "max_budget_usd",
     "Input should be less than or equal to 1000000000"),
    ("/admin/v1/providers", {"name": "p", "type": "openai"}, "timeouts.total",
     "Input should be less than or equal to 86400"),
    ("/admin/v1/mcp/servers", {"name": "s", "url": "https://mcp.example.com/mcp"}, "price_per_call",
     "Input should be less than or equal to 1000000"),
    ("/admin/v1/budgets", {"scope": "tenant"}, "max_amount", "a USD budget is at most 1000000000"),
]


def _at(body: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    outer, _, inner = field.partition(".")
    return {**body, outer: {inner: value} if inner else value}


@pytest.mark.parametrize(("path", "body", "field", "message"), DECIMAL_FIELDS,
                         ids=[field for _, _, field, _ in DECIMAL_FIELDS])
def test_a_huge_integer_in_a_decimal_field_gets_the_fields_own_message(
        gateway: Gateway, path: str, body: dict[str, Any], field: str, message: str) -> None:
    method = "PUT" if path == "/admin/v1/budgets" else "POST"
    for huge in (HUGE, float(HUGE)):  # the second one written 1e+20: the same answer
        resp = httpx.request(method, gateway.url + path, json=_at(body, field, huge), headers=ADMIN,
                             timeout=10)
        _error(resp, field, message)


def test_an_integer_no_double_holds_in_a_float_field_is_no_number(gateway: Gateway) -> None:
    resp = httpx.post(gateway.url + "/admin/v1/providers", headers=ADMIN, timeout=10,
                      json={"name": "p", "type": "openai", "timeouts": {"total": 10**400}})
    _error(resp, "timeouts.total", "Input should be a valid number")


def test_a_huge_integer_where_an_integer_or_anything_goes_is_still_refused(gateway: Gateway) -> None:
    """An integer field, and a free-form one (written back as JSON), keep the 64-bit message."""
    for body, param in (({"models": ["*"], "rpm_limit": HUGE}, "rpm_limit"),
                        ({"models": ["*"], "metadata": {"n": HUGE}}, "metadata.n")):
        _error(httpx.post(gateway.url + "/admin/v1/keys", json=body, headers=ADMIN, timeout=10), param,
               "must be an integer from -2^63 to 2^63-1")


CONFIG = """
providers:
  - name: p
    type: openai
    api_key: sk-upstream
{provider}
models:
  - name: m
    provider: p
    model: m
auth:
  master_key: sk-test-master-key-123
{server}
"""


@pytest.mark.parametrize(("provider", "server", "where"), [
    ("    max_connections: 100000000000000000000000000000", "", "providers[0].max_connections"),
    ("    max_connections: 100001", "", "providers[0].max_connections"),
    ("", "server:\n  max_connections: 100000000000000000000000000000", "server.max_connections"),
])
def test_the_configuration_bounds_max_connections_like_the_admin_api(
        tmp_path: Path, provider: str, server: str, where: str) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG.format(provider=provider, server=server))
    proc: Process = spawn(["config", "check", str(path)])
    proc.wait_exit(60)
    assert proc.proc.returncode == 2, proc.output
    assert f"{where}: Input should be less than or equal to 100000" in proc.output
    path.write_text(CONFIG.format(provider=provider.replace("100000000000000000000000000000", "100000")
                                  .replace("100001", "100000"),
                                  server=server.replace("100000000000000000000000000000", "100000")))
    proc = spawn(["config", "check", str(path)])
    proc.wait_exit(60)
    assert proc.proc.returncode == 0, proc.output
