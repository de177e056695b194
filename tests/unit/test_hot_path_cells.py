"""Functions every request runs make no closure cells.

A variable that a nested function, lambda, generator or comprehension reads becomes a cell,
made when the enclosing function is entered, whether or not the nested code then runs: some
250 instructions each, with its release. The rarely taken parts of these functions are
functions of their own (docs/benchmarks.md, "The full path's cost, stage by stage, a fourth
time").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from switchboard.access.rules import model_allowed
from switchboard.context import RequestContext
from switchboard.limits.estimate import used_tokens
from switchboard.pipeline.attempts import AttemptStage
from switchboard.pipeline.budgets import BudgetStage
from switchboard.pipeline.images import InlineImagesStage
from switchboard.pipeline.settle import Settlement
from switchboard.providers.openai_extensions import to_openai
from switchboard.routing.prerouting import Windows, eligible
from switchboard.routing.router import Router
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.cost import Prices, _int_prices
from switchboard.upstream.http1 import _Conn

HOT: list[Callable[..., Any]] = [
    model_allowed,
    used_tokens,
    AttemptStage.__call__,
    BudgetStage._charges,
    BudgetStage._amounts,
    BudgetStage._uniform,
    InlineImagesStage.__call__,
    to_openai,
    eligible,
    Windows.smallest,
    Router.plan,
    BudgetBook.settle_surely,
    BudgetBook.settle_surely_now,
    Settlement.__call__,
    RequestContext.run_after_response,
    Prices.priced,
    _int_prices,
    _Conn.take,
]


@pytest.mark.parametrize("function", HOT, ids=lambda f: f.__qualname__)
def test_a_request_path_function_makes_no_cell(function: Callable[..., Any]) -> None:
    assert function.__code__.co_cellvars == ()


def test_the_usage_stage_keeps_only_its_callbacks_cells() -> None:
    """Its post-response callback is a closure over the stage and the call, made on every
    request; a stream's closures are made in a method of their own."""
    from switchboard.pipeline.usage import UsageStage

    assert set(UsageStage.__call__.__code__.co_cellvars) == {"self", "call"}
