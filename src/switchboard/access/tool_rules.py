"""What a caller may give a key of MCP tool permissions: at most its own (docs/mcp.md,
"Permissions"), as with models (access/rules.py ``within``).

A rule is ``{"allow": [patterns] | None, "deny": [patterns]}``, ``fnmatch`` patterns on exposed
tool names (``notes__*``); None allows every tool not denied. A rule is within the caller's own
when every tool it permits is one the caller's rule permits too. Glob patterns are only compared
where the answer is certain (the same pattern, a literal name, a ``<prefix>*`` pattern, literal
prefixes that rule out any common name): a rule that might be wider is refused, never let
through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

_META = re.compile(r"[*?\[]")


def _literal_prefix(pattern: str) -> str:
    match = _META.search(pattern)
    return pattern if match is None else pattern[:match.start()]


def pattern_within(entry: str, patterns: Sequence[str]) -> bool:
    """Whether every name ``entry`` matches is matched by one of ``patterns`` (certainly)."""
    if _META.search(entry) is None:  # a literal name
        return any(fnmatchcase(entry, p) for p in patterns)
    for p in patterns:
        if p == entry:
            return True
        prefix = p[:-1]
        if p.endswith("*") and _META.search(prefix) is None and entry.startswith(prefix):
            return True  # every name entry matches starts with that literal prefix
    return False


def _disjoint(a: str, b: str) -> bool:
    """Whether no name matches both patterns (certainly)."""
    if _META.search(a) is None:
        return not fnmatchcase(a, b)
    if _META.search(b) is None:
        return not fnmatchcase(b, a)
    la, lb = _literal_prefix(a), _literal_prefix(b)
    return not (la.startswith(lb) or lb.startswith(la))


def restricts(rule: Mapping[str, Any] | None) -> bool:
    return rule is not None and (rule.get("allow") is not None or bool(rule.get("deny")))


def beyond(rule: Mapping[str, Any] | None, own: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """None when ``rule`` (a key's) permits nothing ``own`` (the caller's key's) does not;
    otherwise (where in ``rule``: "", "allow", "allow[i]" or "deny"; why)."""
    if not restricts(own):
        return None
    assert own is not None
    own_allow: Sequence[str] | None = own.get("allow")
    own_deny: Sequence[str] = own.get("deny") or ()
    allow: Sequence[str] | None = rule.get("allow") if rule is not None else None
    deny: Sequence[str] = (rule.get("deny") or ()) if rule is not None else ()
    if own_allow is not None:
        if allow is None:
            where = "allow" if rule is not None else ""
            return where, f"every tool is beyond the caller's own (allow: {_listed(own_allow)})"
        for i, entry in enumerate(allow):
            if not pattern_within(entry, own_allow) and not pattern_within(entry, deny):
                return f"allow[{i}]", (f"'{entry[:200]}' is beyond the tools the caller may use itself "
                                       f"(allow: {_listed(own_allow)})")
    for denied in own_deny:
        if pattern_within(denied, deny):
            continue
        if allow is not None and all(_disjoint(p, denied) or pattern_within(p, deny) for p in allow):
            continue  # nothing the rule allows is denied to the caller
        where = "deny" if rule is not None else ""
        return where, f"must deny '{denied[:200]}' as the caller's own rule does (deny: {_listed(own_deny)})"
    return None


def _listed(patterns: Sequence[str]) -> str:
    return ", ".join(patterns)[:500] or "none"
