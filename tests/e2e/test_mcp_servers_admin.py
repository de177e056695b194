"""MCP servers registered through the admin API (``/admin/v1/mcp/servers``), end to end: per
tenant and global, the configuration file's listed read-only, static credential headers and the
OAuth client secret never shown (answers, audit, errors, the process's log), bad input refused
with clear errors, another tenant's server 404. On the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.tenancy_world import Admin
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, spawn, start_gateway

SECRET_HEADER = "Bearer sk-mcp-static-" + uuid.uuid4().hex
CLIENT_SECRET = "oauth-client-secret-" + uuid.uuid4().hex
ROTATED = "Bearer sk-mcp-rotated-" + uuid.uuid4().hex
URL_PASSWORD = "yaml-url-password-" + uuid.uuid4().hex[:8]
URL_TOKEN = "yaml-url-token-" + uuid.uuid4().hex[:8]


def config(mock: Mock) -> dict[str, Any]:
    c = openai_config(mock)
    c["mcp_servers"] = [
        {"name": "yaml-docs", "url": "http://127.0.0.1:9/mcp",
         "headers": {"Authorization": "Bearer yaml-hidden"}},
        {"name": "yaml-acme", "url": "http://127.0.0.1:9/acme", "tenant": "someone-else"},
        # Credentials in the URL itself (user info, a ?token= some hosted servers take).
        {"name": "yaml-url-secrets", "url": f"http://ops:{URL_PASSWORD}@127.0.0.1:9/mcp?token={URL_TOKEN}&v=2"},
    ]
    return c


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    c = config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        c["database"] = {"url": postgres.create_database(f"mcpadm_{uuid.uuid4().hex[:8]}")}
        c["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(c, tmp_path_factory.mktemp(f"mcp-admin-{request.param}"))
    yield gw
    gw.process.stop()


def tenant_with_roles(admin: Admin) -> tuple[str, Admin, Admin]:
    """A new tenant, and admin clients for its tenant admin and one of its developers."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
    callers = []
    for role in ("tenant_admin", "developer"):
        user = admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": role, "role": role}, status=201)
        body = {"tenant": tenant, "user": user["id"], "role": role, "models": ["*"]}
        key = admin.ok("POST", "/admin/v1/keys", body, status=201)
        callers.append(admin.as_key(key["key"]))
    return tenant, callers[0], callers[1]


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["error"])


SERVERS = "/admin/v1/mcp/servers"


def test_a_tenant_admin_registers_changes_and_removes_a_server(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant, owner, developer = tenant_with_roles(admin)
    body = {"name": "wiki", "url": "https://wiki.example/mcp", "description": "the wiki",
            "headers": {"Authorization": SECRET_HEADER, "X-Team": "blue"},
            "oauth": {"client_id": "switchboard", "client_secret": CLIENT_SECRET, "scopes": ["read"]},
            "denied_tools": ["drop_everything"], "price_per_call": 0.01, "timeout_seconds": 20}
    created = owner.ok("POST", SERVERS, body, status=201)
    assert (created["object"], created["name"], created["tenant"], created["global"], created["source"]) == (
        "mcp_server", "wiki", tenant, False, "database")
    assert created["headers"] == ["Authorization", "X-Team"]  # names only
    assert created["oauth"] == {"client_id": "switchboard", "authorization_url": None, "token_url": None,
                                "revocation_url": None, "scopes": ["read"], "client_secret_set": True}
    assert (created["denied_tools"], created["price_per_call"], created["timeout_seconds"]) == (
        ["drop_everything"], 0.01, 20)
    # The tenant's callers read it (with the global YAML server); another tenant's YAML is not there.
    listed = developer.ok("GET", SERVERS)
    names = {(s["name"], s["source"], s["read_only"]) for s in listed["data"]}
    assert names == {("wiki", "database", False), ("yaml-docs", "config", True),
                     ("yaml-url-secrets", "config", True)}
    yaml_docs = next(s for s in listed["data"] if s["name"] == "yaml-docs")
    assert yaml_docs["headers"] == ["Authorization"] and "yaml-hidden" not in str(listed)
    assert developer.ok("GET", f"{SERVERS}/wiki")["url"] == "https://wiki.example/…"
    # A developer may not change it.
    assert error(developer.call("PATCH", f"{SERVERS}/wiki", {"description": "x"}), 403)["code"] == (
        "permission_denied")
    assert error(developer.call("POST", SERVERS, {"name": "mine", "url": "https://x.example"}), 403)
    # Changes: the URL (within its origin) and headers replaced, the OAuth client secret kept
    # when not given (to another origin it must be given again: the test below).
    changed = owner.ok("PATCH", f"{SERVERS}/wiki", {"url": "https://wiki.example/v2/mcp",
                                                   "headers": {"Authorization": ROTATED},
                                                   "oauth": {"client_id": "switchboard"}})
    assert (changed["url"], changed["headers"], changed["oauth"]["client_secret_set"]) == (
        "https://wiki.example/…", ["Authorization"], True)
    assert changed["description"] == "the wiki"
    off = owner.ok("PATCH", f"{SERVERS}/wiki", {"oauth": None, "headers": {}})
    assert (off["oauth"], off["headers"]) == (None, [])
    # Every change audited, no secret in the entries; a new URL, and OAuth turned off, would each
    # delete the users' OAuth tokens for it, audited apart when there are some (none here:
    # test_mcp_oauth.py has the entries of changes that delete some).
    audit = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "resource_id": created["id"]})
    actions = [e["action"] for e in audit["data"]]
    assert actions == ["mcp_server.update", "mcp_server.update", "mcp_server.create"]
    deleted = owner.ok("DELETE", f"{SERVERS}/wiki")
    assert deleted == {"id": created["id"], "object": "mcp_server", "name": "wiki", "deleted": True}
    assert error(owner.call("GET", f"{SERVERS}/wiki"), 404)["code"] == "mcp_server_not_found"
    for text in (SECRET_HEADER, CLIENT_SECRET, ROTATED):
        assert text not in str(audit) and text not in gateway.process.output


