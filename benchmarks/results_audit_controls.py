"""Model-made controls for the audit: are a model's samples closer to its training items than a model of other
subjects makes them?

Against the training split of a prepared dataset (``--train``), one search scores:

- the audited model's samples (``--samples NAME=DIR``, repeatable);
- fresh model-made controls (``--fresh``): a second draw of a model trained on *other* subjects — never copies;
- real items of other subjects (``--new DIR[:split]``) — never copies either;
- planted copies of training items (exact, noised, shifted, rotated, mirrored, rescaled, mixed with another).

and the thresholds are then set three ways from the same similarities: on the real calibration items (the audit's
default), on the model-made controls of ``--controls`` (a first draw of that model), and on ``--reconstructions``
(autoencoder reconstructions of other subjects). For each way the share of every probe flagged is printed with a
Wilson 95 % interval, and, for the samples, the training subjects they copy; then the quartiles and largest
nearest-training similarity of every probe kind and calibration set.

    python benchmarks/results_audit_controls.py --train demo/02_prepared --samples demo=demo/05_samples \\
        --controls runs/C0 --fresh runs/C1 --new runs/prepC:train --reconstructions runs/recon/reconstruction \\
        --quantile 0.95
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
from results_audit import TRANSFORMS, plant  # noqa: E402

from uterosynth.core.stats import wilson_ci  # noqa: E402
from uterosynth.data.image_set import ImageSet, load_prepared, load_synthetic  # noqa: E402
from uterosynth.data.manifest import parse_dataset_ref  # noqa: E402
from uterosynth.privacy.audit import calibrated_thresholds, run_audit  # noqa: E402
from uterosynth.privacy.config import AuditConfig  # noqa: E402
from uterosynth.privacy.controls import CONTROL_SOURCE, load_controls  # noqa: E402

KINDS = (*TRANSFORMS, "mix")


def planted(train: ImageSet, per_kind: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``per_kind`` near-copies of training items per kind, their kinds and the copied items' indices."""
    rng = np.random.default_rng(seed)
    x = train.images[:, 0].numpy()
    out, kinds, sources = [], [], []
    for kind in KINDS:
        for j, o in zip(rng.choice(len(x), per_kind, replace=False), rng.choice(len(x), per_kind), strict=True):
            out.append(plant(x[j], kind, rng, x[o]))
            kinds.append(kind)
            sources.append(j)
    return np.stack(out), kinds, np.array(sources)


