"""Scale of the memorisation audit: N synthetic × N training 2D items (default 10 000 × 10 000, 128×128).

Times :func:`uterosynth.privacy.audit.run_audit` with its default calibration (held-out items and
every training item against the other training subjects) on smooth random images held in memory,
and reports the peak resident memory of the process. Search time does not depend on image
content. Two configurations:

- the pixel measures (``--measures ncc,ssim``, the default): NCC over shifts and flips for all
  pairs, SSIM on the shortlist; ``--write`` updates ``## Privacy audit`` in docs/BENCHMARKS.md;
- an embedding-only audit (``--measures embedding --encoder DIR``, e.g. the copy detector):
  embedding every item, then FAISS search (flat, exact; IVF from 100 000 training items, with its
  recall against exact search); ``--write`` updates ``## Privacy audit at scale (embedding)``.

    PYTHONPATH=src python benchmarks/bench_audit.py --synthetic 10000 --train 10000 --write
    PYTHONPATH=src python benchmarks/bench_audit.py --synthetic 100000 --train 100000 --holdout 1000 --size 64 \
        --measures embedding --encoder runs/copy_detector --write
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
from benchmarks_common import update_section

from uterosynth.core.precision import cpu_flags

ROOT = Path(__file__).resolve().parents[1]


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
    from uterosynth.models.encoder_artifact import load_encoder
    from uterosynth.privacy.audit import run_audit
    from uterosynth.privacy.config import AuditConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, default=10000)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--holdout", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--measures", default="ncc,ssim,zoom", help="the audit's measures (comma-separated; the default: its pixel measures)")
    p.add_argument("--encoder", type=Path, help="encoder folder for the embedding measure")
    p.add_argument("--index", default="auto", help="embedding_index: auto, flat, ivf or torch")
    p.add_argument("--contended", choices=("yes", "no"), help="was the machine shared while measuring (required with --write)")
    p.add_argument("--search-alone", action="store_true", help="time only the nearest-embedding search (FAISS IVF, "
                   "FAISS flat, torch) on random 128-d features of --synthetic + 3000 queries × --train references")
    p.add_argument("--write", action="store_true", help="update the section of docs/BENCHMARKS.md")
    args = p.parse_args()
    if args.write and args.contended is None:
        p.error("--write needs --contended yes|no")
    if args.search_alone:
        return _search_alone(args)
    t0 = time.perf_counter()
    train = ImageSet(smooth_images(args.train, args.size, 0)[:, None], [f"t{i}" for i in range(args.train)],
                    [f"S{i // 10}" for i in range(args.train)])
    hold = ImageSet(smooth_images(args.holdout, args.size, 1)[:, None], [f"h{i}" for i in range(args.holdout)],
                   [f"H{i // 10}" for i in range(args.holdout)])
    syn = ImageSet(smooth_images(args.synthetic, args.size, 2)[:, None], [str(i) for i in range(args.synthetic)], [""] * args.synthetic)
    extractor = None if args.encoder is None else load_encoder(args.encoder, batch_size=512)
    cfg = AuditConfig(measures=args.measures.split(","), embedding_index=args.index)
    t1, c1 = time.perf_counter(), time.process_time()
    result = run_audit(train, syn, hold, config=cfg, extractor=extractor)
    t2, c2 = time.perf_counter(), time.process_time()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {"synthetic": args.synthetic, "train": args.train, "holdout": args.holdout, "size": args.size,
           "measures": cfg.measures, "calibration_items": result.calibration["items"],
           "seconds_audit": round(t2 - t1, 1), "cpu_seconds_audit": round(c2 - c1, 1),
           "load_average_1min": round(os.getloadavg()[0], 1), "seconds_data": round(t1 - t0, 1), "peak_rss_gib": round(peak_gib, 2),
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
           "flagged": int(result.flagged.sum()), "notes": {m.mode: m.notes for m in result.modes},
           "machine": platform.processor() or platform.machine()}
    print(json.dumps(out))
    if args.write:
        _write(args, out)


def _search_alone(args: argparse.Namespace) -> None:
    from uterosynth.privacy.embedding_search import embedding_search

    g = torch.Generator().manual_seed(0)
    ref, query = torch.randn(args.train, 128, generator=g), torch.randn(args.synthetic + 3000, 128, generator=g)
    groups = {"query_groups": torch.arange(len(query)) // 10, "reference_groups": torch.arange(len(ref)) // 10 + len(query)}
    rows = []
    for index in ("ivf", "flat", "torch"):
        t = time.perf_counter()
        _, report = embedding_search(query, ref, k=5, index=index, ivf_from=1, **groups)
        rows.append((report.describe(), round(time.perf_counter() - t, 1)))
        print(json.dumps({"search": rows[-1][0], "seconds": rows[-1][1]}))
    if args.write:
        table = "\n".join(f"| {name} | {sec} s |" for name, sec in rows)
        update_section(ROOT / "docs" / "BENCHMARKS.md", "Nearest-embedding search", f"""The audit's search alone: {len(query):,} queries
