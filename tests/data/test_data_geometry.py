"""Crops carry anatomy, not geometry: the class cannot be read from padding, position or spacing.

On a small phantom cohort, a classifier given only geometric features (pad band per border,
pad fraction, pixel spacing) is at chance for ``roi.mode: window`` under subject-grouped
cross-validation, and well above chance for the old ``fit: pad_resize`` (the control that
shows the test can fail).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from uterosynth.core.config import load_config
from uterosynth.data.config import PrepareConfig
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.prepare import prepare_dataset
from uterosynth.phantom import PhantomConfig, write_cohort

PRESETS = Path(__file__).resolve().parents[2] / "src" / "uterosynth" / "configs"
SMALL = {"matrix": (160, 160), "spacing": (1.6, 1.6, 4.0), "slices": 18, "supersample": 1}
ITEMS = {"preprocess.output.shape": [64, 64], "preprocess.output.slices": "central", "preprocess.output.k": 1}
FITS = {"window": {}, "pad_resize": {"preprocess.roi.mode": "uterus", "preprocess.output.fit": "pad_resize"}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, PreparedDataset]:
    root = tmp_path_factory.mktemp("geometry")
    write_cohort(PhantomConfig(geometry=SMALL, subjects=64, seed=3, workers=1), root / "cohort")
    out = {}
    for name, overrides in FITS.items():
        cfg = load_config(PrepareConfig, PRESETS / "prepare2d.yaml", overrides={**ITEMS, **overrides})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            prepare_dataset("umd", root / "cohort", root / name, cfg)
        out[name] = PreparedDataset.load(root / name)
    return out


def _band(line: np.ndarray) -> int:
    """Number of leading entries that are all padding."""
    return len(line) if line.all() else int(np.argmin(line))


def geometry_features(data: PreparedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, groups)``: per item the pad band at each border, pad fraction and spacing.

    The pad mask is the recorded one where the dataset has it, else the pixels equal to the
    item's minimum (the fill value of ``pad_resize``).
    """
    rows_x, labels, groups = [], [], []
    for row in data.rows:
        array, affine = data.load_item(row)
        pad = data.load_pad(row)
        mask = pad if pad is not None else array == array.min()
        full_rows, full_cols = mask.all(axis=1), mask.all(axis=0)
        bands = [_band(full_rows), _band(full_rows[::-1]), _band(full_cols), _band(full_cols[::-1])]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)[:2]
        rows_x.append([*bands, float(mask.mean()), *spacing])
        labels.append(row["orientation"])
        groups.append(row["subject"])
    return np.asarray(rows_x, dtype=np.float64), np.asarray(labels), np.asarray(groups)


def _logistic(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Multinomial logistic regression (standardised features, L2, gradient descent)."""
    mu, sd = x_train.mean(0), x_train.std(0)
    sd[sd == 0] = 1.0
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    target = (y_train[:, None] == classes[None]).astype(np.float64)
    w = np.zeros((a.shape[1], len(classes)))
    for _ in range(500):
        z = a @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.5 * (a.T @ (p - target) / len(a) + 1e-2 * w)
    return classes[np.argmax(b @ w, axis=1)]


def grouped_cv_balanced_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int = 4) -> float:
    """Balanced accuracy of out-of-fold predictions, folds by subject (seeded)."""
    subjects = np.unique(groups)
    fold_of = {s: i % folds for i, s in enumerate(subjects[np.random.default_rng(0).permutation(len(subjects))])}
    fold = np.asarray([fold_of[s] for s in groups])
    classes = np.unique(y)
    pred = np.empty(len(y), dtype=y.dtype)
    for k in range(folds):
        pred[fold == k] = _logistic(x[fold != k], y[fold != k], x[fold == k], classes)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def chance_bound(y: np.ndarray, groups: np.ndarray, *, z: float = 3.0) -> float:
    """``1/K`` plus ``z`` standard deviations of the balanced accuracy of guessing, per subject."""
    classes = np.unique(y)
    k = len(classes)
    per_class = np.asarray([len(np.unique(groups[y == c])) for c in classes])
    return 1.0 / k + z * float(np.sqrt(((1 / k) * (1 - 1 / k) / per_class).sum())) / k


def test_class_cannot_be_read_from_window_geometry(prepared):
    x, y, groups = geometry_features(prepared["window"])
    assert len(np.unique(y)) == 4 and len(np.unique(groups)) == 64
    assert grouped_cv_balanced_accuracy(x, y, groups) <= chance_bound(y, groups)


def test_control_pad_resize_geometry_gives_the_class_away(prepared):
    x, y, groups = geometry_features(prepared["pad_resize"])
    score = grouped_cv_balanced_accuracy(x, y, groups)
    assert score > chance_bound(y, groups) + 0.1, score


def test_every_window_item_has_the_same_spacing_and_shape(prepared):
    data = prepared["window"]
    geometry = set()
    for row in data.rows:
        array, affine = data.load_item(row)
        geometry.add((array.shape, tuple(np.round(np.linalg.norm(affine[:3, :3], axis=0), 9)), row["spacing"]))
    assert len(geometry) == 1
    (shape, spacing, _), = geometry
    assert shape == (64, 64) and spacing[:2] == (2.0, 2.0)  # 128 mm window / 64 pixels
    assert data.info["spacing"][:2] == [2.0, 2.0]
    # the preset window lies inside the phantom's 256 mm field of view: nothing is padded
    assert all(float(r["pad_fraction"]) == 0.0 for r in data.rows)
    # the control: pad_resize rescales per item
    assert len({r["spacing"] for r in prepared["pad_resize"].rows}) > 10


def test_pad_resize_warns_of_the_shortcut():
    from uterosynth.data.preprocess import fit_inplane

    with pytest.warns(UserWarning, match="give the orientation class away"):
        fit_inplane(np.zeros((10, 20, 1), np.float32), np.eye(4), (16, 16), "pad_resize", fill=0.0)
