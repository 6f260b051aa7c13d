"""Blinding: someone who knows the code, the seed and the inputs predicts the source at chance.

Orders are drawn from the operating system's CSPRNG, so these tests are random by design; each
bound is the two-sided binomial range that chance leaves with probability 1 − 2e-9 (answers of
one rater are balanced, which only narrows the spread), and each attack scores 100 % against
the former seeded orders.
"""

from collections import defaultdict
from pathlib import Path

import pytest
from rs_support import build_study
from scipy import stats

from uterosynth.core.seeding import numpy_rng
from uterosynth.reader_study.study import StudyFolder

RATERS = [f"rater{k}" for k in range(10)]
PER_SOURCE = 16


def _build(tmp: Path, seed: int = 0) -> StudyFolder:
    made = build_study(tmp, per_source=PER_SOURCE, raters=RATERS, class_by=[], seed=seed, subjects=8,
                       n_synthetic=2 * PER_SOURCE)
    return StudyFolder.load(made.root)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyFolder, StudyFolder]:
    """Two studies from the same inputs, seed, rater names and sizes."""
    return _build(tmp_path_factory.mktemp("a")), _build(tmp_path_factory.mktemp("b"))


def truth(study: StudyFolder) -> list[tuple[int, int, str]]:
    """``(rater index, position, source)`` of every position of every rater."""
    return [(r, p, study.key[item].source) for r, spec in enumerate(study.raters)
            for p, (_, item) in enumerate(spec.assignments)]


def assert_chance(correct: int, n: int) -> None:
    lo, hi = stats.binom.ppf(1e-9, n, 0.5), stats.binom.isf(1e-9, n, 0.5)
    assert lo <= correct <= hi, f"attack scored {correct}/{n}, outside chance [{lo:.0f}, {hi:.0f}]"


def seeded_guess(seed: int, rater: int, position: int, n: int) -> str:
    """The former layout: reals first, then a public permutation per rater."""
    order = numpy_rng(seed, rater, salt="rater-order").permutation(n)
    return "real" if order[position] < n // 2 else "synthetic"


def test_on_disk_creation_order_attack_is_at_chance(twins):
    study, _ = twins
    n = 2 * PER_SOURCE
    written = sorted(study.key, key=lambda i: (study.root / "images" / i).stat().st_mtime_ns)
    seeded = numpy_rng(0, 0, salt="render").permutation(n)  # the former render order: reals first
    guesses = ["real" if seeded[k] < n // 2 else "synthetic" for k in range(n)]
    assert_chance(sum(g == study.key[i].source for g, i in zip(guesses, written, strict=True)), n)


def test_seeded_order_attack_is_at_chance(twins):
    study, _ = twins
    n = 2 * PER_SOURCE
    rows = truth(study)
    assert_chance(sum(seeded_guess(0, r, p, n) == src for r, p, src in rows), len(rows))


def test_recreating_the_study_and_reading_its_key_is_at_chance(twins):
    study, twin = twins
    guess = {(r, p): src for r, p, src in truth(twin)}
    rows = truth(study)
    assert_chance(sum(guess[(r, p)] == src for r, p, src in rows), len(rows))


def test_same_inputs_and_seed_give_other_orders_for_every_rater(twins):
    study, twin = twins
    assert sorted(k.origin for k in study.key.values()) == sorted(k.origin for k in twin.key.values())
    for a, b in zip(study.raters, twin.raters, strict=True):
        assert [study.key[i].origin for _, i in a.assignments] != [twin.key[i].origin for _, i in b.assignments]
    # the item list itself is shuffled too: key.json does not list one source first
    sources = [k.source for k in study.key.values()]
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)


def _positions_by_image(study: StudyFolder) -> dict[bytes, list[int]]:
    """What colluding raters can build: the same PNG bytes, found at one position in each list."""
    out: dict[bytes, list[int]] = defaultdict(list)
    for spec in study.raters[:2]:
        for p, (_, item) in enumerate(spec.assignments):
            out[study.image_path(item, 0).read_bytes()].append(p)
    return out


def test_two_colluding_raters_gain_nothing(twins):
    study, _ = twins
    n = 2 * PER_SOURCE
    pairs = _positions_by_image(study)
    assert len(pairs) == n and all(len(v) == 2 for v in pairs.values())
    # seed recovery: no seed of the former scheme explains where both raters saw each image
    for seed in range(2000):
        a = numpy_rng(seed, 0, salt="rater-order").permutation(n)
        b = numpy_rng(seed, 1, salt="rater-order").permutation(n)
        assert not all(a[pa] == b[pb] for pa, pb in pairs.values()), f"seed {seed} explains both lists"
    # a rule on both positions (early in both lists → real) is at chance
    source = {tuple(v): study.key[i].source for v, i in
              ((pairs[study.image_path(i, 0).read_bytes()], i) for i in study.key)}
    correct = sum((pa + pb < n - 1) == (src == "real") for (pa, pb), src in source.items())
    assert_chance(correct, n)


def test_the_drawn_orders_are_stored_in_the_study(twins):
    study, _ = twins
    reloaded = StudyFolder.load(study.root)
    assert reloaded.raters == study.raters  # the study reproduces itself from its own files
