"""Release of a synthetic dataset (audited samples only) and of a model, with datasheet/model card.

Release layout::

    nifti/synthetic_000000.nii.gz            geometry = the synthetic item's affine (verified)
    nifti/synthetic_000000_axial.nii.gz      3D only: reformats beside the sagittal volume
    png/synthetic_000000.png                 2D; 3D: _sagittal/_axial/_coronal middle slices
    dicom/synthetic_000000/<orientation>/    optional, one DICOM series per orientation
    metadata.csv  DATASHEET.md  SHA256SUMS

The datasheet states the release's quality from its evaluation (``--evaluation``; see
:mod:`.quality`), which must pass a fidelity bar unless forced.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.uid import generate_uid

from .. import __version__
from ..core.artifacts import atomic_output_dir, atomic_write_text, sha256_file
from ..core.errors import ConfigError, DataError
from ..core.imageio import middle_slice, write_nifti, write_png
from ..data.audit_file import check_audit_of, read_audit
from ..data.synthetic import SyntheticSet
from .cards import datasheet_md, model_card_md
from .checksums import write_sha256sums
from .config import ReleaseConfig
from .dicom import read_reference, reformat, write_dicom_series
from .quality import assess_quality

__all__ = ["load_audit", "release_dataset", "release_model"]

ORIENTATIONS = ("sagittal", "axial", "coronal")


def load_audit(audit_dir: str | Path | None, no_audit: bool) -> dict[str, Any] | None:
    """Read ``audit.json`` from ``audit_dir``; enforce "audit or explicit ``no_audit``"."""
    if audit_dir is not None and no_audit:
        raise ConfigError("release: both audit and no_audit given; give one of them", keys=("audit", "no_audit"))
    if audit_dir is None:
        if not no_audit:
            raise ConfigError("release: no audit given; run the memorisation audit and give its folder as audit "
                              "(or set no_audit to release unaudited data, which the datasheet will state)",
                              keys=("audit", "no_audit"))
        return None
    return read_audit(audit_dir)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a NIfTI with a fresh header (nothing copied from the source) and check the geometry."""
    write_nifti(path, array, affine, dtype=np.float32, xyzt_units=("mm",), description="uterosynth synthetic image")
    back = nib.load(str(path))
    if not np.allclose(back.affine, affine, atol=1e-4):
        raise DataError(f"{path}: written affine does not match the synthetic item's affine")


def _save_png(array: np.ndarray, path: Path) -> None:
    """Write the PNG of a plane; NaN (and infinite) intensities become 0 (and 0 or 1)."""
    write_png(path, np.nan_to_num(array))


def _check_affine(affine: np.ndarray, path: Path) -> None:
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(f"{path}: the item's affine is not a finite invertible 4x4 matrix; cannot release its geometry")


