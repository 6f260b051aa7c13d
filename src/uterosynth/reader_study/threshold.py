"""One-feature threshold rules and their cross-validated accuracy (the leak audit's classifier).

A rule says "synthetic if x > t" (or "if x ≤ t"). The best ``t`` and direction on a training
set are found exactly in O(n log n) from cumulative class counts. Its accuracy is measured
by stratified k-fold cross-validation: every fold holds as many of each class as the data
allow, so a useless feature scores 50 % (leave-one-out would score a constant feature 0 %,
because leaving one item out makes the other class the training majority).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ThresholdRule", "fit_threshold", "cv_accuracy"]


@dataclass(frozen=True)
class ThresholdRule:
    """``synthetic if x > threshold`` when ``above`` else ``synthetic if x <= threshold``."""

    threshold: float
    above: bool

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: True where the rule says synthetic."""
        x = np.asarray(x, dtype=np.float64)
        return x > self.threshold if self.above else x <= self.threshold


def fit_threshold(x: np.ndarray, synthetic: np.ndarray) -> ThresholdRule:
    """The threshold rule with the most correct calls on ``(x, synthetic)``; ties: the first.

    >>> fit_threshold(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, False, True, True]))
    ThresholdRule(threshold=2.5, above=True)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(synthetic, dtype=bool)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    n = len(xs)
    real_below = np.concatenate([[0], np.cumsum(~ys)])  # real items among the i smallest
    syn_below = np.concatenate([[0], np.cumsum(ys)])
    cut = np.concatenate([[True], xs[1:] > xs[:-1], [True]])  # split between distinct values only
    up = np.where(cut, real_below + (syn_below[-1] - syn_below), -1)  # "synthetic if x > t"
    down = np.where(cut, n - up, -1)
    above = up.max() >= down.max()
    i = int(np.argmax(up if above else down))
    if i == 0:
        t = -np.inf
    elif i == n:
        t = np.inf
    else:
        t = float((xs[i - 1] + xs[i]) / 2)
    return ThresholdRule(float(t), bool(above))


def cv_accuracy(x: np.ndarray, synthetic: np.ndarray, *, folds: int = 5, seed: int = 0) -> tuple[int, int]:
    """``(correct, n)`` of :func:`fit_threshold` under stratified ``folds``-fold cross-validation.

    Each item is predicted by a rule fitted without it. Fold membership is a seeded shuffle
    within each class, so the result is reproducible. Fewer than 2 items in a class: ``(0, 0)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(synthetic, dtype=bool)
    k = min(folds, int(y.sum()), int((~y).sum()))
    if k < 2:
        return 0, 0
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for cls in (False, True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    correct = 0
    for f in range(k):
        test = fold == f
        rule = fit_threshold(x[~test], y[~test])
        correct += int((rule.predict(x[test]) == y[test]).sum())
    return correct, len(y)
