"""Does a set's condition fidelity come from its near-copies? Judge readings of the flagged and unflagged draws apart.

A generator that reproduces its training slices shows the requested class because the copied
patient had it, so a high judge accuracy can come from copying (a shortcut), as a low KID can
(``kid_by_audit.py``). This control splits each sample set by its memorisation audit
(``audit.json`` of that very set: the flagged draws) and reads, per requested class, the judge's accuracy on all
draws, on the unflagged draws and on the flagged draws, each with its Wilson 95 % interval. A
judge trained on the generator's subjects is refused.

    python benchmarks/judge_by_audit.py --judge myoma=runs/judge_myoma --judge orientation=runs/judge \\
        --set "8000 s0=CELL/samples:CELL/audit" --set "2000 s0=CELL2/samples:CELL2/audit"
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

_spec = importlib.util.spec_from_file_location("judge_panel", Path(__file__).with_name("judge_panel.py"))
judge_panel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(judge_panel)

PARTS = ("all", "unflagged", "flagged")


def reading_by_part(wanted: Sequence[str | None], got: Sequence[str], flagged: set[int]) -> dict[str, dict[str, dict]]:
    """Per part (all, unflagged, flagged draws) and requested class: correct, n, accuracy and Wilson
    interval. ``flagged``: positions in the set; a draw that requests no class (``None``) is left out."""
    if len(wanted) != len(got):
        raise ValueError(f"{len(wanted)} requested classes for {len(got)} judge answers")
    if flagged and max(flagged) >= len(wanted):
        raise ValueError(f"the audit flags draw {max(flagged)}; the set has {len(wanted)} draws (another set's audit?)")
    parts = {"all": range(len(wanted)), "unflagged": [i for i in range(len(wanted)) if i not in flagged],
             "flagged": sorted(flagged)}
    return {part: judge_panel.fidelity.class_accuracy([wanted[i] for i in index], [got[i] for i in index])
            for part, index in parts.items()}


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    low, high = r["wilson95"]
    return f"{r['correct']}/{r['n']} = {r['accuracy']:.2f} [{low:.2f}, {high:.2f}]"


def table(results: dict[str, dict[str, dict]]) -> str:
    """One row per set, judge and requested class: all, unflagged and flagged draws."""
    lines = ["| set | attribute | class | all draws | unflagged | flagged |", "| --- | --- | --- | --- | --- | --- |"]
    for name, by_judge in results.items():
        for attribute, parts in by_judge.items():
            for cls in parts["all"]:
                cells = [_cell(parts[p].get(cls)) for p in PARTS]
                lines.append(f"| {name} | {attribute} | {cls} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from uterosynth.data.audit_file import check_audit_of, read_audit
    from uterosynth.data.manifest import label_value
    from uterosynth.data.subjects import check_models_disjoint
    from uterosynth.data.synthetic import SyntheticSet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", action="append", required=True, metavar="ATTRIBUTE=DIR",
                        help="a judge of that attribute (repeatable)")
    parser.add_argument("--set", action="append", required=True, metavar="NAME=SAMPLES:AUDIT")
    parser.add_argument("--json", type=Path, help="also write the readings here")
    args = parser.parse_args()

    judges = {}
    for spec in args.judge:
        attribute, _, folder = spec.partition("=")
        judges[attribute] = judge_panel.panel([folder], attribute)
    results: dict[str, dict[str, dict]] = {}
    for spec in args.set:
        name, _, rest = spec.partition("=")
        samples, _, audit = rest.rpartition(":")
        sset = SyntheticSet.load(Path(samples))
        generator = (sset.info.get("model") or {}).get("training_subjects")
        record = read_audit(audit)
        check_audit_of(record, sset.root, audit)
        indices = set(record["summary"]["flagged_indices"])   # the draws' own indices, not positions
        flagged = {k for k, r in enumerate(sset.records) if r["index"] in indices}
        images = sset.stack()
        results[name] = {}
        for attribute, (predict, metas) in judges.items():
            for meta in metas:  # the judge must not have learnt from the generator's patients
                check_models_disjoint(meta.get("training_subjects"), generator,
                                      what=f"judge of {attribute} vs the generator of {samples}")
            wanted = [label_value((r.get("condition") or {}).get(attribute)) for r in sset.records]
            results[name][attribute] = reading_by_part(wanted, predict(images), flagged)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
