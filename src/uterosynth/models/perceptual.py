"""The autoencoder's perceptual term: its configuration and the LPIPS distance it builds.

The distance itself (LPIPS, Zhang et al. 2018, AlexNet from a local file, 2.5D for volumes)
is :class:`uterosynth.core.similarity.LPIPSDistance`, shared with evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel
from ..core.errors import DataError
from ..core.similarity import LPIPSDistance

__all__ = ["PerceptualConfig", "build_perceptual", "check_weights_file"]


class PerceptualConfig(StrictModel):
    """Which perceptual network to use and where its pretrained weights are.

    ``network: none`` switches the perceptual term off. ``weights`` is a local safetensors
    file of ImageNet AlexNet ``features.*`` tensors (never downloaded). ``random_init: true``
    allows a randomly initialised backbone (tests and demos only: the distance is then not
    LPIPS, and validation reports no LPIPS value).
    """

    network: Literal["none", "alex"] = "alex"
    weights: Path | None = None
    random_init: bool = False
    slice_fraction: float = Field(1.0, gt=0.0, le=1.0, description="3D: share of slices per axis used")
    min_size: int = Field(32, ge=16, description="slices smaller than this are upsampled first")

    @model_validator(mode="after")
    def _check(self) -> PerceptualConfig:
        if self.network != "none" and self.weights is None and not self.random_init:
            raise ValueError(
                "perceptual.weights is not set: give a local AlexNet features .safetensors file, "
                "or set perceptual.random_init=true (tests/demos) or perceptual.network=none"
            )
        return self

    @property
    def pretrained(self) -> bool:
        """True when the distance is real LPIPS (ImageNet backbone loaded from a file)."""
        return self.network != "none" and self.weights is not None


def check_weights_file(cfg: PerceptualConfig) -> None:
    """Fail early (before any network is built) when the configured weights file is missing."""
    if cfg.network != "none" and cfg.weights is not None and not Path(cfg.weights).is_file():
        raise DataError(
            f"{cfg.weights}: perceptual weights file not found (expected ImageNet AlexNet features as "
            "safetensors with keys features.0.weight … features.10.bias; set perceptual.weights, "
            "or perceptual.network=none)"
        )


def build_perceptual(cfg: PerceptualConfig, *, spatial_dims: int) -> LPIPSDistance | None:
    """The configured perceptual distance, or ``None`` for ``network: none``.

    Raises:
        DataError: the weights file is missing or unreadable.
    """
    if cfg.network == "none":
        return None
    return LPIPSDistance(
        spatial_dims,
        weights=cfg.weights,
        slice_fraction=cfg.slice_fraction,
        min_size=cfg.min_size,
    )
