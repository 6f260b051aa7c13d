"""The demo recipe sweep: train a 2D diffusion model for fixed step budgets, sample each class, judge it.

Each trial trains one configuration (a preset plus ``--set`` overrides) to each milestone in turn
(the run resumes between milestones; the learning rate is constant, so a resumed run is the
longer run; the preset's wall-clock budget is lifted, so every milestone is reached whatever the load), samples ``--per-class`` items of every orientation class, and records:

- the judge's accuracy on the requested class, per class, with its 95 % Wilson interval;
- KID of the samples to the real training split at the samples' N, beside the real-vs-real
  floor at the same N (items of the *reference* cohort, whose subjects the generator never saw);
- training steps, cumulative training seconds, sampling seconds, threads and the CPU flags.

The judge and the encoder must be trained on the reference cohort (never on the generator's
subjects): ``uterosynth downstream train-classifier --data REF --out JUDGE`` and
``uterosynth evaluate train-encoder --data REF --out ENCODER``.

    python benchmarks/demo_recipe_sweep.py trial p4_noattn --data prep --reference prep_ref \\
        --judge judge --encoder encoder --milestones 1500,2500 --set unet.patch_size=4
    python benchmarks/demo_recipe_sweep.py table --out sweep   # the markdown table of every trial
    python benchmarks/demo_recipe_sweep.py seeds --out sweep   # one row per variant over its training seeds
    python benchmarks/demo_recipe_sweep.py ceiling --data prep --judge judge   # the judge on the real items

Every trial appends one line per milestone to ``<out>/trials.jsonl``; none is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from uterosynth.core.precision import cpu_flags
from uterosynth.core.stats import wilson_ci
from uterosynth.data.image_set import load_prepared, load_synthetic
from uterosynth.downstream.judge import load_classifier, predict
from uterosynth.evaluation.features import extract_features
from uterosynth.evaluation.metrics import kid
from uterosynth.evaluation.resampling import cluster_bootstrap_mean
from uterosynth.models.encoder_artifact import load_encoder

DEFAULT_SAMPLE = "dpmpp:20:orientation=3,field_strength=1.5"


def judge_per_class(samples: Path, judge: str) -> dict[str, dict]:
    s = load_synthetic(samples, dims=2)
    return _accuracy_per_class(predict(load_classifier(judge), s.images), [c["orientation"] for c in s.conditions])


def _accuracy_per_class(pred, want, groups=None) -> dict[str, dict]:
    """Accuracy per wanted class with a Wilson interval over items and, with ``groups`` (subject per
    item: real items of several slices per subject), a cluster-bootstrap interval over subjects."""
    out = {}
    for cls in sorted(set(want)):
        index = [i for i, w in enumerate(want) if w == cls]
        hits = [pred[i] == cls for i in index]
        out[cls] = {"acc": round(float(np.mean(hits)), 3), "n": len(hits), "wilson95": [round(v, 3) for v in wilson_ci(sum(hits), len(hits))]}
        if groups is not None:
            _, low, high, _ = cluster_bootstrap_mean(np.asarray(hits, float), [groups[i] for i in index])
            out[cls]["subjects95"] = [round(low, 3), round(high, 3)]
            out[cls]["subjects"] = len({groups[i] for i in index})
    return out


def kid_with_floor(samples: Path, data: str, reference: str, encoder: str, seed: int = 0) -> dict:
    """KID (x1e3) of the samples and of reference-cohort items, each to the training split, at one N."""
    feats = lambda images: extract_features(load_encoder(encoder), torch.as_tensor(images))  # noqa: E731
    train = feats(load_prepared(data, split="train").images)
    fake = feats(load_synthetic(samples, dims=2).images)
    ref = load_prepared(reference).images
    n = min(len(fake), len(ref), len(train))
    idx = np.random.default_rng(seed).choice(len(ref), n, replace=False)
    floor = feats(ref[idx])
    k_fake, _ = kid(train, fake[:n], subset_size=n, seed=seed)
    k_floor, _ = kid(train, floor, subset_size=n, seed=seed)
    return {"n": n, "kid_x1e3": round(1e3 * k_fake, 2), "floor_kid_x1e3": round(1e3 * k_floor, 2)}


def train_to(run: Path, args, steps: int) -> float:
    cmd = ["uterosynth", "train", "diffusion", "--config", args.config, "--data", args.data, "--out", str(run),
           "--set", "train.max_minutes=100000", "--set", "train.val_every=100000", "--set", "train.checkpoint_every=100000",
           "--set", f"train.steps={steps}", *(("--resume",) if (run / "summary.json").exists() else ("--overwrite",))]
    for s in args.set:
        cmd += ["--set", s]
    summary = run / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("steps") == steps:
        return 0.0
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def trial(args) -> None:
    out = Path(args.out)
    run = out / "runs" / args.name
    train_s = 0.0
    for steps in (int(v) for v in args.milestones.split(",")):
        train_s += train_to(run, args, steps)
        results = {}
        for spec in args.sample or [DEFAULT_SAMPLE]:
            sampler, n_steps, guidance = spec.split(":")
            folder = run / f"samples{steps}_{sampler}{n_steps}_g{guidance.replace(',', '_').replace('=', '')}"
            t0 = time.perf_counter()
            subprocess.run(["uterosynth", "sample", "--model", str(run), "--out", str(folder), "--overwrite",
                            "--per-class", str(args.per_class), "--sampler", sampler, "--steps", n_steps,
                            "--guidance", guidance, "--seed", str(args.sample_seed)], check=True, stdout=subprocess.DEVNULL)
            per_class = judge_per_class(folder, args.judge)
            results[spec] = {"per_class": per_class, "worst": min(v["acc"] for v in per_class.values()),
                             "sample_s": round(time.perf_counter() - t0, 1),
                             **(kid_with_floor(folder, args.data, args.reference, args.encoder) if args.encoder else {})}
        summary = json.loads((run / "summary.json").read_text())
        record = {"name": args.name, "config": args.config, "set": args.set, "steps": summary.get("steps"),
                  "train_s": round(train_s, 1), "threads": torch.get_num_threads(), "cpu_flags": list(cpu_flags()),
                  "busy": args.busy, "sample_seed": args.sample_seed, "judge": Path(args.judge).name,
                  "per_class_requested": args.per_class, "results": results}
        print(json.dumps(record), flush=True)
        with open(out / "trials.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def ceiling(args) -> None:
    """The judge on the real items of a cohort it never saw (refused when it trained on any of its
    subjects), per class of the judge's own task: what a generator that reproduces its training
    data exactly would score."""
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref
    from uterosynth.data.subjects import check_disjoint

    root, split = parse_dataset_ref(args.data)
    every = split is None and args.all_splits
    real = load_prepared(PreparedDataset.load(root)) if every else load_prepared(args.data)
    judge = load_classifier(args.judge)
    task = judge[1]["task"]
    check_disjoint(judge[1].get("training_subjects") or {}, set(real.subjects), what=f"judge {args.judge} vs {args.data}",
                   allow_overlap=False)
    for column in (task, *([args.by] if args.by else [])):
        if column not in real.info["attributes"]:
            raise SystemExit(f"{args.data}: no column '{column}' (columns: {', '.join(real.info['attributes'])}); "
                             "prepare the cohort again to add it")
    if not judge[1].get("training_subjects"):
        print(f"warning: judge {args.judge} records no training subjects; the overlap could not be checked", file=sys.stderr)
    wanted = real.attribute(task)
    keep = [i for i, w in enumerate(wanted) if w in judge[1]["classes"]]  # items without a value are left out
    if not keep:
        raise SystemExit(f"{args.data}: no item holds one of the judge's classes {judge[1]['classes']} in '{task}'")
    predicted = dict(zip(keep, predict(judge, real.images[keep]), strict=True))  # the judge runs once

    def scored(part: list[int]) -> dict[str, dict]:
        return _accuracy_per_class([predicted[i] for i in part], [wanted[i] for i in part],
                                   [real.subjects[i] for i in part])

    per_class = scored(keep)
    by = {}
    if args.by:  # a shortcut control: the same classes within each value of another column
        values = real.attribute(args.by)
        if args.bins:
            edges = [float(e) for e in args.bins.split(",")]
            values = [_bin(float(v), edges) for v in values]
        for value in sorted({values[i] for i in keep}, key=str):
            by[f"{args.by}={value}"] = scored([i for i in keep if values[i] == value])
    print(json.dumps({"data": args.data, "split": "all" if every else split or "train", "judge": args.judge,
                      **({"by": by} if by else {}), "task": task, "items": len(keep),
                      "subjects": len({real.subjects[i] for i in keep}), "per_class": per_class}))


def _bin(value: float, edges: list[float]) -> str:
    """The range of ``edges`` that holds ``value``: ``<1``, ``1-16``, ..., ``>=100``."""
    below = [e for e in edges if e <= value]
    if not below:
        return f"<{edges[0]:g}"
    upper = [e for e in edges if e > value]
    return f"{below[-1]:g}-{upper[0]:g}" if upper else f">={below[-1]:g}"


def table(args) -> None:
    print("| trial | overrides | steps | train min | sampler | worst class | per class (AVAF/AVRF/RVAF/RVRF) | KID×1e3 (floor) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for line in (Path(args.out) / "trials.jsonl").read_text().splitlines():
        r = json.loads(line)
        for spec, res in r["results"].items():
            per = "/".join(f"{v['acc']:.2f}" for _, v in sorted(res["per_class"].items()))
            k = f"{res['kid_x1e3']} ({res['floor_kid_x1e3']})" if "kid_x1e3" in res else "-"
            sets = ", ".join(s for s in r["set"])
            print(f"| {r['name']} | {sets} | {r['steps']} | {r['train_s'] / 60:.1f}{' (busy)' if r.get('busy') else ''} "
                  f"| {spec} | {res['worst']:.2f} | {per} | {k} |")


def seeds(args) -> None:
    """One row per variant (a trial's name less its ``_sN`` seed suffix), judge, draws, steps and sampler:
    each seed's worst class (and which class it is), their mean, and the mean KID -- the numbers the
    sweep's choice rule reads. Trials without a seed suffix are left out; a repeated record is refused."""
    groups: dict[tuple, dict[int, dict]] = {}
    for line in (Path(args.out) / "trials.jsonl").read_text().splitlines():
        r = json.loads(line)
        match = re.fullmatch(r"(.+)_s(\d+)", r["name"])
        if match is None:
            continue
        variant, seed = match.group(1), int(match.group(2))
        for spec, res in r["results"].items():
            key = (variant, f"{r['judge']}, sample seed {r['sample_seed']}", r["steps"], spec)
            if seed in groups.setdefault(key, {}):
                raise SystemExit(f"{args.out}/trials.jsonl: {r['name']} is recorded twice for {key[1]}, {spec}")
            groups[key][seed] = res
    print("| variant | judge, draws | steps | sampler | worst class per training seed | mean worst | mean KID×1e3 (floor) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (variant, judge, steps, spec), rows in groups.items():
        rows = dict(sorted(rows.items()))
        worst = {sd: min(res["per_class"].items(), key=lambda kv: kv[1]["acc"]) for sd, res in rows.items()}
        kids = [res["kid_x1e3"] for res in rows.values() if "kid_x1e3" in res]
        kid = f"{np.mean(kids):.1f} ({next(iter(rows.values()))['floor_kid_x1e3']})" if kids else "-"
        per_seed = " / ".join(f"s{sd} {v['acc']:.2f} ({cls})" for sd, (cls, v) in worst.items())
        print(f"| {variant} | {judge} | {steps} | {spec} | {per_seed} | "
              f"{np.mean([res['worst'] for res in rows.values()]):.3f} | {kid} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trial")
    t.add_argument("name")
    t.add_argument("--data", required=True, help="prepared dataset the generator trains on")
    t.add_argument("--reference", required=True, help="prepared dataset of other subjects (judge, encoder, floor)")
    t.add_argument("--judge", required=True)
    t.add_argument("--encoder", default=None)
    t.add_argument("--config", default=str(Path(__file__).parents[1] / "src/uterosynth/configs/ddpm2d_demo.yaml"))
    t.add_argument("--milestones", required=True, help="comma-separated training steps")
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--sample", action="append", default=[], help="sampler:steps:guidance (repeatable)")
    t.add_argument("--per-class", type=int, default=32)
    t.add_argument("--sample-seed", type=int, default=1)
    t.add_argument("--busy", action="store_true", help="record that other jobs shared the CPU (times not comparable)")
    t.add_argument("--out", default="sweep")
    c = sub.add_parser("ceiling", help="the judge's per-class accuracy (on its own task) on real items it never saw")
    c.add_argument("--data", required=True, help="prepared DIR (its train split) or DIR:split")
    c.add_argument("--all-splits", action="store_true", help="every split of DIR (a cohort the judge never saw)")
    c.add_argument("--by", help="also per value of this manifest column (e.g. myoma_count: a subject-level shortcut)")
    c.add_argument("--bins", help="with --by a numeric column: group its values at these edges "
                                  "(e.g. 1,16,40,100 for myoma_voxels: <1, 1-16, 16-40, 40-100, >=100; each range holds its lower edge)")
    c.add_argument("--judge", required=True)
    c.add_argument("--out", default="sweep")
    tb = sub.add_parser("table")
    tb.add_argument("--out", default="sweep")
    sd = sub.add_parser("seeds", help="one row per variant: worst class per training seed, mean worst, mean KID")
    sd.add_argument("--out", default="sweep")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    {"trial": trial, "ceiling": ceiling, "table": table, "seeds": seeds}[args.cmd](args)


if __name__ == "__main__":
    main()
