"""One in-memory image set for every stage that compares or trains on whole sets of items.

An :class:`ImageSet` holds images ``(N, 1, *spatial)`` with, per item, its id (prepared
``item_id`` or synthetic ``index``), its subject (``""`` for synthetic items), its condition
(``{attribute: value}``: the manifest's attribute columns, or ``metadata.jsonl``'s
``condition``), where it came from (``origins``: ``"real"`` or the synthetic set's name) and,
when a task has been chosen, an integer label. Evaluation, the memorisation audit and the
downstream experiment all read their sets through :func:`load_prepared` and
:func:`load_synthetic` and take the view they need (:meth:`ImageSet.planes` gives
``(N, *spatial)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.imageio import squeeze_2d
from .manifest import PreparedDataset, label_value, parse_dataset_ref
from .synthetic import SyntheticSet

__all__ = ["SLICE_MARK", "ImageSet", "load_prepared", "load_synthetic", "stack_arrays"]

SLICE_MARK = "#"
"""Separates a volume's id from the slice index in the ids of :meth:`ImageSet.central_slices`."""


@dataclass(frozen=True)
class ImageSet:
    """A set of images with the identity of every item.

    Attributes:
        images: ``(N, 1, *spatial)`` float tensor.
        ids: item identifiers (prepared ``item_id`` or synthetic ``index``).
        subjects: subject of every item (``""`` for synthetic items).
        conditions: one ``{attribute: value}`` per item.
        origins: ``"real"`` or the synthetic set's name, per item.
        labels: ``(N,)`` integer class indices, or ``None`` before a task is chosen.
        name: key of the set in an artifact (``reference``, ``synthetic``, a baseline name ...).
        kind: ``real``, ``synthetic`` or ``baseline``.
        source: where the set was read from.
        info: what the source says about the set (split, dims, attributes, spacing, affine ...).
    """

    images: torch.Tensor
    ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    conditions: tuple[dict[str, Any], ...] = ()
    origins: tuple[str, ...] = ()
    labels: torch.Tensor | None = None
    name: str = ""
    kind: str = "real"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = int(self.images.shape[0])
        defaults = {
            "ids": tuple(str(i) for i in range(n)),
            "subjects": ("",) * n,
            "conditions": tuple({} for _ in range(n)),
            "origins": ("real" if self.kind == "real" else (self.name or self.kind),) * n,
        }
        for key, default in defaults.items():
            value = getattr(self, key)
            object.__setattr__(self, key, tuple(value) if len(value) else default)
            if len(getattr(self, key)) != n:
                raise ValueError(f"ImageSet: {n} images but {len(getattr(self, key))} {key}")
        if self.labels is not None and int(self.labels.shape[0]) != n:
            raise ValueError(f"ImageSet: {n} images but {int(self.labels.shape[0])} labels")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    def planes(self) -> torch.Tensor:
        """The images without their channel axis: ``(N, *spatial)``."""
        return self.images[:, 0]

    def attribute(self, name: str) -> list[str | None]:
        """The value of ``name`` for each item (``None`` where absent)."""
        return [label_value(c.get(name)) for c in self.conditions]

    def subset(self, index: Sequence[int] | torch.Tensor | np.ndarray, **changes: Any) -> ImageSet:
        """The items at ``index`` (in that order); ``changes`` replace other fields."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64) if not isinstance(index, torch.Tensor) else index,
                              dtype=torch.long)
        ids = idx.tolist()
        return replace(
            self,
            images=self.images[idx],
            ids=tuple(self.ids[i] for i in ids),
            subjects=tuple(self.subjects[i] for i in ids),
            conditions=tuple(self.conditions[i] for i in ids),
            origins=tuple(self.origins[i] for i in ids),
            labels=None if self.labels is None else self.labels[idx],
            **changes,
        )

    def subsample(self, n: int | None, seed: int) -> ImageSet:
        """A random subset of at most ``n`` items, in their original order (the same for a given seed)."""
        if n is None or len(self) <= n:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return self.subset(keep, info={**self.info, "subsampled_from": len(self)})

    def central_slices(self, k: int) -> ImageSet:
        """Each volume's ``k`` central sagittal slices as 2D items, in slice order.

        The slices are the 2D preparation's ``central`` rule on the volume's slice axis (the
        last): ``D // 2 - k // 2`` onwards, kept inside the volume. A slice's id is
        ``"<volume id>#<slice index>"`` and it keeps the volume's subject, condition and label,
        so :meth:`units` resamples whole volumes.

        Raises:
            ValueError: the items are not volumes, or hold fewer than ``k`` slices.
        """
        if self.spatial_dims != 3:
            raise ValueError(f"{self.source or self.name}: central_slices needs volumes, the items are "
                             f"{self.spatial_dims}D")
        depth = int(self.images.shape[-1])
        if not 1 <= k <= depth:
            raise ValueError(f"{self.source or self.name}: {k} central slices asked of volumes of {depth} slices")
        first = min(max(0, depth // 2 - k // 2), depth - k)
        picked = list(range(first, first + k))
        per_volume = np.repeat(np.arange(len(self)), k)
        sliced = replace(self, images=self.images[..., :0]).subset(per_volume)  # identities only: no pixel copies
        images = self.images[..., picked].permute(0, 4, 1, 2, 3).reshape(len(self) * k, *self.images.shape[1:4])
        return replace(sliced, images=images,
                       ids=tuple(f"{i}{SLICE_MARK}{j}" for i in self.ids for j in picked),
                       info={**self.info, "dims": 2, "volume_slices": {"k": k, "slices": picked, "depth": depth}})

    def units(self) -> tuple[str, ...]:
        """The independent unit of each item: its subject; for a slice of a synthetic volume
        (:meth:`central_slices`), that volume; otherwise ``""`` (the item itself)."""
        sliced = bool(self.info.get("volume_slices"))
        return tuple(s or (f"volume {i.rsplit(SLICE_MARK, 1)[0]}" if sliced else "")
                     for s, i in zip(self.subjects, self.ids, strict=True))

    def with_images(self, images: torch.Tensor) -> ImageSet:
        """The same items with other pixels (e.g. resized)."""
        return replace(self, images=images)

    @staticmethod
    def concat(parts: Sequence[ImageSet]) -> ImageSet:
        """The items of ``parts`` in order (empty parts are skipped); name and kind of the first."""
        kept = [p for p in parts if len(p)]
        first = kept[0] if kept else parts[0]
        labelled = all(p.labels is not None for p in kept)
        return replace(
            first,
            images=torch.cat([p.images for p in kept]),
            ids=tuple(s for p in kept for s in p.ids),
            subjects=tuple(s for p in kept for s in p.subjects),
            conditions=tuple(c for p in kept for c in p.conditions),
            origins=tuple(s for p in kept for s in p.origins),
            labels=torch.cat([p.labels for p in kept]) if labelled and kept else None,
        )


def stack_arrays(arrays: Sequence[np.ndarray], source: str, *, clip: bool = True, needs: str = "evaluation") -> torch.Tensor:
    """Stack item arrays ``(*spatial)`` into ``(N, 1, *spatial)`` float32.

    Args:
        arrays: one array per item, all of one shape.
        source: named in errors.
        clip: clip to ``[0, 1]`` and refuse non-finite values (evaluation); ``False`` keeps
            the values as stored (the audit compares stored intensities).
        needs: who needs one shape, named in the error.

    Raises:
        DataError: items differ in shape, or (``clip``) hold NaN or infinite values.
    """
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{source}: items have different shapes {sorted(shapes)[:3]}; {needs} needs one shape per set")
    stacked = np.stack(arrays).astype(np.float32, copy=False)
    if clip:
        if not np.isfinite(stacked).all():
            raise DataError(f"{source}: items contain NaN or infinite values")
        stacked = np.clip(stacked, 0.0, 1.0)
    return torch.from_numpy(stacked)[:, None]


def load_prepared(
    ref: str | Path | PreparedDataset,
    split: str | None = None,
    *,
    name: str = "reference",
    clip: bool = True,
    needs: str = "evaluation",
    rows: Sequence[Mapping[str, str]] | None = None,
) -> ImageSet:
    """The items of one split of a prepared dataset.

    Args:
        ref: ``DIR``, ``DIR:split`` or a loaded :class:`PreparedDataset`.
        split: the split when ``ref`` names none (default ``train``).
        name: the set's name.
        clip: see :func:`stack_arrays`.
        needs: see :func:`stack_arrays`.
        rows: only these manifest rows (default: every row of the split).

    Raises:
        DataError: see :func:`stack_arrays`; the manifest or an item cannot be read.
    """
    if isinstance(ref, PreparedDataset):
        dataset, root = ref.split(split) if split else ref, ref.root
        split = split or ""
    else:
        root, named = parse_dataset_ref(ref)
        split = named or split or "train"
        dataset = PreparedDataset.load(root, split)
    rows = list(dataset.rows if rows is None else rows)
    where = f"{root}:{split}"
    images = stack_arrays([dataset.load_array(r) for r in rows], where, clip=clip, needs=needs) if rows else \
        torch.empty(0)
    return ImageSet(
        images,
        ids=tuple(r["item_id"] for r in rows),
        subjects=tuple(r["subject"] for r in rows),
        conditions=tuple({a: r.get(a, "") for a in dataset.attributes} for r in rows),
        name=name,
        kind="real",
        source=where,
        info={"split": split, "dims": dataset.dims, "attributes": dataset.attributes,
              "spacing": dataset.info.get("spacing") or [1.0, 1.0, 1.0], "affine": dataset.info.get("affine")},
    )


def load_synthetic(
    path: str | Path,
    *,
    name: str = "synthetic",
    kind: str = "synthetic",
    dims: int | None = None,
    clip: bool = True,
    needs: str = "evaluation",
) -> ImageSet:
    """Every item of a synthetic-set folder; ``dims`` (of the real data) decides how ``(H, W, 1)`` items are read.

    Raises:
        DataError: the set has no items; see :func:`stack_arrays`.
    """
    sset = SyntheticSet.load(path)
    if not sset.records:
        raise DataError(f"{Path(path) / 'metadata.jsonl'}: the synthetic set has no items")
    arrays = []
    for record in sset.records:
        arr = sset.load_array(record)
        arrays.append(squeeze_2d(arr) if dims == 2 else arr)
    return ImageSet(
        stack_arrays(arrays, str(path), clip=clip, needs=needs),
        ids=tuple(str(r["index"]) for r in sset.records),
        subjects=("",) * len(arrays),
        conditions=tuple(dict(r.get("condition") or {}) for r in sset.records),
        name=name,
        kind=kind,
        source=str(path),
        info=dict(sset.info),
    )
