"""The prompt registry through the admin API, end to end: versions, labels and rollback, the
diff, render, template errors with their line, the sandbox, roles and tenants. Every test runs
on the embedded default (SQLite, in-process state) and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.tenancy_world import Admin
from tests.servers import Gateway, Mock, openai_config, start_gateway

SENTIMENT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
    "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"prompts_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"prompts-{request.param}"))
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> Admin:
    return Admin(gateway.url)


def test_the_minimal_contract_saves_versions(admin: Admin) -> None:
    name = unique("sentiment")
    first = admin.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201)
    assert first["name"] == name and first["version"] == 1
    assert first["messages"] == SENTIMENT["messages"] and first["model"] == "gpt-4o-mini"
    assert first["variables"] == SENTIMENT["variables"]
    second = admin.ok("POST", "/admin/v1/prompts",
                      {"name": name, **SENTIMENT, "temperature": 0.1, "description": "v2"}, status=201)
    assert second["version"] == 2 and second["params"] == {"temperature": 0.1}
    latest = admin.ok("GET", f"/admin/v1/prompts/{name}")
    assert latest["version"] == 2 and latest["description"] == "v2"
    one = admin.ok("GET", f"/admin/v1/prompts/{name}", params={"version": 1})
    assert one["version"] == 1 and one["params"] == {}
    missing = admin.call("GET", f"/admin/v1/prompts/{name}", params={"version": 3})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "prompt_not_found"
    assert admin.call("GET", f"/admin/v1/prompts/{unique()}").status_code == 404


def test_template_errors_name_the_message_and_line(admin: Admin) -> None:
    body = {**SENTIMENT, "name": unique(), "messages": [
        {"role": "system", "content": "fine"},
        {"role": "user", "content": "line one\nline two {% if text %}\n{{ text }"},
    ]}
    resp = admin.call("POST", "/admin/v1/prompts", body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_template"
    assert "messages[1] line 3" in error["message"]
    body["messages"] = [{"role": "user", "content": "Hi\n\n{{ text }} and {{ undeclared }}"}]
    resp = admin.call("POST", "/admin/v1/prompts", body)
    assert resp.status_code == 400
    assert "messages[0] line 3: variable 'undeclared' is not declared" in resp.json()["error"]["message"]
    assert admin.call("GET", f"/admin/v1/prompts/{body['name']}").status_code == 404  # nothing saved
