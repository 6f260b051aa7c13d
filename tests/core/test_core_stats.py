import math

import numpy as np
import pytest

from uterosynth.core.stats import percentile_interval, wilson_ci


def test_a_percentile_interval_is_widened_to_hold_its_estimate_and_only_then():
    reps = np.arange(101.0)
    plain = percentile_interval(reps, 0.9)
    assert plain == pytest.approx((5.0, 95.0))
    assert percentile_interval(reps, 0.9, estimate=50.0) == plain
    assert percentile_interval(reps, 0.9, estimate=99.0) == (plain[0], 99.0)
    assert percentile_interval(reps, 0.9, estimate=-20.0) == (-20.0, plain[1])
    assert percentile_interval(reps, 0.9, estimate=float("nan")) == plain
    assert percentile_interval([0.3, float("inf"), 0.3], estimate=0.7) == (0.3, 0.7)  # non-finite replicates dropped
    assert all(math.isnan(v) for v in percentile_interval([], estimate=1.0))


def test_wilson_interval_holds_the_observed_proportion():
    for correct, n in [(0, 5), (5, 5), (39, 40), (1, 3)]:
        low, high = wilson_ci(correct, n)
        assert low <= correct / n <= high
