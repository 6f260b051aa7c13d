"""Training items for latent diffusion: the autoencoder's cached latent moments.

Reads the latent cache written by ``uterosynth encode`` (see :mod:`uterosynth.models.latent`):
``latents.csv`` + ``items/<item_id>.safetensors`` (``mean``, ``std``) + ``latents.json``
(``scale_factor``, ``autoencoder.sha256``, ``latent_shape``, ``dims``, ``attributes``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..core.errors import DataError

__all__ = ["LatentCache", "LatentDataset"]


@dataclass
class LatentCache:
    """A latent cache folder: its rows (one per item) and ``latents.json``."""

    root: Path
    rows: list[dict[str, str]]
    info: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> LatentCache:
        root = Path(root)
        info_path, table = root / "latents.json", root / "latents.csv"
        for path in (info_path, table):
            if not path.is_file():
                raise DataError(f"{path}: not found (is this a latent cache? run 'uterosynth encode')")
        info = json.loads(info_path.read_text())
        with open(table, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return cls(root, rows, info)

    @property
    def scale_factor(self) -> float:
        return float(self.info["scale_factor"])

    @property
    def autoencoder_sha256(self) -> str:
        return str(self.info["autoencoder"]["sha256"])

    @property
    def dims(self) -> int:
        return int(self.info["dims"])

    def split(self, name: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["split"] == name]


class LatentDataset(Dataset):
    """Items ``{"mean", "std", "item_id", "subject", **attributes}`` of one split, held in memory.

    The trainer draws ``z = (mean + std * eps) * scale_factor`` each step (a fresh sample from
    the encoder's posterior, as in Rombach et al. 2022), so the cache stores moments, not samples.
    """

    def __init__(self, cache: LatentCache, split: str = "train") -> None:
        from safetensors.torch import load_file

        self.rows = cache.split(split)
        if not self.rows:
            raise DataError(f"{cache.root}: latent cache has no items in split '{split}'")
        self.attributes = list(cache.info.get("attributes", []))
        self.tensors = []
        for row in self.rows:
            path = cache.root / row["path"]
            try:
                self.tensors.append(load_file(str(path)))
            except Exception as err:
                raise DataError(f"{path}: cannot read cached latent ({err})") from err

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
