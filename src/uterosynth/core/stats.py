"""Small statistics shared by stages that may not import one another (reader study, release)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["difference_interval", "percentile_interval", "wilson_ci", "wilson_interval"]


def percentile_interval(samples: Sequence[float] | np.ndarray, confidence: float = 0.95, *,
                        estimate: float | None = None) -> tuple[float, float]:
    """The ``(low, high)`` percentiles of bootstrap replicates (non-finite replicates dropped).

    With ``estimate`` (the statistic on the full sample) the interval is widened, where needed, to
    contain it: a skewed or discrete replicate distribution (a ratio of counts, a rate at a
    threshold, an average over seeds) can put both percentiles on one side of the estimate, and a
    reported value outside its own interval reads as an error.

    >>> percentile_interval([1.0, 2.0, 3.0], 0.5, estimate=3.5)
    (1.5, 3.5)
    """
    values = np.asarray(samples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(values, [alpha, 1.0 - alpha]))
    if estimate is not None and math.isfinite(estimate):
        low, high = min(low, float(estimate)), max(high, float(estimate))
    return low, high


def wilson_ci(correct: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of the proportion ``correct / n`` (Wilson 1927); ``n`` ≥ 1.

    >>> [round(v, 3) for v in wilson_ci(8, 10)]
    [0.49, 0.943]
    """
    return wilson_interval(correct / n, n)


def wilson_interval(proportion: float, n: float) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion observed on an effective sample size ``n`` > 0
    (not necessarily whole: a mean over correlated items with ``n`` independent units);
    :func:`wilson_ci` is it for whole counts.

    >>> [round(v, 3) for v in wilson_interval(0.8, 10)]
    [0.49, 0.943]
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.975))
    scale = 1 + z * z / n
    centre = (proportion + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(first: float, first_ci: Sequence[float], second: float,
                        second_ci: Sequence[float]) -> tuple[float, float, float]:
    """``first - second`` with its interval, from each estimate's own interval (MOVER: Zou & Donner 2008;
    for two Wilson intervals Newcombe's method 10).

    The two intervals may be of different kinds (a Wilson interval over samples, a bootstrap
    interval over subjects); they must be of independent estimates.

    >>> [round(v, 3) for v in difference_interval(0.8, (0.7, 0.9), 0.5, (0.4, 0.6))]
    [0.3, 0.159, 0.441]
    """
    (l1, u1), (l2, u2) = first_ci, second_ci
    diff = first - second
    low = diff - math.sqrt((first - l1) ** 2 + (u2 - second) ** 2)
    high = diff + math.sqrt((u1 - first) ** 2 + (second - l2) ** 2)
    return diff, low, high
