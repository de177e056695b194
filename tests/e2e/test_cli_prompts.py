"""``switchboard prompts …`` against a running gateway's admin API: create from YAML and JSON,
show, versions, diff, label (and rollback), render with --var and --vars, and the errors a user
sees. Runs on the embedded default and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, spawn, start_gateway

PROMPT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "description": "sentiment of a text",
    "temperature": 0.2,
    "messages": [
        {"role": "system", "content": "You label sentiment."},
        {"role": "user", "content": "Classify{% if n %} ({{ n }} words){% endif %}: {{ text }}"},
    ],
    "variables": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text"],
    },
}


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    # A prompt's bound model must be served: the second version of each prompt here uses this one.
    config["models"].append({"name": "gpt-4o", "provider": "local-openai", "model": "gpt-4o"})
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"cli_prompts_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"cli-prompts-{request.param}"))
    yield gw
    gw.process.stop()


def prompts(gateway: Gateway, *args: str, key: str = MASTER_KEY) -> tuple[int, str]:
    proc = spawn(["prompts", *args, "--url", gateway.url, "--key", key], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def _saved(gateway: Gateway, **change: Any) -> str:
    """A prompt with two versions, saved over HTTP (faster than the CLI); its name."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    for version in ({}, {"temperature": 0.6, "model": "gpt-4o"}):
        resp = httpx.post(
            f"{gateway.url}/admin/v1/prompts",
            json={"name": name, **PROMPT, **version, **change},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
    return name


def test_create_from_yaml_and_json_and_show(gateway: Gateway, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    first = tmp_path / "v1.yaml"
    first.write_text(yaml.safe_dump({"name": name, **PROMPT}))
    code, output = prompts(gateway, "create", str(first))
    assert code == 0, output
    assert f"saved {name} version 1" in output
    second = tmp_path / "v2.json"
    second.write_text(json.dumps({"name": name, **PROMPT, "temperature": 0.6, "model": "gpt-4o"}))
    code, output = prompts(gateway, "create", str(second), "--json")
    assert code == 0, output
    assert json.loads(output)["version"] == 2
    code, output = prompts(gateway, "show", name)
    assert code == 0 and f"{name} version 2" in output and "model: gpt-4o" in output
    assert "Classify{% if n %}" in output  # templates are shown as they are, not as markup
    code, output = prompts(gateway, "show", name, "--version", "1", "--json")
    assert code == 0 and json.loads(output)["params"] == {"temperature": 0.2}


def test_label_rollback_versions_and_list(gateway: Gateway) -> None:
    name = _saved(gateway)
    code, output = prompts(gateway, "label", name, "production", "2")
    assert code == 0 and f"{name}: production -> version 2" in output
    code, output = prompts(gateway, "label", name, "production", "1")  # rollback
    assert code == 0 and "(was 2)" in output
    code, output = prompts(gateway, "show", name, "--label", "production", "--json")
    assert code == 0 and json.loads(output)["version"] == 1
    code, output = prompts(gateway, "versions", name)
    assert code == 0 and "production" in output and "gpt-4o" in output
    code, output = prompts(gateway, "list", "--json")
    listed = {p["name"]: p for p in json.loads(output)}
    assert code == 0 and listed[name]["prompt_labels"] == {"production": 1} and listed[name]["version"] == 2
    assert listed[name]["labels"] == []  # none on the latest version
    code, output = prompts(gateway, "list")
    assert code == 0 and "production=1" in output


def test_list_shows_every_page_of_prompts(gateway: Gateway) -> None:
    # More than one page of the admin API's list (100 a page): the list once showed the first only.
    batch = uuid.uuid4().hex[:6]
    names = [f"many-{batch}-{i:03}" for i in range(101)]
    with httpx.Client(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as client:
        for name in names:
            resp = client.post(f"{gateway.url}/admin/v1/prompts", json={"name": name, **PROMPT})
            assert resp.status_code == 201, resp.text
        # The API names its cursor last_id, as every admin list does (and last_name, as before).
        first = client.get(f"{gateway.url}/admin/v1/prompts", params={"limit": 1}).json()
        assert first["has_more"] is True
        assert first["last_id"] == first["last_name"] == first["data"][0]["name"]
    code, output = prompts(gateway, "list", "--json")
    assert code == 0, output
    listed = [p["name"] for p in json.loads(output)]
    assert [n for n in listed if n.startswith(f"many-{batch}-")] == names
    assert len(listed) == len(set(listed))


def test_diff_and_render(gateway: Gateway, tmp_path: Path) -> None:
    name = _saved(gateway)
    code, output = prompts(gateway, "diff", name, "1", "2")
    assert code == 0, output
    assert "-model: gpt-4o-mini" in output and "+model: gpt-4o" in output
    assert '-params:   "temperature": 0.2' in output and '+params:   "temperature": 0.6' in output
    code, output = prompts(gateway, "render", name, "--var", "text=a good day", "--var", "n:=3")
    assert code == 0, output
    assert "You label sentiment." in output and "Classify (3 words): a good day" in output
    variables = tmp_path / "vars.yaml"
    variables.write_text("text: from a file\n")
    code, output = prompts(gateway, "render", name, "--vars", str(variables), "--version", "1", "--json")
    assert code == 0, output
    rendered = json.loads(output)
    assert rendered["version"] == 1
    assert rendered["messages"][1] == {"role": "user", "content": "Classify: from a file"}


def test_yaml_dates_and_numbers_are_sent_as_written(gateway: Gateway, tmp_path: Path) -> None:
    """A plain YAML date (``description: 2026-06-01``) is the text written, as in the config file,
    not a date the JSON body cannot hold (a traceback before); a value JSON has no form for, or
    a key written twice, is one line naming the file and exit 2."""
    name = f"cli-date-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "dated.yaml"
    source.write_text(yaml.safe_dump({"name": name, **PROMPT}) + "description: 2026-06-01\n")
    source.write_text(source.read_text().replace("description: sentiment of a text\n", ""))
    code, output = prompts(gateway, "create", str(source), "--json")
    assert code == 0, output
    assert json.loads(output)["description"] == "2026-06-01"
    variables = tmp_path / "vars.yaml"
    variables.write_text("text: 2026-06-01 12:30:00\nn: 3\n")
    code, output = prompts(gateway, "render", name, "--vars", str(variables), "--json")
    assert code == 0, output
    assert json.loads(output)["messages"][1]["content"] == "Classify (3 words): 2026-06-01 12:30:00"
    binary = tmp_path / "binary.yaml"
    binary.write_text("text: !!binary aGVsbG8=\n")
    code, output = prompts(gateway, "render", name, "--vars", str(binary))
    assert code == 2 and "binary.yaml" in output and "Traceback" not in output, output
    itself = tmp_path / "itself.yaml"
    itself.write_text("text: &x [*x]\n")
    code, output = prompts(gateway, "render", name, "--vars", str(itself))
    assert code == 2 and "an alias refers to a node that contains it" in output, output
    assert "Traceback" not in output, output
    twice = tmp_path / "twice.yaml"
    twice.write_text("text: one\ntext: two\n")
    code, output = prompts(gateway, "render", name, "--vars", str(twice))
    assert code == 2 and "duplicate key 'text'" in output and "Traceback" not in output, output


def test_the_platform_admin_reaches_another_tenants_prompts(gateway: Gateway, tmp_path: Path) -> None:
    """A prompt saved in another tenant (``tenant`` in the file) is listed, shown, diffed,
    labelled and rendered there with --tenant, as the API's ``?tenant=`` does; without it the
    platform admin's own tenant is read."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{gateway.url}/admin/v1/tenants", json={"id": tenant},
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    name = f"cli-{uuid.uuid4().hex[:8]}"
    for number, change in enumerate(({}, {"temperature": 0.6, "model": "gpt-4o"}), 1):
        source = tmp_path / f"v{number}.yaml"
        source.write_text(yaml.safe_dump({"name": name, "tenant": tenant, **PROMPT, **change}))
        code, output = prompts(gateway, "create", str(source))
        assert code == 0 and f"saved {name} version {number}" in output, output
    code, output = prompts(gateway, "show", name)
    assert code == 1 and "prompt_not_found" in output, output
    code, output = prompts(gateway, "list", "--tenant", tenant, "--json")
    assert code == 0 and [p["name"] for p in json.loads(output)] == [name], output
    code, output = prompts(gateway, "show", name, "--tenant", tenant, "--version", "1", "--json")
    assert code == 0 and json.loads(output)["tenant"] == tenant, output
    code, output = prompts(gateway, "versions", name, "--tenant", tenant, "--json")
    assert code == 0 and [v["version"] for v in json.loads(output)["data"]] == [1, 2], output
    code, output = prompts(gateway, "diff", name, "1", "2", "--tenant", tenant)
    assert code == 0 and "+model: gpt-4o" in output, output
    code, output = prompts(gateway, "label", name, "production", "1", "--tenant", tenant)
    assert code == 0 and "production -> version 1" in output, output
    code, output = prompts(gateway, "render", name, "--tenant", tenant, "--label", "production",
                           "--var", "text=there", "--json")
    assert code == 0 and json.loads(output)["version"] == 1, output


def test_errors_a_user_sees(gateway: Gateway, tmp_path: Path) -> None:
    name = f"cli-bad-{uuid.uuid4().hex[:8]}"
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump({"name": name, **PROMPT, "messages": [{"role": "user", "content": "ok\n{{ text }"}]})
    )
    code, output = prompts(gateway, "create", str(broken))
    assert code == 1 and "HTTP 400" in output and "messages[0] line 2" in output
    not_yaml = tmp_path / "not.yaml"
    not_yaml.write_text("name: [unclosed\n")
    code, output = prompts(gateway, "create", str(not_yaml))
    assert code == 2 and "not YAML or JSON" in output
    code, output = prompts(gateway, "create", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in output
    code, output = prompts(gateway, "show", name)
    assert code == 1 and "HTTP 404" in output
    code, output = prompts(gateway, "list", key="sk-not-a-key")
    assert code == 1 and "HTTP 401" in output


def test_render_and_label_errors(gateway: Gateway) -> None:
    name = _saved(gateway)
    code, output = prompts(gateway, "render", name, "--var", "n=3")
    assert code == 1 and "HTTP 400" in output and "text: required" in output
    code, output = prompts(gateway, "render", name, "--var", "novalue")
    assert code == 2 and "NAME=VALUE" in output
    code, output = prompts(gateway, "render", name, "--var", "n:=not json")
    assert code == 2 and "must be JSON" in output
    code, output = prompts(gateway, "show", name, "--version", "1", "--label", "x")
    assert code == 2 and "not both" in output
    code, output = prompts(gateway, "label", name, "production", "7")
    assert code == 1 and "HTTP 404" in output


MARKUP = "[bold red]desc[/] [/oops] [bold]x"


def test_text_that_looks_like_rich_markup_is_printed_as_written(gateway: Gateway) -> None:
    """A description or a template is other people's text: nothing in it is read as Rich
    markup (a closing tag that matches nothing used to crash every listing of the tenant)."""
    name = _saved(gateway, description=MARKUP,
                  messages=[{"role": "user", "content": "[/x] [bold]{{ text }}[/bold]"}])
    for args in (("list",), ("versions", name), ("show", name)):
        code, output = prompts(gateway, *args)
        assert code == 0, (args, output)
        assert MARKUP in output and "Traceback" not in output, (args, output)
    code, output = prompts(gateway, "render", name, "--var", "text=[/y]")
    assert code == 0 and "[/x] [bold][/y][/bold]" in output, output
    # An error that repeats what the user gave is shown as written too.
    code, output = prompts(gateway, "show", "[/nope]")
    assert code == 1 and "HTTP 404" in output and "[/nope]" in output and "Traceback" not in output, output
