"""MCP tool rules a caller may give a key: at most its own key's (access/tool_rules.py)."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.access.tool_rules import beyond, pattern_within

OWN: dict[str, Any] = {"allow": ["notes__*", "math__add"], "deny": ["notes__delete_*"]}


@pytest.mark.parametrize(("entry", "patterns", "expected"), [
    ("notes__read", ["notes__*"], True),
    ("notes__read_*", ["notes__*"], True),
    ("notes__*", ["notes__*"], True),
    ("notes*", ["notes__*"], False),  # also matches notes_x__...
    ("*__read", ["notes__*"], False),
    ("notes__?", ["notes__*"], True),
    ("n[o]tes__x", ["notes__*"], False),  # not certain: refused
    ("math__add", ["math__[a]dd"], True),
    ("anything", ["*"], True),
])
def test_pattern_within_is_certain_or_false(entry: str, patterns: list[str], expected: bool) -> None:
    assert pattern_within(entry, patterns) is expected


@pytest.mark.parametrize("rule", [
    dict(OWN),
    {"allow": ["notes__read_*"]},  # cannot reach the denied tools
    {"allow": ["notes__*"], "deny": ["notes__delete_*"]},
    {"allow": ["notes__*"], "deny": ["notes__delete_*", "notes__add_*"]},
    {"allow": ["math__add"]},
    {"allow": []},
    {"allow": ["notes__*", "github__*"], "deny": ["github__*", "notes__delete_*"]},  # github all denied
])
def test_rules_within_the_callers_pass(rule: dict[str, Any]) -> None:
    assert beyond(rule, OWN) is None


@pytest.mark.parametrize(("rule", "where"), [
    (None, ""),  # no list: every tool
    ({"allow": None, "deny": ["notes__delete_*"]}, "allow"),
    ({"allow": ["*"]}, "allow[0]"),
    ({"allow": ["math__add", "math__multiply"]}, "allow[1]"),
    ({"allow": ["notes__*"]}, "deny"),  # the denied tools would be allowed again
    ({"allow": ["notes__*"], "deny": ["notes__delete_note"]}, "deny"),  # narrower than the caller's
])
def test_wider_rules_are_named(rule: dict[str, Any] | None, where: str) -> None:
    found = beyond(rule, OWN)
    assert found is not None and found[0] == where, found


def test_a_deny_only_caller_and_unrestricted_callers() -> None:
    deny_only = {"allow": None, "deny": ["notes__*"]}
    assert beyond({"deny": ["notes__*", "math__*"]}, deny_only) is None
    assert beyond({"allow": ["math__*"]}, deny_only) is None
    widened = beyond({"allow": ["*"]}, deny_only)
    assert widened is not None and widened[0] == "deny" and "notes__*" in widened[1]
    assert beyond(None, deny_only) is not None
    for unrestricted in (None, {"allow": None, "deny": []}):
        assert beyond(None, unrestricted) is None
        assert beyond({"allow": ["*"]}, unrestricted) is None
