"""Do two audits flag differently because their thresholds differ? Each set's draws against every audit's thresholds.

An audit sets its thresholds on its own training cohort (leave-one-subject-out, the real items'
upper quantile), so a larger cohort, where real items of different patients are closer, gets higher
thresholds. A set audited against a larger cohort could then read "fewer copies" because the bar
rose, not because the draws moved away from their patients (a shortcut). This control takes each
set's nearest-training similarities as its own audit measured them and counts the draws above each
audit's thresholds, per measure and for any measure, with Wilson 95 % intervals; it also prints the
quartiles of each set's nearest similarities. The similarities stay those of each set's own
training cohort: only the bar is swapped.

    python benchmarks/audit_threshold_swap.py --audit n720=CELL720/audit --audit n240=CELL240/audit
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from uterosynth.core.stats import wilson_ci
from uterosynth.data.audit_file import read_audit


def similarities(audit: Mapping) -> dict[str, np.ndarray]:
    """Per measure (``mode/measure``), each draw's nearest-training similarity, in the draws' order."""
    out: dict[str, list[float]] = {}
    for sample in audit["samples"]:
        for mode, measures in sample["measures"].items():
            for name, m in measures.items():
                sim = m["similarity"]   # null: not finite (never above a bar)
                out.setdefault(f"{mode}/{name}", []).append(-np.inf if sim is None else float(sim))
    return {k: np.asarray(v) for k, v in out.items()}


def thresholds(audit: Mapping) -> dict[str, float]:
    """Per measure (``mode/measure``), the audit's calibrated threshold."""
    return {f"{mode}/{name}": np.inf if t is None else float(t)
            for mode, by_name in audit["calibration"]["thresholds"].items() for name, t in by_name.items()}


def above(sims: Mapping[str, np.ndarray], bar: Mapping[str, float]) -> dict[str, int]:
    """How many draws exceed ``bar`` on each measure both share, and on any of them."""
    shared = sorted(set(sims) & set(bar))
    if not shared:
        raise ValueError("the two audits share no measure")
    over = {k: sims[k] > bar[k] for k in shared}
    return {**{k: int(v.sum()) for k, v in over.items()}, "any": int(np.logical_or.reduce(list(over.values())).sum())}


def _count(k: int, n: int) -> str:
    low, high = wilson_ci(k, n)
    return f"{k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", action="append", required=True, metavar="NAME=DIR", help="an audit folder (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    if bad := [a for a in args.audit if "=" not in a]:
        parser.error(f"--audit {bad[0]}: expected NAME=DIR")
    audits = {name: read_audit(folder) for name, folder in (a.split("=", 1) for a in args.audit)}
    result: dict = {}
    for name, audit in audits.items():
        sims = similarities(audit)
        n = len(audit["samples"])
        print(f"{name}: {n} draws, {audit['summary']['flagged']} flagged by its audit, "
              f"{audit['summary']['training_subjects']} training subjects; thresholds {thresholds(audit)}")
        for k, v in sims.items():
            q = np.quantile(v, [0.25, 0.5, 0.75])
            print(f"  {k}: nearest similarity quartiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}, largest {v.max():.3f}")
        for bar_name, bar_audit in audits.items():
            counts = above(sims, thresholds(bar_audit))
            result.setdefault(name, {})[bar_name] = {"n": n, **counts}
            print(f"  above {bar_name}'s thresholds: " + "; ".join(f"{k} {_count(c, n)}" for k, c in counts.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
