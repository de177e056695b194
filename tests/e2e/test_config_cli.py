"""The command line and the config file as a new user meets them: `config check`, `serve`,
`--version`, and the README's quickstart key in both of its cases."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servers import Process, free_port, spawn

README = Path(__file__).resolve().parents[2] / "README.md"

MINIMAL = """
providers:
  - name: local-openai
    type: openai
    api_base: {api_base}
    api_key: sk-upstream
models:
  - name: gpt-4o-mini
    provider: local-openai
    model: gpt-4o-mini
auth:
  master_key: sk-test-master-key-123
server:
  log_level: {log_level}
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> Process:
    proc = spawn(args, env=env)
    proc.wait_exit(60)
    return proc


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    return path


def test_version_option_and_command() -> None:
    for args in (["--version"], ["version"]):
        proc = _run(args)
        assert proc.proc.returncode == 0, proc.output
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", proc.output), proc.output


def test_unknown_log_level_fails_check_and_serve_cleanly(tmp_path: Path) -> None:
    path = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="verbose"))
    expected = (
        f"{path}: server.log_level: unknown log level 'verbose' "
        "(one of: debug, info, warning, error, critical)"
    )
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = _run(args)
        assert proc.proc.returncode == 2, proc.output
        assert expected in proc.output
        assert "Traceback" not in proc.output


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    path = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="DEBUG"))
    port = free_port()
    proc = spawn(["serve", "--config", str(path), "--port", str(port)])
    try:
        proc.wait_serving()
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    finally:
        assert proc.stop() == 0


def test_api_base_without_scheme_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, MINIMAL.format(api_base="127.0.0.1:9001", log_level="info"))
    proc = _run(["config", "check", str(path)])
    assert proc.proc.returncode == 2
    assert (
        f"{path}: providers[0].api_base: must be an http:// or https:// URL with a host "
        "(e.g. http://127.0.0.1:9001), got '127.0.0.1:9001'"
    ) in proc.output


