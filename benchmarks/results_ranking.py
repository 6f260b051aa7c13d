"""Do the metrics rank the sets as they should? One table from one ``uterosynth evaluate`` run.

Reads an evaluation's ``metrics.json`` whose sets span the expected order — the real-vs-real floor,
autoencoder reconstructions of new subjects, the diffusion samples, the class-conditional and the
unconditional autoencoder prior — and writes, per set, every distributional and diversity metric
with its interval (all at the evaluation's common N), then, for the pairs that matter, whether the
intervals separate them. ``--write`` replaces the section in docs/RESULTS.md.

    python benchmarks/results_ranking.py --evaluation runs/ranking --command "uterosynth evaluate …" --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SECTION = "Metric ranking on the corrected pipeline"
COLUMNS = [  # (key in metrics, header, scale)
    ("kid", "KID ×10³", 1e3), ("fid", "FID at N", 1.0), ("fid_inf", "FID∞", 1.0), ("frd", "FRD", 1.0),
    ("precision", "precision", 1.0), ("recall", "recall", 1.0), ("density", "density", 1.0),
    ("coverage", "coverage", 1.0), ("msssim_diversity", "MS-SSIM diversity", 1.0),
    ("conditioning_fidelity", "judge fidelity", 1.0), ("kid_comparable", "KID ×10³ (AlexNet)", 1e3),
    ("fid_comparable", "FID at N (AlexNet)", 1.0),
]
PAIRS_METRICS = ("kid", "fid", "frd", "kid_comparable")


def _cell(metric: dict | None, scale: float) -> str:
    if metric is None or metric.get("value") is None:
        return "–"
    v, lo, hi = (scale * metric[k] if metric.get(k) is not None else float("nan") for k in ("value", "ci_low", "ci_high"))
    digits = 1 if max(abs(v), abs(hi)) >= 10 else 3 if max(abs(v), abs(hi)) < 1.5 else 2
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def separated(a: dict | None, b: dict | None) -> str:
    """'yes' when the two intervals do not overlap, 'no' when they do."""
    if not a or not b or a.get("ci_low") is None or b.get("ci_low") is None:
        return "–"
    return "yes" if a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"] else "no"


def section(metrics: dict, order: list[str], pairs: list[tuple[str, str]], command: str) -> str:
    sets = metrics["sets"]
    names = [n for n in order if n in sets] + [n for n in sets if n not in order]
    present = [c for c in COLUMNS if any(c[0] in sets[n]["metrics"] for n in names)]
    head = "| set | n | " + " | ".join(h for _, h, _ in present) + " |\n| --- | --- | " + " | ".join("---" for _ in present) + " |"
    rows = [f"| {n} | {sets[n]['n']} | " + " | ".join(_cell(sets[n]["metrics"].get(k), s) for k, _, s in present) + " |"
            for n in names]
    pm = [m for m in PAIRS_METRICS if any(m in sets[n]["metrics"] for n in names)]
    pair_head = "| pair | " + " | ".join(pm) + " |\n| --- | " + " | ".join("---" for _ in pm) + " |"
    pair_rows = [f"| {a} vs {b} | " + " | ".join(separated(sets[a]["metrics"].get(m), sets[b]["metrics"].get(m)) for m in pm) + " |"
                 for a, b in pairs if a in sets and b in sets]
    ref, eq = metrics["reference"], metrics["equal_n"]
    extractor = metrics["extractor"]
    comparable = metrics.get("comparable_extractor") or {}
    return (
        f"Reference: `{ref['source']}` ({ref['n']} items of {ref.get('subjects')} subjects). Every "
        f"distributional metric at the common N = {eq['n']} ({eq['draws']} subsample draws; FRD on {eq.get('radiomics_n')} "
        f"items per set), intervals over subjects where items share subjects ({eq.get('unit')}). Extractor: "
        f"{extractor.get('name')} (sha256 {str(extractor.get('sha256'))[:12]}…); comparable extractor: "
        f"{comparable.get('name', 'none')} (sha256 {str(comparable.get('sha256'))[:12]}…). Judge fidelity: the share "
        f"of items the judge assigns to their own class (the floor's is the judge's accuracy on real items).\n\n"
        f"{head}\n" + "\n".join(rows) + "\n\nSeparated (the two 95 % intervals do not overlap):\n\n"
        f"{pair_head}\n" + "\n".join(pair_rows) + f"\n\nCommand:\n\n```bash\n{command}\n```\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluation", type=Path, required=True, help="an evaluation folder with metrics.json")
    parser.add_argument("--order", default="real_vs_real,reconstruction,synthetic,class_prior,prior",
                        help="set names in the expected order, best first")
    parser.add_argument("--pair", action="append", default=[], help="A,B: a pair to test for separation (repeatable)")
    parser.add_argument("--command", default="uterosynth evaluate …")
    parser.add_argument("--about", default="", help="a paragraph on the data and models, put first")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/RESULTS.md")
    args = parser.parse_args()
    metrics = json.loads((args.evaluation / "metrics.json").read_text())
    pairs = [tuple(p.split(",", 1)) for p in args.pair]
    text = (args.about + "\n\n" if args.about else "") + section(metrics, args.order.split(","), pairs, args.command)
    print(text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_common import update_section

        update_section(Path("docs/RESULTS.md"), SECTION, text)


if __name__ == "__main__":
    main()
