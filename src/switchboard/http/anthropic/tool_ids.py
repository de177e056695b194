"""Gemini thought signatures carried in Anthropic ``tool_use`` ids.

A Gemini function call's ``thoughtSignature`` (canonical: ``tool_calls[].extra_content.google.
thought_signature``) must come back with the call on the next turn, and Gemini 3 refuses a turn
without it. An Anthropic ``tool_use`` block has no field for it, and its ``id`` is all a client
(Claude Code) replays of a call, so the signature rides in the id:

    <call id> + SEPARATOR + base64url(signature, UTF-8, no padding)

which keeps to Anthropic's id alphabet ``^[a-zA-Z0-9_-]+$``. On the way in, ``tool_use.id`` and
``tool_result.tool_use_id`` are split back to the plain call id (so both still pair, and every
provider sees the id the upstream gave) and the call gets its signature again. Ids without a
signature are left exactly as they are.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

SEPARATOR = "__thsig_"
_ENCODED = re.compile(r"[A-Za-z0-9_-]+")  # base64url; b64decode would also take '+' and '/'


def signature_of(call: dict[str, Any]) -> str | None:
    """The Gemini thought signature of a canonical tool call, if it has one."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    value = google.get("thought_signature") if isinstance(google, dict) else None
    return value if isinstance(value, str) and value else None


def outbound(call_id: str, call: dict[str, Any]) -> str:
    """The tool_use id for a canonical call: its id, with its signature when it has one."""
    signature = signature_of(call)
    # A call id already holding the separator could not be split back unambiguously.
    if signature is None or SEPARATOR in call_id:
        return call_id
    encoded = base64.urlsafe_b64encode(signature.encode()).rstrip(b"=").decode("ascii")
    return call_id + SEPARATOR + encoded


def inbound(tool_id: str) -> tuple[str, str | None]:
    """(plain call id, signature) of a tool_use id; an id that was not made by :func:`outbound`
    (no separator, or no valid encoding after it) comes back whole, with no signature."""
    if SEPARATOR not in tool_id:
        return tool_id, None
    call_id, _, encoded = tool_id.partition(SEPARATOR)
    if not call_id or not _ENCODED.fullmatch(encoded):
        return tool_id, None
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        return call_id, raw.decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return tool_id, None
