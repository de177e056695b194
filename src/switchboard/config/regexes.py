"""Regular expressions operators write in the configuration (routing rules' `last_user_matches`,
the request log's redaction patterns): checked as Python's ``re`` reads them, the syntax the
configuration documents, and compiled for the ``regex`` engine they run with (its time bounds:
switchboard/patterns.py) with that same meaning."""

from __future__ import annotations

import re

import regex

# A count as Python's re reads one (``{3}``, ``{2,}``, ``{,5}``, ``{,}``); any other ``{`` it
# reads as the character, where the regex engine would read fuzzy matching (``ticket{s}``).
_COUNT = re.compile(r"\{(?:\d+|\d*,\d*)\}")


def compile_as_re(pattern: str) -> regex.Pattern[str]:
    """``pattern`` with the meaning Python's ``re`` gives it (the syntax operators write, and
    that their configuration was checked with), compiled by the ``regex`` engine. re.error for
    what re refuses; regex.error for the little re accepts and regex cannot run."""
    re.compile(pattern)
    return regex.compile(_braces_as_re(pattern))


def _braces_as_re(pattern: str) -> str:
    """``pattern`` with each ``{`` that re reads as the character escaped (outside character
    classes and escapes, where both engines read braces alike)."""
    if "{" not in pattern:
        return pattern
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            end = pattern.find("}", i) + 1 if pattern.startswith("N{", i + 1) else i + 2
            out.append(pattern[i:end or n])
            i = end or n
        elif in_class:
            in_class = c != "]"
            out.append(c)
            i += 1
        elif c == "[":
            start = i + 1 + pattern.startswith("^", i + 1)
            start += pattern.startswith("]", start)  # a ] first in a class is the character
            out.append(pattern[i:start])
            in_class, i = True, start
        elif c == "{" and _COUNT.match(pattern, i) is None:
            out.append("\\{")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
