"""A ``timeouts.connect`` longer than the ``timeouts.total`` that bounds it is refused.

``total`` bounds the whole exchange, the connect included: a longer connect never applied, yet
``{"connect": 700, "total": 600}`` was stored (and loaded from the configuration file) as if it
did. It is now a 400 ``invalid_value`` naming ``timeouts.connect`` on the admin API, nothing
written, and a problem naming the entry's key when the configuration file is loaded. The total
it is held to is the entry's own, else (a model's) its provider's, else the default (600 s);
a connect not written out is not checked (a short total then simply cuts it). A stored provider's
total lowered under the connect of a stored model that takes its total from it is refused too,
naming that model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
ENV = {"UPSTREAM_KEY": "k", "SWITCHBOARD_MASTER_KEY": MASTER_KEY}  # what the test config reads


def _call(gateway: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)


def _refused(resp: httpx.Response, within: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_value", "timeouts.connect"), resp.text
    assert error["message"].startswith("timeouts.connect: ") and within in error["message"], error


@pytest.fixture(autouse=True)
def _forgotten(request: pytest.FixtureRequest) -> Iterator[None]:
    """What a test stores in the shared gateway is removed after it: other tests list its
    models and providers."""
    yield
    if "gateway" in request.fixturenames:
        gateway = request.getfixturevalue("gateway")
        for path in ("/models/to-model", "/providers/to-short", "/providers/to-ok"):
            assert _call(gateway, "DELETE", path).status_code in (200, 204, 404)


def test_a_provider_s_connect_past_its_total_is_400(gateway: Gateway, mock_upstream: Mock) -> None:
    base = {"type": "openai", "api_base": f"{mock_upstream.url}/v1"}
    over = {**base, "name": "to-over", "timeouts": {"connect": 30, "total": 20}}
    resp = _call(gateway, "POST", "/providers", over)
    _refused(resp, "(20 s)")
    assert _call(gateway, "GET", "/providers/to-over").status_code == 404  # nothing stored
    # No total given: the default one (600 s) bounds it.
    resp = _call(gateway, "POST", "/providers", {**base, "name": "to-over", "timeouts": {"connect": 700}})
    _refused(resp, "(600 s, the default)")
    fits = {**base, "name": "to-ok", "timeouts": {"connect": 20, "total": 20}}
    created = _call(gateway, "POST", "/providers", fits)
    assert created.status_code == 201, created.text
    resp = _call(gateway, "PATCH", "/providers/to-ok", {"timeouts": {"connect": 5, "total": 4.5}})
    _refused(resp, "(4.5 s)")
    assert _call(gateway, "GET", "/providers/to-ok").json()["timeouts"] == {"connect": 20, "total": 20}
    # A total alone may be below the default connect: that connect was never written out.
    resp = _call(gateway, "PATCH", "/providers/to-ok", {"timeouts": {"total": 2}})
    assert resp.status_code == 200 and resp.json()["timeouts"] == {"total": 2}, resp.text


def test_a_model_s_connect_past_the_total_that_bounds_it_is_400(gateway: Gateway) -> None:
    model = {"name": "to-model", "provider": "local-openai", "model": "gpt-4o-mini"}
    _refused(_call(gateway, "POST", "/models", {**model, "timeouts": {"connect": 9, "total": 8}}), "(8 s)")
    # Its own total absent: its provider's bounds it (the YAML's "slow": 3 s).
    slow = {**model, "provider": "slow"}
    resp = _call(gateway, "POST", "/models", {**slow, "timeouts": {"connect": 4}})
    _refused(resp, "(3 s, from provider 'slow')")
    assert _call(gateway, "GET", "/models/to-model").status_code == 404  # nothing stored
    created = _call(gateway, "POST", "/models", {**model, "timeouts": {"connect": 4}})
    assert created.status_code == 201, created.text
    # Moved to a provider whose total is shorter than the model's connect.
    _refused(_call(gateway, "PATCH", "/models/to-model", {"provider": "slow"}), "(3 s, from provider 'slow')")
    _refused(_call(gateway, "PATCH", "/models/to-model", {"timeouts": {"connect": 4, "total": 1}}), "(1 s)")
    shown = _call(gateway, "GET", "/models/to-model").json()
    assert (shown["provider"], shown["timeouts"]) == ("local-openai", {"connect": 4}), shown
    # A stored provider's total counts as a YAML one's.
    short = {"name": "to-short", "type": "openai", "timeouts": {"total": 2}}
    stored = _call(gateway, "POST", "/providers", short)
    assert stored.status_code == 201, stored.text
    resp = _call(gateway, "PATCH", "/models/to-model", {"provider": "to-short"})
    _refused(resp, "(2 s, from provider 'to-short')")
    resp = _call(gateway, "PATCH", "/models/to-model", {"provider": "slow", "timeouts": {"connect": 3}})
    assert resp.status_code == 200 and resp.json()["provider"] == "slow", resp.text


def test_a_provider_s_total_lowered_past_a_stored_model_s_connect_is_400(gateway: Gateway) -> None:
    short = {"name": "to-ok", "type": "openai", "timeouts": {"total": 20}}
    created = _call(gateway, "POST", "/providers", short)
    assert created.status_code == 201, created.text
    made = _call(gateway, "POST", "/models", {"name": "to-model", "provider": "to-ok", "model": "gpt-4o-mini",
                                              "timeouts": {"connect": 10}})
    assert made.status_code == 201, made.text
    # Before, stored: the model's connect (10 s) then past the total bounding it (5 s).
    resp = _call(gateway, "PATCH", "/providers/to-ok", {"timeouts": {"total": 5}})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "timeouts.total"), error
    assert "stored model 'to-model'" in error["message"] and "(10 s)" in error["message"], error
    assert _call(gateway, "GET", "/providers/to-ok").json()["timeouts"] == {"total": 20}  # nothing written
    # Down to the model's connect, it still fits.
    resp = _call(gateway, "PATCH", "/providers/to-ok", {"timeouts": {"total": 10}})
    assert resp.status_code == 200 and resp.json()["timeouts"] == {"total": 10}, resp.text
    # A model with a total of its own is bounded by that one, not the provider's.
    resp = _call(gateway, "PATCH", "/models/to-model", {"timeouts": {"connect": 10, "total": 10}})
    assert resp.status_code == 200, resp.text
    resp = _call(gateway, "PATCH", "/providers/to-ok", {"timeouts": {"total": 1}})
    assert resp.status_code == 200 and resp.json()["timeouts"] == {"total": 1}, resp.text


@pytest.mark.parametrize(("where", "entry", "expected"), [
    ("providers", {"timeouts": {"connect": 30, "total": 20}},
     "providers[0].timeouts.connect: 30 s is longer than timeouts.total (20 s)"),
    ("providers", {"timeouts": {"connect": 601}},
     "providers[0].timeouts.connect: 601 s is longer than timeouts.total (600 s, the default)"),
    ("models", {"timeouts": {"connect": 700}},
     "models[0].timeouts.connect: 700 s is longer than timeouts.total (600 s, from provider 'local-openai')"),
    ("models", {"provider": "slow", "timeouts": {"connect": 4}},
     "models[0].timeouts.connect: 4 s is longer than timeouts.total (3 s, from provider 'slow')"),
])
def test_the_configuration_file_refuses_it(
    tmp_path: Path, mock_upstream: Mock, where: str, entry: dict[str, Any], expected: str
) -> None:
    config = openai_config(mock_upstream)
    config[where][0] = {**config[where][0], **entry}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["config", "check", str(path)], env=ENV)
    assert proc.wait_exit(30) == 2
    assert expected in proc.output and str(path) in proc.output, proc.output
    assert "Traceback" not in proc.output


def test_the_configuration_file_takes_a_connect_within_its_total(tmp_path: Path, mock_upstream: Mock) -> None:
    config = openai_config(mock_upstream)
    config["providers"][0] = {**config["providers"][0], "timeouts": {"connect": 20, "total": 20}}
    config["models"][0] = {**config["models"][0], "timeouts": {"connect": 20}}
    # A total below the default connect: that connect was not written out.
    config["providers"][1] = {**config["providers"][1], "timeouts": {"total": 2}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["config", "check", str(path)], env=ENV)
    assert proc.wait_exit(30) == 0, proc.output
