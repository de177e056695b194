"""The rollups' latency histogram: log-spaced buckets, and percentiles read from merged counts
within one bucket of the exact (nearest-rank) percentile."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from switchboard.stores.histogram import (
    BOUNDS,
    BUCKETS,
    bucket_of,
    bucket_range,
    merge,
    percentile,
    percentiles,
)


def exact(values: list[int], q: float) -> int:
    """The nearest-rank percentile: the smallest value with at least q * n values at or below."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def histogram(values: list[int]) -> list[int]:
    counts = [0] * BUCKETS
    for value in values:
        counts[bucket_of(value)] += 1
    return counts


def test_the_bounds_are_four_per_doubling_from_1_ms_to_about_9_minutes() -> None:
    assert BUCKETS == 78 and BOUNDS[0] == 1 and BOUNDS[4] == 2 and BOUNDS[-1] == 524288
    assert all(b / a == pytest.approx(2 ** 0.25) for a, b in itertools.pairwise(BOUNDS))
    assert [bucket_of(v) for v in (0, 0.5, 1, 1.5, 2, 524287, 524288, 10**9)] == [0, 0, 1, 3, 5, 76, 77, 77]
    assert bucket_range(0) == (0.0, 1.0) and bucket_range(77) == (524288, math.inf)
    for value in (1, 7, 99, 100, 1000, 60_000):
        lower, upper = bucket_range(bucket_of(value))
        assert lower <= value < upper


@pytest.mark.parametrize("seed", range(20))
def test_percentiles_are_within_the_bucket_of_the_exact_value(seed: int) -> None:
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(5, 1.2)) for _ in range(rng.randint(1, 3000))]
    counts = histogram(values)
    assert percentiles(counts, (0.5, 0.95, 0.99)) == [percentile(counts, q) for q in (0.5, 0.95, 0.99)]
    for q in (0.5, 0.95, 0.99):
        estimate = percentile(counts, q)
        truth = exact(values, q)
        lower, upper = bucket_range(bucket_of(truth))
        assert estimate is not None and lower <= estimate <= upper, (q, truth, estimate)
        if truth >= 1:
            assert truth / 2 ** 0.25 <= estimate <= truth * 2 ** 0.25


def test_merged_histograms_answer_as_one_over_all_the_values() -> None:
    rng = random.Random(7)
    parts = [[rng.randint(1, 5000) for _ in range(rng.randint(0, 200))] for _ in range(24)]
    merged = [0] * BUCKETS
    for part in parts:
        merge(merged, histogram(part))
    everything = [v for part in parts for v in part]
    assert merged == histogram(everything)
    assert percentile(merged, 0.95) == percentile(histogram(everything), 0.95)


def test_edges() -> None:
    assert percentile([0] * BUCKETS, 0.5) is None
    assert percentiles([0] * BUCKETS, (0.5, 0.99)) == [None, None]
    assert percentiles(histogram([10**7, 1]), (0.5, 1.0)) == [percentile(histogram([10**7, 1]), 0.5), 524288]
    one = histogram([100])
    lower, upper = bucket_range(bucket_of(100))
    assert percentile(one, 0.5) == pytest.approx(lower + (upper - lower) / 2)
    assert percentile(one, 0.99) == pytest.approx(lower + (upper - lower) * 0.99)
    assert percentile(histogram([0, 0, 0]), 0.5) == pytest.approx(0.5)
    assert percentile(histogram([10**7]), 0.99) == 524288  # past the last bound: the bound
