"""The training stages: ``train autoencoder``, ``train diffusion``, ``train decoder``, ``distill`` and ``encode`` (the latent cache)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import ConfiguredJob, Job

__all__ = ["DistillJob", "EncodeJob", "TrainJob", "run_distill", "run_encode", "run_train_autoencoder", "run_train_decoder", "run_train_diffusion"]


class TrainJob(ConfiguredJob):
    """A training run on a prepared dataset (``summary.json`` marks it finished)."""

    data: Path
    resume: bool = False
    seed: int | None = None


class DistillJob(ConfiguredJob):
    """A few-step student of a trained diffusion model (``summary.json`` marks it finished)."""

    teacher: Path
    student_steps: int | None = None
    resume: bool = False
    seed: int | None = None


def run_distill(job: DistillJob, *, on_couplings: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Sample the teacher's couplings, then train the student on them; writes ``summary.json``."""
    from ..core.artifacts import provenance, write_json
    from ..core.distributed import init_distributed, shutdown_distributed
    from ..distill import DistillConfig, distill

    cfg = job.settings(DistillConfig, seed=job.seed, student_steps=job.student_steps)
    try:
        summary = distill(cfg, job.teacher, job.out, resume=job.resume, overwrite=job.overwrite,
                          on_couplings=on_couplings)
        if init_distributed(cfg.train.device).is_main:
            write_json(Path(job.out) / "summary.json", {**provenance(cfg.model_dump(mode="json"), cfg.seed), **summary})
        return summary
    finally:
        shutdown_distributed()


def _train(train: Callable[..., dict[str, Any]], model: type, job: TrainJob) -> dict[str, Any]:
    """Train on this process (or this torchrun rank); rank 0 writes ``summary.json``, the mark of
    a finished run. Returns the summary (on every rank)."""
    from ..core.artifacts import provenance, write_json
    from ..core.distributed import init_distributed, shutdown_distributed

    cfg = job.settings(model, seed=job.seed)
    try:
        summary = train(cfg, job.data, job.out, resume=job.resume, overwrite=job.overwrite)
        if init_distributed(cfg.train.device).is_main:
            write_json(Path(job.out) / "summary.json", {**provenance(cfg.model_dump(mode="json"), cfg.seed), **summary})
        return summary
    finally:
        shutdown_distributed()


def run_train_autoencoder(job: TrainJob) -> dict[str, Any]:
    """Train the KL autoencoder (2D or 3D)."""
    from ..training.autoencoder import AutoencoderTrainConfig, train_autoencoder

    return _train(train_autoencoder, AutoencoderTrainConfig, job)


def run_train_diffusion(job: TrainJob) -> dict[str, Any]:
    """Train a diffusion model (pixel DDPM or latent LDM; 2D or 3D; conditions)."""
    from ..training.diffusion import DiffusionTrainConfig, train_diffusion

    return _train(train_diffusion, DiffusionTrainConfig, job)


def run_train_decoder(job: TrainJob) -> dict[str, Any]:
    """Distil the fast decoder from the autoencoder of a latent cache."""
    from ..training.fast_decoder import FastDecoderTrainConfig, train_fast_decoder

    return _train(train_fast_decoder, FastDecoderTrainConfig, job)


class EncodeJob(Job):
    """The latent cache of a prepared dataset (``latents.json`` marks it finished)."""

    model: Path
    data: Path
    batch_size: int = 8
    device: str = "auto"


def run_encode(job: EncodeJob, *, on_batch: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Encode every item to latent mean and std; fix the latent scale factor."""
    from ..models.latent import encode_dataset

    return encode_dataset(job.model, job.data, job.out, batch_size=job.batch_size, device=job.device,
                          overwrite=job.overwrite, on_batch=on_batch)
