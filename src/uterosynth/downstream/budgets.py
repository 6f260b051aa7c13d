"""Label budgets: nested, class-stratified, subject-level subsets of the real training split.

For each seed the training subjects are put in one order; a budget of fraction ``b`` keeps the
first ``round(b * n_subjects)`` subjects of that order, so a smaller budget is always a subset
of a larger one. The order interleaves the classes in proportion to their subject counts
(systematic stratified sampling): the subject at position ``k`` of class ``c`` (in a seeded
random order) gets the key ``(k + u_c) / n_c`` with ``u_c ~ U(0, 1)``, and subjects are sorted by
key. Position 0 of every class is moved to the front, so any budget holding at least as many
subjects as there are classes holds one subject of every class. A subject's class is the most
frequent label among its items.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from ..core.errors import ConfigError, DataError
from ..core.seeding import numpy_rng

__all__ = ["budget_size", "budget_subjects", "check_classes_present", "subject_labels", "subject_order"]


def subject_labels(subjects: Sequence[str], labels: Sequence[int]) -> dict[str, int]:
    """Each subject's class: the most frequent label among its items (ties → smallest label)."""
    per: dict[str, Counter] = defaultdict(Counter)
    for s, y in zip(subjects, labels, strict=True):
        per[s][int(y)] += 1
    return {s: min(c, key=lambda y: (-c[y], y)) for s, c in per.items()}


def subject_order(subject_class: dict[str, int], seed: int) -> list[str]:
    """A seeded, class-interleaved order of the subjects (see the module docstring)."""
    rng = numpy_rng(seed, 0, salt="downstream-budget")
    by_class: dict[int, list[str]] = defaultdict(list)
    for s in sorted(subject_class):
        by_class[subject_class[s]].append(s)
    keyed: list[tuple[float, float, str]] = []
    for c in sorted(by_class):
        members = [by_class[c][i] for i in rng.permutation(len(by_class[c]))]
        u = float(rng.uniform())
        for k, s in enumerate(members):
            key = -1.0 if k == 0 else (k + u) / len(members)
            keyed.append((key, float(rng.uniform()), s))
    return [s for _, _, s in sorted(keyed)]


def budget_size(fraction: float, n_subjects: int) -> int:
    """Subjects kept by budget ``fraction`` of ``n_subjects`` (rounded, at least 1)."""
    return max(1, min(n_subjects, int(round(fraction * n_subjects))))


def budget_subjects(order: Sequence[str], fraction: float, n_classes: int, *, where: str = "training split") -> list[str]:
    """The subjects of budget ``fraction``: a prefix of ``order``.

    Raises:
        ConfigError: the budget holds fewer subjects than there are classes.
        DataError: a class has no subject in ``order``.
    """
    k = budget_size(fraction, len(order))
    if k < n_classes:
        raise ConfigError(
            f"budget {fraction:g} of the {len(order)} subjects in the {where} is {k} subject(s), fewer than "
            f"the {n_classes} classes (one subject per class is needed); raise the smallest value in "
            "'budgets' or use a dataset with more training subjects", keys=("budgets",)
        )
    return list(order[:k])


def check_classes_present(subject_class: dict[str, int], classes: Sequence[str], where: str) -> None:
    """Every class must have at least one subject in the training split."""
    present = set(subject_class.values())
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        raise DataError(
            f"{where}: class(es) {', '.join(missing)} have no subject in the training split; "
            "re-split the dataset so that every class is in training"
        )

