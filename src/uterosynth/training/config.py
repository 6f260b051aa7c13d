"""Typed settings of the training loop, shared by every trainer (autoencoder, diffusion)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel

__all__ = ["LoopConfig", "OptimizerConfig"]


class OptimizerConfig(StrictModel):
    """AdamW settings (Loshchilov & Hutter 2019)."""

    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up from lr/warmup_steps to lr")
    decay: Literal["constant", "cosine"] = Field(
        "constant", description="after the warm-up: a constant rate, or a cosine decay to min_lr_ratio * lr at train.steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine decay's final rate, as a fraction of lr")
    cooldown_steps: int | None = Field(
        None, ge=1, description="with decay 'cosine': decay over the last cooldown_steps of train.steps only, after a "
                                "constant rate (warm-up, stable, decay), so a constant-rate run can be resumed and "
                                "annealed; None decays over the whole run after the warm-up")

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        if self.cooldown_steps is not None and self.decay != "cosine":
            raise ValueError("cooldown_steps sets the length of a cosine decay: set decay to 'cosine'")
        return self


class LoopConfig(StrictModel):
    """How to train: length, batching, precision, device, logging and checkpoint cadence.

    ``precision``: ``fp32``; ``bf16`` (autocast, on CPU and CUDA); ``fp16`` (autocast +
    GradScaler, CUDA only); ``auto`` (bf16 where the device runs it natively, else fp32; see
    :func:`uterosynth.core.precision.resolve_precision`). ``device``: ``auto`` picks CUDA when present. ``compile`` wraps the
    trained networks in ``torch.compile``. ``channels_last`` stores activations NHWC(D).
    """

    steps: int = Field(1000, ge=1)
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget: stop (and checkpoint) at the first step past it"
    )
    max_flops: float | None = Field(
        None, gt=0, description="compute budget in counted FLOPs (all ranks; docs/guide/training.md, 'Training "
        "compute'): stop (and checkpoint) at the last step within it, the same step on every machine; the "
        "learning-rate schedule still runs over steps"
    )
    batch_size: int = Field(8, ge=1, description="items per micro-batch per process")
    grad_accum: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    channels_last: bool = False
    ema_decay: float | None = Field(None, gt=0, lt=1)
    ema_warmup: bool = Field(False, description="EMA decay min(ema_decay, (1 + n) / (10 + n)) after n updates, so a "
                                               "short run forgets its initial weights (ema_decay ** steps otherwise)")
    num_workers: int = Field(0, ge=0)
    augment: bool = False
    log_every: int = Field(10, ge=1)
    val_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    val_batches: int = Field(4, ge=1, description="validation batches per evaluation")
    deterministic: bool = True

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision=fp16 needs CUDA (use bf16 or fp32 on the CPU)")
        if self.ema_warmup and self.ema_decay is None:
            raise ValueError("ema_warmup warms up an EMA: set ema_decay too")
        return self
