"""Pre-registered fidelity check: do several training seeds' samples show the requested class?

Reads synthetic sets already sampled (one per training seed, fresh draws: a sample seed no tuning
ever used), classifies them with a judge trained on a disjoint cohort, and tests each set against
a bar fixed before the run: every class's accuracy ≥ ``--bar`` and the lower end of its 95 % Wilson
interval ≥ ``--lower-bar``. Beside it, the judge itself on real held-out items of subjects it never
saw, plain and under its shortcut controls (blur, padding bands; ``uterosynth.models.judge_controls``),
with intervals over subjects. Volumes shown to a 2D judge are judged on their central sagittal
slice. ``--write`` replaces the section (``--section``) in docs/RESULTS.md.

    python benchmarks/results_fidelity.py --judge DEMO/08_judge --real prepF1:train \
        --samples "seed 0=samples_seed0" --samples "seed 1=samples_seed1" --samples "seed 2=samples_seed2" \
        --tries "…" --command "…" --write
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SECTION = "Conditional diffusion on the corrected pipeline"


def class_accuracy(wanted, got) -> dict:
    """Per requested class (a draw that requests none, ``None``, is left out): correct, n, accuracy and
    the Wilson 95 % interval of the judge's answers ``got``."""
    from uterosynth.core.stats import wilson_ci

    hits: dict[str, list[bool]] = defaultdict(list)
    for w, g in zip(wanted, got, strict=True):
        if w is not None:
            hits[w].append(w == g)
    return {c: {"correct": int(sum(v)), "n": len(v), "accuracy": sum(v) / len(v), "wilson95": wilson_ci(sum(v), len(v))}
            for c, v in sorted(hits.items())}


def judge_set(predict, folder: Path, attribute: str, view=lambda images: images) -> dict:
    """Per requested class: correct, n, accuracy and Wilson interval of the judge on a synthetic set, and
    how many of its items carry a padding-like band (``judge_controls.edge_bands``: where the band
    control's sensitivity could matter).

    ``view`` turns the set's items into what the judge sees (``judge_view``: volumes → central slice).
    """
    from uterosynth.data.synthetic import SyntheticSet
    from uterosynth.models.judge import judge_view
    from uterosynth.models.judge_controls import edge_bands

    sset = SyntheticSet.load(folder)
    wanted = [r["condition"][attribute] for r in sset.records]
    seen = view(sset.stack())
    got = predict(seen)
    per_class = class_accuracy(wanted, got)
    return {"folder": str(folder), "info": {k: sset.info.get(k) for k in ("sampler", "guidance", "seed", "model")},
            "per_class": per_class, "worst": min(v["accuracy"] for v in per_class.values()),
            "edge_band_items": int(edge_bands(judge_view(seen, 2)).sum())}  # a volume: its central slice


def passes(result: dict, bar: float, lower_bar: float) -> bool:
    return all(v["accuracy"] >= bar and v["wilson95"][0] >= lower_bar for v in result["per_class"].values())


