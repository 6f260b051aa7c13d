"""The metrics must rank clearly degraded synthetic sets (blurred, noised, wrong class) below a faithful one."""

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from conftest import make_prepared_dataset, make_synthetic_set
from uterosynth.data.manifest import PreparedDataset
from uterosynth.evaluation.config import EvaluationConfig
from uterosynth.evaluation.runner import run_evaluation

CENTRES = {"AV": (-0.4, -0.4), "RV": (0.4, 0.4)}


def _image(cls, rng, size=32):
    grid = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    c = np.asarray(CENTRES[cls]) + rng.uniform(-0.15, 0.15, 2)
    w = rng.uniform(0.04, 0.12)
    img = np.exp(-((grid[0] - c[0]) ** 2 + (grid[1] - c[1]) ** 2) / w)
    img += 0.3 * np.sin(grid[0] * rng.uniform(8, 14)) * np.cos(grid[1] * rng.uniform(8, 14)) * 0.5
    return np.clip(img + 0.02 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)


class CentroidClassifier:
    """'AV' when the intensity centroid lies in the upper-left half."""

    task, classes, name, sha256 = "orientation", ["AV", "RV"], "centroid", "c" * 64

    def __call__(self, images):
        x = images[:, 0]
        grid = torch.linspace(-1, 1, x.shape[1])
        mass = x.sum((1, 2)).clamp_min(1e-6)
        cy = (x.sum(2) * grid).sum(1) / mass
        cx = (x.sum(1) * grid).sum(1) / mass
        s = cy + cx
        return torch.stack([-s, s], 1)


class PatchStats:
    """Mean, std and gradient energy over a 4x4 grid of patches: 48 features that see blur and noise."""

    name, sha256 = "patchstats", "p" * 64

    def __call__(self, images):
        x = images.float()
        gy, gx = x[:, :, 1:, :-1] - x[:, :, :-1, :-1], x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
        pool = torch.nn.AdaptiveAvgPool2d(4)
        feats = [pool(x), pool(x ** 2) - pool(x) ** 2, pool(gy ** 2 + gx ** 2) * 10]
        return torch.cat([f.flatten(1) for f in feats], 1)


@pytest.mark.slow
def test_metrics_rank_degraded_sets_below_faithful(tmp_path):
    root = make_prepared_dataset(tmp_path / "real", subjects=12, items_per_subject=8,
                                 attributes={"orientation": ["AV", "RV"]})
    rng = np.random.default_rng(0)
    ds = PreparedDataset.load(root)
    for row in ds.rows:
        nib.save(nib.Nifti1Image(_image(row["orientation"], rng)[..., None], np.diag([0.8, 0.8, 4.0, 1.0])),
                 str(ds.item_path(row)))
    labels = [["AV", "RV"][i % 2] for i in range(80)]
    faithful = np.stack([_image(c, rng) for c in labels])
    conds = [{"orientation": c} for c in labels]
    wrong = [{"orientation": "RV" if c == "AV" else "AV"} for c in labels]
    sets = {
        "faithful": make_synthetic_set(tmp_path / "faithful", faithful, conds),
        "blurred": make_synthetic_set(tmp_path / "blurred", np.stack([gaussian_filter(a, 2.0) for a in faithful]), conds),
        "noised": make_synthetic_set(tmp_path / "noised", np.clip(faithful + 0.25 * rng.standard_normal(faithful.shape),
                                                                   0, 1), conds),
        "wrong_class": make_synthetic_set(tmp_path / "wrong", faithful, wrong),
    }
    cfg = EvaluationConfig.model_validate({"frd": {"enabled": False}, "bootstrap": {"n": 10}, "kid": {"subsets": 3, "bootstrap_subsets": 1},
                                           "msssim": {"pairs": 1000}})  # 100 pairs: noise of 0.03
    metrics, _ = run_evaluation(root, None, cfg, baselines=sets, extractor=PatchStats(), classifier=CentroidClassifier())
    m = {name: {k: v["value"] for k, v in s["metrics"].items()} for name, s in metrics["sets"].items()}
    real_msssim = metrics["sets"]["faithful"]["metrics"]["msssim_diversity"]["details"]["real_value"]
    for bad in ("blurred", "noised"):
        assert m[bad]["fid"] > 2 * m["faithful"]["fid"], bad
        assert m[bad]["kid"] > m["faithful"]["kid"], bad
        # density is better closer to 1 (its "better" in metrics.json)
        assert (m[bad]["precision"] < m["faithful"]["precision"]
                or abs(m[bad]["density"] - 1) > abs(m["faithful"]["density"] - 1)), bad
        assert abs(m[bad]["msssim_diversity"] - real_msssim) > abs(m["faithful"]["msssim_diversity"] - real_msssim), bad
    assert m["faithful"]["conditioning_fidelity"] > 0.9 > 0.1 > m["wrong_class"]["conditioning_fidelity"]
    assert m["real_vs_real"]["conditioning_fidelity"] > 0.9
    # the judge's reading of the real reference, with intervals over its subjects
    on_reference = metrics["classifier"]["on_reference"]
    assert on_reference["value"] > 0.9 and on_reference["ci_low"] <= on_reference["value"] <= on_reference["ci_high"]
    train_subjects = {r["subject"] for r in ds.rows if r["split"] == "train"}
    per_class = on_reference["details"]["per_class"]
    assert sum(c["units"] for c in per_class.values()) == len(train_subjects)
    assert sum(c["n"] for c in per_class.values()) == 8 * len(train_subjects)
