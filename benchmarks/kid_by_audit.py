"""Does a sample set's KID come from its near-copies? KID of the flagged and unflagged draws apart.

A generator that reproduces its training slices draws realistic images by construction, so a low
KID can come from copying (a shortcut). This control splits each sample set by its memorisation
audit (``audit.json``: the flagged draws) and measures KID to real items of subjects that no
generator saw, with an encoder trained on none of them, at one N for every row: all draws, the
unflagged draws and the flagged draws (a row whose part has fewer than N draws is left out).

    python benchmarks/kid_by_audit.py --real runs/prepV2:train --encoder demo/09_encoder \\
        --set d64=runs/L3_s0/samples:runs/audit_L3_s0 --set d240=runs/n240_s0/samples:runs/audit_n240_s0 --n 96

KID×10³ is the mean over ``--subsets`` random subsets of N real and N synthetic items; the spread
printed beside it is their standard deviation (how much the value moves with the draw), not a
confidence interval. ``uterosynth evaluate`` gives intervals over subjects for whole sets.
"""

from __future__ import annotations

import argparse

import torch

from uterosynth.data.audit_file import read_audit
from uterosynth.data.image_set import load_prepared, load_synthetic
from uterosynth.evaluation.features import extract_features
from uterosynth.evaluation.metrics import kid
from uterosynth.models.encoder_artifact import load_encoder


def kid_by_part(real: torch.Tensor, fake: torch.Tensor, flagged: set[int], *, n: int, subsets: int = 100,
                seed: int = 0) -> dict[str, tuple[float, float] | int]:
    """KID (mean, spread over subsets) of all, unflagged and flagged draws at ``n`` items per side;
    a part with fewer than ``n`` draws gets its size instead."""
    parts = {"all": list(range(len(fake))), "unflagged": [i for i in range(len(fake)) if i not in flagged],
             "flagged": sorted(flagged)}
    return {part: kid(real, fake[index], subsets=subsets, subset_size=n, seed=seed) if len(index) >= n else len(index)
            for part, index in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True, help="prepared items of subjects no generator saw (DIR[:split])")
    parser.add_argument("--encoder", required=True, help="feature encoder trained on none of those subjects")
    parser.add_argument("--set", action="append", required=True, metavar="NAME=SAMPLES:AUDIT")
    parser.add_argument("--n", type=int, required=True, help="items per side of every KID")
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    encoder = load_encoder(args.encoder)
    real = extract_features(encoder, torch.as_tensor(load_prepared(args.real).images))
    print(f"| set | draws | flagged | KID×10³ all (N = {args.n}) | unflagged | flagged |")
    print("| --- | --- | --- | --- | --- | --- |")
    for spec in args.set:
        name, rest = spec.split("=", 1)
        samples, audit = rest.rsplit(":", 1)
        feats = extract_features(encoder, torch.as_tensor(load_synthetic(samples, dims=2).images))
        flagged = set(read_audit(audit)["summary"]["flagged_indices"])
        cells = [f"{v[0] * 1e3:.1f} ± {v[1] * 1e3:.1f}" if isinstance(v, tuple) else f"– ({v} draws)"
                 for v in kid_by_part(real, feats, flagged, n=args.n, subsets=args.subsets, seed=args.seed).values()]
        print(f"| {name} | {len(feats)} | {len(flagged)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
