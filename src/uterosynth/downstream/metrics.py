"""Classification metrics and paired comparisons between protocols.

Metrics follow scikit-learn's definitions (not a dependency here), derived from the confusion
matrix computed by torchmetrics:

* accuracy — fraction of correct predictions;
* balanced accuracy — mean recall over the classes present in the true labels;
* macro-F1 — mean F1 over the classes present in the true or predicted labels;
* per-class recall — ``None`` for a class absent from the true labels.

The paired difference of a protocol against real only uses runs with the same seed and label
budget (same real subjects, same initialisation): ``d_s = m_protocol(s) - m_real(s)``. Its
confidence interval is the paired Student-t interval ``mean(d) ± t_{(1+level)/2, n-1} ·
sd(d) / sqrt(n)`` (``scipy.stats.t``); with one seed there is no interval (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["classification_metrics", "mean_std", "paired_difference", "METRICS"]

METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1")


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class (torchmetrics)."""
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    t = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    p = torch.as_tensor(np.asarray(y_pred), dtype=torch.long)
    if t.numel() == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return multiclass_confusion_matrix(p, t, num_classes=num_classes).numpy().astype(np.int64)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall (list indexed by class)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    n = cm.sum()
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    recall = [float(tp[k] / support[k]) if support[k] > 0 else None for k in range(num_classes)]
    present = [k for k in range(num_classes) if support[k] > 0]
    f1_classes = [k for k in range(num_classes) if support[k] > 0 or predicted[k] > 0]
    f1 = [2 * tp[k] / (support[k] + predicted[k]) for k in f1_classes]
    return {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "balanced_accuracy": float(np.mean([recall[k] for k in present])) if present else float("nan"),
        "macro_f1": float(np.mean(f1)) if f1 else float("nan"),
        "per_class_recall": recall,
        "confusion_matrix": cm.tolist(),
    }


def mean_std(values: Sequence[float | None]) -> dict:
    """``{"mean", "std", "n"}`` over the non-missing values (sample std, ddof=1; 0 for one value)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def paired_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> dict:
    """Paired difference ``a - b`` with a Student-t confidence interval.

    Args:
        a: metric of the protocol per seed.
        b: metric of real only, same seeds in the same order.
        level: confidence level of the interval.

    Returns:
        ``{"mean", "std", "n", "ci_low", "ci_high", "p_value", "level", "method"}``; the
        interval and the two-sided t-test p-value are ``None`` when ``n < 2``.
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(d.size)
    out = {"mean": float(d.mean()) if n else None, "std": float(d.std(ddof=1)) if n > 1 else None, "n": n,
           "ci_low": None, "ci_high": None, "p_value": None, "level": level, "method": "paired t over seeds"}
    if n >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        out["ci_low"], out["ci_high"] = float(d.mean()) - half, float(d.mean()) + half
        if sd > 0:
            out["p_value"] = float(2 * stats.t.sf(abs(float(d.mean())) / (sd / math.sqrt(n)), n - 1))
        else:
            out["p_value"] = 1.0 if float(d.mean()) == 0 else 0.0
    return out
