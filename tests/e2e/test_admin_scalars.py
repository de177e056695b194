"""A boolean where an admin body wants a number, or a number where it wants a boolean, is a 400
``invalid_value`` naming the field, in the words a strict field (``rpm``) always gave: it was
taken as 1 (``max_tokens: true``) or as ``True``/``False`` (``drop_params: 1``) by pydantic's
lax mode. So is text in either (``"true"``, ``"5"``), which lax mode converted. One table over
the admin routes' int, float and bool fields, nested ones included.
Validation is the admin app's, whatever the backend: the embedded default suffices."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
INT, NUMBER = "Input should be a valid integer", "Input should be a valid number"
BOOL = "Input should be a valid boolean"
KEY = "key_0123456789abcdef"
PROVIDER = {"name": "p", "type": "openai"}
MODEL = {"name": "m", "provider": "local-openai", "model": "x"}
PROMPT = {"name": "p", "model": "m", "messages": [{"role": "user", "content": "hi"}]}
MCP = {"name": "s", "url": "https://mcp.example.com/mcp"}
SERVICE = {"name": "s", "url": "https://svc.example.com"}
# Fields that are a list or a mapping of numbers: an item of the wrong kind names the field.
CONTAINERS = ("thresholds", "tool_prices", "percents")
# Items of a strict type (StrictInt) refuse text themselves, naming the item: thresholds[0].
STRICT_ITEMS = ("thresholds",)

# (method, path, a body valid but for the field, the field's path in the body, what it wants).
# PATCH routes name a resource that does not exist: the body is refused before it is looked up.
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("POST", "/admin/v1/keys", {"models": ["*"]}, "rpm_limit", INT),
    ("POST", "/admin/v1/keys", {"models": ["*"]}, "tpm_limit", INT),
    ("PATCH", f"/admin/v1/keys/{KEY}", {}, "enabled", BOOL),
    ("POST", f"/admin/v1/keys/{KEY}/rotate", {}, "grace_seconds", INT),
    ("PUT", "/admin/v1/limits", {"scope": "tenant"}, "tpd", INT),
    ("PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 5}, "thresholds[0]", INT),
    ("PUT", "/admin/v1/budgets", {"scope": "tenant", "max_amount": 5, "downgrade": {"model": "m"}},
     "downgrade.at_percent", INT),
    ("POST", "/admin/v1/providers", PROVIDER, "max_connections", INT),
    ("POST", "/admin/v1/providers", PROVIDER, "tpm", INT),
    ("POST", "/admin/v1/providers", PROVIDER, "allow_caller_credentials", BOOL),
    ("POST", "/admin/v1/providers", PROVIDER, "timeouts.connect", NUMBER),
    ("PATCH", "/admin/v1/providers/none", {}, "max_connections", INT),
    ("POST", "/admin/v1/providers", {"name": "p", "type": "openai-compatible", "api_base": "http://127.0.0.1:9/v1"},
     "options.inline_images", BOOL),
    ("POST", "/admin/v1/models", MODEL, "drop_params", BOOL),
    ("POST", "/admin/v1/models", MODEL, "require_approval", BOOL),
    ("POST", "/admin/v1/models", MODEL, "timeouts.total", NUMBER),
    ("POST", "/admin/v1/models", MODEL, "info.context_window", INT),
    ("PATCH", "/admin/v1/models/none", {}, "drop_params", BOOL),
    ("POST", "/admin/v1/prompts", PROMPT, "max_tokens", INT),
    ("POST", "/admin/v1/prompts", PROMPT, "seed", INT),
    ("POST", "/admin/v1/prompts", PROMPT, "temperature", NUMBER),
    ("POST", "/admin/v1/prompts", PROMPT, "parallel_tool_calls", BOOL),
    ("PUT", "/admin/v1/prompts/none/labels/prod", {}, "version", INT),
    ("POST", "/admin/v1/prompts/none/render", {}, "version", INT),
    ("POST", "/admin/v1/apis", {"name": "a", "prompt": "p"}, "version", INT),
    ("POST", "/admin/v1/apis", {"name": "a", "prompt": "p"}, "require_approval", BOOL),
    ("POST", "/admin/v1/apis", {"name": "a", "prompt": "p"}, "sessions.max_turns", INT),
    ("POST", "/admin/v1/apis", {"name": "a", "prompt": "p", "split": [{"version": 1}, {"version": 2}]},
     "split[0].percent", INT),
    ("POST", "/admin/v1/mcp/servers", MCP, "max_concurrency", INT),
    ("POST", "/admin/v1/mcp/servers", MCP, "timeout_seconds", NUMBER),
    ("POST", "/admin/v1/mcp/servers", MCP, "price_per_call", NUMBER),
    ("POST", "/admin/v1/mcp/servers", MCP, "tool_prices.search", NUMBER),
    ("POST", "/admin/v1/mcp/servers", MCP, "global", BOOL),
    ("PATCH", "/admin/v1/mcp/servers/none", {}, "health_check_seconds", NUMBER),
    ("POST", "/admin/v1/services", SERVICE, "rpm", INT),
    ("POST", "/admin/v1/services", SERVICE, "max_request_bytes", INT),
    ("POST", "/admin/v1/services", SERVICE, "require_approval", BOOL),
    ("POST", "/admin/v1/services", SERVICE, "timeout_seconds.total", NUMBER),
    ("PATCH", "/admin/v1/services/none", {}, "max_response_bytes", INT),
    ("PATCH", "/admin/v1/services/none", {}, "require_approval", BOOL),
    ("PATCH", "/admin/v1/routing/groups/gpt-4o-mini/deployments/local-openai", {}, "weight", INT),
    ("PUT", "/admin/v1/routing/splits/none", {}, "percents.a", NUMBER),
    ("POST", "/admin/v1/token-revocations", {"user": "u"}, "block", BOOL),
]


def _with(body: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """``body`` with ``value`` at the field's path (``a.b``, ``a[0].b``), the path created as needed."""
    out: Any = {**body}
    node = out
    parts = field.replace("[", ".[").split(".")
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        if following is None:
            node[key] = value
            break
        child = node.get(key) if isinstance(node, dict) else node[key] if key < len(node) else None
        if child is None:
            child = [None] if following.startswith("[") else {}
        child = [*child] if isinstance(child, list) else {**child}
        node[key] = child
        node = child
    return out  # type: ignore[no-any-return]


