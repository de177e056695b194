"""The fixed latency histogram of the analytics rollups (docs/observability.md, "Analytics").

Bounds are log-spaced, four per doubling: ``2 ** (i / 4)`` milliseconds for i = 0..76, from 1 ms to
524 288 ms (about 8.7 minutes). That makes 78 buckets: ``[0, 1)``, then ``[b[i-1], b[i])`` for
each bound, then ``[524288, inf)``. A rollup stores one count per bucket, so histograms of any
hours, keys or models merge by adding counts, and a percentile is read from the merged counts by
linear interpolation inside the bucket that holds the rank.

The error is bounded by the bucket: the estimate and the exact (nearest-rank) percentile of the
same values always fall in the same bucket, so they differ by less than its width, a factor of
``2 ** 0.25`` (about 19 %) at most, and by less than 1 ms under 1 ms. Above the last bound the
estimate is the last bound itself.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import add

BOUNDS: tuple[float, ...] = tuple(2 ** (i / 4) for i in range(77))
BUCKETS = len(BOUNDS) + 1  # 78


def bucket_of(value_ms: float) -> int:
    """The index of the bucket ``value_ms`` is counted in."""
    return bisect_right(BOUNDS, value_ms)


def bucket_range(index: int) -> tuple[float, float]:
    """The bucket's lower bound (inclusive) and upper bound (exclusive; ``inf`` for the last)."""
    lower = 0.0 if index == 0 else BOUNDS[index - 1]
    upper = BOUNDS[index] if index < len(BOUNDS) else float("inf")
    return lower, upper


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of the values counted in ``counts``; None when empty.

    The rank ``q * n`` is located in the cumulative counts; the value is interpolated linearly
    between the bounds of the bucket it falls in, by its position among that bucket's counts."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            lower, upper = bucket_range(index)
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bucket_range(len(counts) - 1)[0]  # unreachable unless q > 1


def percentiles(counts: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """``percentile`` of each of ``qs`` (0 < q <= 1), with one cumulative sum for all of them."""
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return [None] * len(qs)
    found: list[float | None] = []
    for q in qs:
        rank = q * total
        index = min(bisect_left(cumulative, rank), len(cumulative) - 1)  # first with cum >= rank
        lower, upper = bucket_range(index)
        count = counts[index]
        if upper == float("inf") or count <= 0:
            found.append(lower)
        else:
            found.append(lower + (upper - lower) * (rank - (cumulative[index] - count)) / count)
    return found


def merged(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Two histograms' counts added bucket by bucket (the shorter one padded with zeros)."""
    if len(a) < len(b):
        a, b = b, a
    return (*map(add, a, b), *a[len(b):])


def merge(into: list[int], counts: Sequence[int]) -> None:
    """Add ``counts`` to ``into``, bucket by bucket."""
    for index, count in enumerate(counts):
        if count:
            into[index] += count
