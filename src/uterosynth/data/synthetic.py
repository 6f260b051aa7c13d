"""The synthetic-set artifact: ``items/*.nii.gz`` + ``previews/*.png`` + ``metadata.jsonl``.

Layout of a synthetic set folder (written by ``uterosynth sample`` and the autoencoder
baselines, both through this module)::

    synthetic.json    provenance (version, config, seed), dims, ``items`` (the item count; sets
                      written before it was unified record it as ``count``), model hash, sampler
                      settings, and the generator's hashed ``training_subjects``
                      (:func:`generator_subjects`; the sampler: ``model.training_subjects``, the
                      autoencoder baselines: top-level ``training_subjects`` and, for
                      reconstructions, ``source_subjects``: the reconstructed real subjects)
    metadata.jsonl    one JSON object per item: index, path, preview, seed, condition (dict of
                      attribute → value), prompt, sampler, steps, guidance, model_hash, seconds
    items/            one NIfTI per item, same array convention and geometry as the training data
    previews/         one PNG per item (mid-sagittal slice for volumes)

The item ``i`` is ``items/<i:06d>.nii.gz`` with its preview ``previews/<i:06d>.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import atomic_output_dir, write_json
from ..core.errors import DataError
from ..core.imageio import as_volume, preview_plane, read_nifti, squeeze_2d, write_nifti, write_png
from .item_folder import ItemFolder

__all__ = ["COUNT_KEY", "SyntheticSet", "generator_subjects", "merge_metadata_shards", "source_subjects", "write_item",
           "write_metadata", "write_metadata_shard", "write_synthetic_set"]

REQUIRED_KEYS = ("index", "path")
COUNT_KEY = "items"
"""Key of the item count in ``synthetic.json``."""
LEGACY_COUNT_KEYS = ("count",)
"""Keys older writers used for the item count, still read."""


def generator_subjects(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The hashed ``training_subjects`` record of the generator of a set (its ``synthetic.json``).

    Read from ``model.training_subjects`` (``uterosynth sample``) or the top-level
    ``training_subjects`` (autoencoder baselines); ``None`` for sets written before it was recorded.
    """
    model = info.get("model")
    record = model.get("training_subjects") if isinstance(model, Mapping) else None
    return record or info.get("training_subjects") or None


def source_subjects(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The hashed real subjects a set reproduces item by item (reconstructions), or ``None``."""
    return info.get("source_subjects") or None


def write_item(folder: str | Path, index: int, image: np.ndarray, affine: np.ndarray) -> tuple[str, str]:
    """Write item ``index`` (``(H, W)`` or ``(H, W, D)`` in ``[0, 1]``) into a synthetic set folder.

    The NIfTI is float32 (``(H, W, 1)`` for 2D) with ``affine`` as qform and sform; the preview is
    the item (its middle sagittal slice for a volume) as an 8-bit PNG. ``items/`` and
    ``previews/`` must exist.

    Returns:
        The paths of the NIfTI and the PNG relative to ``folder``.
    """
    folder = Path(folder)
    rel, preview = f"items/{index:06d}.nii.gz", f"previews/{index:06d}.png"
    write_nifti(folder / rel, as_volume(image), affine, dtype=np.float32)
    write_png(folder / preview, preview_plane(image))
    return rel, preview


def write_synthetic_set(
    out: str | Path, arrays: np.ndarray, conditions: Sequence[Mapping[str, Any]], *, affine: np.ndarray | None = None,
    info: Mapping[str, Any] | None = None, overwrite: bool = False,
) -> Path:
    """Write arrays ``(N, H, W[, D])`` as a synthetic set, atomically.

    Item ``i`` gets ``condition = conditions[i]``; ``seed``, ``sampler`` (``info["kind"]``) and
    ``model_hash`` of every record come from ``info``, which becomes ``synthetic.json``.

    Raises:
        DataError: ``out`` exists and ``overwrite`` is false.
    """
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    dims = arrays.ndim - 1
    info = dict(info or {})
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "items").mkdir()
        (tmp / "previews").mkdir()
        records = []
        for i, (array, cond) in enumerate(zip(arrays, conditions, strict=True)):
            rel, preview = write_item(tmp, i, array, affine)
            records.append({"index": i, "path": rel, "preview": preview,
                            "condition": dict(cond), "seed": info.get("seed"), "sampler": info.get("kind"),
                            "model_hash": info.get("model_hash")})
        write_metadata(tmp / "metadata.jsonl", records)
        write_json(tmp / "synthetic.json", {**info, "dims": dims, COUNT_KEY: len(records)})
    return Path(out)


def write_metadata(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``metadata.jsonl`` (one record per line, ordered by index)."""
    lines = [json.dumps(dict(r), sort_keys=True, default=str) for r in sorted(records, key=lambda r: r["index"])]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


def write_metadata_shard(folder: str | Path, rank: int, records: Iterable[Mapping[str, Any]]) -> None:
    """Write the records one rank made (``.metadata.rank<r>.jsonl``) for :func:`merge_metadata_shards`."""
    Path(folder, f".metadata.rank{rank}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def merge_metadata_shards(folder: str | Path) -> list[dict[str, Any]]:
    """Merge every rank's shard into ``metadata.jsonl`` (shards removed); returns the merged records."""
    folder = Path(folder)
    merged: list[dict[str, Any]] = []
    for shard in sorted(folder.glob(".metadata.rank*.jsonl")):
        merged += [json.loads(line) for line in shard.read_text().splitlines() if line]
        shard.unlink()
    write_metadata(folder / "metadata.jsonl", merged)
    return merged


@dataclass
class SyntheticSet(ItemFolder):
    """A synthetic set on disk: its records, its ``synthetic.json`` (``info``) and item loading."""

    records: list[dict[str, Any]] = field(default_factory=list)

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

    def _listing(self) -> list[dict[str, Any]]:
        return self.records

    @property
    def dims(self) -> int | None:
        return self.info.get("dims")

    @property
    def count(self) -> int | None:
        """The item count ``synthetic.json`` records (``items``, or ``count`` in older sets); ``None`` if absent."""
        for key in (COUNT_KEY, *LEGACY_COUNT_KEYS):
            if key in self.info:
                return int(self.info[key])
        return None

    def load_item(self, record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(array, affine)``; 2D items come back ``(H, W)``."""
        data, affine = read_nifti(self.item_path(record), what="synthetic item")
        if self.dims != 3:
            data = squeeze_2d(data)
        return data, affine