def _wrong_values(wanted: str) -> list[Any]:
    kinds: list[Any] = [0, 1] if wanted == BOOL else [True, False]
    return [*kinds, *(["true", "1", "false"] if wanted == BOOL else ["5", "1.5", "true"])]


def _param(field: str, value: Any) -> str:
    """What the refusal names: a mapping's or a list's values are named by the field that holds
    them, but for text in a strict item type, named by the item."""
    if field.startswith(CONTAINERS) and not (isinstance(value, str) and field.startswith(STRICT_ITEMS)):
        return re.split(r"[.\[]", field)[0]
    return field


@pytest.mark.parametrize(("method", "path", "body", "field", "wanted"), CASES,
                         ids=[f"{m} {p} {f}" for m, p, _, f, _ in CASES])
def test_a_boolean_and_a_number_are_not_each_other(gateway: Gateway, method: str, path: str,
                                                   body: dict[str, Any], field: str, wanted: str) -> None:
    for value in _wrong_values(wanted):
        sent = _with(body, field, value)
        resp = httpx.request(method, gateway.url + path, json=sent, headers=ADMIN, timeout=10)
        assert resp.status_code == 400, (sent, resp.text)
        param = _param(field, value)
        assert resp.json()["error"] == {"message": f"{param}: {wanted}", "type": "invalid_request_error",
                                        "param": param, "code": "invalid_value"}, (sent, resp.text)


def test_the_right_types_are_still_taken(gateway: Gateway) -> None:
    """The same fields with a number and a boolean of their own kind (and an integral number in
    a float field) are stored as given."""
    name = f"p{uuid.uuid4().hex[:8]}"
    prompt = httpx.post(gateway.url + "/admin/v1/prompts", headers=ADMIN, timeout=10, json={
        "name": name, "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5, "temperature": 1, "parallel_tool_calls": False})
    assert prompt.status_code == 201, prompt.text
    assert prompt.json()["params"] == {"max_tokens": 5, "temperature": 1, "parallel_tool_calls": False}
    key = httpx.post(gateway.url + "/admin/v1/keys", headers=ADMIN, timeout=10,
                     json={"models": ["*"], "tpm_limit": 1000})
    assert key.status_code == 201, key.text
    changed = httpx.patch(f"{gateway.url}/admin/v1/keys/{key.json()['id']}", headers=ADMIN, timeout=10,
                          json={"enabled": False})
    assert changed.status_code == 200 and changed.json()["enabled"] is False, changed.text