def judge_on_real(predict, real: str, attribute: str, blur: list[float], band_fraction: float,
                  view=lambda images: images) -> dict:
    """The judge's accuracy on real items and under its controls, each with a subject-level interval."""
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref
    from uterosynth.evaluation.resampling import cluster_bootstrap_mean
    from uterosynth.models.judge_controls import judge_controls

    root, split = parse_dataset_ref(real)
    ds = PreparedDataset.load(root, split or "test")
    known = [i for i, r in enumerate(ds.rows) if r[attribute] != ""]  # an item without a value is left out
    rows = [ds.rows[i] for i in known]
    subjects = [r["subject"] for r in rows]
    out = judge_controls(predict, view(ds.stack()[known]), [r[attribute] for r in rows], blur_sigmas=blur,
                         band_fraction=band_fraction)

    labels = np.asarray([r[attribute] for r in rows])

    def mean_ci(values: np.ndarray, keep: np.ndarray | None = None) -> list[float]:
        keep = np.ones(len(subjects), bool) if keep is None else keep
        return list(cluster_bootstrap_mean(np.asarray(values, dtype=float)[keep], np.asarray(subjects)[keep],
                                           n_boot=2000, seed=0)[:3])

    margins = angle_margins(rows) if attribute == "orientation" else None
    by_margin = ({label: {"items": int(keep.sum()), "accuracy": mean_ci(out["correct"], keep)}
                  for label, keep in margin_bins(margins).items()} if margins is not None else {})
    padded = sum(float(r.get("pad_fraction") or 0) > 0 for r in rows)
    per_class = {c: mean_ci(out["correct"], labels == c) for c in sorted(set(labels))}
    return {"source": real, "items": len(subjects), "subjects": len(set(subjects)), "padded_items": padded,
            "accuracy": mean_ci(out["correct"]), "per_class": per_class, "by_margin": by_margin,
            "blur": {f"{s:g}": mean_ci(v) for s, v in out["blur"].items()},
            "band_flips": {side: mean_ci(v) for side, v in out["band_flips"].items()},
            "occlusion_flips": {side: mean_ci(v) for side, v in out["occlusion_flips"].items()},
            "band_fraction": band_fraction}


MARGIN_EDGES = (0.0, 5.0, 10.0, 20.0)


def angle_margins(rows: list[dict]) -> np.ndarray | None:
    """Per item, how far its orientation lies from a class boundary: min(|version|, |flexion|) in
    degrees (``None`` when the manifest has no angles, as real scans do not)."""
    try:
        return np.asarray([min(abs(float(r["version_angle"])), abs(float(r["flexion_angle"]))) for r in rows])
    except (KeyError, TypeError, ValueError):
        return None


def margin_bins(margins: np.ndarray, edges: tuple[float, ...] = MARGIN_EDGES) -> dict[str, np.ndarray]:
    """Masks of the items in each margin bin, labelled ``"0-5°"`` … ``">= 20°"`` (empty bins left out)."""
    bounds = [*edges, np.inf]
    bins = {(f"{lo:g}-{hi:g}°" if np.isfinite(hi) else f">= {lo:g}°"): (margins >= lo) & (margins < hi)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)}
    return {label: keep for label, keep in bins.items() if keep.any()}


