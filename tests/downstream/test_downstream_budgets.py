from collections import Counter

import pytest

from uterosynth.core.errors import UserError
from uterosynth.downstream.budgets import (
    budget_subjects,
    check_classes_present,
    subject_labels,
    subject_order,
)

# 20 training subjects: 8 of class 0, 4 of each of classes 1, 2, 3
SUBJECT_CLASS = {f"S{i:02d}": (0 if i < 8 else 1 + (i - 8) // 4) for i in range(20)}
BUDGETS = [0.2, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budgets_are_nested_and_stratified(seed):
    order = subject_order(SUBJECT_CLASS, seed)
    assert sorted(order) == sorted(SUBJECT_CLASS)
    previous: set[str] = set()
    for b in BUDGETS:
        chosen = budget_subjects(order, b, 4)
        assert len(chosen) == round(b * 20)
        assert previous <= set(chosen)  # smaller budgets are subsets of larger ones
        counts = Counter(SUBJECT_CLASS[s] for s in chosen)
        assert set(counts) == {0, 1, 2, 3}  # one subject per class at least
        # proportional: class 0 holds 40 % of the subjects, within one subject
        assert abs(counts[0] - 0.4 * len(chosen)) <= 1.0
        previous = set(chosen)


def test_budget_order_depends_on_seed_only():
    assert subject_order(SUBJECT_CLASS, 0) == subject_order(dict(reversed(SUBJECT_CLASS.items())), 0)
    assert subject_order(SUBJECT_CLASS, 0) != subject_order(SUBJECT_CLASS, 1)


def test_budget_too_small_for_one_subject_per_class():
    order = subject_order(SUBJECT_CLASS, 0)
    with pytest.raises(UserError, match="fewer than the 4 classes"):
        budget_subjects(order, 0.05, 4)


def test_class_without_training_subject():
    with pytest.raises(UserError, match="RVRF"):
        check_classes_present({"a": 0, "b": 1, "c": 2}, ["AVAF", "AVRF", "RVAF", "RVRF"], "data")


def test_subject_label_is_majority_of_items():
    labels = subject_labels(["a", "a", "a", "b"], [1, 2, 2, 0])
    assert labels == {"a": 2, "b": 0}
