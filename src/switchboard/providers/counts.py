"""The token counts an upstream reports, as the gateway reads them: whole, not negative, bounded.

Every adapter reads its upstream's usage counts through :func:`count`, and the usage stage's
``spend.cost.split`` bounds the canonical usage once more (a same-dialect OpenAI reply is not
parsed), so no count an upstream sends (a broken or hostile one, a self-hosted one) can make a
cost too large to record or a sum too large to encode: a count near 2**64 is recorded as
``TOKENS_MAX`` and the record flagged ``usage_clamped`` (docs/spend.md, "Counts an upstream
reports").
"""

from __future__ import annotations

from typing import Any

# The most tokens one count of one call may have (prompt, completion, or a part of either): the
# range of the ledger's token columns (32-bit on PostgreSQL). No model reads or writes a
# thousandth of it in one call; at $1,000 per million tokens it costs about $2.1 million, well
# within the ledger's 64-bit cost in billionths of a dollar.
TOKENS_MAX = 2**31 - 1


def count(value: Any) -> int:
    """``value`` as a token count: a whole number (``18.0`` included: some hosts send floats) in
    0..TOKENS_MAX; anything else (negative, fractional, NaN, infinite, a string, null, a boolean)
    counts as none, as a missing count does."""
    if type(value) is int:  # the common case; not a bool
        return value if 0 <= value <= TOKENS_MAX else (TOKENS_MAX if value > 0 else 0)
    if type(value) is float and value.is_integer():  # also a JSON integer past 64 bits
        return min(int(value), TOKENS_MAX) if value > 0 else 0
    return 0
