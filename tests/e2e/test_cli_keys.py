"""``switchboard keys …`` against a running gateway's admin API."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, refused_port, spawn


def keys(gateway: Gateway, *args: str, key: str = MASTER_KEY) -> tuple[int, str]:
    proc = spawn(["keys", *args, "--url", gateway.url, "--key", key], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def as_json(output: str) -> Any:
    return json.loads(output)


def test_create_list_show_rotate_revoke(gateway: Gateway) -> None:
    code, output = keys(gateway, "create", "-m", "gpt-4o-mini", "-m", "gpt-*", "--name", "cli app",
                        "--metadata", "owner=ops", "--json")
    assert code == 0, output
    created = as_json(output)
    assert created["models"] == ["gpt-4o-mini", "gpt-*"] and created["metadata"] == {"owner": "ops"}
    client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0)
    assert client.models.list().data

    code, output = keys(gateway, "list", "--json")
    assert code == 0 and created["id"] in {k["id"] for k in as_json(output)}
    assert created["key"] not in output
    code, table = keys(gateway, "list")
    assert code == 0 and created["id"] in table and "cli app" in table

    code, output = keys(gateway, "show", created["id"], "--json")
    assert code == 0 and as_json(output)[0]["name"] == "cli app"

    code, output = keys(gateway, "rotate", created["id"], "--grace-seconds", "0", "--json")
    assert code == 0, output
    rotated = as_json(output)
    assert rotated["rotated_from"] == created["id"]

    code, output = keys(gateway, "revoke", rotated["id"])
    assert code == 0 and f"revoked {rotated['id']}" in output
    code, output = keys(gateway, "create", "-m", "gpt-4o-mini")
    assert code == 0 and "shown once" in output and "sk-sb-" in output


def test_create_with_limits_and_a_budget(gateway: Gateway) -> None:
    code, output = keys(gateway, "create", "-m", "*", "--rpm-limit", "60", "--tpm-limit", "9000",
                        "--max-budget-usd", "2.50", "--budget-period", "weekly", "--json")
    assert code == 0, output
    created = as_json(output)
    assert (created["rpm_limit"], created["tpm_limit"]) == (60, 9000)
    assert (created["max_budget_usd"], created["budget_period"]) == (2.5, "weekly")
    code, output = keys(gateway, "create", "-m", "*", "--max-budget-usd", "-1")
    assert code == 1 and "HTTP 400" in output and "max_budget_usd" in output


def test_update_changes_a_key_in_place(gateway: Gateway) -> None:
    code, output = keys(gateway, "create", "-m", "gpt-4o-mini", "--name", "before", "--tag", "a",
                        "--expires-at", "2999-01-01T00:00:00Z", "--json")
    assert code == 0, output
    created = as_json(output)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    code, output = keys(gateway, "update", created["id"], "-m", "text-embedding-3-small", "--name", "after",
                        "--no-expiry", "--metadata", "owner=ops", "--clear-tags", "--json")
    assert code == 0, output
    [updated] = as_json(output)
    assert (updated["models"], updated["name"]) == (["text-embedding-3-small"], "after")
    assert updated["expires_at"] is None
    assert (updated["metadata"], updated["tags"], updated["id"]) == ({"owner": "ops"}, [], created["id"])
    with pytest.raises(openai.PermissionDeniedError):  # the same key, now for other models
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data

    code, table = keys(gateway, "update", created["id"], "--block")
    assert code == 0 and created["id"] in table and "False" in table
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    code, output = keys(gateway, "update", created["id"], "--unblock", "--json")
    assert code == 0 and as_json(output)[0]["enabled"] is True
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data

    code, output = keys(gateway, "update", created["id"])
    assert code == 2 and "nothing to change" in output
    code, output = keys(gateway, "update", created["id"], "--name", "x", "--clear-name")
    assert code == 2 and "--clear-name" in output
    code, output = keys(gateway, "update", created["id"], "--expires-at", "2020-01-01T00:00:00Z")
    assert code == 1 and "HTTP 400" in output and "expires_at" in output
    keys(gateway, "revoke", created["id"])
    code, output = keys(gateway, "update", created["id"], "--unblock")
    assert code == 1 and "key_revoked" in output and "Traceback" not in output


def test_list_reaches_another_tenant_and_filters(gateway: Gateway) -> None:
    """The platform admin lists the keys it issued in another tenant (``keys create --tenant``),
    and any caller narrows the list as the API does: by team, user, service account or tag."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    admin = ["--url", gateway.url, "--key", MASTER_KEY]
    assert spawn(["tenants", "create", tenant, *admin]).wait_exit(60) == 0
    proc = spawn(["teams", "create", "core", "--tenant", tenant, "--json", *admin])
    assert proc.wait_exit(60) == 0, proc.output
    team = as_json(proc.output)[0]["id"]
    code, output = keys(gateway, "create", "-m", "*", "--tenant", tenant, "--team", team, "--tag", "blue",
                        "--json")
    assert code == 0, output
    in_team = as_json(output)["id"]
    code, output = keys(gateway, "create", "-m", "*", "--tenant", tenant, "--tag", "red", "--json")
    assert code == 0, output
    tagged = as_json(output)["id"]

    def listed(*args: str) -> set[str]:
        code, output = keys(gateway, "list", *args, "--json")
        assert code == 0, output
        return {k["id"] for k in as_json(output)}

    assert not {in_team, tagged} & listed()  # the caller's own tenant
    assert {in_team, tagged} <= listed("--tenant", tenant)
    assert listed("--tenant", tenant, "--team", team) == {in_team}
    assert listed("--tenant", tenant, "--tag", "red") == {tagged}
    assert listed("--tenant", tenant, "--user", "user_nobody") == set()
    assert listed("--tenant", tenant, "--service-account", "sa_nobody") == set()
    code, output = keys(gateway, "list", "--tenant", f"{tenant}-missing")
    assert code == 1 and "Traceback" not in output, output


