"""What the prepared dataset and the synthetic set share: a folder of NIfTI items, one per row of
its listing (``manifest.csv`` or ``metadata.jsonl``), named by the row's ``path``, and its JSON info."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ItemFolder"]


@dataclass
class ItemFolder:
    """Base of the item-folder artifacts: subclasses list their rows and load one item."""

    root: Path
    info: dict[str, Any] = field(default_factory=dict)

    def _listing(self) -> Sequence[Mapping[str, Any]]:
        """One row per item, in order."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._listing())

    def item_path(self, row: Mapping[str, Any]) -> Path:
        return self.root / row["path"]

    def load_item(self, row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(array, affine)``."""
        raise NotImplementedError

    def load_array(self, row: Mapping[str, Any]) -> np.ndarray:
        """The item's array only (see :meth:`load_item`)."""
        return self.load_item(row)[0]

    def stack(self) -> np.ndarray:
        """All items as one array ``(N, H, W[, D])`` (items share a shape by construction)."""
        return np.stack([self.load_array(r) for r in self._listing()])