def test_the_removal_of_an_oauth_server_audits_how_many_users_tokens_went(gateway: Gateway) -> None:
    """As a change that deletes them does (``mcp_server.tokens_deleted``), when there were some:
    an OAuth server nobody authorized, like a server without OAuth, has no users' tokens, and its
    removal is one entry."""
    admin = Admin(gateway.url)
    tenant, owner, _ = tenant_with_roles(admin)
    oauth = owner.ok("POST", SERVERS, {"name": "sso", "url": "https://sso.example/mcp",
                                       "oauth": {"client_id": "switchboard"}}, status=201)
    plain = owner.ok("POST", SERVERS, {"name": "plain", "url": "https://plain.example/mcp"}, status=201)
    for name in ("sso", "plain"):
        owner.ok("DELETE", f"{SERVERS}/{name}")
    def audit_of(record: dict[str, Any]) -> list[dict[str, Any]]:
        found = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "resource_id": record["id"]})
        return list(found["data"])

    assert [e["action"] for e in audit_of(oauth)] == ["mcp_server.delete", "mcp_server.create"]
    assert [e["action"] for e in audit_of(plain)] == ["mcp_server.delete", "mcp_server.create"]


def test_a_change_of_a_sealed_value_is_in_the_audit_by_name_only(gateway: Gateway) -> None:
    """Headers, the OAuth client secret and the URL past its origin are shown by name (or
    origin) only, the same before and after whatever their values: the update's audit entry
    names the headers kept whose value changed, and says whether the client secret or the URL
    changed, never a value; a change that keeps them says nothing of them."""
    admin = Admin(gateway.url)
    tenant, owner, _ = tenant_with_roles(admin)
    token, moved_token = "path-" + uuid.uuid4().hex, "path-" + uuid.uuid4().hex
    body = {"name": "vault", "url": f"https://vault.example/mcp/{token}",
            "headers": {"Authorization": SECRET_HEADER, "X-Team": "blue"},
            "oauth": {"client_id": "switchboard", "client_secret": CLIENT_SECRET}}
    created = owner.ok("POST", SERVERS, body, status=201)
    new_secret = "oauth-client-secret-" + uuid.uuid4().hex
    owner.ok("PATCH", f"{SERVERS}/vault", {
        "url": f"https://vault.example/mcp/{moved_token}",
        "headers": {"Authorization": ROTATED, "X-Team": "blue", "X-New": "green"},
        "oauth": {"client_id": "switchboard", "client_secret": new_secret}})
    owner.ok("PATCH", f"{SERVERS}/vault", {"description": "kept secrets",
                                           "headers": {"Authorization": ROTATED, "X-New": "green"}})
    audit = admin.call("GET", "/admin/v1/audit", params={"tenant": tenant, "resource_id": created["id"]})
    assert audit.status_code == 200, audit.text
    updates = [e for e in audit.json()["data"] if e["action"] == "mcp_server.update"]
    later, first = updates
    assert (first["after"]["headers_changed"], first["after"]["client_secret_changed"],
            first["after"]["url_changed"]) == (["Authorization"], True, True), first["after"]
    assert (first["before"]["headers"], first["after"]["headers"]) == (
        ["Authorization", "X-Team"], ["Authorization", "X-New", "X-Team"])
    assert first["before"]["url"] == first["after"]["url"] == "https://vault.example/…"
    for key in ("headers_changed", "client_secret_changed", "url_changed"):
        assert key not in later["after"], later["after"]
    for text in (SECRET_HEADER, ROTATED, CLIENT_SECRET, new_secret, token, moved_token, "green"):
        assert text not in audit.text
    owner.ok("DELETE", f"{SERVERS}/vault")


