"""Synthetic sets drawn from the same initial noise, item by item: how alike, and how smooth.

For a student and its teacher sampled with the same seed (``bench_distill.py`` writes such sets under
``OUT/sets/``): each item's Pearson correlation with the reference set's item of the same index (median),
the mean absolute difference, and every set's mean absolute horizontal gradient (a smoothness measure:
lower is smoother).

    python benchmarks/paired_sets.py --reference OUT/sets/teacher_DPM-Solver++_20 OUT/sets/student_S4x_Euler_4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from uterosynth.data.image_set import load_synthetic


def mean_gradient(images: torch.Tensor) -> float:
    """Mean absolute difference between horizontal neighbours."""
    return float(images.diff(dim=-1).abs().mean())


def paired(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Median per-item Pearson correlation and mean absolute difference of two aligned ``(N, ...)`` sets."""
    a, b = reference.flatten(1), other.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return {"median_correlation": round(float(corr.median()), 4),
            "mean_abs_difference": round(float((reference - other).abs().mean()), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, required=True, help="synthetic set the others are compared with")
    p.add_argument("sets", type=Path, nargs="+", help="synthetic sets of the same size, drawn from the same noise")
    args = p.parse_args()
    ref = load_synthetic(args.reference).images
    out = {str(args.reference): {"mean_gradient": round(mean_gradient(ref), 4)}}
    for path in args.sets:
        images = load_synthetic(path).images
        if images.shape != ref.shape:
            raise SystemExit(f"{path}: {tuple(images.shape)} items, the reference {tuple(ref.shape)}")
        out[str(path)] = {"mean_gradient": round(mean_gradient(images), 4), **paired(ref, images)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
