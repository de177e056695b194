"""TenancyStore contract: tenants, teams and users (people and service accounts), scoped by
tenant, paged by id, with lookups across tenants for the platform admin only."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from switchboard.stores import KeyRecord, Team, Tenant, User, UserQuery
from switchboard.stores.protocols.tenancy import TenantIdRetired
from tests.stores.conftest import Backend, revoke

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def test_the_default_tenant_exists_and_tenants_round_trip(backend: Backend) -> None:
    store = backend.stores.tenancy
    default = await store.get_tenant("default")
    assert default is not None and default.name == "Default"
    acme = Tenant("acme", name="Acme", created_at=T0, created_by="master")
    await store.create_tenant(acme)
    assert await store.get_tenant("acme") == acme
    with pytest.raises(ValueError, match="taken"):
        await store.create_tenant(Tenant("acme"))
    assert await store.update_tenant(replace(acme, name="Acme Ltd"))
    assert (await store.get_tenant("acme")).name == "Acme Ltd"  # type: ignore[union-attr]
    assert not await store.update_tenant(Tenant("nope", name="x"))
    for name in ("b-1", "b-2", "b-3"):
        await store.create_tenant(Tenant(name))
    first = await store.list_tenants(limit=2)
    rest = await store.list_tenants(after=first[-1].id, limit=10)
    assert [t.id for t in first + rest] == ["acme", "b-1", "b-2", "b-3", "default"]
    assert await store.delete_tenant("b-2") == [] and await store.delete_tenant("b-2") is None
    assert await store.get_tenant("b-2") is None
    with pytest.raises(TenantIdRetired):  # its data is still filed under the id
        await store.create_tenant(Tenant("b-2", name="someone else"))
    assert await store.get_tenant("b-2") is None


async def test_teams_are_scoped_by_tenant(backend: Backend) -> None:
    store = backend.stores.tenancy
    red = Team("team_red", "acme", name="Red", created_at=T0)
    await store.create_team(red)
    await store.create_team(Team("team_blue", "acme", name="Blue"))
    await store.create_team(Team("team_other", "globex"))
    with pytest.raises(ValueError):
        await store.create_team(Team("team_red", "globex"))  # ids are unique across tenants
    assert await store.get_team("acme", "team_red") == red
    assert await store.get_team("globex", "team_red") is None
    other = await store.find_team("team_other")
    assert other is not None and other.tenant_id == "globex"
    assert [t.id for t in await store.list_teams("acme")] == ["team_blue", "team_red"]
    assert [t.id for t in await store.list_teams("acme", after="team_blue")] == ["team_red"]
    assert [t.id for t in await store.list_teams("acme", limit=1)] == ["team_blue"]
    # An update or delete through the wrong tenant touches nothing.
    assert not await store.update_team(replace(red, tenant_id="globex", name="stolen"))
    assert not await store.delete_team("globex", "team_red")
    assert (await store.get_team("acme", "team_red")).name == "Red"  # type: ignore[union-attr]
    assert await store.update_team(replace(red, name="Crimson"))
    assert (await store.get_team("acme", "team_red")).name == "Crimson"  # type: ignore[union-attr]
    assert await store.delete_team("acme", "team_red")
    assert await store.list_teams("acme") == [await store.get_team("acme", "team_blue")]


async def test_only_an_empty_team_or_tenant_is_deleted(backend: Backend) -> None:
    """The store checks emptiness in the delete itself: a member or an enabled key added after
    the admin API counted keeps the team (or tenant)."""
    store, keys = backend.stores.tenancy, backend.stores.keys
    await store.create_tenant(Tenant("initech"))
    await store.create_team(Team("team_ops", "initech"))
    await store.create_user(User("user_pat", "initech", role="developer", team_id="team_ops"))
    await keys.put(KeyRecord("key_ops", "hash-ops", "sk-sb-ops", "initech", team_id="team_ops"))
    assert await store.count_members("initech") == (1, 1, 1)
    assert await store.count_members("initech", team_id="team_ops") == (0, 1, 1)
    assert not await store.delete_team("initech", "team_ops")
    assert await store.delete_user("initech", "user_pat")
    assert not await store.delete_team("initech", "team_ops")  # the enabled key still holds it
    assert await revoke(keys, "initech", "key_ops")
    assert await store.count_members("initech", team_id="team_ops") == (0, 0, 0)
    assert await store.delete_tenant("initech") is None  # its team is still there
    assert await store.delete_team("initech", "team_ops")
    assert await store.delete_tenant("initech") == []
    assert await store.get_tenant("initech") is None


async def test_users_and_service_accounts_filtered_paged_and_scoped(backend: Backend) -> None:
    store = backend.stores.tenancy
    await store.create_team(Team("team_a", "acme"))
    ada = User("user_ada", "acme", role="team_admin", team_id="team_a", name="Ada", email="ada@acme.test",
               created_at=T0, created_by="master")
    await store.create_user(ada)
    await store.create_user(User("user_bob", "acme", role="developer", team_id="team_a"))
    await store.create_user(User("user_cy", "acme", role="viewer"))
    bot = User("sa_bot", "acme", role="developer", kind="service_account", team_id="team_a")
    await store.create_user(bot)
    await store.create_user(User("user_zed", "globex", role="tenant_admin"))
    assert await store.get_user("acme", "user_ada") == ada
    assert await store.get_user("acme", "user_zed") is None
    assert (await store.find_user("user_zed")).tenant_id == "globex"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        await store.create_user(User("user_zed", "acme", role="viewer"))

    def ids(users: list[User]) -> list[str]:
        return [u.id for u in users]

    assert ids(await store.list_users("acme", UserQuery())) == ["sa_bot", "user_ada", "user_bob", "user_cy"]
    assert ids(await store.list_users("acme", UserQuery(team_id="team_a", kind="user"))) == [
        "user_ada", "user_bob"]
    assert ids(await store.list_users("acme", UserQuery(role="developer"))) == ["sa_bot", "user_bob"]
    assert ids(await store.list_users("acme", UserQuery(kind="service_account"))) == ["sa_bot"]
    assert ids(await store.list_users("acme", UserQuery(after="user_ada", limit=1))) == ["user_bob"]
    assert await store.count_members("acme") == (1, 4, 0)
    assert await store.count_members("acme", team_id="team_a") == (0, 3, 0)
    assert await store.count_members("nobody") == (0, 0, 0)

    assert not await store.update_user(replace(ada, tenant_id="globex", role="tenant_admin"))
    assert await store.update_user(replace(ada, role="developer", team_id=None, email=None))
    changed = await store.get_user("acme", "user_ada")
    assert changed is not None and (changed.role, changed.team_id, changed.email) == ("developer", None, None)
    assert changed.created_at == T0 and changed.created_by == "master"
    assert not await store.delete_user("globex", "user_ada")
    assert await store.delete_user("acme", "user_ada")
    assert await store.get_user("acme", "user_ada") is None


async def test_a_user_holding_an_enabled_key_is_not_deleted(backend: Backend) -> None:
    """As for a team: the delete itself checks, so a key issued after the admin API counted the
    user's keys keeps the user (as its user or as its service account)."""
    store, keys = backend.stores.tenancy, backend.stores.keys
    await store.create_user(User("user_kim", "hooli", role="developer"))
    await store.create_user(User("sa_kim", "hooli", role="developer", kind="service_account"))
    await keys.put(KeyRecord("key_kim", "hash-kim", "sk-sb-kim", "hooli", user_id="user_kim"))
    await keys.put(KeyRecord("key_sa_kim", "hash-sa-kim", "sk-sb-sak", "hooli", service_account_id="sa_kim"))
    assert not await store.delete_user("hooli", "user_kim")
    assert not await store.delete_user("hooli", "sa_kim")
    assert await revoke(keys, "hooli", "key_kim") and await revoke(keys, "hooli", "key_sa_kim")
    assert await store.delete_user("hooli", "user_kim") and await store.delete_user("hooli", "sa_kim")
    assert await store.get_user("hooli", "user_kim") is None


