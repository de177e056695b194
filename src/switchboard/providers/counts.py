"""The token counts an upstream reports, as the gateway reads them: whole, not negative, bounded;
and the positions it numbers things with (choices, tool calls, content blocks), read alike.

Every adapter reads its upstream's usage counts through :func:`count`, and the usage stage's
``spend.cost.split`` bounds the canonical usage once more (a same-dialect OpenAI reply is not
parsed), so no count an upstream sends (a broken or hostile one, a self-hosted one) can make a
cost too large to record or a sum too large to encode: a count near 2**64 is recorded as
``TOKENS_MAX`` and the record flagged ``usage_clamped`` (docs/spend.md, "Counts an upstream
reports").

A value that is no count (negative, fractional, text, a boolean) counts as none, as a missing
count does, and the call's record is flagged ``usage_invalid``: the usage stage gives each call
a :class:`Reading` (:func:`reading`), which :func:`count` marks. Only such a value costs more
than the check itself; a count read outside a call (no reading) marks nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# The most tokens one count of one call may have (prompt, completion, or a part of either): the
# range of the ledger's token columns (32-bit on PostgreSQL). No model reads or writes a
# thousandth of it in one call; at $1,000 per million tokens it costs about $2.1 million, well
# within the ledger's 64-bit cost in billionths of a dollar.
TOKENS_MAX = 2**31 - 1


class Reading:
    """One call's reading of its upstream's counts: ``invalid`` once a value was no count."""

    __slots__ = ("invalid",)

    def __init__(self) -> None:
        self.invalid = False


# The reading of the call whose counts are read here. A mutable object, so a mark made in a task
# the call started (a stream relayed by another task) is seen by the usage stage that made it.
_READING: ContextVar[Reading | None] = ContextVar("usage_reading", default=None)


def reading(found: Reading | None = None) -> Reading:
    """``found`` (else a new reading), marked by the counts read from here on in this task and
    the tasks it starts: the usage stage calls it once per call, and again where it reads the
    counts in another task. Not reset when the stage returns: a stream is read after that, and
    each request is its own task."""
    found = found or Reading()
    _READING.set(found)
    return found


def _invalid() -> int:
    """0 for a value that is no count, and the call's reading marked."""
    if (found := _READING.get()) is not None:
        found.invalid = True
    return 0


def count(value: Any) -> int:
    """``value`` as a token count: a whole number (``18.0`` included: some hosts send floats) in
    0..TOKENS_MAX; anything else (negative, fractional, NaN, infinite, a string, null, a boolean)
    counts as none, as a missing count does."""
    if type(value) is int:  # the common case; not a bool
        return value if 0 <= value <= TOKENS_MAX else (TOKENS_MAX if value > 0 else _invalid())
    if type(value) is float and value.is_integer():  # also a JSON integer past 64 bits
        return min(int(value), TOKENS_MAX) if value >= 0 else _invalid()
    # A missing count (several in a real OpenAI usage block's details) is none and no mark: said
    # here, without the call.
    return 0 if value is None else _invalid()


# The largest position read as one: a float past it may stand for an integer orjson cannot write.
_POSITION_MAX = 2**53


def position(value: Any) -> int | None:
    """``value`` as a position an upstream numbers something with (a choice, a tool call, a
    content block): a whole number not below 0, ``1.0`` included (a server that writes its
    numbers as floats means the second, as it means 1); None for anything else (a fraction, a
    negative number, a boolean, text, a list), which its reader takes as no position."""
    if value.__class__ is int:  # the common case; not a bool
        return value if value >= 0 else None
    if value.__class__ is float and value.is_integer() and 0 <= value <= _POSITION_MAX:
        return int(value)
    return None