def test_stored_secrets_follow_a_server_to_another_origin_only_when_given_again(gateway: Gateway) -> None:
    """The static headers and the OAuth client secret are never shown: a change that sends them
    to another origin (the server's URL for the headers; the token endpoint, or the server's
    origin it is discovered from, for the secret) must give them again, or the one changing the
    URL could read them at a host of their choosing. A move within the origin keeps them."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    owner.ok("POST", SERVERS, {"name": "mover", "url": "https://mcp.example/v1",
                               "headers": {"Authorization": SECRET_HEADER},
                               "oauth": {"client_id": "switchboard", "client_secret": CLIENT_SECRET}},
             status=201)
    owner.ok("PATCH", f"{SERVERS}/mover", {"url": "https://MCP.example:443/v2"})  # the same origin
    refused = error(owner.call("PATCH", f"{SERVERS}/mover", {"url": "https://elsewhere.example/v1"}), 400)
    assert (refused["code"], refused["param"]) == ("headers_required", "headers")
    assert "Authorization" in refused["message"] and SECRET_HEADER not in refused["message"]
    refused = error(owner.call("PATCH", f"{SERVERS}/mover", {
        "url": "https://elsewhere.example/v1", "headers": {"Authorization": ROTATED}}), 400)
    assert (refused["code"], refused["param"]) == ("client_secret_required", "oauth.client_secret")
    refused = error(owner.call("PATCH", f"{SERVERS}/mover", {
        "oauth": {"client_id": "switchboard", "token_url": "https://tokens.elsewhere.example/token"}}), 400)
    assert refused["code"] == "client_secret_required"
    for text in (SECRET_HEADER, CLIENT_SECRET):
        assert text not in str(refused)
    moved = owner.ok("PATCH", f"{SERVERS}/mover", {
        "url": "https://elsewhere.example/v1", "headers": {"Authorization": ROTATED},
        "oauth": {"client_id": "switchboard", "client_secret": "another-" + uuid.uuid4().hex}})
    assert moved["url"] == "https://elsewhere.example/…" and moved["headers"] == ["Authorization"]
    dropped = owner.ok("PATCH", f"{SERVERS}/mover", {"url": "https://third.example/v1", "headers": {},
                                                     "oauth": None})
    assert dropped["headers"] == [] and dropped["oauth"] is None
    owner.ok("DELETE", f"{SERVERS}/mover")


def test_a_blank_client_secret_is_refused_naming_it(gateway: Gateway) -> None:
    """Before, "   " was sealed as the client secret and sent with every token request (the file
    already refused it): now a 400 naming it, on create and on change, the stored one kept."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    body = {"name": "blank", "url": "https://sso.example/mcp", "oauth": {"client_id": "switchboard"}}
    for blank in ("   ", "\t \t"):
        err = error(owner.call("POST", SERVERS, {**body, "oauth": {"client_id": "switchboard",
                                                                   "client_secret": blank}}), 400)
        assert (err["code"], err["param"], err["type"]) == ("invalid_value", "oauth.client_secret",
                                                            "invalid_request_error")
        assert err["message"] == "oauth.client_secret: empty or only whitespace, which is no credential"
    assert error(owner.call("GET", f"{SERVERS}/blank"), 404)["code"] == "mcp_server_not_found"
    owner.ok("POST", SERVERS, {**body, "oauth": {"client_id": "switchboard", "client_secret": CLIENT_SECRET}},
             status=201)
    err = error(owner.call("PATCH", f"{SERVERS}/blank", {"oauth": {"client_id": "switchboard",
                                                                   "client_secret": "  "}}), 400)
    assert (err["code"], err["param"]) == ("invalid_value", "oauth.client_secret")
    assert owner.ok("GET", f"{SERVERS}/blank")["oauth"]["client_secret_set"] is True
    owner.ok("DELETE", f"{SERVERS}/blank")


def test_a_blank_static_header_is_refused_naming_it(gateway: Gateway) -> None:
    """Before, a header of only spaces was sealed and sent with every call to the server: now a
    400 naming the header, on create and on change, the stored headers kept."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    body = {"name": "blank-header", "url": "https://wiki.example/mcp"}
    for blank in ("   ", "\t \t"):
        headers = {"X-Team": "blue", "X-Api-Key": blank}
        err = error(owner.call("POST", SERVERS, {**body, "headers": headers}), 400)
        assert (err["code"], err["param"], err["type"]) == ("invalid_value", "headers.X-Api-Key",
                                                            "invalid_request_error")
        assert err["message"] == "headers.X-Api-Key: empty or only whitespace, which is no credential"
    assert error(owner.call("GET", f"{SERVERS}/blank-header"), 404)["code"] == "mcp_server_not_found"
    owner.ok("POST", SERVERS, {**body, "headers": {"X-Api-Key": SECRET_HEADER}}, status=201)
    err = error(owner.call("PATCH", f"{SERVERS}/blank-header", {"headers": {"X-Api-Key": " "}}), 400)
    assert (err["code"], err["param"]) == ("invalid_value", "headers.X-Api-Key")
    assert owner.ok("GET", f"{SERVERS}/blank-header")["headers"] == ["X-Api-Key"]
    owner.ok("DELETE", f"{SERVERS}/blank-header")


def test_config_check_refuses_a_blank_client_secret(tmp_path: Path) -> None:
    """As a provider's blank api_key: an empty or blank ${VAR} is no client secret, nor a static
    header's value (accepted before, and sent with every call)."""
    path = tmp_path / "config.yaml"
    server = {"name": "wiki", "url": "https://wiki.example/mcp",
              "headers": {"X-Api-Key": "${WIKI_CLIENT_SECRET}"},
              "oauth": {"client_id": "switchboard", "client_secret": "${WIKI_CLIENT_SECRET}"}}
    path.write_text(yaml.safe_dump({"auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
                                    "mcp_servers": [server]}))
    for value in ("", "  "):
        proc = spawn(["config", "check", str(path)],
                     env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY, "WIKI_CLIENT_SECRET": value})
        assert proc.wait_exit(60) == 2, proc.output
        assert (f"{path}: mcp_servers[0].oauth.client_secret: empty or only whitespace, which is no "
                "credential") in proc.output, proc.output
        blank_header = (f"{path}: mcp_servers[0].headers.X-Api-Key: empty or only whitespace, which is "
                        "no credential (an empty ${VAR}?); leave the header out to send none")
        assert blank_header in proc.output, proc.output
    proc = spawn(["config", "check", str(path)], env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY,
                                                      "WIKI_CLIENT_SECRET": CLIENT_SECRET})
    assert proc.wait_exit(60) == 0, proc.output


