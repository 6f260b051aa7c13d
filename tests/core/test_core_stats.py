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


def test_a_difference_interval_matches_newcombes_published_example():
    """Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 against 48/80, method 10 gives
    0.0524 to 0.3339 around 0.2."""
    from uterosynth.core.stats import difference_interval

    diff, low, high = difference_interval(56 / 70, wilson_ci(56, 70), 48 / 80, wilson_ci(48, 80))
    assert (round(diff, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    same = difference_interval(0.5, (0.4, 0.6), 0.5, (0.4, 0.6))
    assert same[1] < 0.0 < same[2] and same[0] == 0.0
