"""Image sets to evaluate, read from the prepared-dataset and synthetic-set artifacts.

An :class:`EvalSet` holds images ``(N, 1, *spatial)`` in ``[0, 1]`` with one condition dict per
item: for real data the manifest's attribute columns, for synthetic sets ``metadata.jsonl``'s
``condition``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.imageio import squeeze_2d
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.synthetic import SyntheticSet

__all__ = ["EvalSet", "load_real", "load_synthetic", "subsample"]


@dataclass
class EvalSet:
    """A named set of images with their conditions.

    Attributes:
        name: key in ``metrics.json`` (``synthetic``, a baseline name, ``real_vs_real``, ``reference``).
        kind: ``real``, ``synthetic`` or ``baseline``.
        images: ``(N, 1, *spatial)`` float32 in ``[0, 1]`` (clipped).
        conditions: one ``{attribute: value}`` per item.
        source: where it was read from.
    """

    name: str
    kind: str
    images: torch.Tensor
    conditions: list[dict[str, Any]]
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    def attribute(self, name: str) -> list[str | None]:
        """The value of ``name`` for each item (``None`` where absent)."""
        return [None if c.get(name) in (None, "") else str(c.get(name)) for c in self.conditions]


def _stack(arrays: list[np.ndarray], source: str) -> torch.Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"{source}: items have different shapes {sorted(shapes)[:3]}; evaluation needs one shape per set")
    stacked = np.stack(arrays).astype(np.float32)
    if not np.isfinite(stacked).all():
        raise DataError(f"{source}: items contain NaN or infinite values")
    return torch.from_numpy(np.clip(stacked, 0.0, 1.0))[:, None]


def load_real(ref: str | Path, *, default_split: str = "train", name: str = "reference") -> EvalSet:
    """The prepared dataset ``DIR[:split]`` (``default_split`` when none is given)."""
    root, split = parse_dataset_ref(ref)
    split = split or default_split
    dataset = PreparedDataset.load(root, split)
    arrays = [dataset.load_array(r) for r in dataset.rows]
    conditions = [{a: r.get(a, "") for a in dataset.attributes} for r in dataset.rows]
    spacing = dataset.info.get("spacing") or [1.0, 1.0, 1.0]
    return EvalSet(name, "real", _stack(arrays, f"{root}:{split}"), conditions, f"{root}:{split}",
                   {"split": split, "dims": dataset.dims, "attributes": dataset.attributes, "spacing": spacing,
                    "affine": dataset.info.get("affine")})


def load_synthetic(path: str | Path, *, name: str = "synthetic", kind: str = "synthetic", dims: int | None = None) -> EvalSet:
    """A synthetic-set folder; ``dims`` (of the real data) decides how ``(H, W, 1)`` items are read."""
    sset = SyntheticSet.load(path)
    if not sset.records:
        raise DataError(f"{Path(path) / 'metadata.jsonl'}: the synthetic set has no items")
    arrays = []
    for record in sset.records:
        arr = sset.load_array(record)
        arrays.append(squeeze_2d(arr) if dims == 2 else arr)
    conditions = [dict(r.get("condition") or {}) for r in sset.records]
    return EvalSet(name, kind, _stack(arrays, str(path)), conditions, str(path), dict(sset.info))


def subsample(s: EvalSet, n: int | None, seed: int) -> EvalSet:
    """A random subset of at most ``n`` items (the same for a given seed)."""
    if n is None or len(s) <= n:
        return s
    keep = np.sort(np.random.default_rng(seed).choice(len(s), n, replace=False))
    return EvalSet(s.name, s.kind, s.images[torch.as_tensor(keep)], [s.conditions[i] for i in keep], s.source,
                   {**s.info, "subsampled_from": len(s)})
