"""Canonical ``user`` and ``metadata`` -> Converse ``requestMetadata`` (a string -> string map
Bedrock writes to its invocation logs, for filtering them).

Converse bounds the map: at most 16 entries, keys of 1-256 and values of 0-256 characters, both
from ``[a-zA-Z0-9 whitespace :_@$#=/+,.-]``. A ``metadata`` entry that does not fit is a 400
naming it, never cut or rewritten: the caller chose it for this log. ``user`` is sent as the key
``user`` (so ``metadata`` may not hold that key too) when it fits, and otherwise not sent, as
Vertex does with its label: clients send an end-user id unasked (Claude Code's
``metadata.user_id`` is JSON text since 2.1.78), it does not change the answer, and refusing it
would fail those clients on Bedrock alone.
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON

MAX_ENTRIES = 16
MAX_LENGTH = 256
_ALLOWED = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,.\-]*$")
_RULE = f"at most {MAX_LENGTH} characters from a-z A-Z 0-9, whitespace and :_@$#=/+,.-"


def request_metadata(request: JSON) -> JSON | None:
    entries = _metadata(request.get("metadata"))
    user = request.get("user")
    if user is not None and user != "":
        if not isinstance(user, str):
            raise InvalidRequest("user must be a string", param="user")
        if "user" in entries:
            raise InvalidRequest("metadata may not hold the key 'user' when the user parameter is sent "
                                 "(both become requestMetadata.user on Bedrock)", param="metadata.user")
        if _fits(user):
            entries["user"] = user
    if len(entries) > MAX_ENTRIES:
        raise InvalidRequest(f"Bedrock takes at most {MAX_ENTRIES} requestMetadata entries (metadata and "
                             "user together)", param="metadata")
    return entries or None


def _metadata(metadata: Any) -> JSON:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object of strings", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InvalidRequest("metadata values must be strings", param=f"metadata.{key[:64]}")
        if not key:
            raise InvalidRequest("metadata keys must not be empty", param="metadata")
        _check(key, f"the metadata key '{key[:64]}'", f"metadata.{key[:64]}")
        _check(value, f"metadata.{key[:64]}", f"metadata.{key[:64]}")
    return dict(metadata)


def _fits(value: str) -> bool:
    return len(value) <= MAX_LENGTH and _ALLOWED.match(value) is not None


def _check(value: str, what: str, param: str) -> None:
    if not _fits(value):
        raise InvalidRequest(f"{what} does not fit Bedrock requestMetadata: {_RULE}", param=param)
