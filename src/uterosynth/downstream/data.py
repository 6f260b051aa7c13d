"""Labelled image sets for the downstream task: real splits and synthetic sets.

Everything is loaded once, resized once to the classifier's input size and kept in memory as
:class:`~uterosynth.data.image_set.ImageSet` with ``labels`` (``(N, 1, *spatial)`` float
tensors) — phantom-scale data fits easily and training then never touches the disk.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError, DataError
from ..data.image_set import ImageSet
from ..data.manifest import PreparedDataset, label_value, parse_dataset_ref
from ..data.synthetic import SyntheticSet

__all__ = [
    "MAX_CLASSES",
    "resize",
    "resolve_size",
    "task_classes",
    "load_real_splits",
    "load_external_test",
    "load_task_data",
    "TaskData",
    "load_synthetic",
]

log = logging.getLogger(__name__)

MAX_CLASSES = 32
"""An attribute with more distinct values than this is not treated as categorical."""


def resolve_size(image_size: int | Sequence[int] | None, shape: Sequence[int]) -> tuple[int, ...]:
    """The classifier's spatial input size for data of spatial ``shape``."""
    if image_size is None:
        return tuple(int(s) for s in shape)
    if isinstance(image_size, int):
        return (int(image_size),) * len(shape)
    if len(image_size) != len(shape):
        raise ConfigError(
            f"classifier.image_size {list(image_size)} has {len(image_size)} axes but the data is "
            f"{len(shape)}D {list(shape)}; give one size per axis or a single int", keys=("classifier.image_size",)
        )
    return tuple(int(s) for s in image_size)


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(N, C, *spatial)`` to ``size`` with (bi/tri)linear interpolation (identity at equal size)."""
    mode = "bilinear" if images.ndim == 4 else "trilinear"
    return F.interpolate(images.float(), size=tuple(size), mode=mode, align_corners=False)


def _stack(arrays: Sequence[np.ndarray], size: Sequence[int], what: str) -> torch.Tensor:
    out = []
    for start in range(0, len(arrays), 256):
        chunk = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays[start : start + 256]]
        shapes = {tuple(c.shape) for c in chunk}
        if len(shapes) > 1:
            out.append(torch.cat([resize(c[None, None], size) for c in chunk]))
        else:
            out.append(resize(torch.stack(chunk)[:, None], size))
    if not out:
        raise DataError(f"{what}: no images")
    return torch.cat(out)


def task_classes(data: PreparedDataset, task: str) -> list[str]:
    """Sorted class names of attribute ``task`` over every split of ``data``.

    Raises:
        ConfigError: ``task`` is not an attribute column, has fewer than 2 values, or too many
            to be categorical.
    """
    if task not in data.attributes:
        available = ", ".join(data.attributes) or "none"
        raise ConfigError(
            f"{data.root / 'manifest.csv'}: task '{task}' is not an attribute of this dataset "
            f"(attributes: {available}); set task to one of them", keys=("task",)
        )
    values = sorted({r.get(task, "") for r in data.rows} - {""})
    if len(values) < 2:
        raise ConfigError(
            f"{data.root / 'manifest.csv'}: attribute '{task}' has {len(values)} distinct value(s) "
            f"({', '.join(values) or 'none'}); a classification task needs at least 2", keys=("task",)
        )
    if len(values) > MAX_CLASSES:
        raise ConfigError(
            f"{data.root / 'manifest.csv'}: attribute '{task}' has {len(values)} distinct values; "
            f"only categorical attributes (<= {MAX_CLASSES} values) can be a task", keys=("task",)
        )
    return values


def _labelled_set(data: PreparedDataset, rows: list[dict], task: str, index: dict[str, int],
                  size: Sequence[int], name: str, source: str | None = None) -> ImageSet:
    """``rows`` of ``data`` labelled by ``task`` as an :class:`ImageSet` resized to ``size``.

    Items with an empty ``task`` value are left out (and logged).

    Raises:
        DataError: no item is labelled.
    """
    unlabelled = [r for r in rows if not r.get(task, "")]
    if unlabelled:
        log.warning("%s: %d %s item(s) have no '%s' value and are left out", data.root, len(unlabelled), name, task)
    rows = [r for r in rows if r.get(task, "")]
    if not rows:
        raise DataError(
            f"{data.root / 'manifest.csv'}: {'split ' if name != 'all' else ''}'{name}' has no items labelled with "
            f"'{task}' (the downstream experiment needs labelled train, val and test subjects)"
        )
    arrays = [data.load_array(r) for r in rows]
    return ImageSet(
        _stack(arrays, size, f"{data.root}:{name}"),
        ids=tuple(r["item_id"] for r in rows),
        subjects=tuple(r["subject"] for r in rows),
        conditions=tuple({a: r.get(a, "") for a in data.attributes} for r in rows),
        origins=("real",) * len(rows),
        labels=torch.tensor([index[r[task]] for r in rows], dtype=torch.long),
        name=name,
        source=source or f"{data.root}:{name}",
    )


def load_real_splits(
    data: PreparedDataset, task: str, classes: Sequence[str], size: Sequence[int]
) -> dict[str, ImageSet]:
    """Load the train/val/test splits of ``data`` as labelled :class:`ImageSet` resized to ``size``.

    Items with an empty ``task`` value are left out (and logged).

    Raises:
        DataError: a split is empty.
    """
    index = {c: i for i, c in enumerate(classes)}
    return {split: _labelled_set(data, list(data.split(split).rows), task, index, size, split)
            for split in ("train", "val", "test")}


def load_external_test(ref: str | Path, real: TaskData, task: str) -> ImageSet:
    """A test set from another prepared dataset (``DIR`` for all of it, or ``DIR:split``).

    It must share the real data's geometry (shape and spacing) and classes, and none of its
    subjects may be in the real data's training or validation split.

    Raises:
        DataError: a different geometry, an unknown class, or shared subjects.
    """
    root, split = parse_dataset_ref(ref)
    test = PreparedDataset.load(root, split)
    where = f"{root / 'dataset.json'}"
    dims = real.data.dims
    if test.dims != dims or tuple(test.info.get("shape", [])) != tuple(real.data.info.get("shape", [])):
        raise DataError(f"{where}: the test set's items ({test.dims}D, shape {test.info.get('shape')}) differ from "
                        f"the real data's ({dims}D, shape {real.data.info.get('shape')}, {real.data.root}); "
                        "prepare both the same way")
    ours, theirs = real.data.info.get("spacing"), test.info.get("spacing")
    # the item axes only: a 2D preparation's third spacing is its cohort's slice thickness
    if ours is not None and theirs is not None and not np.allclose(ours[:dims], theirs[:dims], rtol=1e-4, atol=1e-6):
        raise DataError(f"{where}: the test set's spacing {list(theirs[:dims])} mm differs from the real data's "
                        f"{list(ours[:dims])} mm ({real.data.root}); prepare both the same way")
    unknown = sorted({r[task] for r in test.rows if r.get(task, "")} - set(real.classes))
    if unknown:
        raise DataError(f"{root / 'manifest.csv'}: '{task}' value(s) {unknown} are not classes of the real data "
                        f"{real.classes}")
    shared = set(test.subjects()) & set(real.splits["train"].subjects + real.splits["val"].subjects)
    if shared:
        raise DataError(f"{root / 'manifest.csv'}: {len(shared)} test subject(s) are in the real data's training or "
                        f"validation split (e.g. {sorted(shared)[0]}); test on subjects the classifiers never saw")
    index = {c: i for i, c in enumerate(real.classes)}
    return _labelled_set(test, list(test.rows), task, index, real.size, split or "all", source=str(ref))


class TaskData(NamedTuple):
    """A prepared dataset's labelled splits for one task, at the classifier's input size."""

    data: PreparedDataset
    classes: list[str]
    shape: tuple[int, ...]
    """The items' own shape."""
    size: tuple[int, ...]
    """The classifier's input size (``image_size`` resolved against ``shape``)."""
    splits: dict[str, ImageSet]


