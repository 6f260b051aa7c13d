"""Time of the full downstream grid on a 2D ROI-sized dataset of phantom scale (CPU).

Until the phantom cohort and a trained diffusion model exist, the data are a STAND-IN made
here: 2D 64×64 "uterus ROI" slices of a synthetic pelvis sketch (a bright bladder, and a
uterus drawn as cervix + corpus whose angles encode the four orientation classes AVAF, AVRF,
RVAF, RVRF), 100 subjects × 6 slices split 70/15/15 by subject, plus two stand-in synthetic
sets of the same generator ("diffusion", 400 images, and "vae_prior", 400 blurred images).
Only the timing means something; the accuracies are of the stand-in task.

    python benchmarks/bench_downstream.py                 # full default grid, prints the time
    python benchmarks/bench_downstream.py --write         # also updates '## Downstream' in docs/BENCHMARKS.md
    python benchmarks/bench_downstream.py --config configs/downstream_quick.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from uterosynth.data.manifest import write_manifest  # noqa: E402
from uterosynth.data.synthetic import write_metadata  # noqa: E402

CLASSES = ["AVAF", "AVRF", "RVAF", "RVRF"]


def sketch(label: str, size: int, rng: np.random.Generator, blur: float = 0.0) -> np.ndarray:
    """A sagittal pelvis sketch: bladder, cervix and corpus whose angles encode ``label``."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    version = (-35.0 if label.startswith("AV") else 35.0) + rng.normal(0, 8)  # cervix tilt
    flexion = (-40.0 if label.endswith("AF") else 40.0) + rng.normal(0, 8)  # corpus relative to cervix

    def ellipse(cy, cx, a, b, angle):
        t = np.deg2rad(angle)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        return (u / a) ** 2 + (v / b) ** 2

    img = 0.35 + 0.05 * rng.standard_normal((size, size))
    img[ellipse(-0.1 + rng.normal(0, 0.05), -0.55, 0.35, 0.25, 10) < 1] = 0.9  # bladder (anterior)
    cy, cx = 0.35 + rng.normal(0, 0.04), 0.05 + rng.normal(0, 0.04)
    t = np.deg2rad(90 + version)
    img[ellipse(cy, cx, 0.1, 0.32, version) < 1] = 0.2  # cervix (dark stroma)
    top_y, top_x = cy - 0.32 * np.sin(t), cx - 0.32 * np.cos(t)
    angle = version + flexion
    t2 = np.deg2rad(90 + angle)
    corpus = ellipse(top_y - 0.3 * np.sin(t2), top_x - 0.3 * np.cos(t2), 0.2, 0.34, angle)
    img[corpus < 1] = 0.5
    img[corpus < 0.25] = 0.85  # endometrium
    if blur:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, blur)
    img = img + 0.04 * rng.standard_normal((size, size))
    return np.clip(img, 0, 1).astype(np.float32)


def make_standin(root: Path, *, subjects: int, slices: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "items").mkdir(parents=True)
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    n_train, n_val = int(round(0.7 * subjects)), int(round(0.15 * subjects))
    rows = []
    for s in range(subjects):
        label = CLASSES[s % 4]
        split = "train" if s < n_train else "val" if s < n_train + n_val else "test"
        for k in range(slices):
            item = f"P{s:03d}_{k:02d}"
            nib.save(nib.Nifti1Image(sketch(label, size, rng)[..., None], affine), str(root / "items" / f"{item}.nii.gz"))
            rows.append({"item_id": item, "path": f"items/{item}.nii.gz", "subject": f"P{s:03d}", "split": split,
                         "dims": 2, "shape": f"{size}x{size}", "spacing": "0.8x0.8x4.0", "slice_index": k,
                         "source": "standin", "source_path": "", "prep_hash": "standin", "orientation": label,
                         "field_strength": ["1.5T", "3T"][s % 2]})
    write_manifest(root / "manifest.csv", rows, ["orientation", "field_strength"])
    (root / "dataset.json").write_text(json.dumps({"dims": 2, "attributes": ["orientation", "field_strength"],
                                                   "shape": [size, size], "spacing": [0.8, 0.8, 4.0],
                                                   "affine": affine.tolist(), "seed": seed, "config": {"standin": True}}))
    return root


