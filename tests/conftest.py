"""Shared fixtures: tiny prepared datasets written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from uterosynth.core.artifacts import sha256_file
from uterosynth.data.evaluation_results import METRICS_FILE
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
    subject_prefix: str = "S",
) -> Path:
    """Write a small prepared dataset of smooth random blobs with the manifest contract.

    Subjects are ``<subject_prefix><NNN>``: another prefix gives a cohort of other subjects.
    """
    attributes = attributes or {"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "field_strength": ["1.5T", "3T"]}
    rng = np.random.default_rng(seed)
    (root / "items").mkdir(parents=True)
    spacing = (0.8, 0.8, 4.0)
    affine = np.diag([*spacing, 1.0])
    rows = []
    splits = ["train"] * (subjects - 2) + ["val", "test"]
    for s in range(subjects):
        subject = f"{subject_prefix}{s:03d}"
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


# --- privacy: anatomy-like test images, synthetic sets, identifier scan ----------------------------


def _soft_ellipse(yy, xx, cy, cx, ry, rx, angle, edge=0.04):
    """A smooth-edged ellipse mask in [0, 1] on normalised coordinates."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((yy - cy) * c + (xx - cx) * s) / ry
    v = (-(yy - cy) * s + (xx - cx) * c) / rx
    r = np.sqrt(u * u + v * v)
    from scipy.special import expit

    return expit(-(r - 1.0) / edge)


def make_anatomy_subject(rng: np.random.Generator, shape: tuple[int, int], n_slices: int) -> np.ndarray:
    """Anatomy-like sagittal slices of ONE subject ``(n_slices, H, W)`` in ``[0, 1]``.

    A body outline, a tilted uterus with a bright endometrial stripe, a bladder, a few myoma-like
    blobs and a subject-specific smooth texture; slices of the subject vary smoothly with the
    slice position (so neighbouring slices are strongly correlated) and carry their own noise.
    """
    from scipy.ndimage import gaussian_filter

    h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    body = (rng.uniform(-0.05, 0.05, 2), rng.uniform(0.75, 0.9), rng.uniform(0.65, 0.85), rng.uniform(0.25, 0.4))
    ut_c = rng.uniform(-0.25, 0.25, 2)
    ut_r = (rng.uniform(0.18, 0.32), rng.uniform(0.09, 0.16))
    ut_angle = rng.uniform(-1.1, 1.1)
    ut_int = rng.uniform(0.35, 0.6)
    bl_c = (ut_c[0] + rng.uniform(0.15, 0.35), ut_c[1] - rng.uniform(0.3, 0.5))
    bl_r = (rng.uniform(0.1, 0.22), rng.uniform(0.12, 0.25))
    blobs = [(rng.uniform(-0.5, 0.5, 2), rng.uniform(0.05, 0.14), rng.uniform(0.05, 0.2)) for _ in range(rng.integers(1, 4))]
    texture = gaussian_filter(rng.standard_normal(shape), sigma=max(h, w) / 24)
    texture /= texture.std() + 1e-8
    out = np.empty((n_slices, h, w), dtype=np.float32)
    for k in range(n_slices):
        t = (k - (n_slices - 1) / 2) / max(n_slices, 1)
        shrink = np.sqrt(max(1 - 2.5 * t * t, 0.2))
        img = body[3] * _soft_ellipse(yy, xx, body[0][0], body[0][1], body[1], body[2], 0.0)
        img = img * (1 + 0.12 * texture)
        ut = _soft_ellipse(yy, xx, ut_c[0], ut_c[1] + 0.1 * t, ut_r[0] * shrink, ut_r[1] * shrink, ut_angle)
        img = img * (1 - ut) + ut_int * ut
        endo = _soft_ellipse(yy, xx, ut_c[0], ut_c[1] + 0.1 * t, ut_r[0] * shrink * 0.6, ut_r[1] * shrink * 0.25, ut_angle)
        img = img * (1 - endo) + 0.85 * endo
        bl = _soft_ellipse(yy, xx, bl_c[0], bl_c[1], bl_r[0] * shrink, bl_r[1] * shrink, 0.3)
        img = img * (1 - bl) + 0.95 * bl
        for centre, radius, value in blobs:
            m = _soft_ellipse(yy, xx, centre[0], centre[1] + 0.15 * t, radius * shrink, radius * shrink, 0.0)
            img = img * (1 - m) + value * m
        img = img + 0.02 * rng.standard_normal(shape)
        out[k] = np.clip(img, 0.0, 1.0)
    return out


