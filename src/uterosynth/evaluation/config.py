"""Configuration of the evaluation stage: one pydantic model per concern.

``EvaluationConfig`` drives ``uterosynth evaluate``; ``EncoderTrainConfig`` drives
``uterosynth evaluate train-encoder``. Presets live in ``configs/evaluate*.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel

__all__ = [
    "BootstrapConfig",
    "ClassifierConfig",
    "EncoderTrainConfig",
    "EvaluationConfig",
    "ExtractorConfig",
    "FRDConfig",
    "KIDConfig",
    "LPIPSConfig",
    "MSSSIMConfig",
    "PRDCConfig",
    "ReportConfig",
]


class ExtractorConfig(StrictModel):
    """Which network embeds images for FID, KID, precision/recall and density/coverage.

    ``kind``: ``encoder`` (the project's in-domain encoder folder or its ``encoder.pt``),
    ``inception`` (FID Inception-v3 weights, a local ``pt_inception-2015-12-05`` state dict),
    ``torchscript`` (any TorchScript module ``(N, 1, H, W) -> (N, F)``).
    """

    kind: Literal["encoder", "inception", "torchscript"] = "encoder"
    path: Path | None = None
    batch_size: int = Field(64, ge=1)
    # 2.5D features of volumes: the 2D extractor over slices of the three orthogonal planes.
    slices_per_plane: int = Field(3, ge=1, description="slices around the centre of each plane, averaged")
    slice_spacing: int = Field(2, ge=1, description="voxels between the averaged slices of one plane")


class BootstrapConfig(StrictModel):
    """Percentile bootstrap for the 95 % confidence intervals (items resampled with replacement)."""

    n: int = Field(100, ge=10)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class KIDConfig(StrictModel):
    """Kernel inception distance (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel."""

    subsets: int = Field(100, ge=1)
    subset_size: int = Field(1000, ge=2)
    bootstrap_subsets: int = Field(5, ge=1, description="subsets per bootstrap replicate")


class PRDCConfig(StrictModel):
    """Improved precision/recall (Kynkäänniemi 2019) and density/coverage (Naeem 2020)."""

    k: int = Field(5, ge=1)
    max_items: int = Field(10000, ge=10, description="items per set used (random subset beyond that)")


class MSSSIMConfig(StrictModel):
    """Within-set diversity: mean MS-SSIM over random pairs of distinct items."""

    enabled: bool = True
    pairs: int = Field(1000, ge=10)
    kernel_size: int = Field(11, ge=3)


class LPIPSConfig(StrictModel):
    """Within-set LPIPS diversity; ``weights`` is a local safetensors file of AlexNet conv weights."""

    weights: Path | None = None
    pairs: int = Field(200, ge=10)
    size: int = Field(128, ge=32, description="slices with a side below size are upsampled to it (aspect kept); volumes: 2.5D over all slices")


class FRDConfig(StrictModel):
    """Fréchet Radiomics Distance (Konz, Osuala et al.) through the ``frd-score`` package."""

    enabled: bool = True
    version: Literal["v0", "v1"] = "v1"
    max_items: int = Field(500, ge=10, description="items per set (radiomics is slow; random subset)")
    num_workers: int = Field(1, ge=1)


class ClassifierConfig(StrictModel):
    """Conditioning fidelity: an independent classifier (``classifier.pt`` + ``classifier.json``)."""

    path: Path | None = None
    batch_size: int = Field(64, ge=1)


class ReportConfig(StrictModel):
    """What the HTML report shows."""

    group_by: str | None = Field(None, description="condition attribute for per-class grids (default: classifier task or first attribute)")
    grid_per_class: int = Field(8, ge=1)
    pca_points: int = Field(1000, ge=10)


class EvaluationConfig(StrictModel):
    """Everything ``uterosynth evaluate`` computes."""

    seed: int = 0
    device: str = "cpu"
    real_vs_real_split: Literal["train", "val", "test"] | None = "test"
    max_items: int | None = Field(None, ge=2, description="cap on items per set (random subset)")
    extractor: ExtractorConfig = ExtractorConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    kid: KIDConfig = KIDConfig()
    prdc: PRDCConfig = PRDCConfig()
    msssim: MSSSIMConfig = MSSSIMConfig()
    lpips: LPIPSConfig = LPIPSConfig()
    frd: FRDConfig = FRDConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    report: ReportConfig = ReportConfig()


class EncoderTrainConfig(StrictModel):
    """Self-supervised (SimCLR, Chen et al. 2020) training of the in-domain feature encoder."""

    seed: int = 0
    device: str = "cpu"
    split: Literal["train", "val", "test"] = "train"
    image_size: int = Field(128, ge=16, description="items (or planes of volumes) are resized to this square")
    layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    channels: tuple[int, int, int, int] = (32, 64, 128, 256)
    projection_dim: int = Field(128, ge=8)
    temperature: float = Field(0.1, gt=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    max_items: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _check(self) -> EncoderTrainConfig:
        if any(c < 1 for c in self.channels) or any(n < 1 for n in self.layers):
            raise ValueError("layers and channels must be positive")
        return self
