"""The audit on phantom cohorts: planted copies caught, new and smooth items not flagged, model samples.

Audits, against the training split of a prepared phantom dataset (calibrated as ``uterosynth
audit`` calibrates by default, plus any ``--blur`` controls):

- planted near-copies of training items (the kinds of ``results_audit.py``: exact, noised,
  shifted, rotated, flipped, intensity-rescaled) — every one should be flagged — and harder ones
  (an 80–90 % crop resized back, a 1.5 px elastic warp, the average of two training images);
- genuinely new items: a prepared dataset of *another* phantom seed (``--new``) — at most about
  ``1 − quantile`` per measure should be flagged;
- the same new items blurred (``--smooth`` sigmas), because model outputs are smoother than real
  images and smooth images look alike — they are not copies either;
- optionally synthetic sets of a model (``--samples``), with the training subjects they copy.

    python benchmarks/results_audit_phantom.py --train runs/prep60 --new runs/prepF1:train \
        --smooth 1,1.5,2 --write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_audit import HARDER_TRANSFORMS, TRANSFORMS, plant  # noqa: E402

from uterosynth.core.imageio import blur_in_plane  # noqa: E402
from uterosynth.data.image_set import ImageSet, load_prepared, load_synthetic  # noqa: E402
from uterosynth.data.manifest import parse_dataset_ref  # noqa: E402
from uterosynth.privacy.audit import run_audit  # noqa: E402
from uterosynth.privacy.config import AuditConfig  # noqa: E402

SECTION = "Privacy audit on the corrected pipeline"


def probe_set(train: ImageSet, new: ImageSet, smooth: list[float], copies_per_kind: int, seed: int):
    """Synthetic probes: planted copies of training items, new items, and the new items blurred; with their kinds."""
    rng = np.random.default_rng(seed)
    train_x = train.images[:, 0].numpy()
    new_x = new.images[:, 0].numpy()
    parts, kinds = [], []
    for kind in (*TRANSFORMS, *HARDER_TRANSFORMS):
        picks = rng.choice(len(train_x), copies_per_kind, replace=False)
        others = rng.choice(len(train_x), copies_per_kind, replace=True)
        parts.append(np.stack([plant(train_x[j], kind, rng, train_x[o]) for j, o in zip(picks, others, strict=True)]))
        kinds += [kind] * copies_per_kind
    parts.append(new_x)
    kinds += ["new"] * len(new_x)
    for sigma in smooth:
        parts.append(blur_in_plane(new_x, sigma))
        kinds += [f"new, blurred sigma {sigma:g} px"] * len(new_x)
    x = np.concatenate(parts).astype(np.float32)
    return ImageSet(torch.from_numpy(x)[:, None], [str(i) for i in range(len(x))], [""] * len(x)), np.array(kinds)


def audit_probes(train: ImageSet, holdout: ImageSet, probes: ImageSet, kinds: np.ndarray, cfg: AuditConfig) -> dict:
    t = time.perf_counter()
    result = run_audit(train, probes, holdout, config=cfg)
    per_kind = {k: float(result.flagged[kinds == k].mean()) for k in dict.fromkeys(kinds)}
    per_measure = {}
    for m in result.modes:
        for name, res in m.synthetic.items():
            hit = res.similarity > m.thresholds[name]
            per_measure[f"{m.mode}/{name}"] = {k: float(hit[kinds == k].mean()) for k in dict.fromkeys(kinds)}
    copies = np.isin(kinds, TRANSFORMS)
    harder = np.isin(kinds, HARDER_TRANSFORMS)
    return {"copies_flagged": float(result.flagged[copies].mean()),
            "harder_copies_flagged": float(result.flagged[harder].mean()), "per_kind": per_kind, "per_measure": per_measure,
            "calibration": {k: v for k, v in result.calibration.items() if k != "item_sources"},
            "false_flag_rate": result.false_flag_rate, "seconds": round(time.perf_counter() - t, 1),
            "thresholds": {f"{m.mode}/{k}": round(v, 4) for m in result.modes for k, v in m.thresholds.items()}}


def audit_samples(train: ImageSet, holdout: ImageSet, folder: Path, cfg: AuditConfig) -> dict:
    """The audit of a model's samples, with what tells memorisation from smoothness: each set's median
    nearest-training SSIM and its mean absolute horizontal gradient, beside the calibration items' and the training items'."""
    syn = load_synthetic(folder)
    result = run_audit(train, syn, holdout, config=cfg)
    ssim = result.modes[0]
    return {"samples": len(syn), "flagged": int(result.flagged.sum()),
            "subjects_copied": len(result.copied_subjects(train.subjects)),
            "training_subjects": len(set(train.subjects)),
            "median_ssim": {"samples": round(float(np.median(ssim.synthetic["ssim"].similarity)), 3),
                            "calibration": round(float(np.median(ssim.calibration["ssim"].similarity)), 3)},
            "mean_gradient": {"samples": round(_gradient(syn.images), 4), "training": round(_gradient(train.images), 4)}}


def _gradient(images: torch.Tensor) -> float:
    return float(images.diff(dim=-1).abs().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="prepared DIR: its train split is audited against, its test split calibrates")
    p.add_argument("--new", required=True, help="prepared DIR:split of another phantom seed (genuinely new items)")
    p.add_argument("--smooth", default="1,1.5,2", help="blur sigmas (px) of the smooth new items")
    p.add_argument("--blur", default="", help="calibration_blur of the audit (comma-separated sigmas; default none)")
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--copies-per-kind", type=int, default=50)
    p.add_argument("--samples", action="append", default=[], help="NAME=SYNTHETIC_SET of a model trained on --train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    cfg = AuditConfig(quantile=args.quantile, calibration_blur=[float(s) for s in args.blur.split(",") if s])
    train = load_prepared(args.train, "train", name="train", clip=False, needs="the audit")
    holdout = load_prepared(args.train, cfg.holdout, name="holdout", clip=False, needs="the audit")
    root, split = parse_dataset_ref(args.new)
    new = load_prepared(root, split or "train", name="new", clip=False, needs="the audit")
    probes, kinds = probe_set(train, new, [float(s) for s in args.smooth.split(",") if s], args.copies_per_kind, args.seed)
    out = {"train": args.train, "new": args.new, "config": cfg.model_dump(mode="json"),
           "probes": audit_probes(train, holdout, probes, kinds, cfg),
           "samples": {spec.split("=", 1)[0]: audit_samples(train, holdout, Path(spec.split("=", 1)[1]), cfg)
                       for spec in args.samples}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