def test_names_that_look_like_rich_markup_are_printed_as_written(gateway: Gateway) -> None:
    name = "[/k] app [bold]x[/bold]"
    code, output = keys(gateway, "create", "-m", "[bold]gpt-*", "--name", name)
    assert code == 0 and name in output and "[bold]gpt-*" in output and "Traceback" not in output, output
    key_id = next(k["id"] for k in as_json(keys(gateway, "list", "--json")[1]) if k["name"] == name)
    for args in (("list",), ("show", key_id)):
        code, output = keys(gateway, *args)
        assert code == 0 and name in output and "Traceback" not in output, (args, output)


def test_errors_are_one_line_and_exit_1(gateway: Gateway) -> None:
    code, output = keys(gateway, "list", key="wrong-key")
    assert code == 1 and "HTTP 401" in output and "invalid_api_key" in output
    assert "Traceback" not in output
    code, output = keys(gateway, "show", "key_nope")
    assert code == 1 and "key_not_found" in output
    code, output = keys(gateway, "create", "-m", "m", "--metadata", "no-equals-sign")
    assert code == 2 and "NAME=VALUE" in output
    nowhere = Gateway(refused_port(), gateway.process, gateway.config_path)
    code, output = keys(nowhere, "list")
    assert code == 1 and "cannot reach the gateway" in output


@pytest.mark.parametrize(("url", "expected"), [
    ("http://[::1", "the gateway URL is not a valid URL: Invalid IPv6 URL"),
    ("http://127.0.0.1:99999", "the gateway URL is not a valid URL: Port out of range 0-65535"),
    ("http://127.0.0.1:4o00", "the gateway URL is not a valid URL: Port could not be cast"),
    ("http://admin:hunter2@127.0.0.1:4000", "the gateway URL must not hold a user name or password"),
    ("http://:4000", "the gateway URL has no host"),
    ("http://127.0.0.1:4000/?tenant=acme", "the gateway URL takes no query or fragment"),
    ("ftp://127.0.0.1:4000", "the gateway URL must start with http:// or https://"),
])
@pytest.mark.parametrize("command", [["keys", "list"], ["mcp", "servers"]])
def test_a_gateway_url_that_is_no_usable_url_is_one_line_and_exit_1(
    command: list[str], url: str, expected: str
) -> None:
    """--url (or $SWITCHBOARD_URL) as an operator mistypes it: named before anything is sent,
    not a traceback, a "connection refused" for a port the socket would never take, a query
    dropped in silence, or a password printed back in the error."""
    proc = spawn([*command, "--url", url, "--key", MASTER_KEY])
    assert proc.wait_exit(60) == 1, proc.output
    assert proc.output.startswith(f"error: {expected}"), proc.output
    assert len(proc.output.strip().splitlines()) == 1 and "hunter2" not in proc.output, proc.output


class _NotTheGateway(BaseHTTPRequestHandler):
    """Whatever --url reached instead: a proxy's login page, a service with its own error shape,
    one whose JSON lacks the gateway's fields. The path picks which."""

    ANSWERS: ClassVar[dict[str, tuple[int, str, bytes]]] = {
        "/html": (200, "text/html", b"<html><body>Sign in</body></html>"),
        "/odd-error": (401, "application/json", b'{"error": "nope"}'),
        "/odd-json": (200, "application/json", b'{"data": "x"}'),
        "/empty": (200, "application/json", b'{"object": "list", "data": [], "has_more": false}'),
    }

    def do_GET(self) -> None:
        prefix = "/" + self.path.split("/")[1]
        status, ctype, body = self.ANSWERS[prefix]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_the_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotTheGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("args", "where", "expected"),
    [
        (["keys", "list"], "/html", "did not answer JSON: is --url the gateway?"),
        (["keys", "list"], "/odd-error", 'HTTP 401: {"error": "nope"}'),
        (["usage"], "/odd-json", "the answer has no 'group_by' field: is --url the gateway"),
    ],
)
def test_a_url_that_is_not_the_gateway_is_one_line_and_exit_1(
    not_the_gateway: str, args: list[str], where: str, expected: str
) -> None:
    proc = spawn([*args, "--url", not_the_gateway + where, "--key", "x"], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    assert code == 1, proc.output
    assert expected in proc.output
    assert "Traceback" not in proc.output and len(proc.output.strip().splitlines()) == 1


@pytest.mark.parametrize("columns", ["60", "250"])
@pytest.mark.parametrize("command", [["keys", "list"], ["budgets", "list"], ["prompts", "list"],
                                     ["tenants", "list"]])
def test_an_empty_list_says_none_at_any_width(not_the_gateway: str, command: list[str], columns: str) -> None:
    """Nothing to list is ``(none)`` for every list command, in a narrow terminal or a wide one
    (not a frame of headers in one and a word in the other)."""
    proc = spawn([*command, "--url", not_the_gateway + "/empty", "--key", "x"], env={"COLUMNS": columns})
    code = proc.wait_exit(60)
    assert code == 0, proc.output
    assert proc.output.strip() == "(none)", proc.output
