"""Phantom generation throughput (subjects/s) for default-size 3D cohorts.

    python benchmarks/bench_phantom.py [--subjects 20] [--workers 2] [--write]

Writes a cohort with the default geometry (320 x 320 x 28 at 0.8 x 0.8 x 4 mm, in-plane
supersampling 2) into a temporary folder, including NIfTI compression, and reports wall-clock
subjects/s, CPU seconds per subject and the machine's load average. ``--write`` replaces the
``## Phantom`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from uterosynth.phantom import PhantomConfig, write_cohort  # noqa: E402


def _cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def run(subjects: int, workers: int, seed: int) -> dict:
    cfg = PhantomConfig(subjects=subjects, workers=workers, seed=seed)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(PhantomConfig(subjects=1, seed=seed + 1), Path(tmp) / "warmup")
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        write_cohort(cfg, Path(tmp) / "cohort")
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {
        "subjects": subjects,
        "workers": workers,
        "seconds": wall,
        "subjects_per_s": subjects / wall,
        "cpu_s_per_subject": cpu / subjects,
        "load": (load_before + os.getloadavg()[0]) / 2,
        "cpus": os.cpu_count(),
    }


def section(r: dict, command: str) -> str:
    cpu_rate = r["cpus"] / r["cpu_s_per_subject"]
    return (
        "## Phantom\n\n"
        "Digital-phantom cohort generation, default geometry (320 × 320 × 28 voxels at 0.8 × 0.8 × 4 mm, "
        "in-plane supersampling 2), including writing the gzip-compressed NIfTI image and labels.\n\n"
        "| subjects | workers | wall s | subjects/s (wall) | CPU s / subject | subjects/s if the CPUs were free |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| {r['subjects']} | {r['workers']} | {r['seconds']:.1f} | {r['subjects_per_s']:.2f} | "
        f"{r['cpu_s_per_subject']:.2f} | {cpu_rate:.2f} |\n\n"
        f"Machine: {r['cpus']}-core CPU, no GPU, {platform.python_implementation()} {platform.python_version()}; "
        + (f"**contended** (shared with other jobs, mean 1-min load average {r['load']:.1f}), so the wall-clock "
           "rate is a lower bound. " if r["load"] >= 1.0 else f"quiet (mean 1-min load average {r['load']:.1f}). ")
        + "The last column is the CPU-bound rate, cores / (CPU s per subject). "
        f"Command: `{command}`.\n"
    )


def write_section(text: str, path: Path = ROOT / "docs" / "BENCHMARKS.md") -> None:
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(r"^## Phantom\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    r = run(args.subjects, args.workers, args.seed)
    command = f"python benchmarks/bench_phantom.py --subjects {args.subjects} --workers {args.workers}"
    text = section(r, command)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
