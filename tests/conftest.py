"""Shared fixtures: tiny prepared datasets written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uterosynth.data.manifest import write_manifest


def make_prepared_dataset(
    root: Path,
    *,
    dims: int = 2,
    shape: tuple[int, ...] = (32, 32),
    subjects: int = 6,
    items_per_subject: int = 2,
    attributes: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> Path:
    """Write a small prepared dataset of smooth random blobs with the manifest contract."""
    attributes = attributes or {"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "field_strength": ["1.5T", "3T"]}
    rng = np.random.default_rng(seed)
    (root / "items").mkdir(parents=True)
    spacing = (0.8, 0.8, 4.0)
    affine = np.diag([*spacing, 1.0])
    rows = []
    splits = ["train"] * (subjects - 2) + ["val", "test"]
    for s in range(subjects):
        subject = f"S{s:03d}"
        attrs = {name: values[s % len(values)] for name, values in attributes.items()}
        for k in range(items_per_subject):
            grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
            centre = rng.uniform(-0.3, 0.3, size=len(shape))
            r2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
            array = np.exp(-r2 / 0.2).astype(np.float32) + 0.01 * rng.standard_normal(shape).astype(np.float32)
            stored = array[..., None] if dims == 2 else array
            item_id = f"{subject}_{k:03d}"
            nib.save(nib.Nifti1Image(stored, affine), str(root / "items" / f"{item_id}.nii.gz"))
            rows.append(
                {
                    "item_id": item_id,
                    "path": f"items/{item_id}.nii.gz",
                    "subject": subject,
                    "split": splits[s],
                    "dims": dims,
                    "shape": "x".join(map(str, shape)),
                    "spacing": "x".join(map(str, spacing)),
                    "slice_index": k if dims == 2 else -1,
                    "source": "test",
                    "source_path": "",
                    "prep_hash": "test",
                    **attrs,
                }
            )
    write_manifest(root / "manifest.csv", rows, list(attributes))
    info = {"dims": dims, "attributes": list(attributes), "shape": list(shape), "spacing": list(spacing),
            "affine": affine.tolist(), "seed": seed, "uterosynth_version": "test", "config": {}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


@pytest.fixture
def prepared_2d(tmp_path: Path) -> Path:
    return make_prepared_dataset(tmp_path / "prepared2d", dims=2, shape=(32, 32))


@pytest.fixture
def prepared_3d(tmp_path: Path) -> Path:
    return make_prepared_dataset(tmp_path / "prepared3d", dims=3, shape=(16, 16, 8), items_per_subject=1)


def make_synthetic_set(
    root: Path, arrays: np.ndarray, conditions: list[dict] | None = None, dims: int = 2
) -> Path:
    """Write a synthetic set (items/<index>.nii.gz, metadata.jsonl, synthetic.json) from arrays ``(N, H, W[, D])``.

    2D items are stored as ``(H, W, 1)`` NIfTI like the training data; ``conditions`` default to empty dicts.
    """
    arrays = np.asarray(arrays, dtype=np.float32)
    conditions = conditions if conditions is not None else [{} for _ in range(len(arrays))]
    (root / "items").mkdir(parents=True, exist_ok=True)
    records = []
    for index, (array, condition) in enumerate(zip(arrays, conditions, strict=True)):
        stored = array[..., None] if dims == 2 else array
        rel = f"items/{index}.nii.gz"
        nib.save(nib.Nifti1Image(stored, np.eye(4)), str(root / rel))
        records.append({"index": index, "path": rel, "condition": dict(condition)})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "synthetic.json").write_text(json.dumps({"dims": dims}))
    return root