def test_unquoted_date_and_numbers_where_strings_are_expected(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
providers:
  - name: azure
    type: azure
    api_base: https://contoso.openai.azure.com
    api_key: sk-upstream
    api_version: 2024-10-21
    headers: {x-client-version: 2.10}
models:
  - {name: gpt-4o, provider: azure, model: 2024}
auth:
  master_key: 1234567890
""",
    )
    proc = _run(["config", "check", str(path)])
    assert proc.proc.returncode == 0, proc.output
    assert "OK (1 provider(s), 1 model(s))" in proc.output


def test_duplicate_key_is_an_error_naming_the_line(tmp_path: Path) -> None:
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    text = text.replace("    api_key: sk-upstream\n", "    api_key: sk-upstream\n    api_base: http://other/v1\n")
    path = _config(tmp_path, text)
    proc = _run(["config", "check", str(path)])
    assert proc.proc.returncode == 2
    expected = f"{path}: line 7, column 5: invalid YAML: duplicate key 'api_base' (first on line 5)"
    assert expected in proc.output


def test_a_recursive_alias_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    path = _config(tmp_path, text + "router: &r {x: *r}\n")
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = _run(args)
        assert proc.proc.returncode == 2, proc.output
        expected = f"{path}: line 15, column 9: invalid YAML: an alias refers to a node that contains it"
        assert expected in proc.output, proc.output
        assert "Traceback" not in proc.output and "RecursionError" not in proc.output


def test_an_unquoted_reference_in_a_flow_mapping_says_to_quote_it(tmp_path: Path) -> None:
    """`{api_key: ${KEY}}` is no YAML (the reference's `{` opens a mapping): the error says what
    to write instead, not only the parser's "got '{'"."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    unquoted = "    headers: {x-team: ${TEAM}}\n"
    text = text.replace("    api_key: sk-upstream\n", unquoted + "    api_key: sk-upstream\n")
    path = _config(tmp_path, text)
    proc = _run(["config", "check", str(path)], env={"TEAM": "blue"})
    assert proc.proc.returncode == 2
    expected = (f"{path}: line 6, column 24: invalid YAML: expected ',' or '}}', but got '{{' "
                '(a ${...} reference inside {...} or [...] must be quoted: "${NAME}")')
    assert expected in proc.output, proc.output
    path.write_text(text.replace("${TEAM}}", '"${TEAM}"}'))
    quoted = _run(["config", "check", str(path)], env={"TEAM": "blue"})
    assert quoted.proc.returncode == 0, quoted.output


def test_a_short_secret_is_named_in_characters(tmp_path: Path) -> None:
    """metrics.key and budgets.webhook.secret are secrets of at least 16 characters: a shorter
    one is told in characters, as a string's length, not in "items" as pydantic counts a secret."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    text += "metrics: {key: scrape-key-123}\n"
    text += "budgets: {webhook: {url: 'https://hooks.example.com/b', secret: short}}\n"
    proc = _run(["config", "check", str(_config(tmp_path, text))])
    assert proc.proc.returncode == 2
    assert "metrics.key: String should have at least 16 characters\n" in proc.output, proc.output
    assert "budgets.webhook.secret: String should have at least 16 characters\n" in proc.output, proc.output
    assert "items" not in proc.output and "scrape-key-123" not in proc.output


# -- the embedded default's master key and the README's quickstart ----------------------------


def _readme_key_line() -> str:
    [line] = [ln for ln in README.read_text().splitlines() if ln.startswith("export SWITCHBOARD_KEY=")]
    return line


def _readme_key(env: dict[str, str]) -> str:
    """What the README's quickstart line sets SWITCHBOARD_KEY to, run by bash as a user would."""
    script = _readme_key_line() + '\nprintf %s "$SWITCHBOARD_KEY"'
    full_env = {**os.environ, **env}
    proc = subprocess.run(["bash", "-c", script], env=full_env, capture_output=True, text=True, check=True)
    return proc.stdout


def _serve(env: dict[str, str]) -> tuple[Process, int]:
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], env=env)
    proc.wait_serving()
    return proc, port


def _models_status(port: int, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).status_code


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # The README's path (~/.switchboard) in a temporary home; no data dir override and no master
    # key given (unset: an empty SWITCHBOARD_DATA_DIR or SWITCHBOARD_MASTER_KEY is refused).
    monkeypatch.delenv("SWITCHBOARD_DATA_DIR", raising=False)
    monkeypatch.delenv("SWITCHBOARD_MASTER_KEY", raising=False)
    return {"HOME": str(tmp_path)}


def test_generated_key_printed_once_and_quickstart_finds_it(tmp_path: Path, home: dict[str, str]) -> None:
    env = home
    key_file = tmp_path / ".switchboard" / "master_key"
    proc, port = _serve(env)
    try:
        key = key_file.read_text().strip()
        assert key in proc.output and f"generated and saved in {key_file}" in proc.output
    finally:
        assert proc.stop() == 0
    proc, port = _serve(env)
    try:
        assert key not in proc.output  # printed only when it was just generated
        assert f"master key (Bearer): in {key_file}" in proc.output
        assert _readme_key(env) == key
        assert _models_status(port, _readme_key(env)) == 200
    finally:
        assert proc.stop() == 0


def test_secrets_rotate_on_a_fresh_data_dir_says_where_the_key_it_created_is(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """`secrets rotate` before any `serve` creates the embedded default's master key file: it
    says so, as `serve` does on its first start (the only time the key is shown), and the key
    then opens the gateway."""
    env = home
    key_file = tmp_path / ".switchboard" / "master_key"
    rotate = _run(["secrets", "rotate"], env=env)
    assert rotate.proc.returncode == 0, rotate.output
    key = key_file.read_text().strip()
    assert f"master key (Bearer), generated and saved in {key_file}: {key}\n" in rotate.output
    again = _run(["secrets", "rotate"], env=env)
    assert again.proc.returncode == 0, again.output
    assert key not in again.output and "master key" not in again.output  # shown once only
    proc, port = _serve(env)
    try:
        assert key not in proc.output and f"master key (Bearer): in {key_file}" in proc.output
        assert _models_status(port, key) == 200
    finally:
        assert proc.stop() == 0


def test_key_from_environment_not_printed_and_quickstart_works(tmp_path: Path, home: dict[str, str]) -> None:
    secret = "sk-chosen-by-the-operator-42"
    env = {**home, "SWITCHBOARD_MASTER_KEY": secret}
    proc, port = _serve(env)
    try:
        assert secret not in proc.output
        assert "master key (Bearer): the value of SWITCHBOARD_MASTER_KEY" in proc.output
        assert not (tmp_path / ".switchboard" / "master_key").exists()
        assert _readme_key(env) == secret
        assert _models_status(port, _readme_key(env)) == 200
    finally:
        assert proc.stop() == 0


def _check_and_serve_refuse(path: Path, expected: str) -> None:
    """`config check` and `serve` agree: both exit 2 with the same line."""
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = spawn(args, inherit=False)
        proc.wait_exit(60)
        assert proc.proc.returncode == 2, (args, proc.output)
        assert f"{path}: {expected}" in proc.output, (args, proc.output)
        assert "Traceback" not in proc.output


def test_shared_database_without_a_secret_refuses_to_serve(tmp_path: Path) -> None:
    """Instances sharing PostgreSQL must share the secret that keys the API-key hashes."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    path = _config(tmp_path, text + "database:\n  url: postgresql://sb@127.0.0.1:9/sb\n")
    _check_and_serve_refuse(path, "auth.secret_key: required with a shared database")


def test_several_workers_without_redis_fail_the_check_too(tmp_path: Path) -> None:
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    path = _config(tmp_path, text + "  workers: 4\n")
    _check_and_serve_refuse(path, "server.workers: more than 1 worker needs redis.url")


def test_a_redaction_pattern_is_checked_as_serve_runs_it_and_named_by_its_index(tmp_path: Path) -> None:
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    patterns = "['(?i)password=\\S+', '(\\d+)-\\1', '<(unclosed']"
    path = _config(tmp_path, text + f"request_log:\n  bodies: [{{}}]\n  redact:\n    patterns: {patterns}\n")
    _check_and_serve_refuse(path, "request_log.redact.patterns[2]: not a valid regular expression "
                                  "(missing ), unterminated subpattern at position 1): '<(unclosed'")
    # Without the broken one, what the check accepts (an inline flag, a backreference), serve runs.
    path.write_text(path.read_text().replace(", '<(unclosed'", ""))
    check = _run(["config", "check", str(path)])
    assert check.proc.returncode == 0, check.output
    port = free_port()
    proc = spawn(["serve", "--config", str(path), "--port", str(port)])
    try:
        proc.wait_serving()
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    finally:
        assert proc.stop() == 0


def test_user_info_in_api_base_with_a_key_sent_in_authorization_fails_check_and_serve(tmp_path: Path) -> None:
    """Both would be sent in Authorization: refused before any request can fail on it."""
    text = MINIMAL.format(api_base="http://proxyuser:PROXYPASS4455667788@127.0.0.1:9/v1", log_level="info")
    path = _config(tmp_path, text)
    _check_and_serve_refuse(path, "providers[0].api_base: its user info (user:password@) is sent as "
                                  "Authorization: Basic, and a provider of type openai sends its credential "
                                  "in Authorization; a request carries one Authorization header: remove "
                                  "the user info or the other credential")
    # A provider sending its key in a header of its own takes both.
    path.write_text(text.replace("type: openai", "type: anthropic"))
    check = _run(["config", "check", str(path)])
    assert check.proc.returncode == 0, check.output


@pytest.mark.parametrize(("api_base", "expected"), [
    ("http://ops:PROXYPASS4455667788@127.0.0.1:99999/v1?key=QUERYKEY4455667788",
     "not a valid URL (Port out of range 0-65535): 'http://[redacted]@127.0.0.1:99999/v1?[redacted]'"),
    ("ftp://ops:PROXYPASS4455667788@127.0.0.1/v1",
     "must be an http:// or https:// URL with a host, got 'ftp://[redacted]@127.0.0.1/v1'"),
    ("ops:PROXYPASS4455667788@127.0.0.1:9/v1",
     "must be an http:// or https:// URL with a host (e.g. http://[redacted]@127.0.0.1:9/v1)"),
])
def test_a_bad_url_is_named_without_its_credentials(tmp_path: Path, api_base: str, expected: str) -> None:
    """A URL's user info and query string may hold a password or a key: the problem names the
    URL without them, in `config check` and `serve` output alike."""
    path = _config(tmp_path, MINIMAL.format(api_base=f"'{api_base}'", log_level="info"))
    _check_and_serve_refuse(path, f"providers[0].api_base: {expected}")
    serve = ["serve", "--config", str(path), "--port", str(free_port())]
    for args in (["config", "check", str(path)], serve):
        proc = _run(args)
        assert "PROXYPASS" not in proc.output and "QUERYKEY" not in proc.output, proc.output


def test_master_key_read_from_a_file_reference(tmp_path: Path) -> None:
    """The Docker-secrets pattern: `master_key: file:/run/secrets/...` is the file's content."""
    key_file = tmp_path / "master_key_secret"
    key_file.write_text("sk-from-a-secret-file\n")
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    path = _config(tmp_path, text.replace("sk-test-master-key-123", f"file:{key_file}"))
    port = free_port()
    proc = spawn(["serve", "--config", str(path), "--port", str(port)],
                 env={"SWITCHBOARD_DATA_DIR": str(tmp_path / "data")})
    try:
        proc.wait_serving()
        assert _models_status(port, "sk-from-a-secret-file") == 200
        assert _models_status(port, f"file:{key_file}") == 401
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--port", "70000"], "command line: --port: Input should be less than or equal to 65535"),
        (["--workers", "300"], "command line: --workers: Input should be less than or equal to 256"),
        (["--host", "a b"], "command line: --host: 'a b' is not an IP address or a host name"),
    ],
)
def test_command_line_overrides_are_validated_like_the_file(
    tmp_path: Path, extra: list[str], expected: str
) -> None:
    path = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info"))
    proc = _run(["serve", "--config", str(path), *extra])
    assert proc.proc.returncode == 2, proc.output
    assert expected in proc.output
    assert "Uvicorn running" not in proc.output


