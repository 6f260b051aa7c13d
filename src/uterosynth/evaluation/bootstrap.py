"""Metric results with percentile-bootstrap confidence intervals.

Every metric of the evaluation is a :class:`MetricResult`: a point estimate on the full
sample, a seeded percentile-bootstrap interval (Efron & Tibshirani 1993, ch. 13), the sample
sizes it rests on and warnings when those sizes are too small for the metric to be stable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.stats import percentile_interval

__all__ = ["MetricResult", "bootstrap_ci", "bootstrap_mean", "percentile_interval"]


@dataclass(frozen=True)
class MetricResult:
    """One metric of one evaluated set.

    Attributes:
        name: metric key (``fid``, ``kid``, ``precision`` ...).
        value: point estimate on all items.
        ci_low, ci_high: bounds of the bootstrap interval (``nan`` when not computable).
        n: sample sizes, e.g. ``{"real": 2000, "synthetic": 2000}``.
        better: ``"lower"`` or ``"higher"`` or ``"closer_to_real"``.
        confidence: coverage of the interval (0.95).
        warnings: why the number may be unstable.
        details: extra numbers (per-class values, the real set's value ...).
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: dict[str, int]
    better: str = "lower"
    confidence: float = 0.95
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        for key in ("value", "ci_low", "ci_high"):
            v = data[key]
            data[key] = None if v is None or not math.isfinite(v) else float(v)
        return data


def bootstrap_ci(
    statistic: Callable[..., float],
    sizes: Sequence[int],
    *,
    n_boot: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    estimate: float | None = None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(*index_arrays)`` over resamples with replacement.

    Args:
        statistic: called with one index array per sample (``len(sizes)`` arrays), each drawn
            with replacement from ``range(size)``.
        sizes: the size of each independent sample (e.g. real and synthetic items).
        n_boot: number of bootstrap replicates.
        confidence: interval coverage.
        seed: makes the interval reproducible.
        estimate: the statistic on the full samples; the interval is widened to contain it.
    """
    rng = np.random.default_rng(seed)
    reps = [statistic(*[rng.integers(0, n, size=n) for n in sizes]) for _ in range(n_boot)]
    return percentile_interval(reps, confidence, estimate=estimate)


def bootstrap_mean(
    values: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-item ``values`` with its percentile-bootstrap interval: ``(mean, low, high)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    mean = float(values.mean())
    low, high = percentile_interval(values[idx].mean(axis=1), confidence, estimate=mean)
    return mean, low, high
