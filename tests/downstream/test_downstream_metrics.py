import math

import numpy as np
import pytest
from scipy import stats

from uterosynth.downstream.metrics import classification_metrics, mean_std, paired_difference


def test_metrics_match_hand_computed_values():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 0, 2]
    m = classification_metrics(y_true, y_pred, 4)  # class 3 absent from truth and predictions
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"][:3] == pytest.approx([2 / 3, 1 / 2, 1.0]) and m["per_class_recall"][3] is None
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = [2 * 2 / (3 + 3), 2 * 1 / (2 + 2), 1.0]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert np.asarray(m["confusion_matrix"]).sum() == 6


def test_macro_f1_counts_classes_only_predicted():
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)
    # class 2 is predicted but never true: F1 = 0 enters the macro mean (scikit-learn convention)
    assert m["macro_f1"] == pytest.approx(np.mean([2 * 1 / (2 + 1), 1.0, 0.0]))
    assert m["balanced_accuracy"] == pytest.approx(0.75)


def test_paired_difference_matches_scipy_t_interval():
    a = [0.71, 0.80, 0.76, 0.69, 0.83]
    b = [0.65, 0.70, 0.74, 0.66, 0.72]
    d = np.subtract(a, b)
    out = paired_difference(a, b, level=0.95)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert out["mean"] == pytest.approx(d.mean())
    assert out["ci_low"] == pytest.approx(low) and out["ci_high"] == pytest.approx(high)
    # the paired t interval excludes 0 exactly when scipy's paired t-test has p < 0.05
    p = stats.ttest_rel(a, b).pvalue
    assert (out["ci_low"] > 0) == (p < 0.05)
    assert out["n"] == 5 and out["method"] == "paired t over seeds"
    assert out["p_value"] == pytest.approx(p)


def test_paired_difference_single_seed_has_no_interval():
    out = paired_difference([0.8], [0.7])
    assert out["mean"] == pytest.approx(0.1) and out["ci_low"] is None and out["ci_high"] is None


def test_mean_std_ignores_missing():
    out = mean_std([0.5, None, 0.7, float("nan")])
    assert out["n"] == 2 and out["mean"] == pytest.approx(0.6) and out["std"] == pytest.approx(math.sqrt(0.02))
    assert mean_std([None])["mean"] is None
