"""What a user meets when the config file (or the environment it is read in) says something the
gateway cannot use: one line naming the key path and the reason, from `config check` and
`serve` alike; and the sections left empty, which are their defaults."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.servers import MASTER_KEY, Mock, free_port, openai_config, spawn, start_gateway

MINIMAL = """
providers:
  - name: up
    type: openai
    api_base: http://127.0.0.1:9/v1
    api_key: sk-upstream
models:
  - {name: m, provider: up, model: gpt-4o-mini}
auth:
  master_key: sk-test-master-key-123
"""


def _refused(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    """`config check` and `serve` both exit 2 with ``expected`` on the file's line."""
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = spawn(args, env=env, inherit=False)
        assert proc.wait_exit(60) == 2, (args, proc.output)
        assert f"{path}: {expected}\n" in proc.output, (args, proc.output)
        assert "Traceback" not in proc.output and "Uvicorn running" not in proc.output


@pytest.mark.parametrize(("text", "env", "expected"), [
    # A reference in a key was taken as the literal text: a limit on no model, a header
    # named "x-${TEAM}". Keys are not interpolated (as in docker compose): refused, named.
    (MINIMAL + "limits:\n  models:\n    ${MODEL}: {rpm: 10}\n", {"MODEL": "m"},
     "limits.models.${MODEL}: a ${...} reference is read in values only, not in a key; write the key out"),
    (MINIMAL.replace("api_key: sk-upstream", "api_key: sk-upstream\n    headers:\n      x-${TEAM}: a"),
     {"TEAM": "t"},
     "providers[0].headers.x-${TEAM}: a ${...} reference is read in values only, not in a key; "
     "write the key out"),
], ids=["limits-model", "provider-header"])
def test_a_reference_in_a_key_is_refused_naming_it(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    _refused(tmp_path, text, env, expected)


@pytest.mark.parametrize(("api_key", "env", "expected"), [
    ("''", {}, "providers[0].api_key"),
    ("${UPSTREAM_KEY}", {"UPSTREAM_KEY": "   "}, "providers[0].api_key"),
    ("env:UPSTREAM_KEY", {"UPSTREAM_KEY": " \t"}, "providers[0].api_key"),
], ids=["empty", "blank-variable", "blank-env-reference"])
def test_an_empty_provider_credential_is_refused(
    tmp_path: Path, api_key: str, env: dict[str, str], expected: str
) -> None:
    """Accepted before: the empty key went upstream with every request (an empty bearer), and
    each call failed there with the provider's 401."""
    text = MINIMAL.replace("api_key: sk-upstream", f"api_key: {api_key}")
    _refused(tmp_path, text, env, f"{expected}: empty or only whitespace, which is no credential "
                                  "(an empty ${VAR}?); leave the key out to send none")


def test_an_empty_api_keys_entry_and_webhook_secret_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("api_key: sk-upstream", "api_keys: [sk-one, '${SECOND}']") + (
        "budgets:\n  webhook: {url: 'https://hooks.example.com/b', secret: '${HOOK_SECRET}'}\n")
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    proc = spawn(["config", "check", str(path)], env={"SECOND": "", "HOOK_SECRET": " " * 20}, inherit=False)
    assert proc.wait_exit(60) == 2, proc.output
    blank = "empty or only whitespace, which is no credential (an empty ${VAR}?)"
    assert f"{path}: providers[0].api_keys[1]: {blank}; leave the key out to send none\n" in proc.output
    assert f"{path}: budgets.webhook.secret: {blank}\n" in proc.output


@pytest.mark.parametrize(("section", "expected"), [
    # The key is named, not the section holding it ("auth: master_key must be ...").
    ("auth:\n  master_key: short\n", "auth.master_key: must be at least 8 characters"),
    ("auth:\n  master_key: sk-test-master-key-123\n  secret_key: too-short\n",
     "auth.secret_key: must be at least 32 characters"),
    ("tracing:\n  max_queue_size: 10\n  max_export_batch_size: 20\n",
     "tracing.max_export_batch_size: must not exceed max_queue_size (10)"),
    ("metrics:\n  labels: [team, team]\n", "metrics.labels: each label may be listed once"),
    ("alerts:\n  rules:\n    - {name: r, kind: latency}\n",
     "alerts.rules[0].threshold: a latency rule needs one"),
    ("mcp_servers:\n  - {name: s, transport: sse}\n", "mcp_servers[0].url: transport sse needs one"),
], ids=["master-key", "secret-key", "tracing", "labels", "alert-threshold", "mcp-url"])
def test_a_check_across_keys_names_the_key(tmp_path: Path, section: str, expected: str) -> None:
    auth = "auth:\n  master_key: sk-test-master-key-123\n"
    text = MINIMAL.replace(auth, "") if section.startswith("auth") else MINIMAL
    _refused(tmp_path, text + section, {}, expected)


@pytest.mark.parametrize(("section", "host"), [
    ("metrics:\n  port: 9464\n  host: 'not a host!'\n", "metrics.host"),
    ("server:\n  host: 'not a host!'\n", "server.host"),
    ("server:\n  host: ''\n", "server.host"),
], ids=["metrics", "server", "server-empty"])
def test_a_listen_host_that_is_no_address_or_name_is_refused(tmp_path: Path, section: str, host: str) -> None:
    """metrics.host was accepted, and the gateway then failed at start-up with a traceback
    ("Name or service not known")."""
    value = "not a host!" if "not a host" in section else ""
    _refused(tmp_path, MINIMAL + section, {}, f"{host}: {value!r} is not an IP address or a host name "
             "(letters, digits, '-' and '.'; 0.0.0.0 or :: for every interface)")


def test_sections_left_empty_are_their_defaults(tmp_path: Path, mock_upstream: Mock) -> None:
    """`server:` with every key below it commented out is YAML's null: refused before as "not a
    dictionary", now the section's defaults, as if it were left out."""
    config = {**openai_config(mock_upstream), "server": None, "metrics": None, "limits": None,
              "services": None}
    gateway = start_gateway(config, tmp_path)
    try:
        assert "server: null" in gateway.config_path.read_text()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        messages: list[Any] = [{"role": "user", "content": "hi"}]
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert reply.choices[0].message.content
    finally:
        assert gateway.process.stop() == 0


def test_an_empty_auth_section_names_the_missing_master_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("auth:\n  master_key: sk-test-master-key-123\n", "auth:\n  # master_key: later\n")
    _refused(tmp_path, text, {}, "auth.master_key: Field required")


# -- SWITCHBOARD_DATA_DIR, read as server.data_dir is ----------------------------------------------


def test_a_data_dir_variable_under_the_home_directory_is_there(tmp_path: Path) -> None:
    """`SWITCHBOARD_DATA_DIR=~/sb` (quoted in a unit file or an env file, so no shell expands
    it) was a directory named "~" under the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    port = free_port()
    env = {"HOME": str(home), "SWITCHBOARD_DATA_DIR": "~/sb", "SWITCHBOARD_MASTER_KEY": MASTER_KEY}
    proc = spawn(["serve", "--port", str(port)], env=env, cwd=work, inherit=False)
    try:
        proc.wait_serving()
        assert (home / "sb" / "switchboard.db").is_file()
        assert not (work / "~").exists()
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize("args", [["serve"], ["serve", "--config"], ["config", "check"]])
def test_an_empty_data_dir_variable_is_refused_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """As `data_dir: ""`: an empty value is refused rather than read as the default."""
    path = tmp_path / "switchboard.yaml"
    path.write_text(MINIMAL)
    full = [*args, str(path)] if args[-1] in ("--config", "check") else args
    if full[0] == "serve":
        full += ["--port", str(free_port())]
    env = {"HOME": str(tmp_path), "SWITCHBOARD_DATA_DIR": "", "SWITCHBOARD_MASTER_KEY": MASTER_KEY}
    proc = spawn(full, env=env, inherit=False)
    assert proc.wait_exit(60) == 1, proc.output
    assert proc.output.strip() == ("error: SWITCHBOARD_DATA_DIR: an empty path; unset it for the default "
                                   "data directory (~/.switchboard)")
    assert not (tmp_path / ".switchboard").exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_master_key_variable_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    """Before, an empty SWITCHBOARD_MASTER_KEY counted as unset: the embedded default quietly
    generated (or read) the key file instead of the key the deployment meant to give."""
    data = tmp_path / "data"
    env = {"HOME": str(tmp_path), "SWITCHBOARD_DATA_DIR": str(data), "SWITCHBOARD_MASTER_KEY": value}
    for args in (["serve", "--port", str(free_port())], ["secrets", "rotate"]):
        proc = spawn(args, env=env, inherit=False)
        assert proc.wait_exit(60) == 1, (args, proc.output)
        assert proc.output.strip() == ("error: SWITCHBOARD_MASTER_KEY: empty or only whitespace; set it, or "
                                       "unset it for the key kept in the data directory's master_key file")
    assert not (data / "master_key").exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_secret_key_variable_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    """Before, an empty SWITCHBOARD_SECRET_KEY counted as unset: a secret was generated into the
    data directory and sealed the credentials instead of the one the deployment meant to give."""
    data = tmp_path / "data"
    path = tmp_path / "switchboard.yaml"
    path.write_text(MINIMAL)
    env = {"HOME": str(tmp_path), "SWITCHBOARD_DATA_DIR": str(data), "SWITCHBOARD_MASTER_KEY": MASTER_KEY,
           "SWITCHBOARD_SECRET_KEY": value}
    runs = (["serve", "--port", str(free_port())],
            ["serve", "--config", str(path), "--port", str(free_port())], ["config", "check", str(path)])
    for args in runs:
        proc = spawn(args, env=env, inherit=False)
        assert proc.wait_exit(60) == 1, (args, proc.output)
        assert proc.output.strip() == ("error: SWITCHBOARD_SECRET_KEY: empty or only whitespace; set it, or "
                                       "unset it for the secret kept in the data directory's secret_key file")
    assert not (data / "secret_key").exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("short", "must be at least 8 characters"),
    (f" {MASTER_KEY}\n", "it has surrounding whitespace or a line break, which no request can send "
                         "(a trailing newline in the variable?)"),
])
def test_an_unusable_master_key_variable_is_named(tmp_path: Path, value: str, expected: str) -> None:
    """Before, it was reported as the embedded default's auth.master_key, which the user never wrote."""
    env = {"HOME": str(tmp_path), "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
           "SWITCHBOARD_MASTER_KEY": value}
    for args in (["serve", "--port", str(free_port())], ["secrets", "rotate"]):
        proc = spawn(args, env=env, inherit=False)
        assert proc.wait_exit(60) == 2, (args, proc.output)
        assert f"(embedded default): SWITCHBOARD_MASTER_KEY: {expected}" in proc.output, (args, proc.output)
        assert "auth.master_key" not in proc.output and "Traceback" not in proc.output


def test_a_metrics_port_that_cannot_be_listened_on_is_one_line(tmp_path: Path) -> None:
    """A metrics.port in use (or a metrics.host naming no address of this machine) was a
    traceback once the gateway had started; now one line before anything starts, exit 1, as
    for the gateway's own port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        path = tmp_path / "switchboard.yaml"
        path.write_text(MINIMAL + f"metrics:\n  port: {busy}\n")
        env = {"HOME": str(tmp_path), "SWITCHBOARD_SECRET_KEY": "s" * 32}
        proc = spawn(["serve", "--config", str(path), "--port", str(free_port())], env=env, inherit=False)
        assert proc.wait_exit(60) == 1, proc.output
    expected = f"error: metrics.port: cannot listen on 127.0.0.1:{busy}: Address already in use"
    assert proc.output.strip() == expected