def share(flags: np.ndarray) -> dict:
    k, n = int(flags.sum()), int(flags.size)
    lo, hi = wilson_ci(k, n)
    return {"flagged": k, "n": n, "share": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def scored(result, mask: np.ndarray, quantile: float, control: str, kinds: list[str], subjects) -> dict:
    """Thresholds from the calibration items in ``mask``; the share of every probe kind flagged under them."""
    thresholds, records = calibrated_thresholds(
        {f"{m.mode}/{k}": r.similarity[mask] for m in result.modes for k, r in m.calibration.items()}, quantile, control)
    flagged = np.zeros(len(kinds), dtype=bool)
    by_measure: dict[str, np.ndarray] = {}
    nearest: list[tuple[np.ndarray, np.ndarray]] = []
    for m in result.modes:
        for k, r in m.synthetic.items():
            hit = r.similarity > thresholds[f"{m.mode}/{k}"]
            by_measure[f"{m.mode}/{k}"] = hit
            nearest.append((hit, r.ref_index))
            flagged |= hit
    entry = {"items": int(mask.sum()), "quantile": quantile,
             "thresholds": {k: round(v, 4) for k, v in thresholds.items()},
             "bound": {k: r["bound"] for k, r in records.items()}, "probes": {}}
    kinds_a = np.asarray(kinds)
    for kind in dict.fromkeys(kinds):
        sel = kinds_a == kind
        row = {**share(flagged[sel]), "per_measure": {k: int(v[sel].sum()) for k, v in by_measure.items()}}
        if kind.startswith("samples"):
            row["training_subjects_copied"] = len({subjects[int(j)] for hit, ref in nearest for j in ref[sel & hit]
                                                   if j >= 0})
        entry["probes"][kind] = row
    return entry


def similarity_summary(result, kinds: list[str], ways: dict[str, np.ndarray]) -> dict:
    """Quartiles and largest nearest-training similarity of the first mode (whole items), per measure, for every
    probe kind and every calibration: how close a set's items come to the training items, whatever the thresholds."""
    mode = result.modes[0]
    kinds_a = np.asarray(kinds)

    def stats(v: np.ndarray) -> dict:
        v = v[np.isfinite(v)]
        return {"q25_median_q75": [round(float(x), 3) for x in np.quantile(v, [0.25, 0.5, 0.75])],
                "max": round(float(v.max()), 3)}

    return {"mode": mode.mode,
            "probes": {k: {m: stats(r.similarity[kinds_a == k]) for m, r in mode.synthetic.items()}
                       for k in dict.fromkeys(kinds)},
            "calibration": {w: {m: stats(r.similarity[mask]) for m, r in mode.calibration.items()}
                            for w, mask in ways.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="prepared DIR: train split audited against, test split calibrates")
    p.add_argument("--samples", action="append", default=[], help="NAME=SYNTHETIC_SET of a model trained on --train")
    p.add_argument("--controls", required=True, help="synthetic set of a model of other subjects (calibration)")
    p.add_argument("--fresh", required=True, help="another draw of the same control model (probe, never copies)")
    p.add_argument("--new", help="prepared DIR[:split] of other subjects (probe, never copies)")
    p.add_argument("--reconstructions", help="autoencoder reconstructions of other subjects (another calibration)")
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--also-quantiles", default="", help="more quantiles scored on the same search (comma-separated)")
    p.add_argument("--copies-per-kind", type=int, default=30)
    p.add_argument("--set", action="append", default=[], help="another audit setting KEY=JSON_VALUE (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = AuditConfig(**{"quantile": args.quantile, **extra, "control_calibration": "pooled"})
    t0 = time.perf_counter()
    train = load_prepared(args.train, "train", name="train", clip=False, needs="the audit")
    holdout = load_prepared(args.train, cfg.holdout, name="holdout", clip=False, needs="the audit")

    probes: list[torch.Tensor] = []
    kinds: list[str] = []
    for spec in args.samples:
        name, folder = spec.split("=", 1)
        syn = load_synthetic(folder, clip=False, needs="the audit")
        probes.append(syn.images)
        kinds += [f"samples: {name}"] * len(syn)
    fresh = load_controls(args.fresh, train)
    probes.append(fresh.images)
    kinds += ["fresh controls"] * len(fresh)
    if args.new:
        root, split = parse_dataset_ref(args.new)
        new = load_prepared(root, split or "train", name="new", clip=False, needs="the audit")
        probes.append(new.images)
        kinds += ["new real items"] * len(new)
    copies, copy_kinds, copied = planted(train, args.copies_per_kind, args.seed)
    probes.append(torch.from_numpy(copies)[:, None])
    kinds += [f"planted: {k}" for k in copy_kinds]
    x = torch.cat(probes)
    probe_set = ImageSet(x, tuple(str(i) for i in range(len(x))), ("",) * len(x))

    calib_sets = [load_controls(args.controls, train)]
    if args.reconstructions:
        calib_sets.append(load_controls(args.reconstructions, train))
    controls = ImageSet(torch.cat([c.images for c in calib_sets]), tuple(str(i) for i in range(sum(map(len, calib_sets)))),
                        ("",) * sum(map(len, calib_sets)))
    result = run_audit(train, probe_set, holdout, config=cfg, controls=controls)

    sources = np.asarray(result.calibration["item_sources"])
    real = sources != CONTROL_SOURCE
    start = int(real.sum())
    ways = {"real items": real, "generator controls": np.zeros_like(real)}
    ways["generator controls"][start : start + len(calib_sets[0])] = True
    if args.reconstructions:
        ways["reconstructions"] = np.zeros_like(real)
        ways["reconstructions"][start + len(calib_sets[0]) :] = True
    out: dict = {"train": args.train, "quantile": cfg.quantile, "config": cfg.model_dump(mode="json"),
                 "calibrations": {}}
    for q in [cfg.quantile, *(float(v) for v in args.also_quantiles.split(",") if v)]:
        for way, mask in ways.items():
            key = way if q == cfg.quantile else f"{way}, quantile {q:g}"
            out["calibrations"][key] = scored(result, mask, q, cfg.control, kinds, train.subjects)
    out["nearest_similarity"] = similarity_summary(result, kinds, ways)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
