"""The budget stage prices a reservation from per-token quotes kept per catalog record: the same
nano-dollars, rounded up, as the exact cost of the same tokens (``spend.cost``)."""

from __future__ import annotations

import pytest

from switchboard.catalog import ModelInfo
from switchboard.config.schema import BudgetsConfig
from switchboard.pipeline.budgets import BudgetStage
from switchboard.spend.cost import Tokens, cost


@pytest.mark.parametrize(("inp", "out"), [
    (0.15, 0.6), (2.5, 10), (0, 2000), (3, None), (None, 15), (0.0375, 0.000001), (1234.5678, 0.1),
])
@pytest.mark.parametrize(("prompt", "output"), [(0, 0), (1, 1), (9, 4096), (123_457, 16_384), (7, 0)])
def test_a_reservation_costs_what_the_tokens_cost_rounded_up(
    inp: float | None, out: float | None, prompt: int, output: int
) -> None:
    info = ModelInfo(model="m", provider_types=("openai",), input_cost_per_mtok=inp, output_cost_per_mtok=out)
    stage = BudgetStage(BudgetsConfig(), lambda: None, None, None)  # type: ignore[arg-type]
    per_input, per_output, times, over, unit_priced = stage._quote(info)[1:6]
    assert not unit_priced  # no media unit priced: the media estimate is not asked for
    units = prompt * per_input + output * per_output
    quoted = units * times if over == 1 else -(-units // over)
    assert quoted == cost(info, Tokens(input=prompt, output=output)).nano_usd_up
    assert stage._quote(info) == stage._quote(info)  # kept per record


@pytest.mark.parametrize(("write_5m", "write_1h", "dearest"), [
    (None, None, 3.0), (3.75, None, 3.75), (3.75, 6.0, 6.0), (1.0, None, 3.0),
])
def test_a_prompt_token_is_reserved_at_its_dearest_price(
    write_5m: float | None, write_1h: float | None, dearest: float
) -> None:
    # Whether the provider writes the prompt to a cache is known only from the answer: a prompt
    # billed as a cache write must still fit in what was reserved.
    info = ModelInfo(model="m", provider_types=("anthropic",), input_cost_per_mtok=3.0,
                     output_cost_per_mtok=15.0, cache_write_5m_cost_per_mtok=write_5m,
                     cache_write_1h_cost_per_mtok=write_1h)
    stage = BudgetStage(BudgetsConfig(), lambda: None, None, None)  # type: ignore[arg-type]
    per_input, _, times, over = stage._quote(info)[1:5]
    prompt = 20_003
    quoted = prompt * per_input * times if over == 1 else -(-(prompt * per_input) // over)
    assert quoted == round(prompt * dearest * 1000)  # nano-USD
    for written in (Tokens(cache_write_5m=prompt), Tokens(cache_write_1h=prompt), Tokens(input=prompt)):
        assert cost(info, written).nano_usd_up <= quoted


@pytest.mark.parametrize("field", ["search_unit_cost", "output_cost_per_image", "input_cost_per_audio_second",
                                   "input_cost_per_mchar"])
def test_a_quote_says_whether_its_record_prices_a_media_unit(field: str) -> None:
    # The stage asks for the media units' estimate only of a record whose quote says it prices
    # one (spend/units.py): the same record without that price is quoted as not unit-priced.
    stage = BudgetStage(BudgetsConfig(), lambda: None, None, None)  # type: ignore[arg-type]
    priced = ModelInfo(model="m", provider_types=("openai",), input_cost_per_mtok=1.0, **{field: 0.5})
    plain = ModelInfo(model="m", provider_types=("openai",), input_cost_per_mtok=1.0)
    assert stage._quote(priced)[5] is True
    assert stage._quote(plain)[5] is False
