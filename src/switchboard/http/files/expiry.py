"""OpenAI's expiry of an uploaded file (the form fields ``expires_after[anchor]``,
``expires_after[seconds]``) and of a batch's output (``output_expires_after``): from its creation,
one hour to 30 days. Checked before anything is sent, so a bad value is the caller's 400 naming
it, never an object created upstream with an expiry no one meant."""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest

EXPIRY_ANCHOR = "created_at"
EXPIRY_SECONDS = (3600, 2_592_000)
EXPIRY_FIELDS = ("expires_after[anchor]", "expires_after[seconds]")


def checked_field(name: str, value: str) -> str:
    """A form field's value, refused when it is an expiry OpenAI would not take."""
    if name == "expires_after[anchor]" and value != EXPIRY_ANCHOR:
        raise InvalidRequest(f"'{name}' must be '{EXPIRY_ANCHOR}'", param=name, code="invalid_value")
    if name == "expires_after[seconds]" and not (
            value.isascii() and value.isdigit() and EXPIRY_SECONDS[0] <= int(value) <= EXPIRY_SECONDS[1]):
        raise InvalidRequest(f"'{name}' must be a whole number of seconds from {EXPIRY_SECONDS[0]} to "
                             f"{EXPIRY_SECONDS[1]}", param=name, code="invalid_value")
    return value


def check_output_expiry(expiry: Any) -> None:
    """A batch's ``output_expires_after``: ``{"anchor": "created_at", "seconds": 3600..2592000}``."""
    name = "output_expires_after"
    if not isinstance(expiry, dict):
        raise InvalidRequest(f"'{name}' must be an object with 'anchor' and 'seconds'", param=name,
                             code="invalid_type")
    for key in expiry:
        if key not in ("anchor", "seconds"):
            member = f"{name}.{str(key)[:100]}"
            raise InvalidRequest(f"unknown parameter '{member}'", param=member, code="unknown_parameter")
    anchor, seconds = expiry.get("anchor"), expiry.get("seconds")
    if anchor != EXPIRY_ANCHOR:
        raise InvalidRequest(f"'{name}.anchor' must be '{EXPIRY_ANCHOR}'", param=f"{name}.anchor",
                             code="missing_required_parameter" if anchor is None else "invalid_value")
    if seconds is None:
        raise InvalidRequest(f"'{name}.seconds' is required", param=f"{name}.seconds",
                             code="missing_required_parameter")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not (
            EXPIRY_SECONDS[0] <= seconds <= EXPIRY_SECONDS[1]):
        raise InvalidRequest(f"'{name}.seconds' must be a whole number of seconds from {EXPIRY_SECONDS[0]} "
                             f"to {EXPIRY_SECONDS[1]}", param=f"{name}.seconds", code="invalid_value")
