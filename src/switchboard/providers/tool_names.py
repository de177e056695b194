"""Tool names checked against the provider's own rule before the request is sent.

A name the provider refuses comes back as an upstream 4xx that names the provider's field (or
none), and on a fallback chain costs an attempt; checked here, the caller gets a 400 naming
``tools[i].function.name`` (the Anthropic and Responses APIs name their own fields instead:
``tools.i.name``, ``tools[i].name``). No
adapter rewrites tool names (a rewritten name would have to be mapped back in every reply and
stream), so a name that does not fit is refused, never changed.

The rules, from each provider's API reference; where sources disagree, the loosest is taken so
nothing the provider accepts is refused here:

- Bedrock Converse ``ToolSpecification.name``: 1-64 characters of ``[a-zA-Z0-9_-]``.
- Mistral: ``a-z, A-Z, 0-9``, underscores and dashes, at most 64 (its own error message).
- Gemini API ``FunctionDeclaration.name``: starts with a letter or underscore, then letters,
  digits, underscores, dots, colons and dashes, at most 64.
- Vertex AI ``FunctionDeclaration.name``: the same characters, at most 128.
- Anthropic: ``^[a-zA-Z0-9_-]{1,64}$``, checked in ``anthropic/request.py`` with its reserved name.
- Cohere: letters, digits and underscores, not starting with a digit (the v1 ``Tool.name`` of
  its OpenAPI spec, and the 400 its error reference lists for any chat: "tool names can only
  contain certain characters (A-Za-z0-9_) and can't begin with a digit"); no length is documented.

The check runs only over the tools a request carries (one precompiled match per tool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.target import Target


@dataclass(frozen=True, slots=True)
class NameRule:
    pattern: re.Pattern[str]
    wording: str  # what the error message says names must be


CONVERSE = NameRule(re.compile(r"[a-zA-Z0-9_-]{1,64}"),
                    "1-64 characters of letters, digits, underscores and dashes")
MISTRAL = CONVERSE
GEMINI = NameRule(re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}"),
                  "1-64 characters of letters, digits, underscores, dots, colons and dashes, "
                  "starting with a letter or an underscore")
COHERE = NameRule(re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*"),
                  "letters, digits and underscores, not starting with a digit")
VERTEX = NameRule(re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}"),
                  "1-128 characters of letters, digits, underscores, dots, colons and dashes, "
                  "starting with a letter or an underscore")


def check(tools: Any, rule: NameRule, target: Target) -> None:
    """A 400 naming the first function tool of ``tools`` whose name ``rule`` refuses. Tools that
    are not functions, or names that are not strings, are left to the checks that refuse them."""
    for i, tool in enumerate(tools or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and rule.pattern.fullmatch(name) is None:
            # The path is quoted in the message too: the Anthropic error shape has no ``param``,
            # and the inbound APIs rename a quoted path the way their callers spell it.
            param = f"tools[{i}].function.name"
            raise InvalidRequest(
                f"'{param}': tool name {name[:80]!r} is not accepted by provider type "
                f"'{target.provider_type}' (model '{target.name}'): names must be {rule.wording}",
                param=param,
                code="invalid_value",
            )
