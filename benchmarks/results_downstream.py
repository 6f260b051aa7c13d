"""Write the downstream result (a ``uterosynth downstream`` output folder) into docs/RESULTS.md.

    python benchmarks/results_downstream.py runs/downstream --command "uterosynth downstream ..." [--write]

One table: balanced accuracy per protocol and label budget (mean ± std over seeds) with the
paired difference to real only and its confidence interval, plus the run's size and time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SECTION = "Downstream"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def table(results: dict) -> str:
    budgets = results["budgets"]
    lines = ["| protocol | " + " | ".join(f"{100 * b:g} % of subjects" for b in budgets) + " |",
             "| --- |" + " --- |" * len(budgets)]
    for protocol in results["protocols"]:
        cells = []
        for b in budgets:
            row = next(r for r in results["summary"] if r["protocol"] == protocol["id"] and r["budget"] == b)
            ba = row["balanced_accuracy"]
            cell = f"{_pct(ba['mean'])} ± {_pct(ba['std'] or 0)}"
            diff = (row["diff_vs_real"] or {}).get("balanced_accuracy")
            if diff and diff.get("mean") is not None:
                mark = "*" if diff.get("significant") else ""
                cell += f" (Δ {100 * diff['mean']:+.1f} [{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}]{mark})"
            cells.append(cell)
        lines.append(f"| {protocol['id']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _method(results: dict) -> str:
    """How the intervals and p-values were made, as the results record it."""
    diffs = [r["diff_vs_real"]["balanced_accuracy"] for r in results["summary"]
             if (r.get("diff_vs_real") or {}).get("balanced_accuracy")]
    if not diffs:
        return "no comparison"
    d = diffs[0]
    return f"{d.get('method', 'paired t')}; {d.get('correction', 'no')} correction over {d.get('n_comparisons', 1)} comparisons"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--command", required=True, help="the command that produced the folder")
    parser.add_argument("--notes", default="", help="Markdown appended under the table")
    parser.add_argument("--section", default=SECTION, help="the docs/RESULTS.md section to replace")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = json.loads((args.folder / "results.json").read_text())
    real = results["real"]
    syn = ", ".join(f"`{n}` ({s['role']}, {s['n_items']} images)" for n, s in results["synthetic"].items())
    body = (f"Task `{results['task']}` ({', '.join(results['classes'])}); MONAI ResNet-18 ({results['spatial_dims']}D) "
            f"per protocol, tested on the {results.get('evaluated_on', 'real test split')} only ({real['n_items']['test']} images of "
            f"{real['n_subjects']['test']} subjects the generator never saw); {len(results['seeds'])} seeds; "
            f"{len(results['runs'])} trainings in {results['seconds'] / 60:.1f} min on this 2-core CPU. Synthetic sets: "
            f"{syn}. Balanced accuracy in % (mean ± std over seeds); Δ: paired difference to real only in points with "
            f"its {100 * results['confidence_interval']['level']:g} % interval ({_method(results)}); * significant "
            f"after the correction across the grid.\n\n{table(results)}\n\n"
            f"Command: `{args.command}`\n\n{args.notes}".rstrip() + "\n")
    print(body)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_common import update_section

        update_section("docs/RESULTS.md", args.section, body)


if __name__ == "__main__":
    main()
