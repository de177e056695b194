"""Cost per request, billing-grade: canonical usage split the way providers bill it, priced
from the model catalog with exact decimal arithmetic.

Canonical (OpenAI-shaped) usage counts every prompt token in ``prompt_tokens``, cache reads
(``prompt_tokens_details.cached_tokens``) and cache writes (``cache_creation_tokens``, of which
``cache_creation_1h_tokens`` were written for an hour) included; ``completion_tokens`` includes
``completion_tokens_details.reasoning_tokens``. :func:`split` turns that into disjoint counts, so
no token is billed twice; :func:`cost` prices each at its own rate. The rules are in docs/spend.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from switchboard.catalog import Catalog, ModelInfo
from switchboard.routing.live import LiveRouting
from switchboard.routing.table import Route

MTOK = Decimal(1_000_000)
NANO = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class Tokens:
    """One call's tokens, disjoint, as providers bill them."""

    input: int = 0  # prompt tokens neither read from nor written to a cache
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0  # reasoning included: it is billed as output
    reasoning: int = 0  # reported apart; already counted in ``output``

    @property
    def prompt(self) -> int:
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input, "cache_read": self.cache_read, "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h, "output": self.output, "reasoning": self.reasoning,
        }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def split(usage: Mapping[str, Any] | None) -> Tokens:
    """Canonical usage -> disjoint token counts. Details larger than their total are capped."""
    if not usage:
        return Tokens()
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    pd = usage.get("prompt_tokens_details")
    pd = pd if isinstance(pd, Mapping) else {}
    read = min(_count(pd.get("cached_tokens")), prompt)
    written = min(_count(pd.get("cache_creation_tokens")), prompt - read)
    hour = min(_count(pd.get("cache_creation_1h_tokens")), written)
    cd = usage.get("completion_tokens_details")
    cd = cd if isinstance(cd, Mapping) else {}
    reasoning = min(_count(cd.get("reasoning_tokens")), completion)
    return Tokens(prompt - read - written, read, written - hour, hour, completion, reasoning)


def _price(value: float | None) -> Decimal | None:
    # repr of a float is its shortest decimal form: 0.15 -> Decimal("0.15"), exactly as written.
    return None if value is None else Decimal(repr(value))


@dataclass(frozen=True, slots=True)
class Cost:
    usd: Decimal
    unpriced: bool  # some billed tokens had no known price: ``usd`` counts them as 0

    def header(self) -> str:
        return format_usd(self.usd)


def format_usd(usd: Decimal) -> str:
    """A plain decimal string, exact to the billionth of a dollar, at least 6 decimals."""
    text = f"{usd.quantize(NANO, ROUND_HALF_EVEN):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(6, "0")
    return f"{whole}.{frac}"


_Prices = tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None, Decimal | None]
# By the catalog record's identity (records live as long as the model table that holds them; the
# entry keeps its record alive, so an id is never reused while cached). Bounded all the same.
_DECIMAL_PRICES: dict[int, tuple[ModelInfo, _Prices]] = {}


def _decimal_prices(info: ModelInfo) -> _Prices:
    """Input, cache read, cache write 5m and 1h, output: Decimal per Mtok, converted once per
    record. Cache reads without a cached price, and cache writes without a write price, are
    billed at the input price."""
    hit = _DECIMAL_PRICES.get(id(info))
    if hit is not None and hit[0] is info:
        return hit[1]
    inp = _price(info.input_cost_per_mtok)
    read = _price(info.cached_input_cost_per_mtok)
    w5 = _price(info.cache_write_5m_cost_per_mtok)
    w1 = _price(info.cache_write_1h_cost_per_mtok)
    prices = (
        inp,
        read if read is not None else inp,
        w5 if w5 is not None else inp,
        w1 if w1 is not None else inp,
        _price(info.output_cost_per_mtok),
    )
    if len(_DECIMAL_PRICES) >= 4096:
        _DECIMAL_PRICES.clear()
    _DECIMAL_PRICES[id(info)] = (info, prices)
    return prices


def cost(info: ModelInfo | None, tokens: Tokens) -> Cost:
    """The exact cost of ``tokens`` at ``info``'s prices (USD per million tokens).

    Cache reads without a cached price, and cache writes without a write price, are billed at the
    input price. A token count above 0 whose price is unknown makes the cost ``unpriced``.
    """
    if info is None:
        return Cost(Decimal(0), unpriced=tokens.prompt > 0 or tokens.output > 0)
    inp, read, w5, w1, out = _decimal_prices(info)
    parts = (
        (tokens.input, inp),
        (tokens.cache_read, read),
        (tokens.cache_write_5m, w5),
        (tokens.cache_write_1h, w1),
        (tokens.output, out),
    )
    total = Decimal(0)
    unpriced = False
    for count, price in parts:
        if not count:
            continue
        if price is None:
            unpriced = True
        else:
            total += count * price
    return Cost(total / MTOK, unpriced)


def is_unpriced(info: ModelInfo | None) -> bool:
    """The model cannot be priced: no input price, or no output price for a model that writes."""
    if info is None or info.input_cost_per_mtok is None:
        return True
    return info.mode != "embedding" and info.output_cost_per_mtok is None


class Prices:
    """The catalog record (with the entry's ``info:`` overrides) of each served model, resolved
    once per model entry and kept while the entry is unchanged in the live model table."""

    def __init__(self, catalog: Catalog, routing: LiveRouting) -> None:
        self._catalog = catalog
        self._routing = routing
        self._memo: dict[str, tuple[object, ModelInfo | None]] = {}

    def of_route(self, route: Route) -> ModelInfo | None:
        name = route.target.name
        entry = self._routing.current.models.get(name)
        memo = self._memo.get(name)
        if memo is not None and memo[0] is entry:
            return memo[1]
        info: ModelInfo | None = None
        if entry is not None:
            match = self._catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
            info = match.info if match else None
        self._memo[name] = (entry, info)
        return info

    def unpriced(self) -> list[dict[str, Any]]:
        """Every served model that cannot be priced, by name."""
        out = []
        snapshot = self._routing.current
        for name in sorted(snapshot.routes):
            route = snapshot.routes[name]
            if is_unpriced(self.of_route(route)):
                out.append({"model": name, "provider": route.target.provider,
                            "upstream_model": route.target.model})
        return out
