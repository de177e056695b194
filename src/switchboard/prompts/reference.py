"""A chat request's reference to a registry prompt: ``{"prompt": {"id": "name", "label": "production"
| "version": N, "variables": {...}}}`` (docs/prompts.md, "Prompts from chat").

Checked by the inbound APIs while decoding (a malformed reference is 400 naming the field); the
prompt stage (``pipeline/prompt.py``) bounds its variables (:func:`check_variables_size`),
resolves and renders it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard.errors import InvalidRequest, PayloadTooLarge

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FIELDS = ("id", "label", "version", "variables")
# Versions are stored in an INTEGER column (32 bits in PostgreSQL): a larger one is no version,
# refused here rather than failing in the database driver.
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PromptRef:
    name: str
    version: int | None = None
    label: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)


def _bad(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {problem}", param=param, code="invalid_prompt_reference")


def parse_reference(value: Any) -> PromptRef:
    """The reference in a request's ``prompt`` field; 400 ``invalid_prompt_reference`` naming
    the field when it is malformed."""
    if not isinstance(value, dict):
        raise _bad("prompt", "must be an object: {\"id\": name, \"label\" or \"version\", \"variables\"}")
    for key in value:
        if key not in FIELDS:
            raise _bad(f"prompt.{str(key)[:60]}",
                       f"is not a field of a prompt reference ({', '.join(FIELDS)})")
    name = value.get("id")
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad("prompt.id", "must be a prompt name: 1-64 letters, digits, '_', '.' or '-'")
    label, version = value.get("label"), value.get("version")
    if label is not None and version is not None:
        raise _bad("prompt.label", "and 'prompt.version' cannot both be given")
    if label is not None and (not isinstance(label, str) or not NAME.match(label)):
        raise _bad("prompt.label", "must be a label name: 1-64 letters, digits, '_', '.' or '-'")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                or not 1 <= version <= MAX_VERSION):
        raise _bad("prompt.version", f"must be an integer from 1 to {MAX_VERSION}")
    variables = value.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise _bad("prompt.variables", "must be an object")
    return PromptRef(name, version, label, variables)


def check_variables_size(variables: Mapping[str, Any], limit: int, param: str) -> None:
    """413 for variables larger as JSON than ``limit`` (``apis.max_body_bytes``): what a call of
    a prompt API may send as its body (its variables), so a render on the admin API and a chat
    request's ``prompt.variables`` are held to the same bound, not only to the request body's."""
    size = len(orjson.dumps(variables))
    if size > limit:
        raise PayloadTooLarge(f"{param}: {size} bytes as JSON; the limit is {limit} bytes "
                              "(apis.max_body_bytes, as for a call of a prompt API)", param=param)
