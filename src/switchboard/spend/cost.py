"""Cost per request, billing-grade: canonical usage split the way providers bill it, priced
from the model catalog with exact arithmetic.

Canonical (OpenAI-shaped) usage counts every prompt token in ``prompt_tokens``, cache reads
(``prompt_tokens_details.cached_tokens``), cache writes (``cache_creation_tokens``, of which
``cache_creation_1h_tokens`` were written for an hour) and image and audio units
(``image_tokens``, ``audio_tokens``) included; ``completion_tokens`` includes
``completion_tokens_details.reasoning_tokens`` and its ``image_tokens`` and ``audio_tokens``.
:func:`split` turns that into disjoint counts, so no token is billed twice; :func:`cost` prices
each at its own rate. The rules are in docs/spend.md.

Exact without a Decimal per request: each model's prices are turned once into whole numbers of
``10**-scale`` dollars per million tokens (``scale`` the most decimals any of its prices has), so
a call's cost is an integer sum, exact; it becomes a Decimal, or billionths of a dollar rounded
half-even (the ledger's unit and the header's precision), only when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from switchboard.catalog import Catalog, ModelInfo
from switchboard.config.schema import ModelConfig
from switchboard.providers.counts import count as _count
from switchboard.routing.live import LiveRouting, Snapshot
from switchboard.routing.table import Route

NANO = Decimal("0.000000001")


class Tokens(NamedTuple):
    """One call's tokens, disjoint, as providers bill them. ``prompt`` and ``completion`` are the
    totals (``prompt_tokens`` and ``completion_tokens``)."""

    input: int = 0  # text prompt tokens neither read from nor written to a cache
    cache_read: int = 0  # of any modality: billed at the cached price
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0  # text output, reasoning included: it is billed as output
    reasoning: int = 0  # reported apart; already counted in ``output``
    image_input: int = 0  # image units of the prompt, not read from a cache
    audio_input: int = 0  # audio units of the prompt, not read from a cache
    image_output: int = 0
    audio_output: int = 0

    @property
    def prompt(self) -> int:
        return (self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h
                + self.image_input + self.audio_input)

    @property
    def completion(self) -> int:
        return self.output + self.image_output + self.audio_output

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input, "cache_read": self.cache_read, "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h, "output": self.output, "reasoning": self.reasoning,
            "image_input": self.image_input, "audio_input": self.audio_input,
            "image_output": self.image_output, "audio_output": self.audio_output,
        }


_NONE = Tokens()
# A Tokens or Cost built without the generated ``__new__``'s call (a Python function, some
# 2,000 instructions): the common path's. Every field is given, in order.
_new = tuple.__new__


# _count (providers/counts.py): whole, not negative, at most TOKENS_MAX. The adapters read their
# usage so, but an OpenAI reply's usage is the canonical one as it came: bounded here too.


def split(usage: Mapping[str, Any] | None) -> Tokens:
    """Canonical usage -> disjoint token counts. Details larger than their total are capped;
    the totals at ``TOKENS_MAX`` (the caller flags a record whose total reached it).

    The prompt is taken in this order, each part capped by what is left of ``prompt_tokens``:
    cache reads, cache writes, image units, audio units; the rest is text input. Cache reads stay
    cache reads whatever their modality (billed at the cached price), so ``image_tokens`` and
    ``audio_tokens`` are the units not read from a cache. The completion: image units, audio
    units, the rest text output (reasoning is part of it)."""
    if not usage:
        return _NONE
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    pd = usage.get("prompt_tokens_details")
    cd = usage.get("completion_tokens_details")
    if not pd and not cd:  # the common case: no cache, no reasoning, no media
        return _new(Tokens, (prompt, 0, 0, 0, completion, 0, 0, 0, 0, 0))
    if isinstance(pd, Mapping):
        read = min(_count(pd.get("cached_tokens")), prompt)
        left = prompt - read
        written = min(_count(pd.get("cache_creation_tokens")), left)
        hour = min(_count(pd.get("cache_creation_1h_tokens")), written)
        left -= written
        image_in = min(_count(pd.get("image_tokens")), left)
        left -= image_in
        audio_in = min(_count(pd.get("audio_tokens")), left)
        left -= audio_in
    else:
        read = written = hour = image_in = audio_in = 0
        left = prompt
    if isinstance(cd, Mapping):
        reasoning = min(_count(cd.get("reasoning_tokens")), completion)
        image_out = min(_count(cd.get("image_tokens")), completion)
        audio_out = min(_count(cd.get("audio_tokens")), completion - image_out)
        text_out = completion - image_out - audio_out
        reasoning = min(reasoning, text_out)
    else:
        reasoning = image_out = audio_out = 0
        text_out = completion
    return Tokens(left, read, written - hour, hour, text_out, reasoning,
                  image_in, audio_in, image_out, audio_out)


def _price(value: float | None) -> Decimal | None:
    # repr of a float is its shortest decimal form: 0.15 -> Decimal("0.15"), exactly as written.
    return None if value is None else Decimal(repr(value))


class Cost(NamedTuple):
    """An exact cost: ``units`` of ``10**-exponent`` US dollars."""

    units: int
    exponent: int
    unpriced: bool  # some billed tokens had no known price: the cost counts them as 0

    @property
    def usd(self) -> Decimal:
        return Decimal(self.units).scaleb(-self.exponent)

    @property
    def nano_usd(self) -> int:
        """Whole billionths of a dollar, rounded half-even (the ledger's unit)."""
        shift = self.exponent - 9
        if shift <= 0:
            return self.units * 10**-shift
        whole, rest = divmod(self.units, 10**shift)
        half = 5 * 10 ** (shift - 1)
        return whole + 1 if rest > half or (rest == half and whole & 1) else whole

    @property
    def nano_usd_up(self) -> int:
        """Whole billionths of a dollar, rounded up (a reservation never falls short)."""
        shift = self.exponent - 9
        if shift <= 0:
            return self.units * 10**-shift
        return -(-self.units // 10**shift)

    def header(self) -> str:
        return format_nano_usd(self.nano_usd)


def format_usd(usd: Decimal) -> str:
    """A plain decimal string, exact to the billionth of a dollar, at least 6 decimals."""
    text = f"{usd.quantize(NANO, ROUND_HALF_EVEN):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(6, "0")
    return f"{whole}.{frac}"


def format_nano_usd(nano: int) -> str:
    """``format_usd`` of a whole number of billionths of a dollar."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), 10**9)
    return f"{sign}{whole}.{f'{frac:09d}'.rstrip('0').ljust(6, '0')}"


# The prices of Tokens' fields in its order (reasoning: 0, it is part of the output), as whole
# units of 10**-scale USD per Mtok; None: unknown.
# Last, the prompt size past which the long-context prices apply (_NEVER: none).
_Prices = tuple[int, tuple[int | None, ...], int]
_NEVER = 1 << 62  # more prompt tokens than any count (providers/counts.py, TOKENS_MAX)
# By the catalog record's identity (records live as long as the model table that holds them; the
# entry keeps its record alive, so an id is never reused while cached). Bounded all the same.
_INT_PRICES: dict[int, tuple[ModelInfo, _Prices]] = {}


def _int_prices(info: ModelInfo) -> _Prices:
    """The prices as integers at one scale, converted once per catalog record. Cache reads
    without a cached price, cache writes without a write price, and image and audio input
    without a price of their own, are billed at the input price; image and audio output without
    one at the output price."""
    hit = _INT_PRICES.get(id(info))
    if hit is not None and hit[0] is info:
        return hit[1]
    return _convert(info)


def _convert(info: ModelInfo) -> _Prices:
    """``_int_prices`` worked out, and kept. A function of its own: its comprehension made
    ``scale`` a cell of ``_int_prices`` on every call, most of which read the cache."""
    inp = _price(info.input_cost_per_mtok)
    out = _price(info.output_cost_per_mtok)

    def or_(value: float | None, fallback: Decimal | None) -> Decimal | None:
        price = _price(value)
        return fallback if price is None else price

    decimals = (
        inp, or_(info.cached_input_cost_per_mtok, inp), or_(info.cache_write_5m_cost_per_mtok, inp),
        or_(info.cache_write_1h_cost_per_mtok, inp), out, Decimal(0),
        or_(info.input_image_cost_per_mtok, inp), or_(info.input_audio_cost_per_mtok, inp),
        or_(info.output_image_cost_per_mtok, out), or_(info.output_audio_cost_per_mtok, out),
    )
    scale = max([0] + [-int(d.as_tuple().exponent) for d in decimals if d is not None])
    threshold = info.long_context_threshold()
    prices: _Prices = (scale, tuple(None if d is None else int(d.scaleb(scale)) for d in decimals),
                       _NEVER if threshold is None else threshold)
    if len(_INT_PRICES) >= 4096:
        _INT_PRICES.clear()
    _INT_PRICES[id(info)] = (info, prices)
    return prices


# By the catalog record's identity and a service tier: the record with the tier's prices in
# place of the standard ones (itself when the tier has none). Bounded as _INT_PRICES.
_TIERED: dict[tuple[int, str], tuple[ModelInfo, ModelInfo]] = {}


def tier_of(answer: Mapping[str, Any]) -> str | None:
    """The service tier an OpenAI answer (a completion, a chunk, a Response) says served it. A
    value no tier has (not a string, or longer than any tier's name) is none: it goes into the
    usage record as it is."""
    tier = answer.get("service_tier")
    return tier if isinstance(tier, str) and 0 < len(tier) <= 32 else None


def tiered(info: ModelInfo, tier: str) -> ModelInfo:
    """``info`` priced as a call served in OpenAI service tier ``tier`` (the answer's
    ``service_tier``): the tier's input, output and cached-input prices, the others unchanged;
    ``info`` itself when the tier has no input and output price of its own (``flex``,
    ``priority``; any other tier, ``default`` included, is the standard one)."""
    hit = _TIERED.get((id(info), tier))
    if hit is not None and hit[0] is info:
        return hit[1]
    prices = info.tier_prices(tier)
    priced = info if prices is None else info.model_copy(update={
        "input_cost_per_mtok": prices[0], "output_cost_per_mtok": prices[1],
        "cached_input_cost_per_mtok": prices[2]})
    if len(_TIERED) >= 4096:
        _TIERED.clear()
    _TIERED[(id(info), tier)] = (info, priced)
    return priced


# By the catalog record's identity: the record with its long-context prices in place of the
# standard ones. Bounded as _INT_PRICES.
_LONG: dict[int, tuple[ModelInfo, ModelInfo]] = {}


def long_context(info: ModelInfo) -> ModelInfo:
    """``info`` priced as a call whose prompt is over its long-context threshold: the long-context
    input, output, cached-input and cache-write prices in place of the standard ones (a cached or
    cache-write price it lacks: the long-context input price), the image and audio prices
    unchanged; ``info`` itself when it has no long-context input and output price."""
    hit = _LONG.get(id(info))
    if hit is not None and hit[0] is info:
        return hit[1]
    priced = info
    if info.long_context_threshold() is not None:
        priced = info.model_copy(update={
            "input_cost_per_mtok": info.long_context_input_cost_per_mtok,
            "output_cost_per_mtok": info.long_context_output_cost_per_mtok,
            "cached_input_cost_per_mtok": info.long_context_cached_input_cost_per_mtok,
            "cache_write_5m_cost_per_mtok": info.long_context_cache_write_5m_cost_per_mtok,
            "cache_write_1h_cost_per_mtok": info.long_context_cache_write_1h_cost_per_mtok,
            "long_context_threshold_tokens": None})
    if len(_LONG) >= 4096:
        _LONG.clear()
    _LONG[id(info)] = (info, priced)
    return priced


def cost(info: ModelInfo | None, tokens: Tokens, tier: str | None = None) -> Cost:
    """The exact cost of ``tokens`` at ``info``'s prices (USD per million tokens); ``tier``: the
    OpenAI service tier the answer says served the call, priced at its own prices if the model
    has them (:func:`tiered`). A call whose prompt (cache reads and writes, image and audio units
    included) is over the model's long-context threshold is priced, all its tokens, at the
    long-context prices (:func:`long_context`), which take the place of a tier's too.

    Cache reads without a cached price, cache writes without a write price, and image and audio
    units without a price of their own, are billed at the input (output) price. A token count
    above 0 whose price is unknown makes the cost ``unpriced``.
    """
    if info is None:
        return Cost(0, 0, tokens.prompt > 0 or tokens.completion > 0)
    if tier is not None:
        info = tiered(info, tier)
    scale, prices, threshold = _int_prices(info)
    # the common case: no cache tokens, no image or audio units (the prompt is the text input)
    plain = not (tokens[1] or tokens[2] or tokens[3] or tokens[6] or tokens[7] or tokens[8] or tokens[9])
    if (tokens[0] if plain else tokens.prompt) > threshold:
        scale, prices, _ = _int_prices(long_context(info))
    inp, out = prices[0], prices[4]
    if plain and inp is not None and out is not None:
        return _new(Cost, (tokens[0] * inp + tokens[4] * out, scale + 6, False))
    total = 0
    unpriced = False
    for count, price in zip(tokens, prices, strict=True):
        if not count or price == 0:
            continue
        if price is None:
            unpriced = True
        else:
            total += count * price
    return Cost(total, scale + 6, unpriced)


def is_unpriced(info: ModelInfo | None) -> bool:
    """The model cannot be priced: no input price, or no output price for a model that writes."""
    if info is not None and info.unit_priced:  # a media model billed per unit (spend/units.py)
        return False
    if info is None or info.input_cost_per_mtok is None:
        return True
    return info.mode != "embedding" and info.output_cost_per_mtok is None


class Prices:
    """The catalog record (with the entry's ``info:`` overrides) of each served model, resolved
    once per model entry and kept while the entry is unchanged in the live model table."""

    def __init__(self, catalog: Catalog, routing: LiveRouting) -> None:
        self._catalog = catalog
        self._routing = routing
        # By deployment: the entry it was resolved for, its record, and whether the record has
        # both token prices (asked on every call: worked out here, not read of the record then).
        self._memo: dict[tuple[str, str], tuple[object, ModelInfo | None, bool]] = {}

    def of_route(self, route: Route) -> ModelInfo | None:
        return self.priced(route)[0]

    def priced(self, route: Route) -> tuple[ModelInfo | None, bool]:
        """The route's catalog record, and whether it has an input and an output price."""
        # Each deployment of a group has its own catalog record (its entry's model and info:).
        name = (route.target.name, route.deployment)
        entry = route.entry
        if entry is None:
            entry = self._routing.current.models.get(route.target.name)
        memo = self._memo.get(name)
        if memo is not None and memo[0] is entry:
            return memo[1], memo[2]
        return self._resolve(route, name, entry)

    def _resolve(self, route: Route, name: tuple[str, str], entry: ModelConfig | None
                 ) -> tuple[ModelInfo | None, bool]:
        """``priced`` for a deployment not kept yet: resolved, and kept. A method of its own:
        its generator made ``route`` a cell of ``priced`` on every call."""
        info: ModelInfo | None = None
        if entry is not None:
            match = self._catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
            info = match.info if match else None
        priced = (info is not None and info.input_cost_per_mtok is not None
                  and info.output_cost_per_mtok is not None)
        group = self._routing.current.groups.get(route.target.name)
        if group is not None and any(r.deployment == route.deployment for r in group.deployments):
            self._memo[name] = (entry, info, priced)  # (not a deployment the table dropped meanwhile)
        return info, priced

    def forget_removed(self, snapshot: Snapshot) -> None:
        """The model table became ``snapshot``: forget the records of the deployments it no
        longer holds (LiveRouting calls it on every swap)."""
        kept = snapshot.deployments()
        for key in [k for k in self._memo if k not in kept]:
            del self._memo[key]

    def unpriced(self) -> list[dict[str, Any]]:
        """Every served model that cannot be priced, by name."""
        out = []
        for route in sorted(self._routing.all_routes(), key=lambda r: (r.target.name, r.deployment)):
            if is_unpriced(self.of_route(route)):
                out.append({"model": route.target.name, "deployment": route.deployment,
                            "provider": route.target.provider, "upstream_model": route.target.model})
        return out