def test_embedded_default_refuses_port_zero(tmp_path: Path) -> None:
    proc = _run(["serve", "--port", "0"], env={"SWITCHBOARD_DATA_DIR": str(tmp_path)})
    assert proc.proc.returncode == 2, proc.output
    assert "(embedded default): --port: 0 (any free port) cannot be used" in proc.output


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_embedded_default_names_a_port_out_of_range_alone(tmp_path: Path, port: str) -> None:
    # Not a problem of the built-in mock provider's URL, which the user never wrote.
    proc = _run(["serve", "--port", port], env={"SWITCHBOARD_DATA_DIR": str(tmp_path)})
    assert proc.proc.returncode == 2, proc.output
    assert f"(embedded default): --port: {port} is not a port (1 to 65535)" in proc.output
    assert "api_base" not in proc.output and "Uvicorn running" not in proc.output


def test_an_unusable_data_directory_is_one_line_and_exit_1(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    config = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info"))
    for args in (["serve"], ["serve", "--config", str(config)]):
        env = {"SWITCHBOARD_DATA_DIR": str(afile)}
        proc = spawn([*args, "--port", str(free_port())], env=env, inherit=False)
        assert proc.wait_exit(60) == 1, proc.output
        assert proc.output.strip() == f"error: cannot use the data directory {afile}: Not a directory"


def test_a_data_dir_under_the_home_directory_is_there_not_under_the_working_directory(tmp_path: Path) -> None:
    """`data_dir: ~/sb`, written as the documented default is: the database goes to the home's
    sb, not to a directory named "~" wherever serve was started."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info") + "  data_dir: ~/sb\n"
    config = _config(tmp_path, text)
    port = free_port()
    proc = spawn(["serve", "--config", str(config), "--port", str(port)], env={"HOME": str(home)}, cwd=work)
    try:
        proc.wait_serving()
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    finally:
        assert proc.stop() == 0, proc.output
    assert (home / "sb" / "switchboard.db").is_file()
    assert not (work / "~").exists()


@pytest.mark.parametrize(("headers", "env", "expected"), [
    ('{x-team: "${TEAM}"}', {"TEAM": "blue\r\nx-injected: yes"},
     "providers[0].headers: the value of 'x-team' holds a line break or NUL (U+000D)"),
    ("{'x team': blue}", {}, "providers[0].headers: 'x team' is not a header name"),
])
def test_a_provider_header_that_cannot_be_sent_is_a_config_error(
    tmp_path: Path, headers: str, env: dict[str, str], expected: str
) -> None:
    """Accepted before, it failed every request to the provider with a 500 internal_error (the
    HTTP client refuses a line break in a header when sending)."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info")
    text = text.replace("    api_key: sk-upstream\n", f"    api_key: sk-upstream\n    headers: {headers}\n")
    config = _config(tmp_path, text)
    serve = ["serve", "--config", str(config), "--port", str(free_port())]
    for args in (["config", "check", str(config)], serve):
        proc = _run(args, env=env)
        assert proc.proc.returncode == 2, proc.output
        assert f"{config}: {expected}" in proc.output, proc.output
        assert "blue" not in proc.output  # the value, which may be a credential, is never shown


