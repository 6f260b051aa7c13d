"""Small statistics shared by stages that may not import one another (reader study, release)."""

from __future__ import annotations

__all__ = ["wilson_ci"]


def wilson_ci(correct: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of the proportion ``correct / n`` (Wilson 1927); ``n`` ≥ 1.

    >>> [round(v, 3) for v in wilson_ci(8, 10)]
    [0.49, 0.943]
    """
    from scipy import stats

    ci = stats.binomtest(correct, n, p=0.5).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
