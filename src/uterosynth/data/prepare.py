"""``uterosynth prepare``: raw scans → a prepared dataset (items + manifest.csv + dataset.json).

For each subject found by a source adapter: read image and label map (geometry checked),
attach attributes from the labels table, preprocess into items, write one NIfTI per item.
Then assign subject-level splits (deterministic by seed) and write the manifest and
``dataset.json``, all inside :func:`~uterosynth.core.artifacts.atomic_output_dir`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import atomic_output_dir, provenance, write_json
from ..core.errors import DataError
from ..core.imageio import as_volume, write_nifti
from .config import LabelsConfig, PrepareConfig, SplitConfig
from .io import read_scan
from .manifest import SPLITS, write_manifest
from .sources import LabelTable, SubjectRecord, discover, find_label_table, read_label_table

__all__ = ["PrepareResult", "assign_splits", "prepare_dataset", "process_subject", "reference_affine"]


@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` wrote (also the CLI's ``--json`` summary)."""

    out: Path
    subjects: int
    items: int
    splits: dict[str, dict[str, int]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "subjects": self.subjects,
            "items": self.items,
            "splits": self.splits,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "volumes_per_s": round((self.subjects + len(self.skipped)) / max(self.seconds, 1e-9), 3),
        }


def assign_splits(
    subjects: Sequence[str], cfg: SplitConfig, seed: int, *, groups: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Assign each subject to train/val/test; deterministic by ``seed`` and the subject set.

    Split sizes are the fractions times the number of subjects, rounded (a non-zero fraction
    gets at least one subject when there are at least three, and train keeps at least one).
    With ``groups`` (subject → stratum, e.g. orientation) each stratum is shuffled by a
    generator derived from ``seed`` and split in proportion, every split holding every stratum
    when the counts allow (:func:`_stratum_quota`). Without, subjects are shuffled and dealt
    out so each split's share stays as even as possible (largest-deficit rule).
    """
    from ..core.seeding import numpy_rng  # imports torch: keep it out of the worker processes

    subs = sorted(set(subjects))
    n = len(subs)
    counts = {name: int(round(getattr(cfg, name) * n)) for name in ("val", "test")}
    for name in ("val", "test"):
        if getattr(cfg, name) > 0 and counts[name] == 0 and n >= 3:
            counts[name] = 1
    while cfg.train > 0 and n - counts["val"] - counts["test"] < 1 and counts["val"] + counts["test"] > 0:
        key = "val" if counts["val"] >= counts["test"] else "test"
        counts[key] -= 1
    counts["train"] = n - counts["val"] - counts["test"]

    strata: dict[str, list[str]] = {}
    for subject in subs:
        strata.setdefault(str((groups or {}).get(subject, "")), []).append(subject)
    if len(strata) > 1:
        return _deal_stratified(strata, counts, seed)
    order: list[str] = []
    for key in sorted(strata):
        members = strata[key]
        perm = numpy_rng(seed, salt=f"split:{key}").permutation(len(members))
        order.extend(members[i] for i in perm)

    out: dict[str, str] = {}
    dealt = dict.fromkeys(("test", "val", "train"), 0)
    for rank, subject in enumerate(order):
        deficits = {k: counts[k] * (rank + 1) / max(n, 1) - dealt[k] for k in dealt if dealt[k] < counts[k]}
        name = max(deficits, key=lambda k: deficits[k])
        dealt[name] += 1
        out[subject] = name
    return out


def _stratum_quota(sizes: dict[str, int], counts: dict[str, int]) -> dict[tuple[str, str], int]:
    """Subjects per (stratum, split): in proportion, one in every cell when the counts allow.

    A cell gets one subject first when its split holds at least one subject per stratum and its
    stratum at least one subject per non-empty split; the rest go one by one to the cell
    furthest below its proportional share (rows and columns always add up).
    """
    n = sum(sizes.values())
    names = [k for k in ("test", "val", "train") if counts[k] > 0]
    quota = {(g, k): 0 for g in sizes for k in names}
    for g, size in sizes.items():
        for k in names:
            if counts[k] >= len(sizes) and size >= len(names):
                quota[(g, k)] = 1
    left = {g: sizes[g] - sum(quota[(g, k)] for k in names) for g in sizes}
    room = {k: counts[k] - sum(quota[(g, k)] for g in sizes) for k in names}
    while any(left.values()):
        cells = [(g, k) for g in sorted(sizes) for k in names if left[g] > 0 and room[k] > 0]
        g, k = max(cells, key=lambda c: sizes[c[0]] * counts[c[1]] / n - quota[c])
        quota[(g, k)] += 1
        left[g] -= 1
        room[k] -= 1
    return quota


def _deal_stratified(strata: dict[str, list[str]], counts: dict[str, int], seed: int) -> dict[str, str]:
    from ..core.seeding import numpy_rng

    quota = _stratum_quota({g: len(m) for g, m in strata.items()}, counts)
    out: dict[str, str] = {}
    for key in sorted(strata):
        members = strata[key]
        perm = numpy_rng(seed, salt=f"split:{key}").permutation(len(members))
        shuffled = [members[i] for i in perm]
        for name in ("test", "val", "train"):
            take = quota.get((key, name), 0)
            out.update(dict.fromkeys(shuffled[:take], name))
            shuffled = shuffled[take:]
    return out


def reference_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """A canonical IPR affine (axis 0 → inferior, 1 → posterior, 2 → right) centred on the origin.

    Used by stages that write new items without a scanner position (e.g. synthetic samples).
    """
    affine = np.zeros((4, 4))
    affine[2, 0] = -spacing[0]  # axis 0 → -S (inferior)
    affine[1, 1] = -spacing[1]  # axis 1 → -A (posterior)
    affine[0, 2] = spacing[2]  # axis 2 → +R
    affine[3, 3] = 1.0
    dims = list(shape) + [1] * (3 - len(shape))
    centre = (np.asarray(dims, dtype=np.float64) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def _check_label_geometry(image, label, tol: float) -> None:
    if image.shape != label.shape:
        raise DataError(
            f"{label.path}: label map shape {'x'.join(map(str, label.shape))} differs from its image "
            f"{image.path.name} ({'x'.join(map(str, image.shape))}); re-export the segmentation on the image grid"
        )
    diff = float(np.abs(image.affine - label.affine).max())
    if diff > tol:
        raise DataError(
            f"{label.path}: label map geometry differs from its image {image.path.name} (affines differ by up to "
            f"{diff:.3g} mm; tolerance {tol:g}); re-export the segmentation on the image grid"
        )


def _dataset_spacing(cfg: PrepareConfig, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """The spacing of ``dataset.json`` (and of its reference affine, which synthetic items carry).

    ``roi.mode: window`` samples every item at exactly ``window_mm / shape``: those axes take that
    value at full precision (the manifest's column is rounded to 6 digits). Other axes (the
    acquired slice spacing of 2D items) and other modes take the median over the items.
    """
    spacing = np.median(np.asarray([[float(v) for v in r["spacing"].split("x")] for r in rows]), axis=0)
    if cfg.preprocess.roi.mode == "window" and cfg.preprocess.roi.window_mm is not None:
        window = cfg.preprocess.window_spacing()
        spacing[: len(window)] = window
    return spacing


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{float(v):.6g}" for v in values)


def process_subject(
    record: SubjectRecord,
    cfg: PrepareConfig,
    out_dir: Path,
    *,
    source: str,
    table: LabelTable | None,
) -> list[dict[str, Any]]:
    """Read, check and preprocess one subject; write its items; return its manifest rows.

    Raises:
        DataError: anything wrong with this subject (the message names the file).
    """
    from .preprocess import preprocess_hash, preprocess_subject

    if record.problem:
        raise DataError(record.problem)
    attributes: dict[str, str] = {}
    if table is not None:
        found = table.attributes_for(record.subject, cfg.labels.attributes)
        if found is None and cfg.labels.require:
            raise DataError(f"{table.path}: no row for subject '{record.subject}' (labels.require is true)")
        attributes = found or {}
    if record.image is None:
        raise DataError(f"{record.subject}: no image found")
    image = read_scan(record.image)
    label = None
    if record.label is not None:
        label = read_scan(record.label, label=True)
        _check_label_geometry(image, label, cfg.preprocess.geometry_tolerance_mm)
    items = preprocess_subject(cfg.preprocess, image, label)

    prep = preprocess_hash(cfg.preprocess)
    suffix = ".nii.gz" if cfg.compress else ".nii"
    dims = cfg.preprocess.output.dims
    rows = []
    for item in items:
        item_id = record.subject if dims == 3 else f"{record.subject}_{item.slice_index:03d}"
        rel = f"items/{item_id}{suffix}"
        write_nifti(out_dir / rel, as_volume(item.array), item.affine)
        digest = hashlib.blake2b(
            f"{prep}:{image.digest}:{label.digest if label else ''}:{item.slice_index}".encode(), digest_size=8
        ).hexdigest()
        pad = {}
        if item.pad is not None:
            pad = {"pad_fraction": f"{float(item.pad.mean()):.6g}", "pad_path": f"pad/{item_id}{suffix}"}
            write_nifti(out_dir / pad["pad_path"], as_volume(item.pad.astype(np.uint8)), item.affine, dtype=np.uint8)
        rows.append(
            {
                "item_id": item_id,
                "path": rel,
                "subject": record.subject,
                "dims": dims,
                "shape": "x".join(str(s) for s in item.array.shape),
                "spacing": _fmt(item.spacing),
                "slice_index": item.slice_index,
                "source": source,
                "source_path": record.source_path,
                "prep_hash": digest,
                **pad,
                **segmentation_attributes(item.label, cfg.labels, skip=table.columns if table is not None else ()),
                **attributes,
            }
        )
    return rows


def segmentation_attributes(label: np.ndarray | None, cfg: LabelsConfig, *, skip: Sequence[str] = ()) -> dict[str, str]:
    """An item's ``labels.from_segmentation`` attributes: ``present`` / ``absent`` from its label map
    (empty without one), and beside each its voxel count as ``NAME_voxels``. Names in ``skip`` (the
    labels table's columns, which win for every subject, with a row or without) are left out."""
    names = {n: v for n, v in cfg.from_segmentation.items() if n not in skip}
    if label is None:
        return {key: "" for name in names for key in (name, f"{name}_voxels")}
    few = "" if cfg.segmentation_few_voxels == "empty" else "absent"

    def value(voxels: int) -> str:
        return "present" if voxels >= cfg.segmentation_min_voxels else few if voxels else "absent"

    counts = {name: int(np.isin(label, values).sum()) for name, values in names.items()}
    return {key: v for name, n in counts.items() for key, v in ((name, value(n)), (f"{name}_voxels", str(n)))}


def _worker(args: tuple) -> tuple[str, list[dict[str, Any]] | None, str]:
    record, cfg, out_dir, source, table = args
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one thread per worker process
    try:
        return record.subject, process_subject(record, cfg, out_dir, source=source, table=table), ""
    except DataError as err:
        return record.subject, None, str(err)


def _attribute_info(columns: Sequence[str], rows: Sequence[dict[str, Any]], cfg: PrepareConfig):
    types: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name in columns:
        seen = [str(r.get(name, "")) for r in rows if str(r.get(name, "")) != ""]
        try:
            [float(v) for v in seen]
            numeric = bool(seen) and name not in cfg.labels.attributes
        except ValueError:
            numeric = False
        types[name] = "numeric" if numeric else "categorical"
        if not numeric:
            declared = [str(v) for v in cfg.labels.attributes.get(name, [])]
            values[name] = declared + sorted(set(seen) - set(declared))
    return types, values


def _process_subjects(
    records: list, cfg: PrepareConfig, tmp: Path, source: str, table, *, skip_bad: bool,
    on_subject: Callable[[str], None] | None,
) -> list[tuple[str, list[dict[str, Any]] | None, str]]:
    """``(subject, rows or None, reason)`` per record, in worker processes when ``cfg.workers > 1``.

    Raises:
        DataError: the first bad subject unless ``skip_bad``.
    """
    results: list[tuple[str, list[dict[str, Any]] | None, str]] = []
    jobs = [(r, cfg, tmp, source, table) for r in records]
    if cfg.workers > 1 and len(records) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            for res in pool.map(_worker, jobs):
                if res[2] and not skip_bad:
                    pool.shutdown(cancel_futures=True)
                    raise DataError(res[2])
                results.append(res)
                if on_subject is not None:
                    on_subject(res[0])
    else:
        for record in records:
            try:
                rows = process_subject(record, cfg, tmp, source=source, table=table)
                results.append((record.subject, rows, ""))
            except DataError as err:
                if not skip_bad:
                    raise
                results.append((record.subject, None, str(err)))
            if on_subject is not None:
                on_subject(record.subject)
    return results


def stratify_column(cfg: PrepareConfig, table) -> str | None:
    """The attribute the splits are stratified by (``split.stratify``; ``auto`` resolved).

    Raises:
        DataError: an explicit ``split.stratify`` column is not in the labels table (or there is no table).
    """
    wanted = cfg.split.stratify
    columns = list(table.columns) if table is not None else []
    if wanted == "auto":
        candidates = ["orientation", *cfg.labels.attributes]
        return next((c for c in candidates if c in columns), None)
    if wanted is None:
        return None
    if wanted not in columns:
        raise DataError(
            f"split.stratify '{wanted}': no such column in the labels table "
            f"({table.path if table is not None else 'none given'}); use one of its attribute columns"
        )
    return wanted


def _split_groups(column: str | None, good: dict[str, list[dict[str, Any]]]) -> dict[str, str] | None:
    """Each subject's value of the stratify ``column`` (``None`` when splits are not stratified)."""
    if column is None:
        return None
    return {s: str(rows[0].get(column, "")) for s, rows in good.items() if rows}


def _class_counts(splits: dict[str, str], groups: dict[str, str] | None) -> dict[str, dict[str, int]]:
    """``{split: {class: subjects}}`` for the stratify attribute (``{split: {"all": n}}`` without one)."""
    values = sorted(set((groups or {}).values())) or ["all"]
    counts = {name: dict.fromkeys(values, 0) for name in SPLITS}
    for subject, name in splits.items():
        counts[name][(groups or {}).get(subject, "all")] += 1
    return counts


def prepare_dataset(
    source: str,
    input_dir: str | Path,
    out: str | Path,
    cfg: PrepareConfig,
    *,
    labels: str | Path | None = None,
    skip_bad: bool = False,
    overwrite: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_subject: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Prepare a dataset from raw scans.

    Args:
        source: ``umd`` or ``folder`` (see :mod:`uterosynth.data.sources`).
        input_dir: the raw dataset folder.
        out: the prepared dataset folder to create.
        cfg: preprocessing, splits, labels table rules, seed, workers.
        labels: a labels CSV; default ``labels.csv`` at the dataset root if present.
        skip_bad: skip subjects that fail (listed with reasons) instead of stopping.
        overwrite: replace ``out`` if it exists.
        on_start: called once with the number of subjects (progress display).
        on_subject: called after each subject with its id.

    Raises:
        DataError: bad input (first bad subject unless ``skip_bad``), or no usable subject.
        DataError: ``out`` exists and ``overwrite`` is false.
    """
    from .preprocess import preprocess_hash

    t0 = time.perf_counter()
    input_dir = Path(input_dir)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        records = discover(source, input_dir)
        table_path = Path(labels) if labels is not None else find_label_table(input_dir)
        table = None
        if table_path is not None:
            table = read_label_table(
                table_path, subject_column=cfg.labels.subject_column, required=tuple(cfg.labels.attributes)
            )
        (tmp / "items").mkdir()
        if cfg.preprocess.roi.mode == "window":
            (tmp / "pad").mkdir()
        if on_start is not None:
            on_start(len(records))
        results = _process_subjects(records, cfg, tmp, source, table, skip_bad=skip_bad, on_subject=on_subject)

        skipped = [{"subject": s, "reason": reason} for s, rows, reason in results if rows is None]
        good = {s: rows for s, rows, _ in results if rows is not None}
        if not good:
            detail = f" (first problem: {skipped[0]['reason']})" if skipped else ""
            raise DataError(f"{input_dir}: no usable subject found{detail}")
        stratify = stratify_column(cfg, table)
        groups = _split_groups(stratify, good)
        splits = assign_splits(list(good), cfg.split, cfg.seed, groups=groups)
        all_rows = []
        for subject in sorted(good):
            for row in good[subject]:
                row["split"] = splits[subject]
                all_rows.append(row)
        columns = list(table.columns) if table is not None else []
        from_segmentation = [n for n in cfg.labels.from_segmentation
                             if n not in columns and any(r.get(n) for r in all_rows)]
        columns += [key for n in from_segmentation for key in (n, f"{n}_voxels")]
        unlabelled = sorted(s for s in good if table is not None and s not in table.rows)
        write_manifest(tmp / "manifest.csv", all_rows, columns)

        dims = cfg.preprocess.output.dims
        spacing = _dataset_spacing(cfg, all_rows)
        shape = list(cfg.preprocess.output.shape)
        types, values = _attribute_info(columns, all_rows, cfg)
        split_counts = {
            name: {
                "subjects": sum(1 for s in good if splits[s] == name),
                "items": sum(1 for r in all_rows if r["split"] == name),
            }
            for name in SPLITS
        }
        info = {
            **provenance(cfg, cfg.seed),
            "dims": dims,
            "attributes": list(columns),
            "attribute_types": types,
            "attribute_values": values,
            "shape": shape,
            "spacing": [float(v) for v in spacing],
            "affine": reference_affine(shape, spacing).tolist(),
            "array_orientation": "IPR" if cfg.preprocess.reorient else "native",
            "source": source,
            "labels_file": table_path.name if table_path is not None else None,
            "attributes_from_segmentation": {n: list(cfg.labels.from_segmentation[n]) for n in from_segmentation},
            "preprocess_hash": preprocess_hash(cfg.preprocess),
            "subjects": len(good),
            "items": len(all_rows),
            "splits": split_counts,
            "stratify": stratify,
            "split_counts": _class_counts(splits, groups),
            "skipped": skipped,
            "unlabelled_subjects": unlabelled,
        }
        write_json(tmp / "dataset.json", info)
    return PrepareResult(
        out=Path(out),
        subjects=len(good),
        items=len(all_rows),
        splits=split_counts,
        skipped=skipped,
        seconds=time.perf_counter() - t0,
    )
