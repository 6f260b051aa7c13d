"""Torch datasets and loaders over a prepared dataset (2D slices or 3D volumes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .manifest import PreparedDataset

__all__ = ["ImageDataset", "make_loader", "default_augmentation"]


class ImageDataset(Dataset):
    """Items of a :class:`PreparedDataset` as ``{"image": (1, *spatial), "item_id", "subject", **attributes}``.

    Args:
        data: the prepared dataset (already restricted to a split if wanted).
        transform: optional callable applied to the ``(1, *spatial)`` image tensor.
        cache: keep loaded arrays in memory (phantom-scale datasets fit easily).
    """

    def __init__(
        self,
        data: PreparedDataset,
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: bool = True,
    ) -> None:
        self.data = data
        self.transform = transform
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.data)

    def _array(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        array = self.data.load_array(self.data.rows[index])
        if self._cache is not None:
            self._cache[index] = array
        return array

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.data.rows[index]
        image = torch.from_numpy(np.ascontiguousarray(self._array(index)))[None]
        if self.transform is not None:
            image = torch.as_tensor(self.transform(image))
        sample: dict[str, Any] = {"image": image.float(), "item_id": row["item_id"], "subject": row["subject"]}
        for name in self.data.attributes:
            sample[name] = row.get(name, "")
        return sample


def default_augmentation(spatial_dims: int, *, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Light MONAI augmentation for MRI: small affine, intensity scale/shift, no flips of anatomy."""
    from monai.transforms import Compose, RandAffine, RandScaleIntensity, RandShiftIntensity

    rotate = (0.1,) if spatial_dims == 2 else (0.0, 0.0, 0.1)
    transform = Compose(
        [
            RandAffine(prob=0.5, rotate_range=rotate, scale_range=0.05, translate_range=4, padding_mode="zeros"),
            RandScaleIntensity(factors=0.1, prob=0.5),
            RandShiftIntensity(offsets=0.05, prob=0.5),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def make_loader(
    data: PreparedDataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    sampler: torch.utils.data.Sampler | None = None,
) -> DataLoader:
    """A deterministic :class:`DataLoader` (shuffling seeded by ``seed``)."""
    transform = default_augmentation(data.dims, seed=seed) if augment else None
    dataset = ImageDataset(data, transform=transform)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
