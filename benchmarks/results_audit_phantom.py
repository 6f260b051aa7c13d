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
- "another slice": items of the training subjects that are not training items, from the same
  cohort prepared with more slices per subject (``--other-slices``) — a patient copied, not an image;
- optionally synthetic sets of a model (``--samples``), with the training subjects they copy.

With ``--encoder`` the audit adds the embedding measure of that encoder (the copy detector of
``uterosynth audit train-encoder``), and every number is given per measure.

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
from uterosynth.models.encoder_artifact import load_encoder  # noqa: E402
from uterosynth.privacy.audit import run_audit  # noqa: E402
from uterosynth.privacy.config import AuditConfig  # noqa: E402

SECTION = "Privacy audit on the corrected pipeline"
OTHER_SLICE = "another slice"


def slice_positions(dataset, rows: list[dict], normal: np.ndarray) -> np.ndarray:
    """Each 2D item's slice position: its world origin along ``normal`` (mm), read from the item's own
    affine, so two preparations (or two slice grids) of one subject compare by it."""
    import nibabel as nib

    return np.asarray([float(nib.load(str(dataset.root / r["path"])).affine[:3, 3] @ normal) for r in rows])


def slice_normal(dataset, row: dict) -> np.ndarray:
    """The unit slice normal of an item (its third array axis in world space)."""
    import nibabel as nib

    axis = nib.load(str(dataset.root / row["path"])).affine[:3, 2]
    return axis / np.linalg.norm(axis)


def other_slices(train_ref: str, avoid_ref: str, more: str, copies: int, seed: int,
                 min_gap_mm: float = 1.0) -> np.ndarray:
    """Up to ``copies`` items of ``more`` (the training cohort prepared with more slices, or on another slice
    grid) that belong to a training subject of ``train_ref`` and lie at least ``min_gap_mm`` from every slice
    of that subject in the training split of ``avoid_ref`` (the audit's reference, or a larger one)."""
    from uterosynth.data.manifest import PreparedDataset

    subjects = {r["subject"] for r in PreparedDataset.load(train_ref, "train").rows}
    avoid = PreparedDataset.load(avoid_ref, "train")
    normal = slice_normal(avoid, avoid.rows[0])
    taken: dict[str, list[float]] = {}
    for r, z in zip(avoid.rows, slice_positions(avoid, avoid.rows, normal), strict=True):
        taken.setdefault(r["subject"], []).append(z)
    if missing := sorted(subjects - set(taken)):
        raise SystemExit(f"{avoid_ref}: its training split lacks {len(missing)} training subjects of {train_ref}")
    dataset = PreparedDataset.load(more)
    candidates = [r for r in dataset.rows if r["subject"] in subjects]
    rows = [r for r, z in zip(candidates, slice_positions(dataset, candidates, normal), strict=True)
            if min(abs(z - t) for t in taken[r["subject"]]) >= min_gap_mm]
    if not rows:
        raise SystemExit(f"{more}: no slices of the training subjects of {train_ref} off the slices of {avoid_ref}")
    rows = [rows[i] for i in sorted(np.random.default_rng(seed).choice(len(rows), min(copies, len(rows)), replace=False))]
    return load_prepared(dataset, rows=rows, clip=False, needs="the audit").images[:, 0].numpy()


def probe_set(train: ImageSet, new: ImageSet, smooth: list[float], copies_per_kind: int, seed: int,
              more_slices: np.ndarray | None = None):
    """Synthetic probes: planted copies of training items, other slices of training subjects, new items, and the
    new items blurred; with their kinds."""
    rng = np.random.default_rng(seed)
    train_x = train.images[:, 0].numpy()
    new_x = new.images[:, 0].numpy()
    parts, kinds = [], []
    for kind in (*TRANSFORMS, *HARDER_TRANSFORMS):
        picks = rng.choice(len(train_x), copies_per_kind, replace=False)
        others = rng.choice(len(train_x), copies_per_kind, replace=True)
        parts.append(np.stack([plant(train_x[j], kind, rng, train_x[o]) for j, o in zip(picks, others, strict=True)]))
        kinds += [kind] * copies_per_kind
    if more_slices is not None:
        parts.append(more_slices)
        kinds += [OTHER_SLICE] * len(more_slices)
    parts.append(new_x)
    kinds += ["new"] * len(new_x)
    for sigma in smooth:
        parts.append(blur_in_plane(new_x, sigma))
        kinds += [f"new, blurred sigma {sigma:g} px"] * len(new_x)
    x = np.concatenate(parts).astype(np.float32)
    return ImageSet(torch.from_numpy(x)[:, None], [str(i) for i in range(len(x))], [""] * len(x)), np.array(kinds)


