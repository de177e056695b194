"""MCP tool permissions in the stores (revision 0021): a key's and a team's ``mcp_tools`` are
stored as given, and the key looked up by hash carries its team's (the principal's rules)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from switchboard.access.cache import principal_of
from switchboard.stores import Team
from tests.stores.conftest import Backend
from tests.stores.test_keys import key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_key_carries_its_own_and_its_teams_tool_rules(backend: Backend) -> None:
    stores = backend.stores
    team_rule = {"allow": None, "deny": ["github__*"]}
    await stores.tenancy.create_team(Team(id="team-mcp", tenant_id="mcp-corp", mcp_tools=team_rule))
    team = await stores.tenancy.get_team("mcp-corp", "team-mcp")
    assert team is not None and team.mcp_tools == team_rule
    own_rule = {"allow": ["notes__*"], "deny": []}
    own = key("k-mcp", tenant="mcp-corp", team_id="team-mcp", mcp_tools=own_rule)
    await stores.keys.put(own)
    found = await stores.keys.get_by_hash(own.key_hash)
    assert found is not None and found.mcp_tools == own_rule and found.team_mcp_tools == team_rule
    assert replace(found, effective_regions=None, team_mcp_tools=None) == own
    assert principal_of(found).mcp_tools == (team_rule, own_rule)
    stored = await stores.keys.get("mcp-corp", "k-mcp")
    assert stored is not None and stored.mcp_tools == own_rule
    # No rules anywhere: none; a team of another tenant never lends its rule.
    plain = key("k-plain", tenant="other-corp", team_id="team-mcp")
    await stores.keys.put(plain)
    found = await stores.keys.get_by_hash(plain.key_hash)
    assert found is not None and principal_of(found).mcp_tools == ()
    await stores.tenancy.update_team(Team(id="team-mcp", tenant_id="mcp-corp", mcp_tools=None))
    found = await stores.keys.get_by_hash(own.key_hash)
    assert found is not None and principal_of(found).mcp_tools == (own_rule,)
