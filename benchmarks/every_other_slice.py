"""A phantom cohort's 4 mm acquisition from its 2 mm render: keeps slices 1, 3, 5, ... of every volume.

The phantom draws its tissue texture on the voxel grid, so a second render on another grid is another
acquisition. Rendering once on a 2 mm grid and keeping every other slice gives the 4 mm grid of one
acquisition, and the dropped slices lie 2 mm from every kept one: "another slice" of the same scan for
``results_audit_phantom.py --other-slices``.

    python benchmarks/every_other_slice.py runs/phantom60s2 runs/phantom60e
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np


def every_other_slice(volume: nib.Nifti1Image) -> nib.Nifti1Image:
    """Slices 1, 3, 5, ... of the last axis, with the affine of that grid (twice the spacing, one slice on)."""
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, 2]
    affine[:3, 2] *= 2
    out = nib.Nifti1Image(np.asarray(volume.dataobj)[:, :, 1::2], affine, volume.header)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="phantom cohort folder rendered on a 2 mm slice grid (odd slice count)")
    p.add_argument("out", type=Path, help="new cohort folder (must not exist)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    info = json.loads((args.source / "phantom.json").read_text())
    geometry = info["config"]["geometry"]
    geometry["slices"] = geometry["slices"] // 2
    geometry["spacing"][2] *= 2
    (args.out / "phantom.json").write_text(json.dumps(info, indent=1))
    with open(args.source / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:  # the scan's stored shape
        w, h, _ = row["shape"].split("x")
        row["shape"] = f"{w}x{h}x{geometry['slices']}"
    with open(args.out / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for subject in sorted(d for d in args.source.iterdir() if d.is_dir()):
        (args.out / subject.name).mkdir()
        for path in subject.glob("*.nii.gz"):
            nib.save(every_other_slice(nib.load(path)), args.out / subject.name / path.name)
    print(args.out)


if __name__ == "__main__":
    main()