def new_items_over_subjects(flagged: np.ndarray, kinds: np.ndarray, new_subjects: list[str]) -> dict:
    """Per new-item kind: % flagged with a cluster-bootstrap 95 % interval over the new subjects, and how many
    of them had an item flagged (a few look-alike subjects carry most false flags)."""
    from uterosynth.evaluation.resampling import cluster_bootstrap_mean

    out = {}
    for kind in dict.fromkeys(k for k in kinds if k.startswith("new")):
        hit = flagged[kinds == kind].astype(np.float64)
        mean, low, high, _ = cluster_bootstrap_mean(hit, new_subjects)
        out[kind] = {"percent": [round(100 * v, 1) for v in (mean, low, high)],
                     "subjects_flagged": len({s for s, h in zip(new_subjects, hit, strict=True) if h}),
                     "subjects": len(set(new_subjects))}
    return out


def audit_probes(train: ImageSet, holdout: ImageSet, probes: ImageSet, kinds: np.ndarray, cfg: AuditConfig,
                 extractor=None, new_subjects: list[str] | None = None) -> dict:
    t = time.perf_counter()
    result = run_audit(train, probes, holdout, config=cfg, extractor=extractor)
    per_kind = {k: float(result.flagged[kinds == k].mean()) for k in dict.fromkeys(kinds)}
    per_measure = {}
    for m in result.modes:
        for name, res in m.synthetic.items():
            hit = res.similarity > m.thresholds[name]
            per_measure[f"{m.mode}/{name}"] = {k: float(hit[kinds == k].mean()) for k in dict.fromkeys(kinds)}
    copies = np.isin(kinds, TRANSFORMS)
    harder = np.isin(kinds, (*HARDER_TRANSFORMS, OTHER_SLICE))
    return {"copies_flagged": float(result.flagged[copies].mean()),
            "harder_copies_flagged": float(result.flagged[harder].mean()), "per_kind": per_kind, "per_measure": per_measure,
            "new_over_subjects": None if new_subjects is None else new_items_over_subjects(result.flagged, kinds,
                                                                                           new_subjects),
            "notes": {m.mode: m.notes for m in result.modes},
            "calibration": {k: v for k, v in result.calibration.items() if k != "item_sources"},
            "false_flag_rate": result.false_flag_rate, "seconds": round(time.perf_counter() - t, 1),
            "thresholds": {f"{m.mode}/{k}": round(v, 4) for m in result.modes for k, v in m.thresholds.items()}}


def audit_samples(train: ImageSet, holdout: ImageSet, folder: Path, cfg: AuditConfig, extractor=None) -> dict:
    """The audit of a model's samples, with what tells memorisation from smoothness: each set's median
    SSIM score (as the audit scores it: its excess over the background when ``background`` is on) and its
    mean absolute horizontal gradient, beside the calibration items' and the training items'."""
    syn = load_synthetic(folder)
    result = run_audit(train, syn, holdout, config=cfg, extractor=extractor)
    ssim = result.modes[0]
    flagged_by = {name: int((res.similarity > ssim.thresholds[name]).sum()) for name, res in ssim.synthetic.items()}
    return {"samples": len(syn), "flagged": int(result.flagged.sum()), "flagged_by": flagged_by,
            "subjects_copied": len(result.copied_subjects(train.subjects)),
            "training_subjects": len(set(train.subjects)),
            "median_ssim_score": {"samples": round(float(np.median(ssim.synthetic["ssim"].similarity)), 3),
                            "calibration": round(float(np.median(ssim.calibration["ssim"].similarity)), 3)},
            "mean_gradient": {"samples": round(_gradient(syn.images), 4), "training": round(_gradient(train.images), 4)}}


