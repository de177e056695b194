"""Conditional routing: rules that send a request to another group by what it carries.

Pure matching over plain values (headers, the canonical request, the key's tags, a prompt-token
count asked for only when a rule needs it); the stage (pipeline/rules.py) applies the choice.
Rules are tried in configuration order and the first that matches decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import regex

from switchboard import patterns
from switchboard.config.regexes import compile_as_re
from switchboard.config.schema import RoutingRule

log = logging.getLogger("switchboard.routing")

# How long a rule's ``last_user_matches`` may search the caller's text (up to 100,000
# characters); past it the rule does not match (switchboard/patterns.py: an operator's
# ``.*(urgent|asap).*`` was quadratic in Python's re, minutes of a frozen gateway).
MATCH_SECONDS = 0.05


class Rule(NamedTuple):
    name: str
    model: str  # "*": any requested name
    to: str
    headers: tuple[tuple[str, tuple[str, ...]], ...]  # a name and the readings of its value
    metadata: tuple[tuple[str, str], ...]
    key_tags: frozenset[str]
    params: tuple[tuple[str, Any], ...]
    prompt_min: int | None
    prompt_max: int | None
    pattern: regex.Pattern[str] | None


def compile_rule(index: int, rule: RoutingRule) -> Rule:
    w = rule.when
    tokens = w.prompt_tokens
    return Rule(
        name=rule.name or f"rules[{index}]",
        model=rule.model,
        to=rule.to,
        headers=tuple((k.lower(), header_readings(v)) for k, v in w.headers.items()),
        metadata=tuple(w.metadata.items()),
        key_tags=frozenset(w.key_tags),
        params=tuple(w.params.items()),
        prompt_min=tokens.min if tokens else None,
        prompt_max=tokens.max if tokens else None,
        pattern=compile_as_re(w.last_user_matches) if w.last_user_matches else None,
    )


def header_readings(value: str) -> tuple[str, ...]:
    """A configured header value as the gateway may read it from a request: the edge reads header
    bytes as latin-1, and clients write a value beyond ASCII as UTF-8 (curl, browsers' raw
    bytes) or, when latin-1 holds it, as latin-1 (Python's http.client, Node): both match.
    Worked out once, when the rule is compiled."""
    if value.isascii():
        return (value,)
    utf8 = value.encode().decode("latin-1")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return (utf8,)
    return (utf8, value)


class Rules:
    def __init__(self, rules: list[RoutingRule]) -> None:
        self._rules = [compile_rule(i, r) for i, r in enumerate(rules)]
        self._models = {r.model for r in self._rules}
        self._any = "*" in self._models
        # Whether a rule reads the prompt's tokens (a large prompt's count goes to a thread).
        self.counts_tokens = any(r.prompt_min is not None or r.prompt_max is not None for r in self._rules)

    def applies(self, model: str) -> bool:
        """Whether any rule may match a request for ``model`` (cheap: checked per request)."""
        return self._any or model in self._models

    def targets(self, model: str) -> tuple[list[str], bool]:
        """The groups the rules may send a request for ``model`` to, and whether one of them
        always matches (no condition): then the request never goes on past the rules."""
        out: list[str] = []
        for rule in self._rules:
            if rule.model == "*" or rule.model == model:
                out.append(rule.to)
                if _unconditional(rule):
                    return out, True
        return out, False

    def choose(
        self,
        model: str,
        headers: Mapping[str, str],
        request: Mapping[str, Any],
        key_tags: tuple[str, ...],
        prompt_tokens: Callable[[], int],
        metadata: Mapping[str, Any] | None = None,
    ) -> Rule | None:
        """The first rule that matches; ``metadata``: the caller's metadata object where the
        canonical request does not carry it (None: the request's ``metadata``)."""
        for rule in self._rules:
            if (rule.model == "*" or rule.model == model) and _matches(rule, headers, request, key_tags,
                                                                       prompt_tokens, metadata):
                return rule
        return None


def _unconditional(rule: Rule) -> bool:
    return not (rule.headers or rule.metadata or rule.key_tags or rule.params or rule.pattern is not None
                or rule.prompt_min is not None or rule.prompt_max is not None)


def _matches(rule: Rule, headers: Mapping[str, str], request: Mapping[str, Any], key_tags: tuple[str, ...],
             prompt_tokens: Callable[[], int], metadata: Mapping[str, Any] | None) -> bool:
    if any(headers.get(name) not in values for name, values in rule.headers):
        return False
    if rule.metadata:
        if metadata is None:
            metadata = request.get("metadata")
        if not isinstance(metadata, Mapping) or any(metadata.get(k) != v for k, v in rule.metadata):
            return False
    if rule.key_tags and not rule.key_tags.issubset(key_tags):
        return False
    if any(not _same(request.get(name, _MISSING), value) for name, value in rule.params):
        return False
    if rule.prompt_min is not None or rule.prompt_max is not None:
        count = prompt_tokens()
        if (rule.prompt_min is not None and count < rule.prompt_min) or (
                rule.prompt_max is not None and count > rule.prompt_max):
            return False
    return rule.pattern is None or _searched(rule.name, rule.pattern, last_user_text(request))


_slow: set[str] = set()  # rules whose search ran out of time, logged once each


def _searched(name: str, pattern: regex.Pattern[str], text: str) -> bool:
    try:
        return patterns.search(pattern, text, MATCH_SECONDS) is not None
    except TimeoutError:
        if name not in _slow and len(_slow) < 1000:
            _slow.add(name)
            log.warning("routing rule %r: last_user_matches ran past %s s on a request's text; the "
                        "rule is taken as not matching (logged once per rule)", name, MATCH_SECONDS)
        return False


_MISSING = object()


def _same(given: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(given, bool):  # JSON's true is not 1
        return type(given) is type(wanted) and given == wanted
    return bool(given == wanted)


def last_user_text(request: Mapping[str, Any], limit: int = 100_000) -> str:
    """The text of the last user message of a canonical chat request (text parts joined by
    newlines), or of a completions prompt / embeddings input given as a string; cut to
    ``limit`` characters."""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return _text(message.get("content"))[:limit]
        return ""
    for field in ("prompt", "input"):
        value = request.get(field)
        if isinstance(value, str):
            return value[:limit]
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(
                             part.get("text"), str))
    return ""
