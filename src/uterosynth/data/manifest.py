"""The prepared-dataset artifact: ``items/*.nii.gz`` + ``manifest.csv`` + ``dataset.json``.

Layout of a prepared dataset folder::

    dataset.json    preprocessing config, seed, package version, attribute names, dims
    manifest.csv    one row per item (columns below + one column per attribute)
    items/          one NIfTI per item; geometry (affine) kept

Array convention for items (canonical orientation "IPR"): array axis 0 runs superior →
inferior (image rows), axis 1 anterior → posterior (image columns), axis 2 right-to-left
slice order is the sagittal slice axis (increasing towards the patient's right). A 2D item is
one sagittal slice stored as an ``(H, W, 1)`` NIfTI whose affine places it in the scanner; a
3D item is an ``(H, W, D)`` volume. Loaded arrays are ``(H, W)`` or ``(H, W, D)`` float32.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from .item_folder import ItemFolder

__all__ = [
    "CORE_COLUMNS",
    "PAD_COLUMNS",
    "SPLITS",
    "PreparedDataset",
    "parse_dataset_ref",
    "read_manifest",
    "write_manifest",
]

CORE_COLUMNS: tuple[str, ...] = (
    "item_id",
    "path",
    "subject",
    "split",
    "dims",
    "shape",
    "spacing",
    "slice_index",
    "source",
    "source_path",
    "prep_hash",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
# ``roi.mode: window`` datasets: the fraction of the item outside the scan's field of view and
# its pad mask (``pad/<item_id>.nii.gz``, uint8, 1 = padded), written after the core columns.
PAD_COLUMNS: tuple[str, ...] = ("pad_fraction", "pad_path")


def label_value(value: Any) -> str | None:
    """An attribute value as text, or ``None`` where it is empty (``None`` or ``""``).

    An empty value (e.g. a myoma too small to label) means "not known": it is never a class.
    """
    return None if value is None or value == "" else str(value)


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]], attributes: Sequence[str]) -> None:
    """Write ``manifest.csv``: the core columns, the pad columns when rows have them, ``attributes``."""
    rows = list(rows)
    pad = [c for c in PAD_COLUMNS if any(c in r for r in rows)]
    columns = list(CORE_COLUMNS) + pad + [a for a in attributes if a not in CORE_COLUMNS and a not in pad]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Read ``manifest.csv``; raises :class:`DataError` naming the file when columns are missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (is this a prepared dataset? run 'uterosynth prepare')")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CORE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
        return list(reader)


def parse_dataset_ref(ref: str | Path) -> tuple[Path, str | None]:
    """Split ``"DIR:split"`` into ``(Path(DIR), "split")``; a bare ``DIR`` gives ``(DIR, None)``."""
    text = str(ref)
    head, sep, tail = text.rpartition(":")
    if sep and tail in SPLITS and head:
        return Path(head), tail
    return Path(text), None


@dataclass
class PreparedDataset(ItemFolder):
    """A prepared dataset on disk: its rows, its ``dataset.json`` (``info``) and item loading."""

    rows: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, split: str | None = None) -> PreparedDataset:
        """Open ``root`` (optionally ``DIR:split``), keeping only rows of ``split`` if given."""
        import json

        root, ref_split = parse_dataset_ref(root)
        split = split or ref_split
        if not root.is_dir():
            raise DataError(f"{root}: prepared dataset folder not found")
        info_path = root / "dataset.json"
        if not info_path.is_file():
            raise DataError(f"{info_path}: not found (is this a prepared dataset? run 'uterosynth prepare')")
        info = json.loads(info_path.read_text())
        rows = read_manifest(root / "manifest.csv")
        if split is not None:
            if split not in SPLITS:
                raise DataError(f"{root}: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
            rows = [r for r in rows if r["split"] == split]
            if not rows:
                raise DataError(f"{root}: split '{split}' has no items")
        return cls(root=root, rows=rows, info=info)

    @property
    def attributes(self) -> list[str]:
        """Names of the attribute columns (orientation, field_strength, ...)."""
        return list(self.info.get("attributes", []))

    @property
    def dims(self) -> int:
        """2 for slice items, 3 for volumes."""
        return int(self.info["dims"])

    def _listing(self) -> list[dict[str, str]]:
        return self.rows

    def split(self, name: str) -> PreparedDataset:
        """A view holding only the rows of split ``name``."""
        rows = [r for r in self.rows if r["split"] == name]
        return PreparedDataset(root=self.root, rows=rows, info=self.info)

    def subjects(self) -> list[str]:
        """Distinct subjects, in manifest order."""
        return list(dict.fromkeys(r["subject"] for r in self.rows))

    def load_item(self, row: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(array, affine)``: array ``(H, W)`` for 2D items, ``(H, W, D)`` for 3D."""
        from ..core.imageio import read_nifti

        data, affine = read_nifti(self.item_path(row))
        if self.dims == 2 and data.ndim == 3:
            data = data[:, :, 0]
        return data, affine

    def load_pad(self, row: Mapping[str, str]) -> np.ndarray | None:
        """The item's pad mask (True outside the scan's field of view), same shape as its array;
        ``None`` for datasets prepared without ``roi.mode: window``."""
        import nibabel as nib

        rel = row.get("pad_path", "")
        if not rel:
            return None
        mask = np.asarray(nib.load(str(self.root / rel)).dataobj) > 0
        return mask[:, :, 0] if self.dims == 2 and mask.ndim == 3 else mask