@pytest.mark.parametrize(("section", "expected"), [
    ("mcp_servers:\n  - name: tools\n    url: http://127.0.0.1:9/mcp\n"
     "    headers: {Authorization: \"${AUTH}\"}\n",
     "mcp_servers[0].headers: the value of 'Authorization' holds a line break or NUL (U+000A)"),
    ("tracing:\n  headers: {Authorization: \"${AUTH}\"}\n",
     "tracing.headers: the value of 'Authorization' holds a line break or NUL (U+000A)"),
])
def test_an_mcp_or_tracing_header_with_a_line_break_is_a_config_error(
    tmp_path: Path, section: str, expected: str
) -> None:
    """Accepted before: every MCP operation, or every span export, then failed in the HTTP client."""
    config = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info") + section)
    proc = _run(["config", "check", str(config)], env={"AUTH": "Bearer abc\nx-injected: yes"})
    assert proc.proc.returncode == 2, proc.output
    assert f"{config}: {expected}" in proc.output, proc.output


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("api_key: sk-upstream", "api_key: env:UPSTREAM_KEY",
     "providers[0].api_key: the credential holds a line break or NUL (U+000A), which no HTTP header can "
     "carry (a trailing newline in the variable?)"),
    ("api_key: sk-upstream", 'api_keys: ["${UPSTREAM_KEY}"]',
     "providers[0].api_keys[0]: the credential holds a line break or NUL (U+000A)"),
    ("master_key: sk-test-master-key-123", "master_key: ${UPSTREAM_KEY}",
     "auth.master_key: it has surrounding whitespace or a line break, which no request can send"),
    ("server:\n", "metrics:\n  key: ${UPSTREAM_KEY}\nserver:\n",
     "metrics.key: the key has surrounding whitespace or a line break, which no request can send"),
])
def test_a_credential_with_a_trailing_newline_is_a_config_error(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    """A variable set from a file with its final newline: accepted before, the provider's key then
    failed every request with a 500 internal_error, and the master key refused every admin call."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info").replace(old, new)
    config = _config(tmp_path, text)
    serve = ["serve", "--config", str(config), "--port", str(free_port())]
    for args in (["config", "check", str(config)], serve):
        proc = _run(args, env={"UPSTREAM_KEY": "sk-test-master-key-123\n"})
        assert proc.proc.returncode == 2, proc.output
        assert f"{config}: {expected}" in proc.output, proc.output
        assert "sk-test-master-key-123" not in proc.output


def test_an_empty_data_dir_is_a_config_error(tmp_path: Path) -> None:
    """`data_dir: ${DATA_DIR}` with the variable empty was the working directory, silently."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info") + "  data_dir: ${DATA_DIR}\n"
    config = _config(tmp_path, text)
    proc = _run(["config", "check", str(config)], env={"DATA_DIR": ""})
    assert proc.proc.returncode == 2, proc.output
    expected = f"{config}: server.data_dir: an empty path; leave the key out for the default data directory"
    assert expected in proc.output, proc.output