def test_global_servers_and_names_unique_among_what_a_tenant_sees(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    tenant, owner, _ = tenant_with_roles(admin)
    other, other_owner, _ = tenant_with_roles(admin)
    name = f"search-{uuid.uuid4().hex[:6]}"
    # Only the platform admin registers a global server.
    assert error(owner.call("POST", SERVERS, {"name": "g", "url": "https://g.example", "global": True}),
                 403)["code"] == "permission_denied"
    shared = admin.ok("POST", SERVERS, {"name": name, "url": "https://search.example/mcp", "global": True},
                      status=201)
    assert (shared["tenant"], shared["global"]) == (None, True)
    assert name in {s["name"] for s in other_owner.ok("GET", SERVERS)["data"]}
    # A tenant admin sees it but may not change it; nobody registers the same name beside it.
    assert error(owner.call("DELETE", f"{SERVERS}/{name}"), 403)["code"] == "permission_denied"
    assert error(owner.call("POST", SERVERS, {"name": name, "url": "https://x.example"}), 409)["code"] == (
        "mcp_server_exists")
    assert error(owner.call("POST", SERVERS, {"name": "yaml-docs", "url": "https://x.example"}), 409)
    readonly = error(owner.call("PATCH", f"{SERVERS}/yaml-docs", {"description": "x"}), 409)
    assert readonly["code"] == "read_only"
    # Two tenants may each have their own server of one name; each sees only its own.
    for who in (owner, other_owner):
        body = {"name": "crm", "url": "https://crm.example/mcp", "description": who.key[-6:]}
        who.ok("POST", SERVERS, body, status=201)
    assert error(owner.call("POST", SERVERS, {"name": "crm", "url": "https://crm.example"}), 409)
    mine = owner.ok("GET", f"{SERVERS}/crm")
    assert mine["tenant"] == tenant and mine["description"] == owner.key[-6:]
    # A global name already used by a tenant is refused.
    assert error(admin.call("POST", SERVERS, {"name": "crm", "url": "https://crm.example", "global": True}),
                 409)["code"] == "mcp_server_exists"
    # The platform admin reaches a tenant's server with ?tenant=; a tenant admin never another's.
    assert admin.ok("GET", f"{SERVERS}/crm", params={"tenant": other})["tenant"] == other
    assert error(owner.call("GET", f"{SERVERS}/crm", params={"tenant": other}), 404)
    assert error(owner.call("GET", SERVERS, params={"tenant": other}), 404)["code"] == "tenant_not_found"
    admin.ok("DELETE", f"{SERVERS}/{name}")


@pytest.mark.parametrize(("body", "param"), [
    ({"name": "a", "url": "ftp://files.example/mcp"}, "url"),
    ({"name": "a", "url": "not a url"}, "url"),
    ({"name": "a", "url": "https://"}, "url"),
    ({"name": "a", "url": "https://user:pw-in-url@host.example/mcp"}, "url"),
    ({"name": "a", "url": "http://host:99999/mcp"}, "url"),
    ({"name": "a"}, "url"),
    ({"name": "a__b", "url": "https://x.example"}, "name"),
    ({"name": "math_", "url": "https://x.example"}, "name"),  # "math___add" reads as math, "_add"
    ({"name": "-a", "url": "https://x.example"}, "name"),
    ({"name": "a", "url": "https://x.example", "transport": "stdio"}, "transport"),
    ({"name": "a", "url": "https://x.example", "command": ["sh"]}, "command"),
    ({"name": "a", "url": "http://2130706433:21401/mcp"}, "url"),  # 127.0.0.1, as a decimal
    ({"name": "a", "url": "http://0x7f000001/mcp"}, "url"),
    ({"name": "a", "url": "http://127.1/mcp"}, "url"),
    ({"name": "a", "url": "https://x.example", "oauth": {"token_url": "http://0177.0.0.1/token"}},
     "oauth.token_url"),
    ({"name": "a", "url": "https://x.example", "headers": {"X-Bad": "a\r\nb"}}, "headers.X-Bad"),
    ({"name": "a", "url": "https://x.example", "headers": {"Host": "evil"}}, "headers.Host"),
    ({"name": "a", "url": "https://x.example", "oauth": {"token_url": "javascript:alert(1)"}},
     "oauth.token_url"),
    ({"name": "a", "url": "https://x.example", "oauth": {"revocation_url": "ftp://as.example/revoke"}},
     "oauth.revocation_url"),
    ({"name": "a", "url": "https://x.example", "oauth": {"revocation_url": "http://0x7f000001/revoke"}},
     "oauth.revocation_url"),
    ({"name": "a", "url": "https://x.example", "price_per_call": -1}, "price_per_call"),
    ({"name": "a", "url": "https://x.example", "max_concurrency": 0}, "max_concurrency"),
    ({"name": "a", "url": "https://x.example", "surprise": 1}, "surprise"),
])
def test_bad_input_is_refused_without_echoing_secrets(gateway: Gateway, body: dict[str, Any],
                                                      param: str) -> None:
    admin = Admin(gateway.url)
    err = error(admin.call("POST", SERVERS, body), 400)
    assert err["param"] == param, err
    assert "pw-in-url" not in str(err)


def test_credentials_in_a_servers_url_are_never_shown(gateway: Gateway) -> None:
    """A URL's password and its credential query parameters (``?token=``, ``?key=``...) are in
    no answer, to any role: the URL shows as its origin; the server's other settings as they are."""
    admin = Admin(gateway.url)
    _, owner, developer = tenant_with_roles(admin)
    for who in (admin, owner, developer):
        listed = who.call("GET", SERVERS)
        assert listed.status_code == 200, listed.text
        assert URL_PASSWORD not in listed.text and URL_TOKEN not in listed.text
        (shown,) = [s for s in listed.json()["data"] if s["name"] == "yaml-url-secrets"]
        assert shown["url"] == "http://127.0.0.1:9/…"
        one = who.call("GET", f"{SERVERS}/yaml-url-secrets")
        assert one.status_code == 200 and one.json()["url"] == shown["url"], one.text
    # A stored server's URL (no user info allowed there) the same way.
    name = f"q-{uuid.uuid4().hex[:6]}"
    created = owner.ok("POST", SERVERS, {"name": name, "url": f"https://q.example/mcp?api_key={URL_TOKEN}"},
                       status=201)
    assert created["url"] == "https://q.example/…"
    assert URL_TOKEN not in developer.call("GET", f"{SERVERS}/{name}").text
    audit = admin.call("GET", "/admin/v1/audit",
                       params={"tenant": created["tenant"], "resource_id": created["id"]})
    assert audit.status_code == 200 and URL_TOKEN not in audit.text, audit.text


def test_a_url_whose_path_is_its_secret_is_shown_by_its_origin_only(gateway: Gateway) -> None:
    """A hosted server's URL carries its token in the path (Zapier's ``/mcp/<token>/sse``):
    answers to every role, the list, a change's answer and the audit entries show its scheme,
    host and port only, and the process's log never has it."""
    admin = Admin(gateway.url)
    tenant, owner, developer = tenant_with_roles(admin)
    token, moved_token = "zap-" + uuid.uuid4().hex, "zap-" + uuid.uuid4().hex
    name = f"zap-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "transport": "sse", "url": f"https://actions.zapier.example/mcp/{token}/sse"}
    created = owner.ok("POST", SERVERS, body, status=201)
    assert created["url"] == "https://actions.zapier.example/…"
    for who in (admin, owner, developer):
        one = who.call("GET", f"{SERVERS}/{name}", params={"tenant": tenant} if who is admin else None)
        listed = who.call("GET", SERVERS, params={"tenant": tenant} if who is admin else None)
        assert one.status_code == 200 and one.json()["url"] == "https://actions.zapier.example/…", one.text
        assert listed.status_code == 200 and token not in listed.text, listed.text
        assert name in {s["name"] for s in listed.json()["data"]}
    changed = owner.ok("PATCH", f"{SERVERS}/{name}",
                       {"url": f"https://Actions.Zapier.example:8443/mcp/{moved_token}/sse"})
    assert changed["url"] == "https://actions.zapier.example:8443/…"
    owner.ok("DELETE", f"{SERVERS}/{name}")
    audit = admin.call("GET", "/admin/v1/audit", params={"tenant": tenant, "resource_id": created["id"]})
    assert audit.status_code == 200, audit.text
    entries = audit.json()["data"]
    assert [e["action"] for e in entries] == ["mcp_server.delete", "mcp_server.update", "mcp_server.create"]
    update = entries[1]
    assert (update["before"]["url"], update["after"]["url"]) == (
        "https://actions.zapier.example/…", "https://actions.zapier.example:8443/…")
    for secret in (token, moved_token):
        assert secret not in audit.text and secret not in gateway.process.output


def test_config_check_names_a_servers_url_by_its_origin_only(tmp_path: Path) -> None:
    """A refused URL in ``mcp_servers`` is named without its path: it may be the credential."""
    token = "zap-" + uuid.uuid4().hex
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
                                    "mcp_servers": [{"name": "zap", "transport": "sse",
                                                     "url": f"http://0x7f000001:9/mcp/{token}/sse"}]}))
    proc = spawn(["config", "check", str(path)], env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY})
    assert proc.wait_exit(60) == 2
    assert "mcp_servers" in proc.output and "'http://0x7f000001:9/…'" in proc.output, proc.output
    assert token not in proc.output


