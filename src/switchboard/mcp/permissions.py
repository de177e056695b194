"""Tool-level permissions: which exposed tools (``<server>__<tool>``) a caller may see and call.

Layers, each an allow list (None: everything) and a deny list of ``fnmatch`` patterns on the
exposed name (``github__*``, ``*__delete_*``):

1. the server's own ``allowed_tools`` / ``denied_tools`` (patterns on the server's tool names);
2. the caller's role: ``mcp.permissions.roles[<role>]``;
3. the caller's team: ``mcp.permissions.teams[<team id>]`` (config) and the team's own
   ``mcp_tools`` (admin API: ``POST/PATCH /admin/v1/teams``, tenant admins);
4. the key itself: its ``mcp_tools`` (admin API: ``POST /admin/v1/keys``).

A tool is permitted only when every layer permits it: a deny anywhere wins, and each allow list
present must match. The platform admin (master key) is bound by the server's own lists only.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from switchboard.access.roles import PLATFORM_ADMIN
from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal

_Rule = tuple[Sequence[str] | None, Sequence[str]]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


class Permissions:
    def __init__(self, config: McpConfig) -> None:
        self._config = config.permissions

    def rules(self, principal: Principal | None) -> list[_Rule]:
        """The caller's layers (role, team, key), in that order; none for the platform admin."""
        if principal is None or principal.role == PLATFORM_ADMIN:
            return []
        out: list[_Rule] = []
        role = self._config.roles.get(principal.role)
        if role is not None:
            out.append((role.allow, role.deny))
        if principal.team_id is not None and (team := self._config.teams.get(principal.team_id)) is not None:
            out.append((team.allow, team.deny))
        for rule in principal.mcp_tools:  # the team's stored rule, then the key's
            allow, deny = rule.get("allow"), rule.get("deny")
            out.append((allow if isinstance(allow, list) else None, deny if isinstance(deny, list) else ()))
        return out

    @staticmethod
    def server_permits(server: McpServerConfig, tool: str) -> bool:
        if server.allowed_tools is not None and not _matches(tool, server.allowed_tools):
            return False
        return not _matches(tool, server.denied_tools)

    @staticmethod
    def permits(rules: Sequence[_Rule], name: str) -> bool:
        for allow, deny in rules:
            if deny and _matches(name, deny):
                return False
            if allow is not None and not _matches(name, allow):
                return False
        return True
