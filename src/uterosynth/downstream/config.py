"""Configuration of the downstream-utility experiment and of the frozen judge classifier."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..core.config import StrictModel

__all__ = [
    "AugmentConfig",
    "ClassifierConfig",
    "DownstreamConfig",
    "JudgeConfig",
    "ProtocolsConfig",
    "TrainConfig",
    "parse_ratio",
]


def parse_ratio(text: str) -> tuple[float, float]:
    """``"1:2"`` → ``(1.0, 2.0)`` read as synthetic:real by count."""
    parts = str(text).split(":")
    if len(parts) != 2:
        raise ValueError(f"ratio '{text}' must look like SYNTHETIC:REAL, e.g. 1:2")
    try:
        syn, real = float(parts[0]), float(parts[1])
    except ValueError as err:
        raise ValueError(f"ratio '{text}' must hold two numbers, e.g. 1:2") from err
    if syn <= 0 or real <= 0:
        raise ValueError(f"ratio '{text}': both sides must be > 0")
    return syn, real


class ClassifierConfig(StrictModel):
    """MONAI ResNet-18 and the image size it sees.

    ``widen_factor`` scales MONAI's channel widths (64, 128, 256, 512); 0.25 gives a
    CPU-friendly 16…128 and 0.125 (the default) 8…64. Images are resized (bilinear / trilinear) to ``image_size``: an int
    for every spatial axis, a list for each axis, or ``null`` to keep the data's shape.
    """

    widen_factor: float = Field(0.125, gt=0, le=4)
    stem_stride: int = Field(2, ge=1, le=4)
    no_max_pool: bool = False
    image_size: int | list[int] | None = 64

    @field_validator("image_size")
    @classmethod
    def _positive(cls, v: int | list[int] | None) -> int | list[int] | None:
        values = [v] if isinstance(v, int) else (v or [])
        if any(int(x) < 8 for x in values):
            raise ValueError("image_size must be >= 8 on every axis")
        return v


class AugmentConfig(StrictModel):
    """Classical MONAI augmentation (no flips: a flip would change the uterine orientation)."""

    prob: float = Field(0.5, ge=0, le=1)
    rotate_deg: float = Field(8.0, ge=0, le=45)
    scale: float = Field(0.08, ge=0, le=0.5)
    translate_frac: float = Field(0.06, ge=0, le=0.3)
    elastic: bool = True
    elastic_magnitude: float = Field(1.0, ge=0)
    intensity_scale: float = Field(0.1, ge=0, le=1)
    intensity_shift: float = Field(0.05, ge=0, le=1)
    noise_std: float = Field(0.02, ge=0, le=0.5)


class TrainConfig(StrictModel):
    """One training run: AdamW, class balancing, and how the final weights are chosen.

    ``selection``: ``fixed_epochs`` (default) trains ``max_epochs`` epochs and keeps the last
    weights, so no label outside the training budget chooses the model; ``validation`` stops
    early on the validation balanced accuracy (``min_epochs``, ``patience``) and keeps the best
    epoch — for the judge, which is trained on all labels anyway. Early stopping on a
    validation split larger than the budget would spend labels the budget does not have.
    """

    selection: Literal["fixed_epochs", "validation"] = "fixed_epochs"
    max_epochs: int = Field(15, ge=1)
    min_epochs: int = Field(3, ge=1)
    patience: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=2)
    min_samples_per_epoch: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    balance: Literal["sampler", "loss", "none"] = "sampler"
    precise_bn_batches: int = Field(4, ge=0)
    threads: int | None = Field(1, ge=1)
    device: str = "cpu"
    eval_batch_size: int = Field(128, ge=1)


class ProtocolsConfig(StrictModel):
    """Which training protocols run. Every protocol is tested on the real test split only.

    ``ratios`` are synthetic:real by count for the diffusion set (``"1:2"`` adds one synthetic
    image per two real ones, ``"4:1"`` four per real one); ``baseline_ratio`` the same for every
    baseline set. ``synthetic_only`` trains on synthetic images alone for the diffusion set,
    every set, or none.
    """

    real: bool = True
    augment: bool = True
    baselines: bool = True
    ratios: list[str] = Field(default_factory=lambda: ["1:1", "1:2", "1:4"])
    baseline_ratio: str = "1:1"
    synthetic_only: Literal["diffusion", "all", "none"] = "diffusion"
    synthetic_only_max_items: int | None = Field(None, ge=1)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[str]) -> list[str]:
        for r in v:
            parse_ratio(r)
        if len(set(v)) != len(v):
            raise ValueError("ratios must be distinct")
        return v

    @field_validator("baseline_ratio")
    @classmethod
    def _ratio(cls, v: str) -> str:
        parse_ratio(v)
        return v


class DownstreamConfig(StrictModel):
    """The whole grid: protocols × label budgets × seeds."""

    task: str = "orientation"
    budgets: list[float] = Field(default_factory=lambda: [0.05, 0.10, 0.25, 0.50, 1.0])
    seed: int = 0
    n_seeds: int = Field(3, ge=1)
    diffusion_set: str | None = None
    confidence: float = Field(0.95, gt=0, lt=1)
    correction: Literal["holm", "bh"] = Field("holm", description="multiple-comparison correction across the grid")
    bootstrap: int = Field(2000, ge=100, description="hierarchical bootstrap replicates (seeds x test subjects)")
    classifier: ClassifierConfig = ClassifierConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    protocols: ProtocolsConfig = ProtocolsConfig()
    allow_overlap: bool = Field(
        False, description="run even when a synthetic set's generator was trained on (or reconstructs) subjects of "
        "the real test split; the overlaps are recorded in results.json and warned about in the report section")

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one label budget")
        if any(not (0 < b <= 1) for b in v):
            raise ValueError("budgets are fractions of the training subjects in (0, 1]")
        return sorted(set(float(b) for b in v))

    @model_validator(mode="after")
    def _something_runs(self) -> DownstreamConfig:
        p = self.protocols
        if not p.real:
            raise ValueError("protocols.real must stay on: every comparison is paired with real only")
        return self

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n_seeds)]


class JudgeConfig(StrictModel):
    """``train-classifier``: one classifier on the full real training split, frozen for judging."""

    task: str = "orientation"
    seed: int = 0
    augment_training: bool = True
    classifier: ClassifierConfig = ClassifierConfig()
    train: TrainConfig = TrainConfig(selection="validation", max_epochs=30, patience=8, min_samples_per_epoch=256)
    augment: AugmentConfig = AugmentConfig()

    @field_validator("train", mode="before")
    @classmethod
    def _judge_selects_on_validation(cls, v: object) -> object:
        """The judge trains on every label: early stopping on validation unless ``selection`` says otherwise."""
        if isinstance(v, dict) and "selection" not in v:
            return {**v, "selection": "validation"}
        return v