async def test_a_key_is_issued_only_while_its_owners_exist(backend: Backend) -> None:
    """issue() checks the owners as it writes: a key named for a tenant, team or user that is
    gone is not stored (a delete racing it cannot leave it live for nobody)."""
    store, keys = backend.stores.tenancy, backend.stores.keys
    await store.create_tenant(Tenant("umbrella"))
    await store.create_team(Team("team_u", "umbrella"))
    await store.create_user(User("user_u", "umbrella", role="developer", team_id="team_u"))
    owned = KeyRecord("key_u", "hash-u", "sk-sb-u", "umbrella", team_id="team_u", user_id="user_u")
    for gone in (replace(owned, tenant_id="nowhere"), replace(owned, team_id="team_gone"),
                 replace(owned, user_id="user_gone"), replace(owned, service_account_id="sa_gone")):
        assert not await keys.issue(gone)
        assert await keys.get(gone.tenant_id, "key_u") is None
    assert await keys.issue(owned)
    assert await keys.get("umbrella", "key_u") is not None
    assert not await store.delete_user("umbrella", "user_u")  # the key keeps it


async def test_keys_carry_tags_and_a_service_account_owner(backend: Backend) -> None:
    keys = backend.stores.keys
    record = KeyRecord(id="key_sa", key_hash="h-sa", prefix="sk-sb-sa", tenant_id="acme", team_id="team_a",
                       role="developer", tags=("prod", "billing"), service_account_id="sa_bot")
    await keys.put(record)
    got = await keys.get("acme", "key_sa")
    assert got is not None and got.tags == ("prod", "billing") and got.service_account_id == "sa_bot"
    assert await keys.find("key_sa") == got
    assert await keys.get("globex", "key_sa") is None
    assert await keys.find("key_nope") is None
