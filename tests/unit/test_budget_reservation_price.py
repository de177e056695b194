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
    _, per_input, per_output, times, over = stage._quote(info)
    units = prompt * per_input + output * per_output
    quoted = units * times if over == 1 else -(-units // over)
    assert quoted == cost(info, Tokens(input=prompt, output=output)).nano_usd_up
    assert stage._quote(info) == stage._quote(info)  # kept per record
