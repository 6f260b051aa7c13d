"""Does a conditional diffusion model generate the class it is asked for? Judged independently.

Samples ``--per-class`` items for every class combination of the model (or reads a synthetic
set already sampled with ``--samples``), classifies them with the frozen judge
(``uterosynth downstream train-classifier``), and reports per requested class the fraction the
judge assigns to that class, next to the judge's own accuracy on the real test split. Writes a
sample grid (one row per class) and, with ``--write``, a row in docs/RESULTS.md.

    python benchmarks/results_diffusion.py --model runs/ldm2d --judge runs/judge2d --per-class 12 \
        --name "2D LDM" --grid docs/images/ldm2d_samples.png --write
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

SECTION = "Conditional diffusion on the phantom"


def sample(model: Path, out: Path, args: argparse.Namespace) -> Path:
    from uterosynth.sampling.generate import SampleConfig, generate

    cfg = SampleConfig.model_validate({"per_class": args.per_class, "seed": args.seed, "guidance": args.guidance,
                                       "sampler": {"name": args.sampler, "steps": args.steps}})
    generate(model, cfg, out)
    return out


def real_accuracy(real: str, classifier: Path, attribute: str, judge_dims: int) -> tuple[float, int]:
    """The judge's accuracy on real items (``DIR:split``), fed exactly as the samples are."""
    from uterosynth.data.manifest import PreparedDataset, parse_dataset_ref
    from uterosynth.downstream.judge import predict
    from uterosynth.models.judge import judge_view

    root, split = parse_dataset_ref(real)
    ds = PreparedDataset.load(root, split or "test")
    got = predict(classifier, judge_view(ds.stack(), judge_dims))
    return sum(g == r[attribute] for g, r in zip(got, ds.rows, strict=True)) / len(ds.rows), len(ds.rows)


def judge(samples: Path, classifier: Path, attribute: str, judge_dims: int) -> dict:
    from uterosynth.data.synthetic import SyntheticSet
    from uterosynth.downstream.judge import predict
    from uterosynth.models.judge import judge_view

    sset = SyntheticSet.load(samples)
    wanted = [r["condition"][attribute] for r in sset.records]
    got = predict(classifier, judge_view(sset.stack(), judge_dims))
    per_class: dict[str, list[bool]] = defaultdict(list)
    for w, g in zip(wanted, got, strict=True):
        per_class[w].append(w == g)
    return {"per_class": {c: {"n": len(v), "fraction": sum(v) / len(v)} for c, v in sorted(per_class.items())},
            "confusion": {w: dict(Counter(g for ww, g in zip(wanted, got, strict=True) if ww == w)) for w in sorted(per_class)},
            "n": len(wanted), "info": sset.info, "records": sset.records, "images": sset.stack()}


def grid(result: dict, attribute: str, path: Path, columns: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(result["per_class"])
    fig, axes = plt.subplots(len(classes), columns, figsize=(1.3 * columns, 1.4 * len(classes)), dpi=110)
    axes = np.atleast_2d(axes)
    for r, cls in enumerate(classes):
        idx = [i for i, rec in enumerate(result["records"]) if rec["condition"][attribute] == cls][:columns]
        for c in range(columns):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                image = result["images"][idx[c]]
                plane = image if image.ndim == 2 else image[:, :, image.shape[2] // 2]
                ax.imshow(plane, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(cls, fontsize=8, loc="left")
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="diffusion run folder (sampled here)")
    parser.add_argument("--samples", type=Path, help="an existing synthetic set instead of --model")
    parser.add_argument("--judge", type=Path, required=True)
    parser.add_argument("--attribute", default="orientation")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", default="3.0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="model")
    parser.add_argument("--trained", default="", help="how it was trained (for the table)")
    parser.add_argument("--real", help="prepared DIR:split to state the judge's accuracy on, fed like the samples")
    parser.add_argument("--grid", type=Path)
    parser.add_argument("--write", action="store_true", help="add/replace this model's row in docs/RESULTS.md")
    args = parser.parse_args()
    from uterosynth.diffusion.guidance import parse_guidance

    args.guidance = parse_guidance(args.guidance)
    judge_info = json.loads((args.judge / "classifier.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        samples = args.samples or sample(args.model, Path(tmp) / "samples", args)
        result = judge(samples, args.judge, args.attribute, judge_info["spatial_dims"])
    if args.real:
        acc, n = real_accuracy(args.real, args.judge, args.attribute, judge_info["spatial_dims"])
        judge_info = {**judge_info, "test_accuracy": acc, "n_test_items": n, "checked_on": args.real}
    if args.grid:
        grid(result, args.attribute, args.grid, columns=8)
    print(json.dumps({k: result[k] for k in ("per_class", "confusion", "n")}, indent=1))
    worst = min(v["fraction"] for v in result["per_class"].values())
    cells = " · ".join(f"{c} {100 * v['fraction']:.0f} % ({v['n']})" for c, v in result["per_class"].items())
    sampler = result["info"].get("sampler", {})
    guidance = result["info"].get("guidance")
    if isinstance(guidance, dict):
        guidance = ", ".join(f"{k}={v:g}" for k, v in guidance.items())
    held_out = f"{100 * judge_info['test_accuracy']:.1f} % of {judge_info['n_test_items']}"
    row = (f"| {args.name} | {args.trained} | {sampler.get('name', args.sampler)} {sampler.get('steps', args.steps)}, "
           f"guidance {guidance} | {held_out} | {cells} | **{100 * worst:.0f} %** |")
    print(row)
    if args.write:
        _write_row(args.name, row, judge_info)


def _write_row(name: str, row: str, judge_info: dict) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import re

    from benchmarks_common import update_section

    path = Path("docs/RESULTS.md")
    text = path.read_text()
    found = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    head = ("| model | training | sampler | judge on real held-out items | judged as the requested class (n) | worst class |\n"
            "| --- | --- | --- | --- | --- | --- |")
    rows = [line for line in (found.group(1).splitlines() if found else []) if line.startswith("| ") and
            not line.startswith(("| model", "| ---", f"| {name} |"))]
    intro = (f"Judge: the frozen `{judge_info.get('task')}` classifier of `uterosynth downstream train-classifier`, "
             "trained on real phantom images only; volumes are judged on their central sagittal slice. "
             "Rows are added by `benchmarks/results_diffusion.py`.")
    notes = found.group(1).split("<!-- notes -->", 1)[1] if found and "<!-- notes -->" in found.group(1) else ""
    body = f"{intro}\n\n{head}\n" + "\n".join(sorted([*rows, row])) + f"\n\n<!-- notes -->{notes}"
    update_section(path, SECTION, body)


if __name__ == "__main__":
    main()
