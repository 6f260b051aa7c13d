"""Source adapters: find each subject's image, label map and attributes in a raw dataset.

Two adapters, registered in :data:`SOURCES`:

``umd``
    The Uterine Myoma MRI Dataset (Pan et al., Sci Data 2024) layout ``UMD/UMD_<date>_<NNN>/``
    holding ``*_t2.nii.gz`` (image), ``*_seg.nii.gz`` (labels: 0 background, 1 uterine wall,
    2 cavity, 3 myoma, 4 Nabothian cyst) and raw ``.dcm`` slices. The subject id is the
    folder name (when no folder is named ``UMD_*``, every sub-folder holding a scan is a case). Image and labels are paired **by folder**, never by file name, because the
    archive has typos in case numbers inside names; label files named ``*_seq.nii.gz`` are
    accepted; ``__MACOSX/`` folders and ``._*`` files are ignored; ``.gz`` files that are not
    compressed are read anyway (see :mod:`uterosynth.data.io`). When a case folder has no
    NIfTI image its DICOM slices are read as the image.

``folder``
    Any folder of scans. Each entry directly under the input folder is one subject:

    * an image file (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``): the
      subject id is the file name without its extension; its label map, if any, is the file
      beside it named ``<name>_seg``/``_seq``/``_label``/``_labels``/``_mask`` + an image suffix;
    * a sub-folder: the subject id is the folder name; the image is its single non-label image
      file, or else the DICOM series found in it (searched recursively); its label map is a
      file named ``seg``/``label``/``labels``/``mask`` + suffix or ending in one of the label
      suffixes above.

Attributes come from a table (``labels.csv`` at the dataset root, or ``--labels``) with a
subject column and one column per attribute.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DataError
from .io import IMAGE_SUFFIXES, is_dicom_file, is_image_file
from .manifest import CORE_COLUMNS

__all__ = [
    "SOURCES",
    "LabelTable",
    "SubjectRecord",
    "discover",
    "discover_folder",
    "discover_umd",
    "find_label_table",
    "read_label_table",
]

LABEL_TOKENS = ("seg", "seq", "label", "labels", "mask")
_IGNORED_DIRS = {"__MACOSX"}


@dataclass
class SubjectRecord:
    """One subject found by an adapter.

    Attributes:
        subject: subject id (UMD: the case folder name).
        image: image file or DICOM folder; ``None`` when none was found (see ``problem``).
        label: label map file, if any.
        source_path: ``image`` relative to the input folder (recorded in the manifest).
        problem: why this subject cannot be used (discovery-time), or ``""``.
    """

    subject: str
    image: Path | None
    label: Path | None = None
    source_path: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    problem: str = ""


def _strip_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + (".dcm",), key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_label_name(name: str) -> bool:
    stem = _strip_suffix(name).lower()
    return stem in LABEL_TOKENS or any(stem.endswith(f"_{t}") or stem.endswith(f"-{t}") for t in LABEL_TOKENS)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in _IGNORED_DIRS


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _visible(p))


def _has_dicom(folder: Path) -> Path | None:
    """The first folder at or below ``folder`` holding DICOM files (``__MACOSX`` skipped)."""
    for sub in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if any(part in _IGNORED_DIRS or part.startswith(".") for part in sub.relative_to(folder).parts):
            continue
        if any(is_dicom_file(f) for f in sub.iterdir() if f.is_file()):
            return sub
    return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _pick_in_folder(folder: Path, root: Path, *, image_hint: re.Pattern[str] | None) -> SubjectRecord:
    files = [p for p in _children(folder) if is_image_file(p)]
    labels = [p for p in files if _is_label_name(p.name)]
    images = [p for p in files if not _is_label_name(p.name)]
    if image_hint is not None and len(images) > 1:
        hinted = [p for p in images if image_hint.search(p.name)]
        images = hinted or images
    record = SubjectRecord(subject=folder.name, image=None)
    if len(labels) > 1:
        record.problem = f"{folder}: several label maps ({', '.join(p.name for p in labels)}); keep one"
    elif labels:
        record.label = labels[0]
    if len(images) > 1:
        record.problem = f"{folder}: several images ({', '.join(p.name for p in images)}); keep one per subject folder"
    elif images:
        record.image = images[0]
    else:
        dicom = _has_dicom(folder)
        if dicom is None:
            record.problem = f"{folder}: no image found (expected a NIfTI/MHA/NRRD file or DICOM slices)"
        record.image = dicom
    if record.image is not None:
        record.source_path = _rel(record.image, root)
    return record


def discover_umd(root: str | Path) -> list[SubjectRecord]:
    """Subjects of a UMD-layout dataset (``root`` is the ``UMD`` folder or its parent).

    Raises:
        DataError: no ``UMD_*`` case folder found.
    """
    root = Path(root)
    base = root
    if not any(p.is_dir() and p.name.startswith("UMD_") for p in _children(root)) and (root / "UMD").is_dir():
        base = root / "UMD"
    folders = [p for p in _children(base) if p.is_dir()]
    cases = [p for p in folders if p.name.startswith("UMD_")]
    if not cases:  # same layout, other case names: every sub-folder holding an image or DICOM slices
        cases = [p for p in folders if any(is_image_file(f) for f in p.iterdir()) or _has_dicom(p) is not None]
    if not cases:
        raise DataError(f"{root}: no UMD case folders (expected UMD/UMD_<date>_<NNN>/ with *_t2.nii.gz inside)")
    hint = re.compile(r"t2", re.IGNORECASE)
    return [_pick_in_folder(case, root, image_hint=hint) for case in cases]


def discover_folder(root: str | Path) -> list[SubjectRecord]:
    """Subjects of a plain folder of scans (one per image file or per sub-folder).

    Raises:
        DataError: nothing that looks like a scan was found.
    """
    root = Path(root)
    records: list[SubjectRecord] = []
    entries = _children(root)
    files = [p for p in entries if is_image_file(p)]
    by_stem = {_strip_suffix(p.name).lower(): p for p in files}
    for path in files:
        if _is_label_name(path.name):
            continue
        stem = _strip_suffix(path.name)
        label = next((by_stem[k] for t in LABEL_TOKENS if (k := f"{stem.lower()}_{t}") in by_stem), None)
        records.append(SubjectRecord(subject=stem, image=path, label=label, source_path=_rel(path, root)))
    for folder in (p for p in entries if p.is_dir()):
        records.append(_pick_in_folder(folder, root, image_hint=None))
    if not records:
        if _has_dicom(root) is not None:  # a single DICOM series given directly
            return [SubjectRecord(subject=root.name, image=root, source_path=".")]
        raise DataError(f"{root}: no scans found (expected NIfTI/MHA/NRRD files or folders of DICOM slices)")
    seen: dict[str, SubjectRecord] = {}
    for record in records:
        if record.subject in seen:
            raise DataError(
                f"{root}: subject '{record.subject}' appears twice ({seen[record.subject].source_path} and "
                f"{record.source_path}); rename one"
            )
        seen[record.subject] = record
    return sorted(records, key=lambda r: r.subject)


SOURCES: dict[str, Callable[[Path], list[SubjectRecord]]] = {"umd": discover_umd, "folder": discover_folder}


def discover(source: str, root: str | Path) -> list[SubjectRecord]:
    """Run adapter ``source`` (``umd`` or ``folder``) on ``root``."""
    root = Path(root)
    if source not in SOURCES:
        raise DataError(f"unknown source '{source}' (expected one of {', '.join(SOURCES)})")
    if not root.is_dir():
        raise DataError(f"{root}: input folder not found")
    return SOURCES[source](root)


@dataclass
class LabelTable:
    """A subject → attributes table read from CSV.

    Attributes:
        path: the CSV file.
        columns: attribute column names (every column but the subject column and those named like a
            manifest column, which describe the scan, not the item), in file order.
        rows: subject → {attribute: value} (values stripped strings).
    """

    path: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]

    def attributes_for(self, subject: str, allowed: Mapping[str, list[str]]) -> dict[str, str] | None:
        """The subject's attributes, checked against ``allowed``; ``None`` if it has no row.

        Raises:
            DataError: a value is not among the allowed values of its attribute.
        """
        row = self.rows.get(subject)
        if row is None:
            return None
        for name, values in allowed.items():
            value = row.get(name, "")
            if value != "" and value not in [str(v) for v in values]:
                raise DataError(
                    f"{self.path}: subject '{subject}' has unknown {name} '{value}' "
                    f"(allowed: {', '.join(map(str, values))}); fix the table or labels.attributes in the config"
                )
        return dict(row)


def read_label_table(path: str | Path, *, subject_column: str = "subject", required: tuple[str, ...] = ()) -> LabelTable:
    """Read a labels CSV (comma, semicolon or tab separated).

    Raises:
        DataError: file unreadable, subject column missing, a ``required`` attribute column
            missing, or a subject listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read labels table ({err})") from err
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    header = [h.strip() for h in (reader.fieldnames or [])]
    if subject_column not in header:
        raise DataError(
            f"{path}: labels table has no '{subject_column}' column (found: {', '.join(header) or 'nothing'}); "
            f"add it or set labels.subject_column"
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: labels table lacks attribute column(s) {', '.join(missing)} declared in the config")
    rows: dict[str, dict[str, str]] = {}
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        subject = row.pop(subject_column, "")
        for name in set(row) & set(CORE_COLUMNS):  # a manifest column (the phantom's scan 'shape'): the item's own wins
            del row[name]
        if not subject:
            continue
        if subject in rows:
            raise DataError(f"{path}: line {lineno}: subject '{subject}' listed twice")
        rows[subject] = row
    columns = [c for c in header if c != subject_column and c not in CORE_COLUMNS]
    return LabelTable(path=path, columns=columns, rows=rows)


def find_label_table(root: str | Path) -> Path | None:
    """``labels.csv`` at the dataset root (or in its ``UMD/`` folder), if present."""
    root = Path(root)
    for candidate in (root / "labels.csv", root / "UMD" / "labels.csv"):
        if candidate.is_file():
            return candidate
    return None
