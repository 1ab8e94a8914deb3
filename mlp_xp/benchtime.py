"""Statistics of repeated timings: the median, a distribution-free interval, the accounting.

Pure Python (no array library, no SciPy), so the figures of ``mlp-xp bench
--to-accuracy`` can be checked on synthetic timings.

**The interval** is the order-statistic (binomial) confidence interval for the median
(Hoefler and Belli, SC15, recommend it for timings, which are rarely normal): with ``n``
sorted values ``x(1) <= ... <= x(n)``, the interval ``[x(j), x(n+1-j)]`` holds the true
median with probability ``P(j <= K <= n - j)``, ``K ~ Binomial(n, 1/2)``, whatever the
distribution. The largest ``j`` whose coverage reaches the level asked for is used. With
fewer than 6 values no pair reaches 95% (``[min, max]`` covers 1 - 2/2^n: 75% for 3
values, 93.75% for 5), and the widest interval is given with the coverage it has.

**Runs that never reached the target** count as an infinite time: the median and the
interval stay well defined (an infinite bound reads "not reached"), and how many there
were is reported beside them.

**Accounting**: a run's parts (start-up, data to the device, training) are timed by
separate clocks around consecutive phases; they add up to the whole (launch to the
target) up to the few statements between the clocks. :func:`account` says how far off
they are and whether that is within :data:`TOLERANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "median",
    "median_interval",
    "interval_coverage",
    "summarize_times",
    "account",
    "TOLERANCE",
    "finite_or_none",
]

#: How closely a run's parts must add up to its whole: this fraction of the whole, or
#: this many seconds, whichever is larger.
TOLERANCE = (0.02, 0.05)


def median(values: Iterable[float]) -> float:
    """The median (the mean of the two middle values for an even count); ``inf`` allowed."""
    xs = sorted(values)
    if not xs:
        raise ValueError("the median of no values")
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid]
    low, high = xs[mid - 1], xs[mid]
    return high if math.isinf(high) else (low + high) / 2


def interval_coverage(n: int, j: int) -> float:
    """``P(j <= K <= n - j)`` for ``K ~ Binomial(n, 1/2)``: how often ``[x(j), x(n+1-j)]``
    (1-based order statistics of ``n`` values) holds the true median."""
    if not 1 <= j <= (n + 1) // 2:
        raise ValueError(f"order statistic {j} does not bound an interval of {n} values")
    return sum(math.comb(n, k) for k in range(j, n - j + 1)) / 2**n


def median_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the order-statistic interval for the median.

    The narrowest ``[x(j), x(n+1-j)]`` whose coverage is at least ``level``; where even
    ``[min, max]`` falls short (fewer than 6 values for 95%), that, with its coverage.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("an interval of no values")
    j = 1
    for candidate in range((n + 1) // 2, 0, -1):  # narrowest first
        if interval_coverage(n, candidate) >= level:
            j = candidate
            break
    return xs[j - 1], xs[n - j], interval_coverage(n, j)


def summarize_times(times: Iterable[float | None], level: float = 0.95) -> dict[str, Any]:
    """Median and interval of runs' times to a target; ``None`` is a run that never got there.

    Infinite figures (most runs, or the interval's end, never reached) are ``None`` in the
    result, so it is valid JSON.
    """
    xs = [math.inf if t is None else float(t) for t in times]
    low, high, coverage = median_interval(xs, level)
    return {
        "runs": len(xs),
        "never_reached": sum(math.isinf(x) for x in xs),
        "median": finite_or_none(median(xs)),
        "low": finite_or_none(low),
        "high": finite_or_none(high),
        "coverage": coverage,
        "level": level,
        "method": "order statistics (binomial, distribution-free)",
    }


def finite_or_none(x: float) -> float | None:
    """``x``, or ``None`` where it is infinite (JSON has no infinity)."""
    return None if math.isinf(x) else x


def account(
    parts: Mapping[str, float], whole: float, tolerance: tuple[float, float] = TOLERANCE
) -> dict[str, Any]:
    """How the parts of a timed run add up to its whole.

    Returns ``parts`` (their sum), ``unaccounted`` (whole minus that sum), ``tolerance``
    (the larger of ``tolerance[0] * whole`` and ``tolerance[1]`` seconds) and ``ok``
    (whether the unaccounted time is within it, either way).
    """
    if any(v < 0 for v in parts.values()) or whole < 0:
        raise ValueError(f"negative durations: {dict(parts)}, whole {whole}")
    total = math.fsum(parts.values())
    allowed = max(tolerance[0] * whole, tolerance[1])
    unaccounted = whole - total
    return {
        "parts": total,
        "unaccounted": unaccounted,
        "tolerance": allowed,
        "ok": abs(unaccounted) <= allowed,
    }
