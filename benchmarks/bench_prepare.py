"""Preparation throughput: volumes/s of ``uterosynth prepare`` with and without N4.

Cohort: synthetic subjects in the UMD layout, 512x512x30 int16 volumes at 0.5x0.5x4 mm
(sagittal, stored with the slice axis last as converters write it) with a uterus-like label
blob, written once into ``--cohort`` (reused when present).

Usage::

    python benchmarks/bench_prepare.py                  # print
    python benchmarks/bench_prepare.py --write          # also update docs/BENCHMARKS.md

Each configuration runs the library entry point :func:`prepare_dataset` on the whole cohort
(N4 runs on the first ``--n4-subjects`` subjects only, it being ~10x slower) and reports
volumes/s = subjects / wall-clock seconds, reading and writing included.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from uterosynth.core.config import load_config  # noqa: E402
from uterosynth.data.config import PrepareConfig  # noqa: E402
from uterosynth.data.prepare import prepare_dataset  # noqa: E402

SHAPE = (512, 512, 30)
SPACING = (0.5, 0.5, 4.0)


def make_subject(folder: Path, index: int) -> None:
    """One synthetic subject: smooth anatomy-like background, ellipsoid uterus (labels 1-3)."""
    rng = np.random.default_rng(index)
    x, y, z = SHAPE
    # axis 0: anterior -> posterior, axis 1: superior -> inferior, axis 2: left -> right
    affine = np.array([[0, 0, SPACING[2], -60.0], [-SPACING[0], 0, 0, 128.0], [0, -SPACING[1], 0, 128.0], [0, 0, 0, 1]])
    gi = (np.arange(x, dtype=np.float32)[:, None, None] - x / 2 - rng.uniform(-30, 30)) / 70
    gj = (np.arange(y, dtype=np.float32)[None, :, None] - y / 2 - rng.uniform(-30, 30)) / 90
    gk = (np.arange(z, dtype=np.float32)[None, None, :] - z / 2) / 6
    r = np.sqrt(gi**2 + gj**2 + gk**2)
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[r < 1.0] = 1
    label[r < 0.45] = 2
    label[(r < 1.0) & (np.sqrt((gi - 0.5) ** 2 + (gj + 0.3) ** 2 + gk**2) < 0.3)] = 3
    body = np.sqrt(((np.arange(x)[:, None] - x / 2) / 230) ** 2 + ((np.arange(y)[None, :] - y / 2) / 250) ** 2) < 1
    image = np.broadcast_to(np.where(body[:, :, None], 300.0, 5.0), SHAPE).astype(np.float32)
    image += np.float32(400) * (label == 1) + np.float32(900) * (label == 2) + np.float32(150) * (label == 3)
    bias = 1 + 0.3 * np.sin(np.linspace(0, np.pi, x, dtype=np.float32))[:, None, None]
    image = image * bias + rng.normal(0, 25, SHAPE).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in ((f"{folder.name}_t2.nii.gz", np.clip(image, 0, 4000).astype(np.int16)),
                      (f"{folder.name}_seg.nii.gz", label)):
        img = nib.Nifti1Image(arr, affine)
        img.set_qform(affine, code=1)
        nib.save(img, str(folder / name))


def make_cohort(root: Path, n: int) -> Path:
    for i in range(n):
        folder = root / "UMD" / f"UMD_240101_{i + 1:03d}"
        if not (folder / f"{folder.name}_seg.nii.gz").is_file():
            make_subject(folder, i)
    return root


def subset(root: Path, n: int) -> Path:
    """A view of the first ``n`` subjects (symlinks) for the slow N4 runs."""
    view = Path(tempfile.mkdtemp(prefix="bench-subset-"))
    (view / "UMD").mkdir()
    for folder in sorted((root / "UMD").iterdir())[:n]:
        (view / "UMD" / folder.name).symlink_to(folder.resolve())
    return view


def run(cohort: Path, preset: str, *, n4: bool, workers: int, n: int) -> dict:
    cfg = load_config(PrepareConfig, REPO / "configs" / preset,
                      overrides={"preprocess.n4.enabled": n4, "workers": workers})
    out = Path(tempfile.mkdtemp(prefix="bench-out-")) / "prepared"
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    result = prepare_dataset("umd", cohort, out, cfg)
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    shutil.rmtree(out.parent, ignore_errors=True)
    return {"preset": preset, "n4": n4, "workers": workers, "subjects": result.subjects, "items": result.items,
            "seconds": seconds, "volumes_per_s": result.subjects / seconds, "cpu_s_per_volume": cpu / result.subjects}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes (user + system)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def write_section(lines: list[str]) -> None:
    path = REPO / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    section = "## Data preparation\n\n" + "\n".join(lines) + "\n"
    pattern = re.compile(r"## Data preparation\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n") + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=50)
    parser.add_argument("--n4-subjects", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "uterosynth-bench-cohort")
    parser.add_argument("--write", action="store_true", help="update '## Data preparation' in docs/BENCHMARKS.md")
    parser.add_argument("--note", default="contended: other jobs were running on the 2 cores",
                        help="machine-load note printed next to the numbers")
    args = parser.parse_args()

    t0 = time.perf_counter()
    cohort = make_cohort(args.cohort, args.subjects)
    print(f"cohort: {args.subjects} subjects {SHAPE} at {SPACING} mm in {args.cohort} ({time.perf_counter() - t0:.0f} s)")
    rows = []
    for preset in ("prepare2d.yaml", "prepare3d.yaml"):
        for workers in args.workers:
            rows.append(run(cohort, preset, n4=False, workers=workers, n=args.subjects))
            print(rows[-1], flush=True)
    view = subset(cohort, args.n4_subjects)
    try:
        rows.append(run(view, "prepare2d.yaml", n4=True, workers=max(args.workers), n=args.n4_subjects))
        print(rows[-1], flush=True)
    finally:
        shutil.rmtree(view, ignore_errors=True)

    cpu = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), no GPU"
    lines = [
        f"Synthetic cohort of {args.subjects} subjects, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16 volumes at "
        f"{SPACING[0]}x{SPACING[1]}x{SPACING[2]} mm with label maps (.nii.gz), prepared with the presets "
        "in `configs/` (resample to 0.8 mm in-plane, reorient, normalise, write items). "
        f"Machine: {cpu}; {args.note}.",
        "",
        "| preset | N4 | workers | subjects | items | seconds | volumes/s | CPU s / volume |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {'on' if r['n4'] else 'off'} | {r['workers']} | {r['subjects']} | "
                     f"{r['items']} | {r['seconds']:.1f} | {r['volumes_per_s']:.2f} | {r['cpu_s_per_volume']:.2f} |")
    lines += ["", "volumes/s = subjects / wall-clock seconds (reading and writing included); CPU s / volume = "
              "user + system CPU time of the process and its workers per subject, which contention inflates "
              "much less than wall-clock time. "
              "Command: `python benchmarks/bench_prepare.py --write` "
              f"(N4 measured on the first {args.n4_subjects} subjects; target: >= 2 volumes/s without N4).",
              f"Load average while running: {_load()}."]
    print("\n".join(lines))
    if args.write:
        write_section(lines)


if __name__ == "__main__":
    main()