def test_another_tenants_server_is_404_and_not_listed(gateway: Gateway) -> None:
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    _, intruder, _ = tenant_with_roles(admin)
    name = f"private-{uuid.uuid4().hex[:6]}"
    owner.ok("POST", SERVERS, {"name": name, "url": "https://private.example/mcp",
                               "headers": {"Authorization": SECRET_HEADER}}, status=201)
    for method, body in (("GET", None), ("PATCH", {"description": "mine now"}), ("DELETE", None)):
        assert error(intruder.call(method, f"{SERVERS}/{name}", body), 404)["code"] == "mcp_server_not_found"
    assert name not in {s["name"] for s in intruder.ok("GET", SERVERS)["data"]}
    assert owner.ok("GET", f"{SERVERS}/{name}")["description"] is None
    # Bad PATCH bodies too.
    assert error(owner.call("PATCH", f"{SERVERS}/{name}", {"url": None}), 400)["param"] == "url"
    bad_url = owner.call("PATCH", f"{SERVERS}/{name}", {"url": "file:///etc/passwd"})
    assert error(bad_url, 400)["param"] == "url"
    assert error(owner.call("PATCH", f"{SERVERS}/{name}", {"name": "renamed"}), 400)["param"] == "name"
    assert SECRET_HEADER not in gateway.process.output