def release_dataset(
    synthetic_dir: str | Path,
    audit_dir: str | Path | None,
    out: str | Path,
    *,
    no_audit: bool = False,
    dicom: bool = False,
    dicom_reference: str | Path | None = None,
    licence: str = "CC-BY-4.0",
    overwrite: bool = False,
    evaluation_dir: str | Path | None = None,
    config: ReleaseConfig | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the release of a synthetic set, dropping the samples the audit flagged (the fidelity bar
    reads the samples released, not the whole set).

    A set decoded by a fast decoder (``sample --decoder``) is refused without ``force``; the
    datasheet names the decoder either way. ``evaluation_dir`` (an ``uterosynth evaluate`` folder of this set) puts the judge's
    per-class accuracy, KID against the floor and baselines into the datasheet, and holds the
    samples to ``config.quality``; ``force`` releases a set that fails it, stated at the top of
    the datasheet. Without it the datasheet says quality was not evaluated.

    Raises:
        ConfigError: no audit and no ``no_audit``, or both.
        DataError: the audit or the evaluation belongs to another synthetic set; an item cannot be
            read or has no usable geometry; the samples fail the fidelity bar or were decoded by a
            fast decoder (without ``force``).
    """
    syn = SyntheticSet.load(synthetic_dir)
    if (syn.info.get("decoder") or {}).get("kind") == "fast" and not force:
        raise DataError(f"{syn.root}: decoded by a fast decoder (previews and bulk sampling); sample the release "
                        "with the model's own decoder, or set force to release it with a datasheet that says so",
                        keys=("force",))
    audit = load_audit(audit_dir, no_audit)
    flagged: set = set()
    audit_scores: dict[Any, dict[str, Any]] = {}
    if audit is not None:
        check_audit_of(audit, syn.root, audit_dir)
        flagged = set(audit["summary"]["flagged_indices"])
        for s in audit["samples"]:
            audit_scores[s["index"]] = {f"similarity_{mode}_{m}": v["similarity"]
                                        for mode, d in s["measures"].items() for m, v in d.items()}
    released = [r for r in syn.records if r["index"] not in flagged]
    quality = assess_quality(evaluation_dir, syn.root, (config or ReleaseConfig()).quality, force=force,
                             released={str(r["index"]): r.get("condition") or {} for r in released} if flagged else None)
    reference = read_reference(dicom_reference) if dicom_reference is not None else None
    dicom = dicom or reference is not None
    cond_keys = sorted({k for r in syn.records for k in (r.get("condition") or {})})
    score_keys = sorted({k for v in audit_scores.values() for k in v})
    rows, dims = [], syn.dims
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for sub in ("nifti", "png"):
            (tmp / sub).mkdir()
        for record in released:
            path = syn.item_path(record)
            data, affine = syn.load_item(record)
            _check_affine(affine, path)
            if dims is None:
                dims = 3 if data.ndim == 3 and data.shape[2] > 1 else 2
            name = f"synthetic_{int(record['index']):06d}" if str(record["index"]).isdigit() else f"synthetic_{record['index']}"
            row = {"file": f"nifti/{name}.nii.gz", "index": record["index"]}
            if dims == 2:
                data = data.reshape(data.shape[0], data.shape[1], 1)
                _save_nifti(data, affine, tmp / row["file"])
                _save_png(data[:, :, 0], tmp / "png" / f"{name}.png")
                row["png"] = f"png/{name}.png"
                views = [("sagittal", data, affine)]
            else:
                views = [(o, *reformat(data, affine, o)) for o in ORIENTATIONS]
                for o, arr, aff in views:
                    suffix = "" if o == "sagittal" else f"_{o}"
                    _save_nifti(arr, aff, tmp / "nifti" / f"{name}{suffix}.nii.gz")
                    _save_png(middle_slice(arr), tmp / "png" / f"{name}_{o}.png")
                row["png"] = f"png/{name}_sagittal.png"
                row["reformats"] = ";".join(f"nifti/{name}_{o}.nii.gz" for o in ORIENTATIONS[1:])
            if dicom:
                study, frame = generate_uid(), generate_uid()
                for s, (o, arr, aff) in enumerate(views, start=1):
                    write_dicom_series(arr, aff, tmp / "dicom" / name / o, series_description=f"SYNTHETIC {o} T2W",
                                       series_number=s, study_instance_uid=study, frame_of_reference_uid=frame,
                                       reference=reference)
                row["dicom"] = f"dicom/{name}"
            row.update(seed=record.get("seed"), prompt=record.get("prompt", ""), sampler=record.get("sampler"),
                       steps=record.get("steps"), guidance=record.get("guidance"), model_hash=record.get("model_hash"))
            row.update({f"condition_{k}": (record.get("condition") or {}).get(k, "") for k in cond_keys})
            row.update(audit_scores.get(record["index"], {}))
            rows.append(row)
        columns = ["file", "index", "png", "reformats", "dicom", "seed", *[f"condition_{k}" for k in cond_keys],
                   "prompt", "sampler", "steps", "guidance", "model_hash", *score_keys]
        with open(tmp / "metadata.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows({c: r.get(c, "") for c in columns} for r in rows)
        formats = ["NIfTI", "PNG"] + (["DICOM"] if dicom else [])
        atomic_write_text(tmp / "DATASHEET.md", datasheet_md(
            synthetic_info=syn.info, records=syn.records, released=released, dropped=len(syn.records) - len(released),
            audit=audit, licence=licence, dims=dims or 2, formats=formats, version=__version__, quality=quality))
        write_sha256sums(tmp)
    return {"released": len(released), "dropped": len(syn.records) - len(released), "audited": audit is not None,
            "quality": quality.status, **({"failing": list(quality.failures)} if quality.failures else {}),
            "dicom": dicom, "out": str(out)}


def release_model(
    model_dir: str | Path,
    audit_dir: str | Path | None,
    out: str | Path,
    *,
    no_audit: bool = False,
    licence: str = "CC-BY-4.0",
    include_train_state: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Copy a model checkpoint folder and write ``MODEL_CARD.md`` (with the audit) and ``SHA256SUMS``.

    ``train_state.pt`` (optimiser state for resuming training) is left out unless
    ``include_train_state``.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").is_file():
        raise DataError(f"{model_dir}: model.json not found (is this a model checkpoint folder?)")
    try:
        model_json = json.loads((model_dir / "model.json").read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{model_dir / 'model.json'}: not valid JSON ({err.msg})") from err
    audit = load_audit(audit_dir, no_audit)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    if not include_train_state:
        files = [p for p in files if p.name != "train_state.pt"]
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        hashes = {}
        for p in files:
            rel = p.relative_to(model_dir)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, tmp / rel)
            hashes[rel.as_posix()] = sha256_file(p)
        atomic_write_text(tmp / "MODEL_CARD.md", model_card_md(model_json=model_json, files=hashes, audit=audit,
                                                             licence=licence, version=__version__))
        write_sha256sums(tmp)
    return {"files": len(files), "audited": audit is not None, "out": str(out)}
