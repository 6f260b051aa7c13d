"""Does the fidelity verdict depend on the judge? Several judges score the same synthetic sets.

For each judge: its accuracy per class on real items of subjects it never saw (intervals over
subjects; refused when it trained on any of them), and each synthetic set's accuracy per requested
class with the verdict of the fidelity bar (``results_fidelity.passes``) and, beside it, its
difference from the judge's accuracy on each real cohort (``against_real``: a bar of 90 % asks
more than the real items meet where the judge reads them lower; ``--margin`` reads it as a
non-inferiority bar). A judge given as
``NAME=DIR1+DIR2+...`` averages the class probabilities of several judges (a panel). A 2D judge
reads volumes, synthetic or real, on their central sagittal slice.

    python benchmarks/judge_panel.py --judge "demo recipe=runs/judge2" \\
        --judge "three seeds=runs/judge2+runs/judgeA_s1+runs/judgeA_s2" \\
        --samples "pixel s14=runs/samples_ddpm64_gpu_s14" --real runs/prepF1:train --real runs/prepV2:train
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("results_fidelity", Path(__file__).with_name("results_fidelity.py"))
fidelity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fidelity)


def panel(folders: list[str], attribute: str):
    """``(predict, metas)``: labels from the mean class probabilities of the judges in ``folders``, each a
    judge of ``attribute``."""
    from uterosynth.downstream.judge import load_classifier, predict_logits_judge
    from uterosynth.models.judge import judge_view

    judges = [load_classifier(f) for f in folders]
    meta = judges[0][1]
    for folder, (_, m) in zip(folders, judges, strict=True):
        if m["task"] != attribute:
            raise SystemExit(f"{folder}: a judge of {m['task']}, not of --attribute {attribute}")
        if not m.get("training_subjects"):
            print(f"warning: {folder} records no training subjects; its overlap with the real cohorts "
                  "cannot be checked", file=sys.stderr)
        if (m["task"], m["classes"]) != (meta["task"], meta["classes"]):
            raise SystemExit(f"{folder}: judges task {m['task']} {m['classes']}, the first {meta['task']} {meta['classes']}")

    def predict(images) -> list[str]:
        images = judge_view(images, int(meta["spatial_dims"]))  # volumes: their central sagittal slice
        prob = sum(torch.softmax(predict_logits_judge(j, images).float(), dim=1) for j in judges)
        return [meta["classes"][i] for i in prob.argmax(dim=1).tolist()]

    return predict, [m for _, m in judges]


def read_as(predict, folder: Path) -> dict:
    """What the judge reads a set drawn *without* the attribute as a condition as: per class, count, share and
    Wilson interval (the base rate a conditioned set is compared with)."""
    from uterosynth.core.stats import wilson_ci
    from uterosynth.data.synthetic import SyntheticSet

    got = predict(SyntheticSet.load(folder).stack())
    counts = {c: got.count(c) for c in sorted(set(got))}
    return {"folder": str(folder), "n": len(got),
            "read_as": {c: {"count": k, "share": k / len(got), "wilson95": wilson_ci(k, len(got))} for c, k in counts.items()}}


def judge_folders(spec: str) -> list[str]:
    """The judge folders of ``DIR`` or ``DIR1+DIR2+...``; a folder whose own name holds a ``+`` (a study
    cell such as ``conditioning-labels+text_seed-0``) is one judge."""
    return [spec] if Path(spec).is_dir() else spec.split("+")


def against_real(sample_per_class: dict, real_per_class: dict) -> dict[str, list[float]]:
    """Per class: the set's accuracy minus the judge's on real items, ``[difference, low, high]``
    (:func:`~uterosynth.core.stats.difference_interval` of the Wilson interval over samples and the
    real items' interval over subjects)."""
    from uterosynth.core.stats import difference_interval

    return {cls: list(difference_interval(r["accuracy"], r["wilson95"], real_per_class[cls][0], real_per_class[cls][1:]))
            for cls, r in sample_per_class.items() if cls in real_per_class}


def non_inferior(differences: dict[str, list[float]], margin: float) -> bool:
    """Whether every class's difference from the real items has its lower end at or above ``-margin``
    (a non-inferiority bar: fix the margin before the samples are drawn)."""
    return all(low >= -margin for _, low, _ in differences.values())


def check_unseen(metas: list[dict], real: str, name: str) -> None:
    """Refuse a real cohort any judge of the panel trained on."""
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref
    from uterosynth.data.subjects import check_disjoint

    root, split = parse_dataset_ref(real)
    subjects = {r["subject"] for r in PreparedDataset.load(root, split or "test").rows}
    for meta in metas:
        check_disjoint(meta.get("training_subjects") or {}, subjects, what=f"judge {name} vs {real}", allow_overlap=False)


def _points(share: float) -> str:
    """A difference of shares in signed percentage points, with no "-0"."""
    return f"{int(round(100 * share)):+d}"


def table(results: dict, bar: float, lower_bar: float, margin: float | None = None) -> str:
    """Rows: each real cohort per class, then each synthetic set's worst class and verdict, and its difference
    from each real cohort (with the non-inferiority verdict when ``margin`` is given); a column per judge."""
    judges = list(results)
    lines = ["| | " + " | ".join(judges) + " |", "| --- |" + " --- |" * len(judges)]
    first = results[judges[0]]
    for real in first["real"]:
        for cls in first["real"][real]["per_class"]:
            cells = [fidelity._pct(results[j]["real"][real]["per_class"][cls]) for j in judges]
            lines.append(f"| real {cls}, {real} | " + " | ".join(cells) + " |")
    for name in first["sets"]:
        cells = []
        for j in judges:
            res = results[j]["sets"][name]
            worst = min(res["per_class"], key=lambda c: res["per_class"][c]["accuracy"])
            verdict = "passes" if fidelity.passes(res, bar, lower_bar) else "fails"
            cells.append(f"{100 * res['worst']:.0f} % {worst}, {verdict}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append(f"| {name}, items with an edge band | "
                     + " | ".join(f"{results[j]['sets'][name]['edge_band_items']}" for j in judges) + " |")
        for real in first["real"]:
            cells = []
            for j in judges:
                differences = results[j]["sets"][name]["against_real"][real]
                cell = ", ".join(f"{c} {_points(d)} [{_points(lo)}, {_points(hi)}]" for c, (d, lo, hi) in differences.items())
                if margin is not None:
                    shown = "non-inferior" if non_inferior(differences, margin) else "non-inferiority not shown"
                    cell += f"; {shown} at a margin of {100 * margin:g} points"
                cells.append(cell)
            lines.append(f"| {name} minus real, {real} | " + " | ".join(cells) + " |")
    for name in first.get("unconditioned", {}):
        cells = [", ".join(f"{100 * v['share']:.0f} % {c}" for c, v in results[j]["unconditioned"][name]["read_as"].items())
                 for j in judges]
        lines.append(f"| {name} (not conditioned on it), read as | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from uterosynth.models.judge import judge_view

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", action="append", required=True, help="NAME=DIR or NAME=DIR1+DIR2+... (repeatable)")
    parser.add_argument("--samples", action="append", required=True, help="NAME=SYNTHETIC_SET (repeatable)")
    parser.add_argument("--unconditioned", action="append", default=[],
                        help="NAME=SYNTHETIC_SET drawn without --attribute as a condition: the share read as each "
                             "class, the base rate beside the conditioned sets (repeatable)")
    parser.add_argument("--real", action="append", required=True, help="prepared DIR:split no judge saw (repeatable)")
    parser.add_argument("--attribute", default="orientation")
    parser.add_argument("--bar", type=float, default=0.90)
    parser.add_argument("--lower-bar", type=float, default=0.85)
    parser.add_argument("--margin", type=float,
                        help="non-inferiority margin (e.g. 0.05): a set is non-inferior to a real cohort when every "
                             "class's difference from it has its lower end at or above -MARGIN; fix it before drawing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.margin is not None and not 0 <= args.margin < 1:
        parser.error(f"--margin {args.margin}: a share between 0 and 1 (0.05 is 5 points)")
    results = {}
    for spec in args.judge:
        name, _, folders = spec.partition("=")
        folders = judge_folders(folders)
        predict, metas = panel(folders, args.attribute)
        for real in args.real:
            check_unseen(metas, real, name)
        dims = int(metas[0]["spatial_dims"])
        results[name] = {
            "judges": folders,
            "real": {real: fidelity.judge_on_real(predict, real, args.attribute, [2.0], 0.2,
                                                  view=lambda images, dims=dims: judge_view(images, dims))
                     for real in args.real},  # volumes: their central sagittal slice, as the samples
            "sets": {s.partition("=")[0]: fidelity.judge_set(predict, Path(s.partition("=")[2]), args.attribute)
                     for s in args.samples},
            "unconditioned": {s.partition("=")[0]: read_as(predict, Path(s.partition("=")[2])) for s in args.unconditioned},
        }
        for res in results[name]["sets"].values():
            res["against_real"] = {real: against_real(res["per_class"], r["per_class"])
                                   for real, r in results[name]["real"].items()}
            if args.margin is not None:
                res["non_inferior"] = {"margin": args.margin, **{real: non_inferior(d, args.margin)
                                                                 for real, d in res["against_real"].items()}}
    print(table(results, args.bar, args.lower_bar, args.margin))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
