"""A stored provider's ``env:`` and ``file:`` credential references: one that resolves to a blank
value is refused when it is stored, and a provider none of whose references resolves is refused
when it is called, naming it, instead of going upstream without a key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(openai_config(mock_upstream), tmp_path_factory.mktemp("refs"),
                       env={"BLANK_UPSTREAM_KEY": " \t "})
    yield gw
    gw.process.stop()


def admin(gateway: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=30)


def provider_body(mock: Mock, **extra: Any) -> dict[str, Any]:
    return {"name": f"refs-{uuid.uuid4().hex[:8]}", "type": "openai", "api_base": f"{mock.url}/v1", **extra}


def test_a_reference_to_a_blank_value_is_refused_when_stored(
    gateway: Gateway, mock_upstream: Mock, tmp_path: Path
) -> None:
    """Before, it was stored and its blank value sent upstream as the key (the file refused it)."""
    body = provider_body(mock_upstream, api_key_ref="env:BLANK_UPSTREAM_KEY")
    resp = admin(gateway, "POST", "/providers", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": "api_key_ref: environment variable BLANK_UPSTREAM_KEY is empty or only whitespace, "
                   "which is no credential",
        "type": "invalid_request_error", "param": "api_key_ref", "code": "invalid_value"}
    assert admin(gateway, "GET", f"/providers/{body['name']}").status_code == 404
    blank_file = tmp_path / "blank-key"
    blank_file.write_text("  \n")
    stored = admin(gateway, "POST", "/providers", provider_body(mock_upstream)).json()
    resp = admin(gateway, "POST", f"/providers/{stored['name']}/credentials", {"ref": f"file:{blank_file}"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("ref", "invalid_value")
    assert error["message"] == f"ref: {blank_file} is empty or only whitespace, which is no credential"
    assert admin(gateway, "GET", f"/providers/{stored['name']}").json()["credentials"] == []


def test_a_provider_whose_reference_does_not_resolve_is_refused_naming_it(
    gateway: Gateway, mock_upstream: Mock
) -> None:
    """Stored (the variable may be given before use), but called without it: a 503 naming the
    provider, not the variable, and nothing sent upstream without a key (the upstream's 401)."""
    body = provider_body(mock_upstream, api_key_ref="env:NOT_SET_ON_THIS_GATEWAY")
    assert admin(gateway, "POST", "/providers", body).status_code == 201
    model = f"refs-model-{uuid.uuid4().hex[:8]}"
    created = admin(gateway, "POST", "/models",
                    {"name": model, "provider": body["name"], "model": "gpt-4o-mini"})
    assert created.status_code == 201, created.text
    client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=model, messages=ask("hi"))
    assert err.value.status_code == 503
    error = err.value.body
    assert isinstance(error, dict) and error["code"] == "upstream_credential_missing", error
    assert f"provider '{body['name']}' has no usable credential" in error["message"]
    assert "NOT_SET_ON_THIS_GATEWAY" not in str(error)