def make_standin_synthetic(root: Path, *, n: int, size: int, blur: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    (root / "items").mkdir(parents=True)
    records = []
    for i in range(n):
        label = CLASSES[i % 4]
        path = f"items/{i:05d}.nii.gz"
        nib.save(nib.Nifti1Image(sketch(label, size, rng, blur)[..., None], np.diag([0.8, 0.8, 4.0, 1.0])),
                 str(root / path))
        records.append({"index": i, "path": path, "condition": {"orientation": label}})
    write_metadata(root / "metadata.jsonl", records)
    (root / "synthetic.json").write_text(json.dumps({"dims": 2, "standin": True}))
    return root


def write_section(text: str) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = "## Downstream\n\n" + text.strip() + "\n"
    if re.search(r"^## Downstream\s*$", old, flags=re.M):
        new = re.sub(r"^## Downstream\s*$.*?(?=^## |\Z)", block + "\n", old, flags=re.M | re.S)
    else:
        new = old.rstrip() + "\n\n" + block
    path.write_text(new.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "downstream.yaml"))
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--synthetic", type=int, default=400)
    parser.add_argument("--keep", help="keep the output folder here")
    parser.add_argument("--write", action="store_true", help="update '## Downstream' in docs/BENCHMARKS.md")
    args = parser.parse_args()

    from uterosynth.core.config import load_config
    from uterosynth.downstream.config import DownstreamConfig
    from uterosynth.downstream.experiment import run_downstream

    cfg = load_config(DownstreamConfig, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real = make_standin(tmp / "real", subjects=args.subjects, slices=args.slices, size=args.size)
        diffusion = make_standin_synthetic(tmp / "diffusion", n=args.synthetic, size=args.size, blur=0.0, seed=1)
        prior = make_standin_synthetic(tmp / "vae_prior", n=args.synthetic, size=args.size, blur=1.5, seed=2)
        out = Path(args.keep) if args.keep else tmp / "out"
        start = time.perf_counter()
        results = run_downstream(real, {"diffusion": diffusion, "vae_prior": prior}, cfg, out, overwrite=True,
                                 progress=lambda d, i, n: print(f"[{time.perf_counter() - start:7.1f}s] {i}/{n} {d}",
                                                                flush=True))
        seconds = time.perf_counter() - start
    runs = results["runs"]
    per_kind: dict[str, list[float]] = {}
    for r in runs:
        per_kind.setdefault("augment" if r["protocol"] == "real+augment" else "other", []).append(r["seconds"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rel_config = os.path.relpath(args.config, ROOT)
    lines = [
        f"Full downstream grid (`{rel_config}`): {len(results['protocols'])} protocols × {len(cfg.budgets)} label "
        f"budgets × {cfg.n_seeds} seeds = **{len(runs)} classifier trainings in {seconds / 60:.1f} min** "
        f"({seconds:.0f} s; mean {np.mean(per_kind.get('other', [0])):.1f} s per run, "
        f"{np.mean(per_kind.get('augment', [0])):.1f} s per run with MONAI augmentation).",
        "",
        f"- Data: a **stand-in** 2D ROI dataset made by the benchmark ({args.subjects} subjects × {args.slices} "
        f"slices, {args.size}×{args.size}, split 70/15/15 by subject; {results['real']['n_items']['train']} training "
        f"images) and two stand-in synthetic sets of {args.synthetic} images each, until the phantom cohort and a "
        "trained diffusion model replace them. Only the time is meaningful.",
        f"- Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU; torch threads "
        f"{cfg.train.threads}; **contended** (shared with other jobs, load average {load:.1f} at the end).",
        "- Command: `python benchmarks/bench_downstream.py --write`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
