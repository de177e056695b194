"""Residency policies in the stores: a key's, team's and tenant's allowed regions are stored as
given, and the key looked up by hash carries their intersection (what its requests are held to)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from switchboard.stores import Team, Tenant
from tests.stores.conftest import Backend
from tests.stores.test_keys import key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _effective(backend: Backend, key_hash: str) -> frozenset[str] | None:
    found = await backend.stores.keys.get_by_hash(key_hash)
    assert found is not None
    return found.effective_regions


async def test_a_key_carries_the_intersection_of_its_tenants_teams_and_own_regions(backend: Backend) -> None:
    stores = backend.stores
    await stores.tenancy.create_tenant(Tenant(id="eu-corp", allowed_regions=["eu-west", "eu-north", "us"]))
    await stores.tenancy.create_team(Team(id="team-eu", tenant_id="eu-corp",
                                          allowed_regions=["eu-west", "eu-north"]))
    tenant = await stores.tenancy.get_tenant("eu-corp")
    assert tenant is not None and tenant.allowed_regions == ["eu-west", "eu-north", "us"]
    own = key("k-own", tenant="eu-corp", team_id="team-eu", allowed_regions=("eu-west", "us"))
    await stores.keys.put(own)
    found = await stores.keys.get_by_hash(own.key_hash)
    assert found is not None and found.allowed_regions == ("eu-west", "us")
    assert found.effective_regions == frozenset({"eu-west"})
    assert replace(found, effective_regions=None) == own
    stored = await stores.keys.get("eu-corp", "k-own")
    assert stored is not None and stored.allowed_regions == ("eu-west", "us")
    # No policy of its own: the team's; no team record: the tenant's; none anywhere: None.
    inherit = key("k-team", tenant="eu-corp", team_id="team-eu")
    loose = key("k-loose", tenant="eu-corp", team_id="no-such-team")
    free = key("k-free", tenant="tenant-a", team_id=None)
    for k in (inherit, loose, free):
        await stores.keys.put(k)
    assert await _effective(backend, inherit.key_hash) == {"eu-west", "eu-north"}
    assert await _effective(backend, loose.key_hash) == {"eu-west", "eu-north", "us"}
    assert await _effective(backend, free.key_hash) is None
    # An empty list allows nothing.
    await stores.tenancy.update_team(Team(id="team-eu", tenant_id="eu-corp", allowed_regions=[]))
    assert await _effective(backend, inherit.key_hash) == frozenset()


async def test_a_team_of_another_tenant_never_lends_its_policy(backend: Backend) -> None:
    stores = backend.stores
    await stores.tenancy.create_team(Team(id="team-x", tenant_id="other", allowed_regions=["ap"]))
    k = key("k-x", tenant="mine", team_id="team-x")
    await stores.keys.put(k)
    assert await _effective(backend, k.key_hash) is None
