"""Names an answer carries in its x-switchboard-* headers hold no control character.

A routing rule named ``"bad\\r\\nrule"`` (or a model group, an alias, an upstream model id in a
deployment's default name) passed the configuration check, and every answer routed through it
was a 500: the HTTP server refuses a response header holding a control character. The file is
now refused at load naming the field, and the admin API refuses such an upstream model id (its
group names were already limited to a safe set). Names in other scripts stay allowed, but for a
model group's and an alias's: the file's model names and aliases follow the admin API's rule
(letters, digits and ``_.:/@+-``), which a control character fails first."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Process, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CONFIG = """
providers:
  - name: p
    type: openai
    api_key: sk-upstream
models:
  - name: {group}
    provider: p
    model: {upstream}
  - name: other
    provider: p
    model: m
router:
  aliases:
    {alias}: other
  rules:
    - name: {rule}
      when: {{headers: {{x-tier: gold}}}}
      to: other
auth:
  master_key: sk-test-master-key-123
"""
SAFE = {"group": "g", "upstream": "m", "alias": "a", "rule": "r"}


def _check(tmp_path: Path, **names: str) -> Process:
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG.format(**{**SAFE, **names}))
    proc = spawn(["config", "check", str(path)])
    proc.wait_exit(60)
    return proc


@pytest.mark.parametrize(("field", "where"), [
    ("rule", "router.rules[0].name"), ("group", "models[0].name"), ("upstream", "models[0].model"),
    ("alias", "router.aliases."),
])
@pytest.mark.parametrize(("written", "code"), [('"bad\\r\\nname"', "U+000D"), ('"tab\\tname"', "U+0009"),
                                               ('"c1\\x85name"', "U+0085"), ('"del\\x7fname"', "U+007F")])
def test_a_control_character_in_a_header_name_fails_the_check(tmp_path: Path, field: str, where: str,
                                                              written: str, code: str) -> None:
    proc = _check(tmp_path, **{field: written})
    assert proc.proc.returncode == 2, proc.output
    assert where in proc.output, proc.output
    if field in ("group", "alias"):  # a model name: the admin API's rule refuses it first
        key = "" if field == "group" else ".[key]"  # the alias is a key of router.aliases
        assert f"{key}: String should match pattern '^[A-Za-z0-9_.:/@+-]+$'" in proc.output, proc.output
        return
    assert (f"control characters are not allowed ({code}): the name is sent in x-switchboard-* "
            "response headers") in proc.output


def test_names_in_other_scripts_pass_the_check(tmp_path: Path) -> None:
    proc = _check(tmp_path, rule='"règle 規則"', upstream='"modèle"')
    assert proc.proc.returncode == 0, proc.output
    # A model name, and an alias clients send as one, as the admin API takes them.
    for field, where in (("group", "models[0].name"), ("alias", "router.aliases.álias.[key]")):
        proc = _check(tmp_path, **{field: '"álias"' if field == "alias" else '"grupo-ñ"'})
        assert proc.proc.returncode == 2, proc.output
        assert f"{where}: String should match pattern" in proc.output, proc.output


@pytest.mark.parametrize("upstream", ["m\x01x", "m\tx", "m\x85x", "m\x7fx", "m\rx"])
def test_the_admin_api_refuses_a_control_character_in_an_upstream_model(gateway: Gateway,
                                                                       upstream: str) -> None:
    for method, path, body in (("POST", "/admin/v1/models", {"name": "ctl", "provider": "local-openai",
                                                              "model": upstream}),
                               ("PATCH", "/admin/v1/models/none", {"model": upstream})):
        resp = httpx.request(method, gateway.url + path, json=body, headers=ADMIN, timeout=10)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "model" and error["code"] == "invalid_value", resp.text
        assert "control and bidirectional override characters are not allowed" in error["message"]
