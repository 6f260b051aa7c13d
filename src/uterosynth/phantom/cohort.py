"""Writing a phantom cohort in the UMD layout, with ``labels.csv`` and ``phantom.json``.

Layout (what ``uterosynth prepare --source umd`` reads)::

    <out>/UMD_<YYMMDD>_<NNN>/UMD_<YYMMDD>_<NNN>_t2.nii.gz    int16 T2-weighted volume
    <out>/UMD_<YYMMDD>_<NNN>/UMD_<YYMMDD>_<NNN>_seg.nii.gz   uint8 labels (0 background, 1 uterine
                                                              wall, 2 uterine cavity, 3 myoma,
                                                              4 Nabothian cyst)
    <out>/labels.csv     one row per subject: orientation, angles, field strength, counts, sizes …
    <out>/phantom.json   provenance (version, config, seed) and the layout description

Subject ``k`` is drawn from ``numpy_rng(seed, k)`` so it is identical whatever the cohort size
and the number of workers.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifacts import atomic_output_dir, provenance, write_json
from ..core.errors import ConfigError
from ..core.imageio import write_nifti
from .anatomy import Subject, subject_row
from .config import FIELD_STRENGTHS, ORIENTATIONS, PhantomConfig
from .preview import Example, fill_examples, write_preview
from .render import SCANNER_AXCODES, Rendered, scanner_affine, to_scanner
from .subject import generate_subject, mid_slice

__all__ = ["CohortSummary", "LABEL_NAMES", "LABEL_COLUMNS", "subject_id", "write_cohort"]

LABEL_NAMES = {0: "background", 1: "uterine wall", 2: "uterine cavity", 3: "myoma", 4: "Nabothian cyst"}
LABEL_COLUMNS = ("subject", "orientation", "version", "flexion", "version_angle", "flexion_angle",
                 "field_strength", "myoma_count", "cyst_count")
LANDMARKS = ("external_os", "internal_os", "fundus", "symphysis")


@dataclass(frozen=True)
class CohortSummary:
    """What :func:`write_cohort` wrote."""

    out: Path
    subjects: int
    seconds: float
    class_counts: dict[str, int]
    field_counts: dict[str, int]
    preview: Path | None


def subject_id(cfg: PhantomConfig, k: int) -> str:
    """Folder name (= subject id) of subject ``k``: ``UMD_<YYMMDD>_<NNN>`` with NNN = k + 1."""
    return f"UMD_{cfg.study_date}_{k + 1:03d}"




def write_subject(folder: Path, sid: str, rendered: Rendered) -> None:
    """Write the image and label NIfTIs of one subject in the scanner layout."""
    folder.mkdir(parents=True, exist_ok=True)
    affine = scanner_affine(rendered.affine, rendered.seg.shape)
    for array, suffix in ((rendered.image, "t2"), (rendered.seg, "seg")):
        write_nifti(folder / f"{sid}_{suffix}.nii.gz", to_scanner(array), affine, dtype=array.dtype,
                    xyzt_units=("mm", "sec"), dim_info=(0, 1, 2))


def _row(sid: str, subject: Subject, rendered: Rendered) -> dict[str, Any]:
    row: dict[str, Any] = {"subject": sid, **subject_row(subject)}
    for name in LANDMARKS:
        for axis, value in zip("xyz", rendered.landmarks[name], strict=True):
            row[f"{name}_{axis}"] = round(float(value), 2)
    h, w, d = rendered.seg.shape
    row["shape"] = f"{w}x{h}x{d}"  # stored (scanner layout) shape
    return row


def _work(args: tuple[str, int, str]) -> tuple[dict[str, Any], Example]:
    cfg_json, k, root = args
    cfg = PhantomConfig.model_validate_json(cfg_json)
    sid = subject_id(cfg, k)
    subject, rendered = generate_subject(cfg, k)
    write_subject(Path(root) / sid, sid, rendered)
    z = mid_slice(rendered)
    return _row(sid, subject, rendered), (rendered.image[:, :, z].copy(), rendered.seg[:, :, z].copy(), sid)


def write_cohort(
    cfg: PhantomConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> CohortSummary:
    """Generate ``cfg.subjects`` subjects into ``out`` (atomically) and optionally a preview PNG.

    Raises:
        DataError: ``out`` exists and ``overwrite`` is false.
        ConfigError: ``preview`` is not a ``.png`` path.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if preview is not None and Path(preview).suffix.lower() != ".png":
        raise ConfigError(f"preview {preview}: expected a .png file name", keys=("preview",))
    rows: list[dict[str, Any]] = []
    examples: dict[tuple[str, str], Example] = {}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        jobs = [(cfg.model_dump_json(), k, str(tmp)) for k in range(cfg.subjects)]
        workers = min(cfg.workers, cfg.subjects)
        if workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                results = pool.imap(_work, jobs, chunksize=1)
                for row, ex in results:
                    rows.append(row)
                    examples.setdefault((row["orientation"], row["field_strength"]), ex)
                    if progress:
                        progress(1)
        else:
            for job in jobs:
                row, ex = _work(job)
                rows.append(row)
                examples.setdefault((row["orientation"], row["field_strength"]), ex)
                if progress:
                    progress(1)
        columns = list(LABEL_COLUMNS) + [c for c in rows[0] if c not in LABEL_COLUMNS]
        with open(tmp / "labels.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        class_counts = {c: sum(r["orientation"] == c for r in rows) for c in ORIENTATIONS}
        field_counts = {f: sum(r["field_strength"] == f for r in rows) for f in FIELD_STRENGTHS}
        write_json(tmp / "phantom.json", {
            **provenance(cfg, cfg.seed),
            "kind": "phantom-cohort",
            "subjects": cfg.subjects,
            "layout": "UMD_<YYMMDD>_<NNN>/UMD_<YYMMDD>_<NNN>_{t2,seg}.nii.gz",
            "array_axcodes": list(SCANNER_AXCODES),
            "labels": LABEL_NAMES,
            "class_counts": class_counts,
            "field_counts": field_counts,
        })
    preview_path = None
    if preview is not None:
        preview_path = write_preview(fill_examples(cfg, examples), preview)
    return CohortSummary(out=out, subjects=cfg.subjects, seconds=time.perf_counter() - t0,
                         class_counts=class_counts, field_counts=field_counts, preview=preview_path)
