"""The synthetic-set artifact: ``items/*.nii.gz`` + ``previews/*.png`` + ``metadata.jsonl``.

Layout of a synthetic set folder (written by ``uterosynth sample``)::

    synthetic.json    provenance (version, config, seed), dims, model hash, sampler settings
    metadata.jsonl    one JSON object per item: index, path, preview, seed, condition (dict of
                      attribute → value), prompt, sampler, steps, guidance, model_hash, seconds
    items/            one NIfTI per item, same array convention and geometry as the training data
    previews/         one PNG per item (mid-sagittal slice for volumes)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError

__all__ = ["SyntheticSet", "write_metadata"]

REQUIRED_KEYS = ("index", "path")


def write_metadata(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``metadata.jsonl`` (one record per line, ordered by index)."""
    lines = [json.dumps(dict(r), sort_keys=True, default=str) for r in sorted(records, key=lambda r: r["index"])]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


@dataclass
class SyntheticSet:
    """A synthetic set on disk: its records, its ``synthetic.json`` and item loading."""

    root: Path
    records: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> SyntheticSet:
        """Open a synthetic set folder; raises :class:`DataError` naming what is missing."""
        root = Path(root)
        meta = root / "metadata.jsonl"
        if not root.is_dir():
            raise DataError(f"{root}: synthetic set folder not found")
        if not meta.is_file():
            raise DataError(f"{meta}: not found (is this a synthetic set? run 'uterosynth sample')")
        records = []
        for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{meta}: line {lineno} is not valid JSON ({err.msg})") from err
            missing = [k for k in REQUIRED_KEYS if k not in record]
            if missing:
                raise DataError(f"{meta}: line {lineno} lacks key(s) {', '.join(missing)}")
            records.append(record)
        info_path = root / "synthetic.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        return cls(root=root, records=records, info=info)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def dims(self) -> int | None:
        return self.info.get("dims")

    def item_path(self, record: Mapping[str, Any]) -> Path:
        return self.root / record["path"]

    def load_item(self, record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(array, affine)``; 2D items come back ``(H, W)``."""
        import nibabel as nib

        path = self.item_path(record)
        try:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as err:
            raise DataError(f"{path}: cannot read synthetic item ({err})") from err
        if data.ndim == 3 and data.shape[2] == 1 and self.dims != 3:
            data = data[:, :, 0]
        return data, np.asarray(img.affine, dtype=np.float64)

    def load_array(self, record: Mapping[str, Any]) -> np.ndarray:
        return self.load_item(record)[0]

    def stack(self) -> np.ndarray:
        """All items as one array ``(N, H, W[, D])``."""
        return np.stack([self.load_array(r) for r in self.records])
