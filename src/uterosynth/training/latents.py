"""Training items for latent diffusion: the autoencoder's cached latent moments.

Reads the latent cache through its reader, :class:`uterosynth.models.latent.LatentCache`, which
sits beside its writer (``uterosynth encode``):
``latents.csv`` + ``items/<item_id>.safetensors`` (``mean``, ``std``) + ``latents.json``
(``scale_factor``, ``autoencoder.sha256``, ``latent_shape``, ``dims``, ``attributes``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ..core.errors import DataError
from ..models.latent import LatentCache

__all__ = ["LatentDataset", "latent_sample"]


class LatentDataset(Dataset):
    """Items ``{"mean", "std", "item_id", "subject", **attributes}`` of one split, held in memory.

    The trainer draws ``z = (mean + std * eps) * scale_factor`` each step (a fresh sample from
    the encoder's posterior, as in Rombach et al. 2022), so the cache stores moments, not samples.
    """

    def __init__(self, cache: LatentCache, split: str = "train") -> None:
        self.rows = cache.split(split)
        if not self.rows:
            raise DataError(f"{cache.root}: latent cache has no items in split '{split}'")
        self.attributes = list(cache.info.get("attributes", []))
        self.tensors = [cache.load_item(row) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        item: dict[str, Any] = {"mean": self.tensors[index]["mean"], "std": self.tensors[index]["std"],
                                "item_id": row["item_id"], "subject": row["subject"]}
        for name in self.attributes:
            item[name] = row.get(name, "")
        return item


def latent_sample(batch: dict[str, torch.Tensor], scale_factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(mean + std * eps) * scale_factor`` for a batch of cached moments."""
    mean, std = batch["mean"], batch["std"]
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return (mean + std * eps) * scale_factor
