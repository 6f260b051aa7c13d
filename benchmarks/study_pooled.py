"""Judge readings of a finished study, per cell and pooled over its training seeds.

    python benchmarks/study_pooled.py runs/study_conditioning_cpu \
        [--better conditioning-labels+text --worse conditioning-labels --margin 0.05]

For every cell: each judge's per-class accuracy on the samples (correct / n, Wilson 95 % interval)
and its worst class. Then, per combination of axis values (a cell's name less its seed), the counts
summed over the training seeds (an exploratory
reading: the pooled Wilson interval ignores seed-to-seed variation) and, with ``--better`` and
``--worse``, the gain of the first over the second on each judge's worst class with its MOVER
interval, read against ``--margin`` as the study reads an "at least as good" claim.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from uterosynth.core.stats import difference_interval, wilson_ci
from uterosynth.data.evaluation_results import METRICS_FILE, read_evaluation


def _classes(evaluation_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """attribute -> class -> (correct, n) of the synthetic set, for the judge and every other judge."""
    evaluation = read_evaluation(evaluation_dir)
    judges = {(evaluation.judge or {}).get("task"): None, **{j["task"]: j["task"] for j in evaluation.other_judges}}
    return {attribute: {c.cls: (c.correct, c.n) for c in scored} for attribute, key in judges.items()
            if attribute and (scored := evaluation.judge_accuracy(task=key)) is not None}


def _worst(classes: dict[str, tuple[int, int]]) -> tuple[str, int, int, float, float, float]:
    name, (k, n) = min(classes.items(), key=lambda item: item[1][0] / item[1][1])
    low, high = wilson_ci(k, n)
    return name, k, n, k / n, low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--better", help="a combination, e.g. conditioning-labels+text")
    parser.add_argument("--worse", help="the combination it is compared with")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--json", type=Path, help="write the readings here")
    args = parser.parse_args()
    document = json.loads((args.study / "study.json").read_text())
    pooled: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: [0, 0])))
    report: dict = {"cells": {}, "pooled": {}, "gains": {}}
    for cell in document["cells"]:
        evaluation_dir = args.study / "cells" / cell["name"] / "evaluation"
        if not (evaluation_dir / METRICS_FILE).is_file():
            print(f"{cell['name']}: not measured ({cell['status']})")
            continue
        readings = _classes(evaluation_dir)
        report["cells"][cell["name"]] = readings
        value = cell["name"].rsplit("_seed-", 1)[0]
        for attribute, classes in readings.items():
            for c, (k, n) in classes.items():
                pooled[value][attribute][c][0] += k
                pooled[value][attribute][c][1] += n
            name, k, n, v, low, high = _worst(classes)
            every = ", ".join(f"{c} {ck}/{cn}" for c, (ck, cn) in sorted(classes.items()))
            print(f"{cell['name']:40s} {attribute:15s} worst {name} {v:.3f} [{low:.3f}, {high:.3f}]  ({every})")
    for value, attributes in pooled.items():
        for attribute, classes in attributes.items():
            counts = {c: (k, n) for c, (k, n) in classes.items()}
            report["pooled"].setdefault(value, {})[attribute] = counts
            name, k, n, v, low, high = _worst(counts)
            print(f"pooled {value:33s} {attribute:15s} worst {name} {k}/{n} = {v:.3f} [{low:.3f}, {high:.3f}]")
    if args.better and args.worse:
        for attribute in pooled[args.better]:
            b, w = _worst(report["pooled"][args.better][attribute]), _worst(report["pooled"][args.worse][attribute])
            gain, low, high = difference_interval(b[3], b[4:], w[3], w[4:])
            holds = "holds" if low > -args.margin else "fails" if high < -args.margin else "undecided"
            report["gains"][attribute] = {"value": gain, "ci_low": low, "ci_high": high, "reading": holds}
            print(f"pooled gain {args.better} - {args.worse} {attribute:15s} {gain:+.3f} [{low:+.3f}, {high:+.3f}]"
                  f" against -{args.margin:g}: {holds}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
