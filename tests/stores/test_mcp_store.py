"""The MCP store: servers per tenant or global, per-user OAuth tokens, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from switchboard.stores.protocols import McpServerRecord, McpTokenRecord, utcnow
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


def server(sid: str, name: str, tenant: str | None, **config: object) -> McpServerRecord:
    return McpServerRecord(id=sid, name=name, tenant_id=tenant,
                           config={"url": f"https://{name}.example/mcp", **config},
                           sealed="v1.k.sealed", header_names=("Authorization",), created_by="master")


async def test_servers_per_tenant_and_global(backend: Backend) -> None:
    store = backend.stores.mcp
    assert store is not None
    assert await store.create_server(server("mcp_1", "docs", "acme"))
    assert await store.create_server(server("mcp_2", "docs", "other"))  # another tenant's scope
    assert not await store.create_server(server("mcp_3", "docs", "acme"))  # taken in acme
    assert await store.create_server(server("mcp_4", "search", None))
    assert not await store.create_server(server("mcp_5", "search", None))
    got = await store.get_server("mcp_1")
    assert got is not None and (got.tenant_id, got.config["url"], got.sealed, tuple(got.header_names)) == (
        "acme", "https://docs.example/mcp", "v1.k.sealed", ("Authorization",))
    assert (await store.find_server(None, "search")).id == "mcp_4"  # type: ignore[union-attr]
    assert await store.find_server("acme", "search") is None  # global, not acme's own
    assert [s.id for s in await store.list_servers("acme")] == ["mcp_1", "mcp_4"]
    assert [s.id for s in await store.list_servers("acme", with_global=False)] == ["mcp_1"]
    assert [s.id for s in await store.list_servers(None)] == ["mcp_4"]
    assert [s.id for s in await store.list_servers(None, every_tenant=True)] == ["mcp_1", "mcp_2", "mcp_4"]
    changed = McpServerRecord(id="mcp_1", name="renamed-ignored", tenant_id="acme",
                              config={"url": "https://docs2.example/mcp"}, sealed=None, header_names=())
    assert await store.update_server(changed)
    got = await store.get_server("mcp_1")
    assert got is not None and (got.name, got.config["url"], got.sealed, got.created_by) == (
        "docs", "https://docs2.example/mcp", None, "master")
    assert not await store.update_server(server("mcp_9", "x", "acme"))


async def test_tokens_per_user_and_removed_with_their_server(backend: Backend) -> None:
    store = backend.stores.mcp
    assert store is not None
    assert await store.create_server(server("mcp_t", "wiki", "acme"))
    assert await store.create_server(server("mcp_g", "web", None))
    soon = utcnow() + timedelta(minutes=5)
    await store.put_token(McpTokenRecord("acme", "alice", "wiki", "sealed-a", soon))
    await store.put_token(McpTokenRecord("acme", "bob", "wiki", "sealed-b"))
    await store.put_token(McpTokenRecord("acme", "alice", "web", "sealed-w"))
    await store.put_token(McpTokenRecord("beta", "carol", "web", "sealed-c"))
    alice = await store.get_token("acme", "alice", "wiki")
    assert alice is not None and alice.sealed == "sealed-a" and alice.expires_at is not None
    assert abs((alice.expires_at - soon).total_seconds()) < 1
    await store.put_token(McpTokenRecord("acme", "alice", "wiki", "sealed-a2", None))  # replaced
    alice = await store.get_token("acme", "alice", "wiki")
    assert alice is not None and (alice.sealed, alice.expires_at) == ("sealed-a2", None)
    assert await store.get_token("beta", "alice", "wiki") is None  # another tenant
    assert await store.delete_token("acme", "bob", "wiki")
    assert not await store.delete_token("acme", "bob", "wiki")
    removed = await store.delete_server("mcp_t")
    assert removed is not None and removed[0].name == "wiki"
    assert [(t.user_id, t.sealed) for t in removed[1]] == [("alice", "sealed-a2")]  # to revoke
    assert await store.get_token("acme", "alice", "wiki") is None
    assert (await store.get_token("acme", "alice", "web")) is not None
    await store.delete_server("mcp_g")  # a global server: every tenant's tokens for it go
    assert await store.get_token("acme", "alice", "web") is None
    assert await store.get_token("beta", "carol", "web") is None
    assert await store.delete_server("mcp_g") is None


async def test_a_servers_tokens_are_deleted_while_it_stays(backend: Backend) -> None:
    """What a changed URL or OAuth client does (the server is kept, its users' tokens go): a
    tenant's server's, within its tenant; a global server's, in every tenant without a server of
    its own of that name."""
    store = backend.stores.mcp
    assert store is not None
    assert await store.create_server(server("mcp_dt", "notes", "acme"))
    assert await store.create_server(server("mcp_dg", "maps", None))
    assert await store.create_server(server("mcp_do", "maps", "gamma"))  # gamma's own "maps"
    for tenant, user, name in (("acme", "alice", "notes"), ("acme", "bob", "notes"), ("beta", "dan", "notes"),
                               ("acme", "alice", "maps"), ("beta", "dan", "maps"), ("gamma", "eve", "maps")):
        await store.put_token(McpTokenRecord(tenant, user, name, f"sealed-{tenant}-{user}-{name}"))
    notes, maps = await store.get_server("mcp_dt"), await store.get_server("mcp_dg")
    assert notes is not None and maps is not None
    deleted = await store.move_server(notes)
    assert deleted is not None
    # The records deleted, sealed as stored: revoked at the authorization server afterwards.
    assert sorted((t.tenant_id, t.user_id, t.server, t.sealed) for t in deleted) == [
        ("acme", "alice", "notes", "sealed-acme-alice-notes"),
        ("acme", "bob", "notes", "sealed-acme-bob-notes")]
    assert await store.get_token("acme", "alice", "notes") is None
    assert await store.get_token("beta", "dan", "notes") is not None  # another tenant's server
    assert {(t.tenant_id, t.user_id) for t in await store.move_server(maps) or []} == {
        ("acme", "alice"), ("beta", "dan")}
    assert await store.get_token("acme", "alice", "maps") is None
    assert await store.get_token("beta", "dan", "maps") is None
    assert await store.get_token("gamma", "eve", "maps") is not None  # its own server's
    assert await store.move_server(notes) == []
    assert await store.get_server("mcp_dt") is not None and await store.get_server("mcp_dg") is not None


async def test_secrets_rotate_reseals_server_secrets_and_tokens(backend: Backend) -> None:
    from switchboard.crypto.keyring import Keyring
    from switchboard.crypto.rotate import rotate
    from switchboard.mcp.oauth import token_aad
    from switchboard.mcp.stored import Opened, seal, server_aad, unseal

    store = backend.stores.mcp
    assert store is not None
    old = Keyring.from_secrets("the old secret key, long enough")
    sealed = seal(old, "mcp_r", Opened({"Authorization": "Bearer static"}, "client-secret", None))
    assert await store.create_server(McpServerRecord(id="mcp_r", name="rot", tenant_id="acme", config={},
                                                     sealed=sealed))
    # Stored before URLs were sealed: its whole URL in clear, nothing sealed.
    assert await store.create_server(McpServerRecord(
        id="mcp_c", name="clear", tenant_id="acme", config={"url": "https://h.example/mcp/tok-123/sse"}))
    sealed_tokens = old.encrypt("tokens", token_aad("acme", "alice", "rot"))
    await store.put_token(McpTokenRecord("acme", "alice", "rot", sealed_tokens))
    new = Keyring.from_secrets("the new secret key, long enough", ["the old secret key, long enough"])
    done = await rotate(backend.stores.providers, new, store)
    assert (done.mcp_secrets, done.mcp_tokens) == (2, 1)
    again = await rotate(backend.stores.providers, new, store)
    assert (again.mcp_secrets, again.mcp_tokens) == (0, 0)  # idempotent
    record = await store.get_server("mcp_r")
    token = await store.get_token("acme", "alice", "rot")
    assert record is not None and record.sealed is not None and token is not None
    only_new = Keyring.from_secrets("the new secret key, long enough")
    assert "client-secret" in only_new.decrypt(record.sealed, server_aad("mcp_r"))
    assert only_new.decrypt(token.sealed, token_aad("acme", "alice", "rot")) == "tokens"
    clear = await store.get_server("mcp_c")
    assert clear is not None and clear.sealed is not None and "tok-123" not in str(clear.config)
    assert clear.config["url"] == "https://h.example/…"
    assert unseal(only_new, clear).url == "https://h.example/mcp/tok-123/sse"