def test_a_tenants_server_may_not_point_at_an_internal_address(gateway: Gateway) -> None:
    """A tenant's servers reach public addresses only (docs/access.md, "Egress"): an internal
    address in the URL is refused when registered or changed; the platform admin's global ones and
    the default tenant's are the operator's own."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    for url in ("http://127.0.0.1:9/mcp", "http://169.254.169.254/latest", "http://[::1]:9/mcp",
                "http://10.0.0.8/mcp"):
        err = error(owner.call("POST", SERVERS, {"name": "inside", "url": url}), 400)
        assert (err["param"], err["code"]) == ("url", "upstream_address_refused"), err
    name = f"outside-{uuid.uuid4().hex[:6]}"
    owner.ok("POST", SERVERS, {"name": name, "url": "https://tools.example/mcp"}, status=201)
    moved = error(owner.call("PATCH", f"{SERVERS}/{name}", {"url": "http://192.168.0.10/mcp"}), 400)
    assert moved["code"] == "upstream_address_refused"
    assert owner.ok("GET", f"{SERVERS}/{name}")["url"] == "https://tools.example/…"
    # A tenant admin of the default tenant is not the operator: held to the same rules.
    lead = admin.as_key(admin.ok("POST", "/admin/v1/keys", {"role": "tenant_admin", "models": ["*"]},
                                 status=201)["key"])
    for url in ("http://127.0.0.1:9/mcp", "http://169.254.169.254/latest"):
        err = error(lead.call("POST", SERVERS, {"name": "inside", "url": url}), 400)
        assert (err["param"], err["code"]) == ("url", "upstream_address_refused"), err
    named = f"named-{uuid.uuid4().hex[:6]}"
    lead.ok("POST", SERVERS, {"name": named, "url": "http://localhost:9/mcp"}, status=201)  # a name: later
    err = error(lead.call("PATCH", f"{SERVERS}/{named}", {"url": "http://10.0.0.8/mcp"}), 400)
    assert err["code"] == "upstream_address_refused"
    admin.ok("PATCH", f"{SERVERS}/{named}", {"url": "http://10.0.0.8/mcp"})  # now the operator's
    lead.ok("PATCH", f"{SERVERS}/{named}", {"description": "kept"})  # the URL, and its rules, kept
    lead.ok("DELETE", f"{SERVERS}/{named}")
    own = f"own-{uuid.uuid4().hex[:6]}"
    admin.ok("POST", SERVERS, {"name": own, "url": "http://127.0.0.1:9/mcp", "global": True}, status=201)
    admin.ok("DELETE", f"{SERVERS}/{own}")
    admin.ok("POST", SERVERS, {"name": own, "url": "http://127.0.0.1:9/mcp"}, status=201)  # default tenant
    admin.ok("DELETE", f"{SERVERS}/{own}")



def test_every_answer_shows_whose_egress_rules_a_server_follows(gateway: Gateway) -> None:
    """``egress`` (read-only): ``operator`` for the configuration file's servers, global ones and
    what the platform admin registered or last pointed elsewhere in the default tenant;
    ``public_only`` for a default-tenant admin's and every other tenant's (docs/access.md)."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    lead = admin.as_key(admin.ok("POST", "/admin/v1/keys", {"role": "tenant_admin", "models": ["*"]},
                                 status=201)["key"])
    theirs, ours, shared, acme = (f"e{uuid.uuid4().hex[:6]}" for _ in range(4))
    made = {theirs: lead.ok("POST", SERVERS, {"name": theirs, "url": "https://a.example/mcp"}, status=201),
            ours: admin.ok("POST", SERVERS, {"name": ours, "url": "https://b.example/mcp"}, status=201),
            shared: admin.ok("POST", SERVERS, {"name": shared, "url": "https://c.example/mcp",
                                               "global": True}, status=201),
            acme: owner.ok("POST", SERVERS, {"name": acme, "url": "https://d.example/mcp"}, status=201)}
    assert {n: s["egress"] for n, s in made.items()} == {
        theirs: "public_only", ours: "operator", shared: "operator", acme: "public_only"}
    listed = {s["name"]: s["egress"] for s in admin.ok("GET", SERVERS, params={"limit": 1000})["data"]}
    assert {n: listed[n] for n in (theirs, ours, shared, "yaml-docs")} == {
        theirs: "public_only", ours: "operator", shared: "operator", "yaml-docs": "operator"}
    assert lead.ok("GET", f"{SERVERS}/yaml-docs")["egress"] == "operator"
    # A change that keeps the URL keeps the rules; a new URL takes those of whoever set it.
    assert admin.ok("PATCH", f"{SERVERS}/{theirs}", {"description": "x"})["egress"] == "public_only"
    assert admin.ok("PATCH", f"{SERVERS}/{theirs}", {"url": "https://e.example/mcp"})["egress"] == "operator"
    assert lead.ok("GET", f"{SERVERS}/{theirs}")["egress"] == "operator"
    assert lead.ok("PATCH", f"{SERVERS}/{ours}", {"url": "https://f.example/mcp"})["egress"] == "public_only"
    # Not a field anyone sets.
    assert error(admin.call("PATCH", f"{SERVERS}/{ours}", {"egress": "operator"}), 400)["param"] == "egress"
    audit = admin.ok("GET", "/admin/v1/audit", params={"resource_id": admin.ok(
        "GET", f"{SERVERS}/{ours}")["id"]})
    update = next(e for e in audit["data"] if e["action"] == "mcp_server.update")
    assert (update["before"]["egress"], update["after"]["egress"]) == ("operator", "public_only")
    for name in (theirs, ours, shared):
        admin.ok("DELETE", f"{SERVERS}/{name}")
    owner.ok("DELETE", f"{SERVERS}/{acme}")


