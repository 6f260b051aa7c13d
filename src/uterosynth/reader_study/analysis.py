"""Statistics of a reader study: can experts tell synthetic from real images?

"Positive" means synthetic throughout: sensitivity is the share of synthetic images called
synthetic, specificity the share of real images called real. The confidence score is signed
(``+confidence`` for a "synthetic" call, ``-confidence`` for "real"), giving a 10-level
rating scale whose ROC AUC is the probability that a random synthetic image scores higher
than a random real one (Hanley & McNeil 1982), computed as the Mann–Whitney U statistic.
Accuracy is tested against chance (p = 0.5, the study is balanced) with an exact two-sided
binomial test and given with a Wilson interval. Pooled results treat every answer as one
trial, ignoring that answers of one rater are correlated; per-rater results do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..core.stats import wilson_ci

__all__ = [
    "Answer",
    "wilson_ci",
    "detection_metrics",
    "auc_from_scores",
    "cohen_kappa",
    "fleiss_kappa",
    "agreement",
    "realism_test",
    "display_summary",
    "analyze",
]


@dataclass(frozen=True)
class Answer:
    """One stored answer with its ground truth."""

    rater: str
    item_id: str
    truth: str  # "real" | "synthetic"
    choice: str  # "real" | "synthetic"
    confidence: int
    realism: int
    class_label: str = ""
    display: Mapping[str, float] | None = None  # viewer state at submission (window, zoom, pan)

    @property
    def signed_confidence(self) -> int:
        return self.confidence if self.choice == "synthetic" else -self.confidence


def auc_from_scores(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """ROC AUC = U / (n_pos · n_neg) with ties counted one half; ``None`` if a side is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return None
    u = stats.mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def detection_metrics(answers: Sequence[Answer]) -> dict[str, Any]:
    """Accuracy (Wilson 95 % CI, binomial test vs 0.5), sensitivity, specificity, AUC, counts."""
    tp = sum(a.truth == "synthetic" and a.choice == "synthetic" for a in answers)
    fn = sum(a.truth == "synthetic" and a.choice == "real" for a in answers)
    tn = sum(a.truth == "real" and a.choice == "real" for a in answers)
    fp = sum(a.truth == "real" and a.choice == "synthetic" for a in answers)
    n, correct = len(answers), tp + tn
    out: dict[str, Any] = {
        "n": n, "correct": correct, "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "accuracy": _ratio(correct, n), "accuracy_ci95": None,
        "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
        "auc": auc_from_scores([a.signed_confidence for a in answers if a.truth == "synthetic"],
                               [a.signed_confidence for a in answers if a.truth == "real"]),
        "binomial_p": None,
    }
    if n:
        out["binomial_p"] = float(stats.binomtest(correct, n, p=0.5, alternative="two-sided").pvalue)
        out["accuracy_ci95"] = list(wilson_ci(correct, n))
    return out


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's κ of two raters' labels on the same items (Cohen 1960).

    κ = (p_o − p_e) / (1 − p_e), p_e from each rater's marginal label frequencies. Written
    out because it is four lines and scikit-learn is not a dependency. ``None`` when
    undefined (no items, or both raters used one and the same label throughout).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: label lists differ in length ({len(a)} vs {len(b)})")
    if not a:
        return None
    labels = sorted(set(a) | set(b))
    p_o = float(np.mean([x == y for x, y in zip(a, b, strict=True)]))
    p_e = sum((list(a).count(c) / len(a)) * (list(b).count(c) / len(b)) for c in labels)
    return None if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' κ for several raters (Fleiss 1971, "Measuring nominal scale agreement among many raters").

    Args:
        counts: ``(N_items, K_categories)``; row i holds how many raters put item i in each
            category; every row sums to the same number of raters n ≥ 2.

    Returns:
        κ = (P̄ − P̄_e) / (1 − P̄_e) with P_i = (Σ_j n_ij² − n) / (n(n − 1)),
        p_j = Σ_i n_ij / (N n), P̄_e = Σ_j p_j²; ``None`` when undefined. Written out because
        statsmodels is not a dependency.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    n = counts.sum(axis=1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("fleiss_kappa: every item needs the same number (≥ 2) of ratings")
    n_raters = n[0]
    p_item = ((counts**2).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_cat = counts.sum(axis=0) / counts.sum()
    p_bar, p_e = p_item.mean(), float((p_cat**2).sum())
    return None if p_e >= 1.0 else float((p_bar - p_e) / (1.0 - p_e))


def agreement(answers: Sequence[Answer]) -> dict[str, Any]:
    """Inter-rater agreement on the real/synthetic call, over items every rater answered.

    Cohen's κ for two raters, Fleiss' κ for three or more; ``None`` for a single rater.
    """
    raters = sorted({a.rater for a in answers})
    by_item: dict[str, dict[str, str]] = {}
    for a in answers:
        by_item.setdefault(a.item_id, {})[a.rater] = a.choice
    common = sorted(i for i, d in by_item.items() if len(d) == len(raters))
    if len(raters) < 2:
        return {"method": None, "kappa": None, "n_items": len(common), "raters": raters}
    if len(raters) == 2:
        kappa = cohen_kappa([by_item[i][raters[0]] for i in common], [by_item[i][raters[1]] for i in common])
        return {"method": "cohen", "kappa": kappa, "n_items": len(common), "raters": raters}
    counts = np.array([[sum(c == "real" for c in by_item[i].values()),
                        sum(c == "synthetic" for c in by_item[i].values())] for i in common]).reshape(-1, 2)
    return {"method": "fleiss", "kappa": fleiss_kappa(counts) if common else None,
            "n_items": len(common), "raters": raters}


def realism_test(answers: Sequence[Answer]) -> dict[str, Any]:
    """Realism scores of real vs synthetic images: medians, means, two-sided Mann–Whitney U."""
    real = [a.realism for a in answers if a.truth == "real"]
    syn = [a.realism for a in answers if a.truth == "synthetic"]
    out: dict[str, Any] = {
        "n_real": len(real), "n_synthetic": len(syn),
        "median_real": float(np.median(real)) if real else None,
        "median_synthetic": float(np.median(syn)) if syn else None,
        "mean_real": float(np.mean(real)) if real else None,
        "mean_synthetic": float(np.mean(syn)) if syn else None,
        "u": None, "p": None,
        "histogram_real": [real.count(k) for k in range(1, 6)],
        "histogram_synthetic": [syn.count(k) for k in range(1, 6)],
    }
    if real and syn:
        res = stats.mannwhitneyu(syn, real, alternative="two-sided")
        out["u"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


DEFAULT_VIEW = {"window_center": 127.5, "window_width": 255.0, "zoom": 1.0, "pan_x": 0.0, "pan_y": 0.0}


def display_summary(answers: Sequence[Answer]) -> dict[str, Any]:
    """How raters used the viewer: share of answers given with a changed window or zoom, medians.

    Answers without stored settings (older databases) are counted in ``n_without``.
    """
    shown = [a.display for a in answers if a.display is not None]
    out: dict[str, Any] = {"n_with": len(shown), "n_without": len(answers) - len(shown),
                           "window_changed": None, "zoomed": None, "panned": None}
    if shown:
        def share(test: Any) -> float:
            return float(np.mean([bool(test(d)) for d in shown]))

        out["window_changed"] = share(lambda d: (d["window_center"], d["window_width"])
                                      != (DEFAULT_VIEW["window_center"], DEFAULT_VIEW["window_width"]))
        out["zoomed"] = share(lambda d: d["zoom"] != 1.0)
        out["panned"] = share(lambda d: (d.get("pan_x", 0), d.get("pan_y", 0)) != (0, 0))
    for key in ("window_center", "window_width", "zoom"):
        out[f"median_{key}"] = float(np.median([d[key] for d in shown])) if shown else None
    return out


def analyze(answers: Iterable[Answer], raters: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything the report shows: per rater, pooled, per class, agreement, realism."""
    answers = list(answers)
    raters = list(raters) if raters is not None else sorted({a.rater for a in answers})
    classes = sorted({a.class_label for a in answers if a.class_label})
    return {
        "n_answers": len(answers),
        "positive_class": "synthetic",
        "pooled": detection_metrics(answers),
        "per_rater": {r: detection_metrics([a for a in answers if a.rater == r]) for r in raters},
        "per_class": {c: detection_metrics([a for a in answers if a.class_label == c]) for c in classes},
        "agreement": agreement(answers),
        "display": {"pooled": display_summary(answers),
                    "per_rater": {r: display_summary([a for a in answers if a.rater == r]) for r in raters}},
        "realism": {
            "pooled": realism_test(answers),
            "per_rater": {r: realism_test([a for a in answers if a.rater == r]) for r in raters},
            "per_class": {c: realism_test([a for a in answers if a.class_label == c]) for c in classes},
        },
    }
