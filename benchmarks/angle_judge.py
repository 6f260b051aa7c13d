"""An angle judge: where do samples lie on the version and flexion axes, not only which side of a boundary?

A class judge says whether a sample reads as its requested orientation; two judges that draw the
boundary a little differently can disagree about samples near it. This one regresses the two
angles that define the classes (the phantom's ``version_angle`` and ``flexion_angle``, degrees,
positive = anterior) with the judges' ResNet-18, trained on a reference cohort of other subjects.
``score`` then reports, per requested class, the median predicted angles and the share of items
whose predicted signs give the class, for real items of subjects it never saw (beside their true
angles) and for synthetic sets.

    python benchmarks/angle_judge.py train --data runs/prepR720 --out runs/angle_judge
    python benchmarks/angle_judge.py score --judge runs/angle_judge --real runs/prepG2:train \\
        --samples "LDM s0=runs/samples_ldm2d_s0"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ANGLES = ("version_angle", "flexion_angle")
SCALE = 45.0  # degrees per unit of the network's output
FILE = "angle_judge.pt"


def _items(ref: str, split: str | None = None) -> tuple[torch.Tensor, np.ndarray, list[dict]]:
    """Images ``(N, 1, H, W)``, true angles ``(N, 2)`` and manifest rows of one split."""
    from uterosynth.data.image_set import load_prepared
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref

    root, named = parse_dataset_ref(ref)
    ds = PreparedDataset.load(root, named or split or "train")
    missing = [c for c in (*ANGLES, "orientation") if c not in ds.rows[0]]
    if missing:
        raise SystemExit(f"{ref}: no column {', '.join(missing)}; the angle judge needs phantom angles")
    images = load_prepared(ds).images
    angles = np.array([[float(r[c]) for c in ANGLES] for r in ds.rows], np.float32)
    return images, angles, ds.rows


def _network(size: int, widen_factor: float) -> torch.nn.Module:
    from uterosynth.models.classifier_net import build_resnet_classifier

    return build_resnet_classifier(2, len(ANGLES), (size, size), widen_factor=widen_factor, stem_stride=2,
                                   no_max_pool=False)


@torch.inference_mode()
def predict_angles(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [model(images[i:i + batch].float()) for i in range(0, len(images), batch)]
    return (torch.cat(out) * SCALE).numpy()


def train(args: argparse.Namespace) -> None:
    """Fit on the training split, keep the epoch of least validation error (mean absolute, degrees)."""
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref
    from uterosynth.data.subjects import training_subjects

    if parse_dataset_ref(args.data)[1]:
        raise SystemExit(f"--data {args.data}: give the prepared folder without a split; the judge trains on its "
                         "train split and stops early on its val split")
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"--out {out}: already exists; choose a new folder")
    torch.manual_seed(args.seed)
    x, y, _ = _items(args.data, "train")
    vx, vy, _ = _items(args.data, "val")
    model = _network(x.shape[-1], args.widen_factor)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    target = torch.from_numpy(y) / SCALE
    g = torch.Generator().manual_seed(args.seed)
    best, best_state, best_epoch, t0 = np.inf, None, -1, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(args.batch_size):
            loss = torch.nn.functional.smooth_l1_loss(model(x[idx].float()), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        error = float(np.abs(predict_angles(model, vx) - vy).mean())
        print(f"epoch {epoch + 1}/{args.epochs}: validation error {error:.2f} deg", flush=True)
        if error < best:
            best, best_epoch = error, epoch + 1
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=False)
    meta = {"angles": list(ANGLES), "scale_deg": SCALE, "size": int(x.shape[-1]), "widen_factor": args.widen_factor,
            "best_epoch": best_epoch, "epochs": args.epochs, "val_mean_abs_error_deg": round(best, 3),
            "seconds": round(time.perf_counter() - t0, 1), "seed": args.seed, "data": args.data,
            "training_subjects": training_subjects(PreparedDataset.load(args.data), ("train", "val"))}
    torch.save({"state": best_state, "meta": meta}, out / FILE)
    print(json.dumps({k: v for k, v in meta.items() if k != "training_subjects"}))


def load(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    saved = torch.load(Path(folder) / FILE, weights_only=True)
    model = _network(saved["meta"]["size"], saved["meta"]["widen_factor"])
    model.load_state_dict(saved["state"])
    return model.eval(), saved["meta"]


def summarise(pred: np.ndarray, wanted: list[str], truth: np.ndarray | None = None) -> dict[str, dict]:
    """Per requested class: items, median predicted angles [quartiles], the share whose predicted signs
    give the class, and (real items) the median true angles and the mean absolute error."""
    out = {}
    for cls in sorted(set(wanted)):
        keep = np.array([w == cls for w in wanted])
        p = pred[keep]
        sign = np.array([1 if cls[0] == "A" else -1, 1 if cls[2] == "A" else -1])
        row = {"n": int(keep.sum()), "signs_right": round(float(((p * sign) > 0).all(axis=1).mean()), 3)}
        for k, name in enumerate(("version", "flexion")):
            q = np.percentile(p[:, k], [25, 50, 75])
            row[name] = [round(float(v), 1) for v in (q[1], q[0], q[2])]
            if truth is not None:
                row[f"{name}_true"] = round(float(np.median(truth[keep, k])), 1)
                row[f"{name}_error"] = round(float(np.abs(p[:, k] - truth[keep, k]).mean()), 1)
        out[cls] = row
    return out


def score(args: argparse.Namespace) -> None:
    """The judge on real items of unseen subjects, then on each synthetic set: a table per class."""
    from uterosynth.data.image_set import load_synthetic
    from uterosynth.data.subjects import check_disjoint

    model, meta = load(args.judge)
    results = {}
    for ref in args.real:
        images, truth, rows = _items(ref)
        check_disjoint(meta["training_subjects"], {r["subject"] for r in rows}, what=f"angle judge vs {ref}",
                       allow_overlap=False)
        results[f"real {ref}"] = summarise(predict_angles(model, images), [r["orientation"] for r in rows], truth)
    for spec in args.samples or []:
        name, _, folder = spec.partition("=")
        sset = load_synthetic(folder, dims=2)
        if tuple(sset.images.shape[1:]) != (1, meta["size"], meta["size"]):
            raise SystemExit(f"{folder}: items of shape {tuple(sset.images.shape[1:])}, the angle judge reads "
                             f"2D items of (1, {meta['size']}, {meta['size']})")
        results[name] = summarise(predict_angles(model, sset.images), list(sset.attribute("orientation")))
    print("| set | class | n | version, median [quartiles] | flexion, median [quartiles] | signs give the class |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, per_class in results.items():
        for cls, r in per_class.items():
            true = (f" (true {r['version_true']}, error {r['version_error']})" if "version_true" in r else "",
                    f" (true {r['flexion_true']}, error {r['flexion_error']})" if "flexion_true" in r else "")
            print(f"| {name} | {cls} | {r['n']} | {r['version'][0]} [{r['version'][1]}, {r['version'][2]}]{true[0]} | "
                  f"{r['flexion'][0]} [{r['flexion'][1]}, {r['flexion'][2]}]{true[1]} | {100 * r['signs_right']:.0f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit the angle judge on a reference cohort")
    t.add_argument("--data", required=True, help="prepared DIR with phantom angle columns")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=25)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--widen-factor", type=float, default=0.25)
    t.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="place real items and synthetic sets on the angle axes")
    s.add_argument("--judge", required=True)
    s.add_argument("--real", action="append", default=[], help="prepared DIR:split of subjects the judge never saw")
    s.add_argument("--samples", action="append", help="NAME=SYNTHETIC_SET (repeatable)")
    s.add_argument("--json")
    args = parser.parse_args()
    {"train": train, "score": score}[args.command](args)


if __name__ == "__main__":
    main()