def make_anatomy_dataset(
    root: Path,
    *,
    subjects: dict[str, int],
    slices_per_subject: int = 4,
    shape: tuple[int, int] = (48, 48),
    dims: int = 2,
    seed: int = 0,
    prefix: str = "S",
) -> Path:
    """A prepared dataset of anatomy-like items; ``subjects`` maps split → number of subjects
    (named ``<prefix>0000``, ``<prefix>0001``, ...).

    2D: ``slices_per_subject`` slice items per subject. 3D: one ``(H, W, slices_per_subject)``
    volume per subject.
    """
    (root / "items").mkdir(parents=True)
    spacing = (0.8, 0.8, 4.0)
    affine = np.diag([*spacing, 1.0])
    rows = []
    s = 0
    for split, count in subjects.items():
        for _ in range(count):
            subject = f"{prefix}{s:04d}"
            slices = make_anatomy_subject(np.random.default_rng([seed, s]), shape, slices_per_subject)
            stored = [slices[k][..., None] for k in range(len(slices))] if dims == 2 else [np.moveaxis(slices, 0, -1)]
            for k, arr in enumerate(stored):
                item_id = f"{subject}_{k:03d}"
                nib.save(nib.Nifti1Image(arr.astype(np.float32), affine), str(root / "items" / f"{item_id}.nii.gz"))
                rows.append({"item_id": item_id, "path": f"items/{item_id}.nii.gz", "subject": subject, "split": split,
                             "dims": dims, "shape": "x".join(map(str, arr.shape if dims == 3 else shape)),
                             "spacing": "x".join(map(str, spacing)), "slice_index": k if dims == 2 else -1,
                             "source": "test", "source_path": "", "prep_hash": "test", "orientation": "AVAF"})
            s += 1
    write_manifest(root / "manifest.csv", rows, ["orientation"])
    info = {"dims": dims, "attributes": ["orientation"], "shape": list(rows[0]["shape"].split("x")),
            "spacing": list(spacing), "affine": affine.tolist(), "seed": seed, "uterosynth_version": "test", "config": {}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


def make_two_cohorts(root: Path, *, slices_per_subject: int = 2) -> tuple[Path, Path]:
    """A prepared dataset (6 / 1 / 3 subjects) and one of 6 other subjects (another seed and id prefix, 2 slices each)."""
    prep = make_anatomy_dataset(root / "prep", subjects={"train": 6, "val": 1, "test": 3},
                                slices_per_subject=slices_per_subject, shape=(16, 16))
    other = make_anatomy_dataset(root / "other", subjects={"train": 4, "val": 1, "test": 1}, slices_per_subject=2,
                                 shape=(16, 16), seed=9, prefix="O")
    return prep, other


def make_synthetic_set(
    root: Path, arrays: np.ndarray, conditions: list[dict] | None = None, dims: int = 2
) -> Path:
    """Write a synthetic set (``items/*.nii.gz``, ``previews/*.png``, ``metadata.jsonl``, ``synthetic.json``).

    Args:
        root: the folder to create.
        arrays: ``(N, H, W)`` for ``dims=2`` or ``(N, H, W, D)`` for ``dims=3``, intensities in [0, 1].
        conditions: one ``{attribute: value}`` dict per item (default: empty dicts).
        dims: 2 or 3.
    """
    import matplotlib.image

    from uterosynth.data.synthetic import write_metadata

    arrays = np.asarray(arrays, dtype=np.float32)
    conditions = conditions or [{} for _ in range(len(arrays))]
    (root / "items").mkdir(parents=True, exist_ok=True)
    (root / "previews").mkdir(exist_ok=True)
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    model_hash = "0" * 64
    records = []
    for i, arr in enumerate(arrays):
        stored = arr[..., None] if dims == 2 else arr
        nib.save(nib.Nifti1Image(stored, affine), str(root / "items" / f"{i:06d}.nii.gz"))
        preview = arr if dims == 2 else arr[:, :, arr.shape[2] // 2]
        matplotlib.image.imsave(root / "previews" / f"{i:06d}.png", np.clip(preview, 0, 1), cmap="gray", vmin=0, vmax=1)
        records.append({"index": i, "path": f"items/{i:06d}.nii.gz", "preview": f"previews/{i:06d}.png", "seed": 1000 + i,
                        "condition": conditions[i], "prompt": "", "sampler": "ddim", "steps": 50, "guidance": 3.0,
                        "model_hash": model_hash, "seconds": 0.1})
    write_metadata(root / "metadata.jsonl", records)
    info = {"dims": dims, "model_hash": model_hash, "sampler": "ddim", "steps": 50, "guidance": 3.0,
            "uterosynth_version": "test", "seed": 1000, "config": {}}
    (root / "synthetic.json").write_text(json.dumps(info))
    return root


def assert_no_identifiers(folder: Path, identifiers: list[str]) -> None:
    """Fail if any identifier occurs in the bytes of any file under ``folder`` (gzip content too)."""
    from uterosynth.data.deid import find_identifiers

    hits = find_identifiers(folder, identifiers)
    assert not hits, f"identifiers found in written files: {hits[:10]}"


def make_blob_synthetic_set(
    root: Path,
    *,
    dims: int = 2,
    shape: tuple[int, ...] = (32, 32),
    n: int = 8,
    conditions: list[dict[str, str]] | None = None,
    seed: int = 1,
) -> Path:
    """A synthetic set of smooth blobs plus noise, like :func:`make_prepared_dataset`'s items.

    ``conditions`` cycles over the items (default: the orientation / field-strength
    combinations of :func:`make_prepared_dataset`); pass ``[]`` for an unconditional set.
    """
    if conditions is None:
        conditions = [{"orientation": o, "field_strength": f}
                      for o, f in [("AVAF", "1.5T"), ("AVRF", "3T"), ("RVAF", "1.5T"), ("RVRF", "3T")]]
    rng = np.random.default_rng(seed)
    arrays = []
    for _ in range(n):
        grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
        centre = rng.uniform(-0.3, 0.3, size=len(shape))
        r2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
        arrays.append(np.exp(-r2 / 0.25) + 0.02 * rng.standard_normal(shape))
    conds = [dict(conditions[i % len(conditions)]) if conditions else {} for i in range(n)]
    return make_synthetic_set(root, np.stack(arrays).astype(np.float32), conds, dims=dims)


def _kid(value: float, n: int = 20) -> dict:
    return {"name": "kid", "value": value, "ci_low": value - 0.01, "ci_high": value + 0.01, "n": {"real": n},
            "details": {"n": n}}


def _fidelity(correct: dict[str, int], n: int) -> dict:
    per_class = {c: {"value": k / n, "ci_low": 0.0, "ci_high": 1.0, "n": n, "correct": k} for c, k in correct.items()}
    return {"name": "conditioning_fidelity", "value": float(np.mean([k / n for k in correct.values()])),
            "details": {"task": "orientation", "per_class": per_class, "classes": list(correct)}}


def fake_evaluation(folder: Path, syn: Path, correct: dict[str, int], n: int, *, judge: bool = True,
                    classes: tuple[str, ...] = ("AVAF", "RVRF"), on_reference: dict[str, int] | None = None) -> Path:
    """A ``metrics.json`` of the shape ``uterosynth evaluate`` writes (what the release and the pipeline
    report read): the judge got ``correct[c]`` of ``n`` synthetic samples of class ``c`` right (every
    real held-out one; ``on_reference[c]`` of ``n`` real training items, one per subject, when given),
    KID of the synthetic set 0.012, the floor 0.010, two baselines 0.004 and 0.050."""
    folder.mkdir()
    synthetic = {"kid": _kid(0.012)}
    floor = {"kid": _kid(0.010)}
    if judge:
        synthetic["conditioning_fidelity"] = _fidelity(correct, n)
        floor["conditioning_fidelity"] = _fidelity(dict.fromkeys(correct, n), n)
    doc = {
        "provenance": {"uterosynth_version": "test", "created": "2025-01-01T00:00:00"},
        "reference": {"source": "prepared:train", "n": 40},
        "extractor": {"name": "test-encoder", "sha256": "e" * 64},
        "classifier": {"name": "judge", "sha256": "j" * 64, "task": "orientation", "classes": list(classes),
                       "on_reference": _fidelity(on_reference, n) if on_reference else None}
        if judge else None,
        "sets": {
            "synthetic": {"kind": "synthetic", "source": str(syn), "n": 2 * n,
                          "metadata_sha256": sha256_file(syn / "metadata.jsonl"), "metrics": synthetic},
            "reconstruction": {"kind": "baseline", "source": "rec", "n": 20, "metrics": {"kid": _kid(0.004)}},
            "prior": {"kind": "baseline", "source": "prior", "n": 20, "metrics": {"kid": _kid(0.050)}},
            "real_vs_real": {"kind": "real", "source": "prepared:test", "n": 20, "metrics": floor},
        },
    }
    (folder / METRICS_FILE).write_text(json.dumps(doc))
    return folder


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP overhead on a shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class IdentityAutoencoder(torch.nn.Module):
    """An "autoencoder" whose latents are the images (one trainable scale): reconstructions are exact."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def encode(self, x):
        return x * self.scale, torch.ones_like(x)

    def decode(self, z):
        return z


def fake_audit(audit_dir: Path, syn: Path, flagged: list[int], n: int) -> Path:
    """A minimal audit.json of the shape 'uterosynth audit' writes."""
    audit_dir.mkdir()
    doc = {
        "provenance": {"uterosynth_version": "test", "created": "now"},
        "inputs": {"synthetic": {"metadata_sha256": sha256_file(syn / "metadata.jsonl"), "model_hash": "0" * 64}},
        "measures": {"ncc": "..."}, "modes": ["image"],
        "calibration": {"quantile": 0.99, "holdout_items": 40, "holdout_subjects": 10, "items": 200, "subjects": 50,
                        "sources": {"held-out": 40, "training, against the other subjects": 160},
                        "thresholds": {"image": {"ncc": 0.9}},
                        "false_flag_rate": {"available": True, "any": 0.025}},
        "summary": {"samples": n, "flagged": len(flagged), "flagged_fraction": len(flagged) / n,
                    "flagged_by": {"image/ncc": len(flagged)}, "flagged_indices": flagged,
                    "training_subjects": 40, "training_subjects_copied": len(flagged)},
        "samples": [{"index": i, "flagged": i in flagged, "measures": {"image": {"ncc": {"similarity": 0.5}}}}
                    for i in range(n)],
    }
    (audit_dir / "audit.json").write_text(json.dumps(doc))
    return audit_dir