def ssim_tail(images: ImageSet) -> list[float]:
    """50th, 90th and 99th percentile of every item's SSIM (with the mirror image) to its nearest item of
    another subject of the same set, by brute force over all pairs: how alike a cohort's subjects are."""
    from uterosynth.privacy.similarity import ssim_search

    x = images.images[:, 0]
    subjects = np.asarray(images.subjects)
    candidates = torch.arange(len(x)).expand(len(x), len(x)).clone()
    candidates[torch.from_numpy(subjects[:, None] == subjects[None, :])] = -1
    best = ssim_search(x, x, candidates, flip_axes=(1,)).values[:, 0].numpy()
    return [round(float(v), 3) for v in np.quantile(best, [0.5, 0.9, 0.99])]


def _gradient(images: torch.Tensor) -> float:
    return float(images.diff(dim=-1).abs().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="prepared DIR: the model's training data; its train split is "
                   "planted, and audited against unless --reference")
    p.add_argument("--reference", help="prepared DIR given to the audit instead of --train (its train split is the "
                   "reference, its test split calibrates): the same cohort prepared with every slice of each patient")
    p.add_argument("--new", required=True, help="prepared DIR:split of another phantom seed (genuinely new items)")
    p.add_argument("--smooth", default="1,1.5,2", help="blur sigmas (px) of the smooth new items")
    p.add_argument("--blur", default="", help="calibration_blur of the audit (comma-separated sigmas; default none)")
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--set", action="append", default=[], help="another audit setting KEY=JSON_VALUE (repeatable)")
    p.add_argument("--copies-per-kind", type=int, default=50)
    p.add_argument("--samples", action="append", default=[], help="NAME=SYNTHETIC_SET of a model trained on --train")
    p.add_argument("--other-slices", help="the training cohort prepared with more slices per subject, or on another "
                   "slice grid (DIR): its items of training subjects at least --min-gap-mm from every slice of "
                   "--other-slices-off are planted as copies")
    p.add_argument("--other-slices-off", help="prepared DIR whose training slices the planted other slices avoid "
                   "(default: the audit's reference), so settings with different references share one probe set")
    p.add_argument("--min-gap-mm", type=float, default=1.0, help="--other-slices: the least distance (mm) from "
                   "every reference slice of the same subject (0: another acquisition on the same grid)")
    p.add_argument("--encoder", type=Path, help="encoder folder for the embedding measure (e.g. the copy detector)")
    p.add_argument("--tail", action="store_true", help="also the SSIM of every training and every new item to its "
                   "nearest other subject of its own set (brute force; 50th/90th/99th percentile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = AuditConfig(**{"quantile": args.quantile, "calibration_blur": [float(s) for s in args.blur.split(",") if s],
                         **extra})  # --set wins over --quantile and --blur
    reference_ref = args.reference or args.train
    planted = load_prepared(args.train, "train", name="train", clip=False, needs="the audit")
    train = load_prepared(reference_ref, "train", name="train", clip=False, needs="the audit")
    holdout = load_prepared(reference_ref, cfg.holdout, name="holdout", clip=False, needs="the audit")
    root, split = parse_dataset_ref(args.new)
    new = load_prepared(root, split or "train", name="new", clip=False, needs="the audit")
    more = None
    if args.other_slices is not None:
        more = other_slices(args.train, args.other_slices_off or reference_ref, args.other_slices, args.copies_per_kind,
                            args.seed, args.min_gap_mm)
    extractor = None if args.encoder is None else load_encoder(args.encoder)
    probes, kinds = probe_set(planted, new, [float(s) for s in args.smooth.split(",") if s], args.copies_per_kind, args.seed,
                              more)
    out = {"train": args.train, "reference": reference_ref, "new": args.new, "encoder": None if args.encoder is None else str(args.encoder),
           "config": cfg.model_dump(mode="json"),
           "probes": audit_probes(train, holdout, probes, kinds, cfg, extractor, list(new.subjects)),
           "samples": {spec.split("=", 1)[0]: audit_samples(train, holdout, Path(spec.split("=", 1)[1]), cfg, extractor)
                       for spec in args.samples}}
    if args.tail:
        out["ssim_nearest_other_subject"] = {"training": ssim_tail(train), "new": ssim_tail(new)}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
