"""A learnable toy task for the downstream tests: a bright bar whose direction is the class."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from uterosynth.data.manifest import write_manifest

CLASSES = ["AVAF", "AVRF", "RVAF", "RVRF"]
ANGLES = {"AVAF": 0.0, "AVRF": 45.0, "RVAF": 90.0, "RVRF": 135.0}


def bar_image(label: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A bar through the centre at the class angle (± 6°), slightly shifted, plus noise; in [0, 1]."""
    h, w = shape[:2]
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    theta = np.deg2rad(ANGLES[label] + rng.uniform(-6, 6))
    cy, cx = rng.uniform(-0.1, 0.1, size=2)
    dist = np.abs(-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta))
    img = np.exp(-((dist / 0.12) ** 2)) * (np.hypot(xx - cx, yy - cy) < 0.8)
    if len(shape) == 3:
        img = np.repeat(img[..., None], shape[2], axis=2) * np.linspace(0.7, 1.0, shape[2])
    img = 0.1 + 0.7 * img + 0.05 * rng.standard_normal(shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_bar_dataset(
    root: Path, *, dims: int = 2, shape: tuple[int, ...] = (32, 32), groups: int = 6, items_per_subject: int = 3,
    seed: int = 0,
) -> Path:
    """A prepared dataset of ``groups * 4`` subjects (one per class per group).

    Group 3 is the test split, group 4 validation, the rest training (4 groups = 16 subjects
    for 6 groups).
    """
    rng = np.random.default_rng(seed)
    (root / "items").mkdir(parents=True)
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    rows = []
    for g in range(groups):
        split = {3: "test", 4: "val"}.get(g, "train")
        for c, label in enumerate(CLASSES):
            subject = f"S{g * 4 + c:03d}"
            for k in range(items_per_subject):
                array = bar_image(label, shape, rng)
                stored = array[..., None] if dims == 2 else array
                item_id = f"{subject}_{k:03d}"
                nib.save(nib.Nifti1Image(stored, affine), str(root / "items" / f"{item_id}.nii.gz"))
                rows.append({
                    "item_id": item_id, "path": f"items/{item_id}.nii.gz", "subject": subject, "split": split,
                    "dims": dims, "shape": "x".join(map(str, shape)), "spacing": "0.8x0.8x4.0",
                    "slice_index": k if dims == 2 else -1, "source": "test", "source_path": "", "prep_hash": "test",
                    "orientation": label, "field_strength": ["1.5T", "3T"][(g + c) % 2],
                })
    write_manifest(root / "manifest.csv", rows, ["orientation", "field_strength"])
    info = {"dims": dims, "attributes": ["orientation", "field_strength"], "shape": list(shape),
            "spacing": [0.8, 0.8, 4.0], "affine": affine.tolist(), "seed": seed, "uterosynth_version": "test",
            "config": {}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


def bar_arrays(n: int, shape: tuple[int, ...], seed: int = 1) -> tuple[np.ndarray, list[dict]]:
    """``n`` synthetic bar images cycling through the classes, with their conditions."""
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % 4] for i in range(n)]
    return np.stack([bar_image(lab, shape, rng) for lab in labels]), [{"orientation": lab} for lab in labels]
