"""Speed of ``uterosynth evaluate`` on N 2D 128x128 images (features + all metrics + report).

Writes a prepared dataset (N train + N/5 test items of smooth random blobs) and a synthetic set
of N items as uncompressed NIfTI into a temporary folder (not timed), an in-domain encoder with
the default architecture (random weights: speed does not depend on training), then times
:func:`uterosynth.evaluation.runner.evaluate` with the default configuration, i.e. FID, KID,
precision/recall, density/coverage on all items, FRD on a random 500 per set, MS-SSIM
diversity (1000 pairs), LPIPS diversity (200 pairs, when the AlexNet weights exist), the
real-vs-real floor (test split) and the HTML report.

    python benchmarks/bench_evaluate.py --n 10000 [--write]

``--write`` replaces the ``## Evaluation`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from uterosynth.core.artifacts import sha256_file
from uterosynth.core.precision import cpu_flags
from uterosynth.data.manifest import write_manifest
from uterosynth.data.synthetic import write_metadata
from uterosynth.evaluation.config import EncoderTrainConfig, EvaluationConfig
from uterosynth.evaluation.contrastive import FrozenEncoder, build_backbone
from uterosynth.evaluation.runner import evaluate

ROOT = Path(__file__).resolve().parents[1]
LPIPS_WEIGHTS = "../shared/weights/alexnet_imagenet_features.safetensors"  # relative to the repository root
SIZE = 128


def _blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    grid = np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE), indexing="ij")
    out = np.empty((n, SIZE, SIZE), dtype=np.float32)
    for i in range(n):
        c = rng.uniform(-0.4, 0.4, 2)
        w = rng.uniform(0.05, 0.3)
        img = np.exp(-((grid[0] - c[0]) ** 2 + (grid[1] - c[1]) ** 2) / w)
        out[i] = np.clip(img + 0.03 * rng.standard_normal((SIZE, SIZE)), 0, 1)
    return out


def write_data(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    classes = ["AVAF", "AVRF", "RVAF", "RVRF"]
    prepared = root / "prepared"
    (prepared / "items").mkdir(parents=True)
    rows = []
    n_test = max(n // 5, 10)
    for i, img in enumerate(_blobs(n + n_test, rng)):
        split = "train" if i < n else "test"
        nib.save(nib.Nifti1Image(img[..., None], np.diag([0.8, 0.8, 4.0, 1.0])), str(prepared / "items" / f"{i}.nii"))
        rows.append({"item_id": str(i), "path": f"items/{i}.nii", "subject": f"S{i}", "split": split, "dims": 2,
                     "shape": f"{SIZE}x{SIZE}", "spacing": "0.8x0.8x4.0", "slice_index": 0, "source": "bench",
                     "source_path": "", "prep_hash": "bench", "orientation": classes[i % 4]})
    write_manifest(prepared / "manifest.csv", rows, ["orientation"])
    (prepared / "dataset.json").write_text(json.dumps({"dims": 2, "attributes": ["orientation"], "shape": [SIZE, SIZE],
                                                       "spacing": [0.8, 0.8, 4.0], "affine": np.diag([0.8, 0.8, 4.0, 1.0]).tolist()}))
    synthetic = root / "synthetic"
    (synthetic / "items").mkdir(parents=True)
    records = []
    for i, img in enumerate(_blobs(n, rng)):
        nib.save(nib.Nifti1Image(img[..., None], np.diag([0.8, 0.8, 4.0, 1.0])), str(synthetic / "items" / f"{i}.nii"))
        records.append({"index": i, "path": f"items/{i}.nii", "condition": {"orientation": classes[i % 4]}})
    write_metadata(synthetic / "metadata.jsonl", records)
    (synthetic / "synthetic.json").write_text(json.dumps({"dims": 2}))
    return prepared, synthetic


def write_encoder(folder: Path) -> Path:
    cfg = EncoderTrainConfig()
    torch.manual_seed(0)
    frozen = FrozenEncoder(build_backbone(cfg).eval(), cfg.image_size).eval()
    folder.mkdir(parents=True)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(frozen, torch.rand(2, 1, SIZE, SIZE)), str(folder / "encoder.pt"))
    (folder / "encoder.json").write_text(json.dumps({"name": "bench-encoder-random", "sha256": sha256_file(folder / "encoder.pt"),
                                                     "feature_dim": cfg.channels[-1]}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="items per set (real train and synthetic)")
    parser.add_argument("--write", action="store_true", help="update the Evaluation section of docs/BENCHMARKS.md")
    parser.add_argument("--lpips-weights", default=LPIPS_WEIGHTS, help="AlexNet features safetensors (skipped if absent)")
    parser.add_argument("--frd-items", type=int, default=500, help="items per set for FRD (config frd.max_items)")
    parser.add_argument("--frd-workers", type=int, default=1,
                        help="radiomics processes (config frd.num_workers; 0 = one per core)")
    parser.add_argument("--contended", default="yes", help="say whether the machine was shared while measuring")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    try:
        t = time.perf_counter()
        prepared, synthetic = write_data(tmp, args.n)
        encoder = write_encoder(tmp / "encoder")
        setup = time.perf_counter() - t
        overrides = {"extractor": {"kind": "encoder", "path": str(encoder)}, "frd": {"max_items": args.frd_items,
                                                                                    "num_workers": args.frd_workers}}
        lpips_weights = Path(args.lpips_weights) if Path(args.lpips_weights).is_absolute() else ROOT / args.lpips_weights
        if lpips_weights.is_file():
            overrides["lpips"] = {"weights": str(lpips_weights)}
        cfg = EvaluationConfig.model_validate(overrides)
        t = time.perf_counter()
        metrics = evaluate(prepared, synthetic, tmp / "out", cfg, log=lambda line: print("  ", line, flush=True))
        total = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stages = metrics["timings_s"]
    full = ("; scaled run — the target size is 10 000: `PYTHONPATH=src python benchmarks/bench_evaluate.py --n 10000 --write`"
            if args.n < 10000 or args.frd_items < 500 else "")
    line = (f"N={args.n} real + {args.n} synthetic (+{max(args.n // 5, 10)} real test) 2D {SIZE}x{SIZE}, features of "
            f"every item, distributional metrics at the common N = {metrics['equal_n']['n']} (the smallest set, "
            f"{metrics['equal_n']['draws']} subsample draws): evaluate {total:.0f} s (stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")" + full)
    print(line)
    print(f"(data setup, not timed: {setup:.0f} s)")
    if args.write:
        cmd = (f"PYTHONPATH=src python benchmarks/bench_evaluate.py --n {args.n} --frd-items {args.frd_items} "
               f"--frd-workers {args.frd_workers} "
               f"--lpips-weights {args.lpips_weights} --write")
        lpips = f"LPIPS 200 pairs with {args.lpips_weights}" if lpips_weights.is_file() else "LPIPS skipped (no weights)"
        section = (
            "## Evaluation\n\n"
            f"`uterosynth evaluate` with the default configuration (in-domain encoder architecture, 256 features; FID, "
            f"KID 100x1000 subsets, precision/recall/density/coverage on all items, FRD v1 on {args.frd_items} items per set "
            f"({args.frd_workers} radiomics processes), "
            f"MS-SSIM 1000 pairs, {lpips}, real-vs-real floor, 100 bootstrap replicates, report).\n\n"
            f"- {line}\n"
            f"- machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}; flags "
            f"{' '.join(cpu_flags()) or 'none of avx2/avx512'}), no GPU, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}; "
            f"contended (shared with other jobs): {args.contended}\n"
            f"- command: `{cmd}`\n"
        )
        path = ROOT / "docs" / "BENCHMARKS.md"
        text = path.read_text() if path.is_file() else "# Benchmarks\n"
        if "## Evaluation" in text:
            text = re.sub(r"## Evaluation\n.*?(?=\n## |\Z)", section, text, flags=re.S)
        else:
            text = text.rstrip("\n") + "\n\n" + section
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