def _sigmas(text: str) -> list[float]:
    """``--blur``: one or more positive sigmas; the blur control is part of every report."""
    try:
        sigmas = [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sigmas in pixels, got {text!r}") from None
    if not sigmas or min(sigmas) <= 0:
        raise argparse.ArgumentTypeError(f"sigmas must be positive, got {text!r}")
    return sigmas


def _pct(v: list[float] | tuple[float, ...]) -> str:
    return f"{100 * v[0]:.0f} % [{100 * v[1]:.0f}, {100 * v[2]:.0f}]"


def section(results: dict[str, dict], real: dict, args: argparse.Namespace) -> str:
    classes = sorted({c for r in results.values() for c in r["per_class"]})
    head = ("| training seed | " + " | ".join(classes) + " | worst class | bar |\n| --- | "
            + " | ".join("---" for _ in classes) + " | --- | --- |")
    rows = []
    for name, r in results.items():
        cells = [_pct((v["accuracy"], *v["wilson95"])) + f" (n {v['n']})" for v in (r["per_class"][c] for c in classes)]
        verdict = "**passes**" if passes(r, args.bar, args.lower_bar) else "**fails**"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {100 * r['worst']:.1f} % | {verdict} |")
    n_pass = sum(passes(r, args.bar, args.lower_bar) for r in results.values())
    blur = " · ".join(f"σ = {s} px: {_pct(v)}" for s, v in real["blur"].items())
    per_class_real = " · ".join(f"{c} {_pct(v)}" for c, v in real.get("per_class", {}).items())
    by_margin = " · ".join(f"{label} {_pct(v['accuracy'])} ({v['items']} items)"
                           for label, v in real.get("by_margin", {}).items())
    bands = " · ".join(f"{side}: {_pct(v)} (mean-valued: {_pct(real['occlusion_flips'][side])})"
                       for side, v in real["band_flips"].items())
    return (
        f"The bar, fixed before this run: every requested class judged right in ≥ {100 * args.bar:.0f} % of its "
        f"samples, with the lower end of the 95 % Wilson interval ≥ {100 * args.lower_bar:.0f} %, for each training "
        f"seed. Samples are fresh draws (a sample seed that no tuning used). The judge was trained on a phantom cohort "
        f"that shares no subject with the generator. Tries before this run: {args.tries}\n\n"
        f"{head}\n" + "\n".join(rows) + f"\n\n**{n_pass} of {len(results)} training seeds pass.**\n\n"
        f"The judge on real items of {real['subjects']} subjects it never saw ({real['items']} items, `{real['source']}`), "
        f"intervals over subjects:\n\n"
        f"- accuracy: {_pct(real['accuracy'])}" + (f"; per class: {per_class_real}" if per_class_real else "") + ";\n"
        + (f"- by distance of the item's angles from a class boundary (min of |version|, |flexion|): {by_margin};\n"
           if by_margin else "")
        + f"- items with any padding (the window left the field of view): {real['padded_items']} of {real['items']}, "
        f"so the crop geometry has no class to give away and a band swap between real items changes nothing;\n"
        f"- blur control (accuracy on the items blurred): {blur};\n"
        f"- band control (answers that change when padding bands, each {100 * real['band_fraction']:.0f} % of the side, "
        f"are pasted top and bottom, or left and right; in brackets the same bands at each item's mean intensity, "
        f"which hide the same anatomy): {bands}.\n\n"
        + (f"{args.notes}\n\n" if getattr(args, "notes", "") else "")
        + f"Commands:\n\n```bash\n{args.command}\n```\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", action="append", required=True, help="NAME=SYNTHETIC_SET (repeatable, one per training seed)")
    parser.add_argument("--judge", type=Path, required=True)
    parser.add_argument("--real", required=True, help="prepared DIR:split of subjects the judge never saw")
    parser.add_argument("--attribute", default="orientation")
    parser.add_argument("--bar", type=float, default=0.90)
    parser.add_argument("--lower-bar", type=float, default=0.85)
    parser.add_argument("--blur", default="2,4", type=_sigmas, help="blur-control sigmas in pixels, comma-separated")
    parser.add_argument("--band-fraction", type=float, default=0.2)
    parser.add_argument("--tries", default="not stated.")
    parser.add_argument("--command", default="python benchmarks/results_fidelity.py …")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--about", default="", help="a paragraph on the data and models, put first")
    parser.add_argument("--notes", default="", help="what the numbers mean, put after them")
    parser.add_argument("--section", default=SECTION, help="the docs/RESULTS.md section --write replaces")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/RESULTS.md")
    args = parser.parse_args()
    from uterosynth.downstream.judge import load_classifier, predict
    from uterosynth.models.judge import judge_view

    loaded = load_classifier(args.judge)
    judge = lambda images: predict(loaded, images)  # noqa: E731
    view = lambda images: judge_view(images, int(loaded[1]["spatial_dims"]))  # noqa: E731
    results = {}
    for spec in args.samples:
        name, _, folder = spec.partition("=")
        results[name] = judge_set(judge, Path(folder), args.attribute, view)
    real = judge_on_real(judge, args.real, args.attribute, args.blur, args.band_fraction,
                         view)
    text = (args.about + "\n\n" if args.about else "") + section(results, real, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"sets": results, "judge_on_real": real, "bar": args.bar,
                                         "lower_bar": args.lower_bar}, indent=1))
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_common import update_section

        update_section(Path("docs/RESULTS.md"), args.section, text)


if __name__ == "__main__":
    main()