× {len(ref):,} training items, random 128-d features, 10-item subjects excluded, k = 5 (the embedding
audit's search without the embedding). Random vectors have no cluster structure, the worst case for
IVF recall; the audit measures recall on its own embeddings on every run ("Privacy audit at scale (embedding)").

| search | time |
| --- | --- |
{table}

- machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}; flags {' '.join(cpu_flags()) or 'none of avx2/avx512'}),
  {torch.get_num_threads()} torch threads, torch {torch.__version__}; contended (shared with other jobs): {args.contended}

```bash
PYTHONPATH=src python benchmarks/bench_audit.py --synthetic {args.synthetic} --train {args.train} --search-alone --contended {args.contended} --write
```
""")


def _write(args: argparse.Namespace, out: dict) -> None:
    embedding_only = out["measures"] == ["embedding"]
    cmd = (f"PYTHONPATH=src python benchmarks/bench_audit.py --synthetic {args.synthetic} --train {args.train} "
           f"--holdout {args.holdout} --size {args.size}"
           + (f" --measures {','.join(out['measures'])}" if out["measures"] != ["ncc", "ssim"] else "")
           + (" --encoder ENCODER" if args.encoder else "") + (f" --index {args.index}" if args.index != "auto" else "")
           + f" --contended {args.contended} --write")
    if embedding_only:
        what = (f"Embedding-only audit (`measures: [embedding]`, the encoder given with `--encoder` on {args.size}² items): every item embedded, then nearest training embeddings by FAISS — "
                f"{out['notes'].get('image', {}).get('embedding index, synthetic items', '')} (synthetic items); "
                f"{out['notes'].get('image', {}).get('embedding index, calibration items', '')} (calibration items).")
        heading = "Privacy audit at scale (embedding)"
    else:
        what = ("Default pixel measures: NCC on a 32² grid, ±1 grid voxel = ±4 px shifts × horizontal flip = 18 "
                "alignments, exact over all pairs; zoom NCC (the sample shrunk to 0.7, 0.8 and 0.9 of its side against "
                "every window of a training item, with its mirror image) over all pairs on a 16² grid, its 5 best "
                "scored on the 32² grid; SSIM, scored against its 10th-nearest background, on the shortlist of the 5 "
                "best shifted NCC, 5 best zoom and 25 best unshifted NCC matches; no encoder.")
        heading = "Privacy audit"
    body = f"""Memorisation audit of {args.synthetic:,} synthetic × {args.train:,} training 2D {args.size}×{args.size} items,
calibrated on {args.holdout:,} held-out items and {out['calibration_items'] - args.holdout:,} training items (whole subjects of
10 items, up to the default `calibration_train_items` cap of 2000) against the other training subjects. {what}
Images in memory (loading them from NIfTI adds I/O time on top); memory is the images
(N × H × W × 4 bytes per set) plus score blocks bounded by `block_elements`.

- audit time: **{out['seconds_audit']} s** wall ({out['seconds_audit'] / 60:.1f} min), {out['cpu_seconds_audit']} s CPU,
  peak resident memory **{out['peak_rss_gib']} GiB**
- machine: {out['cpus']}-core CPU ({out['machine']}; flags {' '.join(out['cpu_flags']) or 'none of avx2/avx512'}), no GPU,
  {out['threads']} torch threads, torch {torch.__version__}; contended (shared with other jobs): {args.contended}
  (1-min load average {out['load_average_1min']} at the end)

```bash
{cmd}
```
"""
    update_section(ROOT / "docs" / "BENCHMARKS.md", heading, body)


if __name__ == "__main__":
    main()
