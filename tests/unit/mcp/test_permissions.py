"""Tool permissions (mcp/permissions.py): layers of allow and deny patterns, deny wins."""

from __future__ import annotations

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.mcp.permissions import Permissions
from switchboard.mcp.toolbox import split_name

CONFIG = McpConfig.model_validate({"permissions": {
    "roles": {"viewer": {"allow": ["*__read_*", "*__list_*"]}},
    "teams": {"team-ops": {"deny": ["github__delete_*"]}},
}})


def permitted(principal: Principal, name: str) -> bool:
    permissions = Permissions(CONFIG)
    return permissions.permits(permissions.rules(principal), name)


def test_a_role_allows_only_its_patterns() -> None:
    viewer = Principal(id="k1", role="viewer", tenant_id="t")
    assert permitted(viewer, "github__read_issue") and permitted(viewer, "notes__list_notes")
    assert not permitted(viewer, "github__create_issue")


def test_deny_wins_over_every_allow() -> None:
    ops = Principal(id="k2", role="developer", tenant_id="t", team_id="team-ops",
                    mcp_tools=({"allow": ["github__*"], "deny": []},))
    assert permitted(ops, "github__create_issue")
    assert not permitted(ops, "github__delete_repo")  # the team's deny
    assert not permitted(ops, "notes__read_note")  # the key's allow list


def test_every_layer_must_permit() -> None:
    both = Principal(id="k3", role="viewer", tenant_id="t",
                     mcp_tools=({"allow": None, "deny": ["notes__*"]}, {"allow": ["*__read_*"], "deny": []}))
    assert permitted(both, "github__read_issue")
    assert not permitted(both, "notes__read_note")


def test_the_platform_admin_is_bound_by_the_servers_lists_only() -> None:
    admin = Principal(id="master")
    assert permitted(admin, "anything__at_all")
    server = McpServerConfig(name="gh", url="https://mcp.example.com/mcp", allowed_tools=["read_*"],
                             denied_tools=["read_secrets"])
    assert Permissions.server_permits(server, "read_issue")
    assert not Permissions.server_permits(server, "read_secrets")
    assert not Permissions.server_permits(server, "write_issue")


def test_names_split_at_the_first_separator() -> None:
    assert split_name("notes__add__note") == ("notes", "add__note")
    assert split_name("notes") is None
    assert split_name("__tool") is None
    assert split_name("notes__") is None
