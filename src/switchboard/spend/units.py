"""Media units: what rerank, image and audio calls are billed by, besides tokens.

A media terminal (pipeline/media.py) puts the units of a call into its canonical usage as
``usage["units"]``: ``search_units`` (rerank), ``images`` (generated or edited), ``audio_seconds``
(transcribed or translated) and ``characters`` (speech input); a chat call's adapter puts there
the server tools' billed requests, ``web_search_requests`` (Anthropic's web search). Each is
priced by its own catalog field, in USD per unit (``search_unit_cost``, ``output_cost_per_image``,
``input_cost_per_audio_second``, ``web_search_request_cost``) or per million characters
(``input_cost_per_mchar``), and added to the call's token cost
(:func:`switchboard.spend.cost.cost`). The rules are in docs/spend.md.

A unit counted without a price makes the cost ``unpriced`` unless the call's tokens were priced
(a provider that bills the call in tokens, e.g. gpt-image-1 or gpt-4o-transcribe); so do units the
gateway could not count (``usage["unmeasured"]``, e.g. the seconds of an mp3 transcribed to text).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from switchboard.catalog import ModelInfo
from switchboard.providers.counts import TOKENS_MAX
from switchboard.spend.cost import Cost, Tokens

# usage["units"] key -> (the catalog field pricing it, units per priced quantity)
UNIT_PRICES: dict[str, tuple[str, int]] = {
    "search_units": ("search_unit_cost", 1),
    "images": ("output_cost_per_image", 1),
    "audio_seconds": ("input_cost_per_audio_second", 1),
    "characters": ("input_cost_per_mchar", 1_000_000),
    # Server tools: the web searches an Anthropic model made (providers/anthropic/response.py)
    "web_search_requests": ("web_search_request_cost", 1),
}


def units_of(usage: Mapping[str, Any] | None) -> dict[str, int | float]:
    """The media units in a canonical usage (positive numbers only; booleans are not counts),
    each at most TOKENS_MAX (an upstream's count past it, infinity included, is taken as that)."""
    raw = usage.get("units") if usage else None
    if raw is None or not isinstance(raw, dict):  # None first: the common case skips the type check
        return {}
    out: dict[str, int | float] = {}
    for key in UNIT_PRICES:
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:  # not NaN
            out[key] = value if value <= TOKENS_MAX else TOKENS_MAX
    return out


def _decimal(value: float | int) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def with_units(price: Cost, info: ModelInfo | None, tokens: Tokens, usage: Mapping[str, Any] | None) -> Cost:
    """``price`` (the tokens' cost) plus the media units of ``usage`` at ``info``'s unit prices."""
    if not usage or ("units" not in usage and "unmeasured" not in usage):
        return price  # the common case (chat): two dict lookups
    units = units_of(usage)
    if not units and not usage.get("unmeasured"):
        return price
    tokens_priced = (tokens.prompt > 0 or tokens.completion > 0) and not price.unpriced
    if not units:  # units the gateway could not count (e.g. an mp3's seconds)
        return price if tokens_priced else Cost(price.units, price.exponent, True)
    total = price.usd
    unpriced = price.unpriced
    for key, count in units.items():
        field, per = UNIT_PRICES[key]
        rate = getattr(info, field) if info is not None else None
        if rate is None:
            unpriced = unpriced or not tokens_priced
            continue
        total += _decimal(rate) * _decimal(count) / per
    exponent = max(0, -int(total.as_tuple().exponent))
    return Cost(int(total.scaleb(exponent)), exponent, unpriced)


def has_unit_price(info: ModelInfo | None) -> bool:
    return info is not None and info.unit_priced


def estimate_nano_usd(operation: str, request: Mapping[str, Any], info: ModelInfo | None) -> int:
    """The most a media call's units can cost before it is made, in nano-USD rounded up, for
    budget reservations: rerank one search unit per query and 100 documents, images ``n``,
    speech the input's characters, transcriptions the seconds measured from the upload (when a
    WAV header said). 0 for any other call or an unpriced unit."""
    if info is None or not info.unit_priced:
        return 0
    count: int | float = 0
    key = ""
    if operation == "rerank":
        docs = request.get("documents")
        key, count = "search_units", max(1, -(-len(docs) // 100)) if isinstance(docs, list) else 1
    elif operation in ("image_generations", "image_edits", "image_variations"):
        n = request.get("n")
        key, count = "images", n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    elif operation == "speech":
        text = request.get("input")
        key, count = "characters", len(text) if isinstance(text, str) else 0
    elif operation in ("transcriptions", "translations"):
        seconds = request.get("_audio_seconds")
        key, count = "audio_seconds", seconds if isinstance(seconds, int | float) else 0
    if not key or not count:
        return 0
    field, per = UNIT_PRICES[key]
    rate = getattr(info, field)
    if rate is None:
        return 0
    nano = _decimal(rate) * _decimal(count) / per * 1_000_000_000
    return int(nano.to_integral_value(rounding=ROUND_CEILING))
