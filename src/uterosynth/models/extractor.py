"""Feature extractors: the one interface every metric and the privacy audit embed images with.

An extractor maps images ``(N, 1, *spatial)`` with intensities in ``[0, 1]`` to features
``(N, F)``. Its ``name`` and ``sha256`` identify it in every artifact, so numbers computed with
different extractors are never compared by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from ..core.artifacts import sha256_file
from ..core.errors import UserError

__all__ = ["FeatureExtractor", "TorchScriptExtractor", "load_torchscript_extractor"]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Images ``(N, 1, *spatial)`` in ``[0, 1]`` → features ``(N, F)``."""

    name: str
    sha256: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchScriptExtractor:
    """A TorchScript module saved with ``torch.jit.save`` used as a feature extractor.

    Args:
        path: the ``.pt`` file.
        device: where to run it.
        batch_size: images per forward pass.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: feature extractor file not found")
        try:
            self.module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:
            raise UserError(f"{path}: not a TorchScript module ({str(err).splitlines()[0]})") from err
        self.path = path
        self.name = path.stem
        self.sha256 = sha256_file(path)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.module(images[i : i + self.batch_size].to(self.device)).float().flatten(1).cpu()
            for i in range(0, images.shape[0], self.batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, 0)

    def __repr__(self) -> str:
        return f"TorchScriptExtractor(name={self.name!r}, sha256={self.sha256[:12]}…)"


def load_torchscript_extractor(path: str | Path, *, device: str | torch.device = "cpu") -> TorchScriptExtractor:
    """Load a TorchScript feature extractor from ``path``."""
    return TorchScriptExtractor(path, device=device)
