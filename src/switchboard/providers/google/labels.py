"""Canonical ``metadata`` and ``user`` -> Vertex AI ``labels`` (the Gemini API has no such field).

Labels are billing metadata with strict rules: at most 64, keys of 1-63 and values of 0-63
lower-case letters (international letters allowed), digits, ``_`` or ``-``, keys starting with a
letter. Metadata that breaks them cannot be sent as written: it is refused (or dropped whole under
``drop_params``) rather than rewritten. ``user`` becomes the label ``user`` when it can be one;
otherwise it is not sent, as on providers with no end-user field (an end-user id does not change
the output, and clients such as Claude Code send ids no label can hold).
Reference: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/add-labels-to-api-calls
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.params import drops
from switchboard.providers.target import Target

_MAX_LABELS = 64
_MAX_LEN = 63
_RULE = "at most 63 lower-case letters, digits, '_' or '-', keys starting with a letter"


def _char(c: str) -> bool:
    return (c.isalpha() and not c.isupper()) or c.isdigit() or c in "_-"


def valid_key(key: str) -> bool:
    return 0 < len(key) <= _MAX_LEN and key[0].isalpha() and not key[0].isupper() and all(map(_char, key))


def valid_value(value: str) -> bool:
    return len(value) <= _MAX_LEN and all(map(_char, value))


def labels(request: dict[str, Any], target: Target) -> dict[str, str]:
    """The labels for ``request``'s metadata and user; a field that cannot be labels is refused,
    or left out when ``drop_params`` asks for that."""
    out: dict[str, str] = {}
    for param, found in (("metadata", _metadata), ("user", _user)):
        value = request.get(param)
        if value in (None, "", {}):
            continue
        try:
            out.update(found(value, out))
        except UnsupportedParameter:
            if not drops(request, target):
                raise
    return out


def _metadata(metadata: Any, _: dict[str, str]) -> dict[str, str]:
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidRequest("metadata must be an object of string values", param="metadata")
    if len(metadata) > _MAX_LABELS:
        raise UnsupportedParameter(
            f"metadata: Vertex AI takes at most {_MAX_LABELS} labels", param="metadata"
        )
    for key, value in metadata.items():
        if not (valid_key(key) and valid_value(value)):
            raise UnsupportedParameter(
                f"metadata entry {key[:70]!r} cannot be a Vertex AI label ({_RULE})", param="metadata"
            )
    return dict(metadata)


def _user(user: Any, taken: dict[str, str]) -> dict[str, str]:
    if not isinstance(user, str):
        raise InvalidRequest("user must be a string", param="user")
    if "user" in taken or len(taken) >= _MAX_LABELS or not valid_value(user):
        return {}  # no room, or not a label value: not sent (see the module docstring)
    return {"user": user}