@pytest.fixture(scope="module")
def math_server() -> Iterator[McpUpstream]:
    server = start_mcp_server("math")
    yield server
    server.process.stop()


def test_a_server_a_default_tenant_admin_registers_reaches_public_addresses_only(
        gateway: Gateway, math_server: McpUpstream) -> None:
    """A tenant admin of the default tenant is not the operator (docs/access.md, "Egress"): its
    server at a name resolving to this machine is refused when called, before anything is sent;
    the same server registered by the platform admin is the operator's own and serves."""
    admin = Admin(gateway.url)
    lead = admin.as_key(admin.ok("POST", "/admin/v1/keys", {"role": "tenant_admin", "models": ["*"]},
                                 status=201)["key"])
    caller = admin.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)["key"]
    inward = math_server.url.replace("127.0.0.1", "localhost")
    theirs, ours = (f"m{uuid.uuid4().hex[:6]}" for _ in range(2))
    literal = error(lead.call("POST", SERVERS, {"name": theirs, "url": math_server.url}), 400)
    assert (literal["param"], literal["code"]) == ("url", "upstream_address_refused"), literal
    assert lead.ok("POST", SERVERS, {"name": theirs, "url": inward}, status=201)["tenant"] == "default"
    assert admin.ok("POST", SERVERS, {"name": ours, "url": inward}, status=201)["tenant"] == "default"

    async def scenario() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {caller}"}, timeout=30) as http,
            streamable_http_client(gateway.url + "/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as client,
        ):
            await client.initialize()
            with pytest.raises(MCPError) as refused:
                await client.call_tool(f"{theirs}__add", {"a": 1, "b": 2})
            assert refused.value.error.data["code"] == "upstream_address_refused"  # type: ignore[index]
            added = await client.call_tool(f"{ours}__add", {"a": 1, "b": 2})
            assert added.structured_content == {"result": 3}

    try:
        asyncio.run(scenario())
    finally:
        for name in (theirs, ours):
            admin.call("DELETE", f"{SERVERS}/{name}")


@pytest.mark.parametrize("name", ["notes_", "a__b"])
def test_a_server_name_that_would_make_tool_names_ambiguous_is_refused(gateway: Gateway, name: str) -> None:
    """``notes_`` would expose ``notes___read``, read back as tool ``_read`` of ``notes``."""
    err = error(Admin(gateway.url).call("POST", SERVERS, {"name": name, "url": "https://x.example/mcp"}), 400)
    assert (err["param"], err["code"]) == ("name", "invalid_value"), err
    assert "end with '_'" in err["message"]


def test_config_check_refuses_a_server_name_ending_with_an_underscore(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
                                    "mcp_servers": [{"name": "notes_", "url": "http://127.0.0.1:9/mcp"}]}))
    proc = spawn(["config", "check", str(path)], env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY})
    assert proc.wait_exit(60) == 2
    assert "mcp_servers" in proc.output and "end with '_'" in proc.output, proc.output


