"""Scale of the memorisation audit: N synthetic × N training 2D items (default 10 000 × 10 000, 128×128).

Times :func:`uterosynth.privacy.audit.run_audit` (NCC over shifts and flips for all pairs, SSIM on
the shortlist, calibration on held-out items) on smooth random images held in memory, and reports
the peak resident memory of the process. Search time does not depend on image content. ``--write``
updates ``## Privacy audit`` in docs/BENCHMARKS.md.

    PYTHONPATH=src python benchmarks/bench_audit.py --synthetic 10000 --train 10000 --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def replace_section(path: Path, heading: str, body: str, *, title: str) -> None:
    """Replace (or append) the section starting at ``heading`` up to the next ``## `` heading."""
    text = path.read_text() if path.is_file() else f"{title}\n"
    block = f"{heading}\n\n{body.strip()}\n"
    start = text.find(f"\n{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(heading) + 2)
        text = text[: start + 1] + block + (text[end:] if end >= 0 else "")
    path.write_text(text)


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """``(n, size, size)`` smooth random images in [0, 1] (cheap stand-ins of equal cost)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, size, size)
    for i in range(0, n, 1000):
        m = min(1000, n - i)
        low = torch.rand(m, 1, 12, 12, generator=g)
        img = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
        out[i : i + m] = (img + 0.02 * torch.randn(m, size, size, generator=g)).clamp(0, 1)
    return out


def main() -> None:
    from uterosynth.data.image_set import ImageSet
    from uterosynth.privacy.audit import run_audit
    from uterosynth.privacy.config import AuditConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, default=10000)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--holdout", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--write", action="store_true", help="update '## Privacy audit' in docs/BENCHMARKS.md")
    args = p.parse_args()
    t0 = time.perf_counter()
    train = ImageSet(smooth_images(args.train, args.size, 0)[:, None], [f"t{i}" for i in range(args.train)],
                    [f"S{i // 10}" for i in range(args.train)])
    hold = ImageSet(smooth_images(args.holdout, args.size, 1)[:, None], [f"h{i}" for i in range(args.holdout)],
                   [f"H{i // 10}" for i in range(args.holdout)])
    syn = ImageSet(smooth_images(args.synthetic, args.size, 2)[:, None], [str(i) for i in range(args.synthetic)], [""] * args.synthetic)
    t1, c1 = time.perf_counter(), time.process_time()
    result = run_audit(train, syn, hold, config=AuditConfig())
    t2, c2 = time.perf_counter(), time.process_time()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {"synthetic": args.synthetic, "train": args.train, "holdout": args.holdout, "size": args.size,
           "seconds_audit": round(t2 - t1, 1), "cpu_seconds_audit": round(c2 - c1, 1),
           "load_average_1min": round(os.getloadavg()[0], 1), "seconds_data": round(t1 - t0, 1), "peak_rss_gib": round(peak_gib, 2),
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "flagged": int(result.flagged.sum()),
           "machine": platform.processor() or platform.machine()}
    print(json.dumps(out))
    if args.write:
        pairs = (args.synthetic + args.holdout) * args.train
        full = (10000 + 1000) * 10000
        extra = "" if pairs >= full else (
            f"\n- scaled run: {pairs:,} query×training pairs; linear extrapolation to 10 000 × 10 000 "
            f"(+1 000 held-out) = {full:,} pairs: **≈ {out['seconds_audit'] * full / pairs / 60:.0f} min wall at this "
            f"load, ≈ {out['cpu_seconds_audit'] * full / pairs / 60 / out['cpus']:.0f} min on {out['cpus']} uncontended cores** "
            f"(CPU time / cores; extrapolated, not measured)")
        full_cmd = "" if pairs >= full else (
            "\nFull-size run (10 000 × 10 000, + 1 000 held-out; run it on a quiet machine):\n\n"
            "```bash\nPYTHONPATH=src python benchmarks/bench_audit.py --write\n```\n")
        cmd = (f"PYTHONPATH=src python benchmarks/bench_audit.py --synthetic {args.synthetic} --train {args.train} "
               f"--holdout {args.holdout} --size {args.size} --write")
        body = f"""Memorisation audit of {args.synthetic:,} synthetic × {args.train:,} training 2D {args.size}×{args.size} items,
calibrated on {args.holdout:,} held-out items; default settings (NCC on a 32² grid, ±1 grid voxel = ±4 px
shifts × horizontal flip = 18 alignments, exact over all pairs; SSIM on the shortlist of the 5 best shifted and 5 best unshifted NCC
matches; no encoder).
Images in memory (loading 20 000 NIfTI files adds I/O time on top); memory is the images
(N × H × W × 4 bytes per set) plus score blocks bounded by `block_elements`.

- audit time: **{out['seconds_audit']} s** wall ({out['seconds_audit'] / 60:.1f} min), {out['cpu_seconds_audit']} s CPU,
  peak resident memory **{out['peak_rss_gib']} GiB**
- machine: {out['cpus']}-core CPU, {out['threads']} torch threads, no GPU, **contended** (1-min load average
  {out['load_average_1min']} on {out['cpus']} cores while it ran){extra}

```bash
{cmd}
```
{full_cmd}"""
        replace_section(ROOT / "docs" / "BENCHMARKS.md", "## Privacy audit", body, title="# Benchmarks")


if __name__ == "__main__":
    main()
