"""Configuration of the evaluation stage: one pydantic model per concern.

``EvaluationConfig`` drives ``uterosynth evaluate``; ``EncoderTrainConfig`` drives
``uterosynth evaluate train-encoder``. Presets live in ``configs/evaluate*.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel
from ..models.contrastive import ContrastiveConfig

__all__ = [
    "BootstrapConfig",
    "ClassifierConfig",
    "EncoderTrainConfig",
    "EqualNConfig",
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
    ``torchscript`` (any TorchScript module ``(N, 1, H, W) -> (N, F)``), ``torchvision`` (a
    torchvision ImageNet backbone named by ``arch`` with local weights at ``path``, e.g. AlexNet).
    """

    kind: Literal["encoder", "inception", "torchscript", "torchvision"] = "encoder"
    path: Path | None = None
    arch: str | None = Field(None, description="torchvision model name for kind torchvision (path: its local weights)")
    input_size: int = Field(224, ge=32, description="torchvision: images are resized to input_size x input_size")
    batch_size: int = Field(64, ge=1)
    # 2.5D features of volumes: the 2D extractor over slices of the three orthogonal planes.
    slices_per_plane: int = Field(3, ge=1, description="slices around the centre of each plane, averaged")
    slice_spacing: int = Field(2, ge=1, description="voxels between the averaged slices of one plane")

    @model_validator(mode="after")
    def _arch(self) -> ExtractorConfig:
        if self.kind == "torchvision" and not self.arch:
            raise ValueError("extractor.kind torchvision needs extractor.arch (e.g. alexnet) and extractor.path")
        if self.kind != "torchvision" and self.arch:
            raise ValueError(f"extractor.arch is only used with kind torchvision, not {self.kind}")
        return self


class BootstrapConfig(StrictModel):
    """Confidence intervals: their level, replicates, seed, and the unit resampled.

    ``unit: subject`` (default) resamples subjects — all slices of a drawn subject together — for
    real sets with subject ids; ``item`` treats every item as independent (too narrow when items
    share subjects). Intervals of biased set statistics (FID, FRD) and of KID use the
    delete-a-group jackknife with ``jackknife_blocks`` blocks per set (see ``evaluation.equal_n``).
    """

    n: int = Field(100, ge=10)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0
    unit: Literal["subject", "item"] = "subject"
    jackknife_blocks: int = Field(20, ge=2)


class EqualNConfig(StrictModel):
    """Distributional metrics (FID, KID, PRDC, FRD) compare every set with the reference at one common N.

    ``n``: the common N (default: the smallest set of the evaluation, reference included). Larger
    sets are subsampled without replacement ``draws`` times and the metric averaged. An ``n`` above
    a set's size is an error unless ``allow_unequal_n``, which compares whole sets (not comparable
    between sets; flagged in the warnings). FID∞ extrapolates FID in ``1/N`` (Chong & Forsyth 2020)
    from ``extrapolation_points`` sizes between ``extrapolation_min_fraction · n`` and ``n``.
    """

    n: int | None = Field(None, ge=2)
    draws: int = Field(10, ge=1)
    allow_unequal_n: bool = False
    extrapolation_points: int = Field(5, ge=2)
    extrapolation_min_fraction: float = Field(0.2, gt=0, lt=1)


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
    num_workers: int = Field(1, ge=0, description="radiomics processes; 0 = one per CPU core")


class ClassifierConfig(StrictModel):
    """Conditioning fidelity: an independent classifier (``classifier.pt`` + ``classifier.json``)."""

    path: Path | None = None
    batch_size: int = Field(64, ge=1)
    others: list[Path] = Field(
        default_factory=list, description="classifiers of other attributes (e.g. field strength; one per task), each "
        "scored on every set and on the real reference like the judge: conditioning_fidelity_<task>")


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
    volume_slices: int | None = Field(
        None, ge=1, description="volumes judged and measured slice by slice: the k central sagittal slices of every "
        "volume of every set become 2D items, read by the 2D judge and the 2D metrics as a 2D model's samples are "
        "(with bootstrap.unit: subject, the default, intervals resample whole volumes; real ones, subjects); "
        "null: volumes as volumes")
    extractor: ExtractorConfig = ExtractorConfig()
    comparable_extractor: ExtractorConfig | None = Field(
        None, description="a second extractor reported beside the in-domain one (e.g. torchvision alexnet)")
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig, description="interval level and unit")
    equal_n: EqualNConfig = Field(default_factory=EqualNConfig, description="the common N of FID, KID, PRDC, FRD")
    kid: KIDConfig = Field(default_factory=KIDConfig, description="KID subsets")
    prdc: PRDCConfig = Field(default_factory=PRDCConfig, description="precision/recall, density/coverage")
    msssim: MSSSIMConfig = Field(default_factory=MSSSIMConfig, description="within-set MS-SSIM diversity")
    lpips: LPIPSConfig = Field(default_factory=LPIPSConfig, description="within-set LPIPS diversity")
    frd: FRDConfig = Field(default_factory=FRDConfig, description="Fréchet radiomics distance")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig, description="the judge of conditioning")
    report: ReportConfig = Field(default_factory=ReportConfig, description="what report.html shows")
    allow_overlap: bool = Field(
        False, description="evaluate even when the judge or the extractor was trained on subjects of an evaluated "
        "real set or of a generator; the overlaps are recorded in metrics.json and warned about in the report")


class EncoderTrainConfig(ContrastiveConfig):
    """Self-supervised (SimCLR, Chen et al. 2020) training of the in-domain feature encoder."""

    max_items: int | None = Field(None, ge=2, description="cap on training items (random subset)")