@pytest.mark.parametrize(("content", "expected"), [
    (b"\n", "the master key in this file must be at least 8 characters, as auth.master_key (it has 0)"),
    (b"sk-abc\n", "the master key in this file must be at least 8 characters, as auth.master_key (it has 6)"),
    (b"\xff\xfesk-long-enough-key", "the master key file is not UTF-8 text"),
])
def test_an_embedded_master_key_file_that_is_no_usable_key_names_the_file(
    tmp_path: Path, content: bytes, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default's master_key file, emptied or cut short by hand, or not text: one
    line naming the file and exit 2 (it was "auth: master_key must be ..." about a config the user
    never wrote, or a traceback), from serve and from the other commands that read it."""
    key_file = tmp_path / "master_key"
    key_file.write_bytes(content)
    monkeypatch.delenv("SWITCHBOARD_MASTER_KEY", raising=False)  # the file's key is the one read
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    for args in (["serve", "--port", str(free_port())], ["secrets", "rotate"]):
        proc = spawn(args, env=env)
        assert proc.wait_exit(60) == 2, (args, proc.output)
        assert f"(embedded default): {key_file}: {expected}" in proc.output, (args, proc.output)
        assert "Traceback" not in proc.output and "Uvicorn running" not in proc.output
    assert key_file.read_bytes() == content


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "must be at least 32 characters, as auth.secret_key (it has 0)"),
    (b"short-by-hand\n", "must be at least 32 characters, as auth.secret_key (it has 13)"),
    (b"\xff\xfe" + b"x" * 40, "the server secret file is not UTF-8 text"),
])
def test_a_server_secret_file_that_is_no_usable_secret_is_refused(
    tmp_path: Path, content: bytes, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret_key file in the data directory written by hand (emptied, truncated) is checked as
    auth.secret_key is, by `config check` and by `serve` alike, rather than seal every stored
    credential under it (the empty secret included)."""
    data = tmp_path / "data"
    data.mkdir()
    secret_file = data / "secret_key"
    secret_file.write_bytes(content)
    monkeypatch.delenv("SWITCHBOARD_MASTER_KEY", raising=False)  # serve's embedded default: its own
    monkeypatch.delenv("SWITCHBOARD_SECRET_KEY", raising=False)  # the file's secret is the one read
    env = {"SWITCHBOARD_DATA_DIR": str(data)}
    config = _config(tmp_path, MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info"))
    runs = (["config", "check", str(config)], ["serve", "--config", str(config)], ["serve"])
    for args in runs:
        proc = spawn([*args, *(["--port", str(free_port())] if args[0] == "serve" else [])], env=env)
        assert proc.wait_exit(60) == 2, (args, proc.output)
        assert f"{secret_file}: " in proc.output and expected in proc.output, (args, proc.output)
        assert "Traceback" not in proc.output and "Uvicorn running" not in proc.output
    assert secret_file.read_bytes() == content  # left for the operator to mend, not replaced


def test_embedded_default_on_an_ipv6_address(tmp_path: Path) -> None:
    """The built-in mock's api_base brackets the address, so the demo model answers."""
    port = free_port()
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_MASTER_KEY": "sk-v6-master-key"}
    proc = spawn(["serve", "--host", "::1", "--port", str(port)], env=env)
    try:
        proc.wait_serving()
        assert f"on http://[::1]:{port}/v1" in proc.output
        resp = httpx.post(f"http://[::1]:{port}/v1/chat/completions",
                          headers={"Authorization": "Bearer sk-v6-master-key"},
                          json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200, resp.text
    finally:
        assert proc.stop() == 0


ROUTING = """
providers:
  - {name: up-a, type: openai, api_base: "http://127.0.0.1:9/v1", api_key: sk-upstream}
models:
  - {name: dup, provider: up-a, model: gpt-4o-mini}
  - {name: dup, provider: up-a, model: gpt-4o-mini}
  - {name: big, provider: up-a, model: gpt-4o}
  - {name: mini, provider: up-a, model: gpt-4o-mini, deployment: mini}
  - {name: mini, provider: up-a, model: gpt-4o, deployment: main}
auth:
  master_key: sk-test-master-key-123
router:
"""


@pytest.mark.parametrize(("router", "expected"), [
    ("  rules: [{name: r, model: auto, when: {prompt_tokens: {min: 5000, max: 100}}, to: big}]",
     "router.rules[0].when.prompt_tokens: min (5000) is more than max (100): no prompt could match"),
    ("  rules: [{name: r1, model: auto, to: big}, {name: r1, model: other, to: big}]",
     "router.rules[1].name: 'r1' is the name of router.rules[0] already"),
    ("  semantic:\n"
     "    - {model: smart, embedding_model: big, routes: [{to: big, examples: [a]}]}\n"
     "    - {model: smart, embedding_model: big, routes: [{to: dup, examples: [b]}]}",
     "router.semantic[1].model: 'smart' has a semantic router already (router.semantic[0])"),
    ("  splits: [{name: s, model: mini, arms: [{deployment: mini, percent: 10},"
     " {deployment: main, percent: 80}, {deployment: mini, percent: 10}]}]",
     "router.splits[0].arms[2]: 'mini' is an arm of this split already"),
])
def test_contradictory_or_duplicate_routing_entries_fail_the_check(
    tmp_path: Path, router: str, expected: str
) -> None:
    path = _config(tmp_path, ROUTING + router + "\n")
    proc = _run(["config", "check", str(path)])
    assert proc.proc.returncode == 2, proc.output
    assert f"{path}: {expected}" in proc.output
    assert "Traceback" not in proc.output


def test_a_split_arm_may_name_a_numbered_default_deployment(tmp_path: Path) -> None:
    split = ("  splits: [{name: s, model: dup, arms: [{deployment: up-a/gpt-4o-mini, percent: 50},"
             " {deployment: 'up-a/gpt-4o-mini#2', percent: 50}]}]\n")
    proc = _run(["config", "check", str(_config(tmp_path, ROUTING + split))])
    assert proc.proc.returncode == 0, proc.output
    assert "OK (1 provider(s), 5 model(s))" in proc.output


EVERY_STAGE = """
providers:
  - {{name: a, type: openai, api_key: '${{UPSTREAM_KEY}}', api_base: http://127.0.0.1:9/v1}}
  - {{name: b, type: openai, api_key: k, api_base: nope}}
  - {{name: c, type: openai, api_key: k, bogus_option: 1}}
models:
  - {{name: m, provider: zz, model: m}}
auth: {{master_key: '${{MASTER_KEY}}'}}
server: {{log_level: {log_level}, workers: 4}}
catalog:
  models:
    house: {{provider_types: [openai_compat]}}
"""


def test_config_check_reports_every_problem_in_one_run(tmp_path: Path) -> None:
    """Unset variables, schema errors, a provider type's options and the catalog's provider types
    come out together; the checks that read a broken section are named as not run."""
    path = _config(tmp_path, EVERY_STAGE.format(log_level="loud"))
    proc = spawn(["config", "check", str(path)], inherit=False)
    proc.proc.wait(60)
    assert proc.proc.returncode == 2, proc.output
    prefix = f"  {path}: "
    problems = [ln.removeprefix(prefix) for ln in proc.output.splitlines() if ln.startswith(prefix)]
    assert problems == [
        "providers[0].api_key: environment variable UPSTREAM_KEY is not set",
        "auth.master_key: environment variable MASTER_KEY is not set",
        "providers[1].api_base: must be an http:// or https:// URL with a host (e.g. http://nope), "
        "got 'nope'",
        "server.log_level: unknown log level 'loud' (one of: debug, info, warning, error, critical)",
        "providers[2].bogus_option: unknown key",
        "catalog.models.house.provider_types: unknown provider type 'openai_compat' (known: anthropic, "
        "azure, bedrock, cohere, gemini, mistral, openai, openai-compatible, vertex)",
    ]
    assert "invalid configuration (6 problem(s)):" in proc.output
    assert ("  not checked: checks across sections (models' providers, router groups, duplicate names): "
            "they read providers\n") in proc.output
    assert ("  not checked: checks for serving (workers without redis, the server secret): "
            "they read auth, server\n") in proc.output

    # With the variables set and the providers valid, the checks across sections, of the catalog's
    # provider types and for serving all run, and each reports its problem.
    text = EVERY_STAGE.format(log_level="info").replace("api_base: nope", "api_base: http://127.0.0.1:9/v1")
    path.write_text(text.replace(", bogus_option: 1", ""))
    env = {"UPSTREAM_KEY": "sk-up", "MASTER_KEY": "sk-master-key-123"}
    proc = spawn(["config", "check", str(path)], env, inherit=False)
    proc.proc.wait(60)
    assert proc.proc.returncode == 2, proc.output
    assert "invalid configuration (3 problem(s)):" in proc.output
    assert f"{path}: catalog.models.house.provider_types: unknown provider type 'openai_compat'" \
        in proc.output
    assert f"  {path}: models[0].provider: unknown provider 'zz' (known: a, b, c)\n" in proc.output
    assert f"  {path}: server.workers: more than 1 worker needs redis.url" in proc.output
    assert "not checked" not in proc.output


@pytest.mark.parametrize(("section", "url", "expected"), [
    ("budgets:\n  webhook: {{url: '{url}', secret: whsec-0123456789abcdef}}\n",
     "ftp://hooks.slack.com/services/T0AAA/B0BBB/SLACKPATHSECRET",
     "budgets.webhook.url: must be an http:// or https:// URL with a host, got 'ftp://hooks.slack.com/…'"),
    ("alerts:\n  webhooks:\n    oncall: {{url: '{url}', secret: whsec-0123456789abcdef}}\n",
     "hooks.slack.com/services/T0AAA/B0BBB/SLACKPATHSECRET",
     "alerts.webhooks.oncall.url: must be an http:// or https:// URL with a host "
     "(e.g. http://hooks.slack.com/…), got 'hooks.slack.com/…'"),
    ("alerts:\n  webhooks:\n    oncall: {{url: '{url}', secret: whsec-0123456789abcdef}}\n",
     "https://ops:PROXYPASS@discord.com:99999/api/webhooks/1/SLACKPATHSECRET?wait=QUERYKEY",
     "alerts.webhooks.oncall.url: not a valid URL (Port out of range 0-65535): 'https://discord.com:99999/…'"),
])
def test_a_bad_webhook_url_is_named_by_its_origin_only(
    tmp_path: Path, section: str, url: str, expected: str
) -> None:
    """A Slack or Discord hook's path is its secret: a webhook URL the config refuses is shown
    as its scheme, host and port, as the delivery logs show it."""
    text = MINIMAL.format(api_base="http://127.0.0.1:9/v1", log_level="info") + section.format(url=url)
    path = _config(tmp_path, text)
    _check_and_serve_refuse(path, expected)
    proc = _run(["config", "check", str(path)])
    assert "SLACKPATHSECRET" not in proc.output and "services" not in proc.output, proc.output
    assert "PROXYPASS" not in proc.output and "QUERYKEY" not in proc.output, proc.output