def load_task_data(path: str | Path, task: str, image_size: int | Sequence[int] | None) -> TaskData:
    """Load ``path``'s train/val/test splits labelled by ``task``, resized to the classifier's size.

    Raises:
        DataError: a split is empty; ConfigError: ``task`` is not a categorical attribute.
    """
    data = PreparedDataset.load(path)
    classes = task_classes(data, task)
    shape = tuple(data.load_array(data.rows[0]).shape)
    size = resolve_size(image_size, shape)
    return TaskData(data, classes, shape, size, load_real_splits(data, task, classes, size))


def load_synthetic(
    path: str | Path,
    name: str,
    task: str,
    classes: Sequence[str],
    size: Sequence[int],
    *,
    spatial_dims: int,
) -> ImageSet:
    """Load a synthetic set; the label of each item is ``condition[task]`` from ``metadata.jsonl``.

    Raises:
        DataError: the set is empty, an item's condition lacks ``task``, holds a value that is
            not a class of the real data, or the set's dimensionality differs from the real data.
    """
    syn = SyntheticSet.load(path)
    meta = syn.root / "metadata.jsonl"
    if not len(syn):
        raise DataError(f"{meta}: synthetic set '{name}' has no items")
    if syn.dims is not None and int(syn.dims) != spatial_dims:
        raise DataError(
            f"{syn.root / 'synthetic.json'}: synthetic set '{name}' is {syn.dims}D but the real data is "
            f"{spatial_dims}D; give a set sampled from a {spatial_dims}D model"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for record in syn.records:
        condition = record.get("condition") or {}
        if not isinstance(condition, dict) or label_value(condition.get(task)) is None:
            raise DataError(
                f"{meta}: item {record['index']} of synthetic set '{name}' has no '{task}' in its condition "
                f"(found {sorted(condition) if isinstance(condition, dict) else condition!r}); sample it "
                f"conditioned on '{task}' or leave this set out"
            )
        value = str(condition[task])
        if value not in index:
            raise DataError(
                f"{meta}: item {record['index']} of synthetic set '{name}' has {task}='{value}', "
                f"which is not a class of the real data ({', '.join(classes)})"
            )
        labels.append(index[value])
    arrays = [syn.load_array(r) for r in syn.records]
    bad = [a.shape for a in arrays if a.ndim != spatial_dims]
    if bad:
        raise DataError(
            f"{syn.root}: synthetic set '{name}' holds arrays of shape {bad[0]}, expected {spatial_dims}D items"
        )
    counts = Counter(labels)
    log.info("synthetic set %s: %d items, per class %s", name, len(labels), dict(counts))
    return ImageSet(
        _stack(arrays, size, str(syn.root)),
        ids=tuple(str(r["index"]) for r in syn.records),
        subjects=("",) * len(labels),
        conditions=tuple(dict(r.get("condition") or {}) for r in syn.records),
        origins=(name,) * len(labels),
        labels=torch.tensor(labels, dtype=torch.long),
        name=name,
        kind="synthetic",
        source=str(syn.root),
        info=dict(syn.info),
    )