@pytest.mark.parametrize("field", ["authorization_url", "token_url", "revocation_url"])
def test_config_check_refuses_an_oauth_url_no_request_could_go_to(tmp_path: Path, field: str) -> None:
    path = tmp_path / "config.yaml"
    oauth = {"authorization_url": "https://as.example/authorize", "token_url": "https://as.example/token",
             "revocation_url": "https://as.example/revoke", field: "as.example/endpoint"}
    path.write_text(yaml.safe_dump({"auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
                                    "mcp_servers": [{"name": "notes", "url": "https://notes.example/mcp",
                                                     "oauth": oauth}]}))
    proc = spawn(["config", "check", str(path)], env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY})
    assert proc.wait_exit(60) == 2
    assert field in proc.output and "http://" in proc.output, proc.output


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"transport": "stdio", "command": ["sh", "-c", "id"]}, "command", "unknown_parameter"),
    ({"command": ["sh"]}, "command", "unknown_parameter"),
    ({"env": {"A": "b"}}, "env", "unknown_parameter"),
    ({"transport": "stdio"}, "transport", "invalid_value"),
])
def test_stdio_servers_are_refused_with_the_documented_codes(gateway: Gateway, body: dict[str, Any],
                                                             param: str, code: str) -> None:
    """stdio servers come from the configuration file only (docs/api.md): ``command`` and ``env``
    are parameters the API does not know, ``transport: stdio`` a value it does not take."""
    body = {"name": "a", "url": "https://x.example/mcp", **body}
    err = error(Admin(gateway.url).call("POST", SERVERS, body), 400)
    assert (err["param"], err["code"]) == (param, code), err
    assert "configuration file only" in err["message"]


def test_an_ipv4_address_in_a_shorthand_form_is_refused_for_every_tenant(gateway: Gateway) -> None:
    """``http://2130706433/`` is 127.0.0.1 to a resolver: refused at registration (the default
    tenant's too, where nothing else would hold it), as ``invalid_url`` naming the field."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    for caller in (admin, owner):
        err = error(caller.call("POST", SERVERS, {"name": "dec", "url": "http://2130706433:21401/mcp"}), 400)
        assert (err["param"], err["code"]) == ("url", "invalid_url")
        assert "four decimal numbers" in err["message"]
    name = f"dotted-{uuid.uuid4().hex[:6]}"
    admin.ok("POST", SERVERS, {"name": name, "url": "http://127.0.0.1:21401/mcp"}, status=201)
    moved = error(admin.call("PATCH", f"{SERVERS}/{name}", {"url": "http://0x7f.1:21401/mcp"}), 400)
    assert (moved["param"], moved["code"]) == ("url", "invalid_url")
    admin.ok("DELETE", f"{SERVERS}/{name}")


def test_the_client_secret_does_not_follow_a_revocation_endpoint_to_another_origin(gateway: Gateway) -> None:
    """The client secret authenticates the gateway at the revocation endpoint too (RFC 7009, as
    at the token endpoint): a change that points ``oauth.revocation_url`` at another origin while
    keeping the token endpoint must give the secret again, or it is sent there at the next
    revocation."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    oauth = {"client_id": "switchboard", "authorization_url": "https://auth.example/authorize",
             "token_url": "https://auth.example/token"}
    owner.ok("POST", SERVERS, {"name": "revoker", "url": "https://mcp.example/v1",
                               "oauth": {**oauth, "client_secret": CLIENT_SECRET}}, status=201)
    # Configured at another origin than the one it was discovered through: the secret given again.
    owner.ok("PATCH", f"{SERVERS}/revoker", {"oauth": {**oauth, "revocation_url": "https://auth.example/revoke",
                                                        "client_secret": CLIENT_SECRET}})
    # Every endpoint the secret goes to configured: the server itself may move without it.
    owner.ok("PATCH", f"{SERVERS}/revoker", {"url": "https://mcp2.example/v1"})
    refused = error(owner.call("PATCH", f"{SERVERS}/revoker", {
        "oauth": {**oauth, "revocation_url": "https://revoke.elsewhere.example/revoke"}}), 400)
    assert (refused["code"], refused["param"]) == ("client_secret_required", "oauth.client_secret")


def test_the_client_secret_does_not_follow_a_discovered_revocation_endpoint_to_another_origin(
        gateway: Gateway) -> None:
    """With ``token_url`` configured but not ``authorization_url``, the endpoints not configured
    (the revocation endpoint among them) are read from the metadata the server's origin names: a
    server moved to another origin names its own, and the client secret is sent there at the next
    revocation. The move keeps the token endpoint, but must still give the secret again."""
    admin = Admin(gateway.url)
    _, owner, _ = tenant_with_roles(admin)
    owner.ok("POST", SERVERS, {"name": "discovering", "url": "https://mcp.example/v1",
                               "oauth": {"client_id": "switchboard", "client_secret": CLIENT_SECRET,
                                         "token_url": "https://auth.example/token"}}, status=201)
    moved = owner.call("PATCH", f"{SERVERS}/discovering", {"url": "https://elsewhere.example/v1"})
    refused = error(moved, 400)
    assert (refused["code"], refused["param"]) == ("client_secret_required", "oauth.client_secret")
