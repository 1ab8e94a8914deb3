"""The statistics of ``bench --to-accuracy`` on synthetic timings (mlp_xp.benchtime)."""

import json
import math

import numpy as np
import pytest

from mlp_xp.benchtime import (
    TOLERANCE,
    account,
    interval_coverage,
    median,
    median_interval,
    summarize_times,
)


def test_median_of_odd_even_and_unreached_runs():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([1.0, 2.0, math.inf]) == 2.0  # one run of three never got there
    assert median([1.0, math.inf]) == math.inf  # half never did: no finite median
    with pytest.raises(ValueError):
        median([])


@pytest.mark.parametrize(
    ("n", "j", "coverage"),
    [
        (3, 1, 1 - 2 / 2**3),  # [min, max] of 3 values: 75%
        (5, 1, 1 - 2 / 2**5),  # 93.75%
        (6, 1, 1 - 2 / 2**6),  # 96.875%: the fewest values for 95%
        (10, 2, 1 - 2 * (1 + 10) / 2**10),  # the textbook ranks 2 and 9 of 10
        (10, 3, 1 - 2 * (1 + 10 + 45) / 2**10),
    ],
)
def test_interval_coverage_known_values(n, j, coverage):
    assert interval_coverage(n, j) == pytest.approx(coverage, abs=1e-15)


def test_the_narrowest_interval_that_reaches_the_level():
    values = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
    low, high, coverage = median_interval(values, 0.95)
    assert (low, high) == (2.0, 9.0)  # ranks 2 and 9: 97.85%; ranks 3 and 8 only 89%
    assert coverage == pytest.approx(0.978515625)
    low, high, coverage = median_interval(values, 0.80)
    assert (low, high, coverage) == (3.0, 8.0, pytest.approx(0.890625))


def test_too_few_values_give_min_max_with_the_coverage_they_have():
    assert median_interval([5.0, 3.0, 4.0]) == (3.0, 5.0, 0.75)


@pytest.mark.parametrize("n", [6, 10, 25])
def test_the_interval_covers_the_true_median_as_often_as_it_says(n):
    """Skewed timings (exponential, true median ln 2): the order-statistic interval holds
    the median in the share of trials its coverage promises (4,000 trials, seeded)."""
    rng = np.random.default_rng(1)
    trials = 4000
    hits = 0
    for _ in range(trials):
        low, high, coverage = median_interval(rng.exponential(1.0, n).tolist())
        hits += low <= math.log(2) <= high
    assert coverage >= 0.95
    assert hits / trials == pytest.approx(coverage, abs=4.5 * math.sqrt(0.05 * 0.95 / trials))


def test_runs_that_never_reached_are_counted_and_bound_the_interval():
    s = summarize_times([4.0, None, 5.0, 6.0, None, 4.5])
    assert (s["runs"], s["never_reached"]) == (6, 2)
    assert s["median"] == 5.5  # of 4, 4.5, 5, 6, inf, inf
    assert (s["low"], s["high"]) == (4.0, None)  # the upper end was never reached
    assert "order statistics" in s["method"]
    json.dumps(s, allow_nan=False)  # valid JSON: no infinities
    worst = summarize_times([None, None, 3.0])
    assert worst["median"] is None and worst["never_reached"] == 2


def test_parts_add_up_to_the_whole_within_the_stated_tolerance():
    assert TOLERANCE == (0.02, 0.05)  # 2% of the whole or 50 ms, whichever is larger
    a = account({"startup": 1.0, "data": 0.25, "training": 8.74}, 10.0)
    assert a["parts"] == pytest.approx(9.99) and a["unaccounted"] == pytest.approx(0.01)
    assert a["tolerance"] == pytest.approx(0.2) and a["ok"]
    assert not account({"startup": 1.0, "data": 0.2, "training": 8.5}, 10.0)["ok"]  # 0.3 s
    small = account({"startup": 0.5, "data": 0.0, "training": 0.46}, 1.0)
    assert small["tolerance"] == 0.05 and small["ok"]  # 40 ms of 1 s: within 50 ms
    assert not account({"startup": 0.5, "data": 0.0, "training": 0.6}, 1.0)["ok"]  # over
    with pytest.raises(ValueError):
        account({"startup": -1.0}, 1.0)
