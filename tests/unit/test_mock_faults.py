"""The mock's fault injection per deployment (``x-mock-faults``): which requests fail, with
which fault, deterministically; a malformed header injects nothing."""

from __future__ import annotations

import pytest

from switchboard.mock.faults import FaultPlan, parse


def test_half_of_the_requests_fail_every_other_one_with_the_kinds_in_turn() -> None:
    plan = FaultPlan()
    value = "rate=0.5;kinds=429,500,timeout,reset"
    fates = [plan.decide(value) for _ in range(8)]
    assert fates == [None, "429", None, "500", None, "timeout", None, "reset"]


def test_each_header_value_is_counted_on_its_own() -> None:
    plan = FaultPlan()
    assert [plan.decide("rate=1;kinds=500;id=a") for _ in range(2)] == ["500", "500"]
    assert plan.decide("rate=0.5;kinds=500;id=b") is None
    assert plan.decide("rate=0;kinds=500") is None


def test_a_seeded_rate_fails_about_that_share_reproducibly() -> None:
    value = "rate=0.3;kinds=503;seed=42"
    first = [FaultPlan().decide(value) for _ in range(1)]
    plan, again = FaultPlan(), FaultPlan()
    fates = [plan.decide(value) for _ in range(1000)]
    assert fates == [again.decide(value) for _ in range(1000)] and first[0] == fates[0]
    assert 250 <= fates.count("503") <= 350


@pytest.mark.parametrize("value", [
    "rate=2", "rate=-0.1", "rate=x", "rate=0.5;kinds=418", "rate=0.5;kinds=", "rate=0.5;seed=abc", "",
])
def test_a_malformed_header_injects_nothing(value: str) -> None:
    assert parse(value) is None or parse(value).rate == 0  # type: ignore[union-attr]
    assert FaultPlan().decide(value) is None


def test_retry_after_is_read_from_the_header() -> None:
    plan = FaultPlan()
    assert plan.retry_after("rate=1;kinds=429;retry_after=7") == "7"
    assert plan.retry_after("rate=1;kinds=429") == "1"
