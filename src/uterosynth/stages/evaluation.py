"""The evaluation stages: ``evaluate``, ``evaluate baselines`` and ``evaluate train-encoder``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from .base import ConfiguredJob, EmbeddingJob, Job, Many

__all__ = ["BaselinesJob", "EncoderJob", "EvaluateJob", "parse_baselines", "run_baselines", "run_encoder",
           "run_evaluate"]


class EvaluateJob(ConfiguredJob):
    """Every metric of a synthetic set and its baselines against real data (``report.html`` marks it finished)."""

    real: str
    synthetic: Path | None = None
    baseline: Many = Field(default_factory=list, description="NAME=DIR")
    extractor: Path | None = None
    extractor_kind: str | None = None
    classifier: Path | None = None
    lpips_weights: Path | None = None
    downstream: Path | None = None
    floor: str | None = None
    allow_overlap: bool = False
    seed: int | None = None


def parse_baselines(items: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` baselines by name.

    Raises:
        ConfigError: an item is not ``NAME=DIR`` or a name is given twice.
    """
    from ..core.config import split_assignment
    from ..core.errors import ConfigError

    out: dict[str, Path] = {}
    for item in items:
        name, path = split_assignment(item, what="baselines", expected="NAME=DIR, e.g. reconstruction=runs/recon",
                                      keys=("baselines",))
        if name in out:
            raise ConfigError(f"baselines: '{name}' given twice; give every baseline its own name", keys=("baselines",))
        out[name] = Path(path)
    return out


def run_evaluate(job: EvaluateJob, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate; returns ``metrics.json``'s content."""
    from ..evaluation.config import EvaluationConfig
    from ..evaluation.runner import evaluate

    flags = {"seed": job.seed, "extractor.path": job.extractor, "extractor.kind": job.extractor_kind,
             "classifier.path": job.classifier, "lpips.weights": job.lpips_weights,
             "allow_overlap": job.allow_overlap or None}
    cfg = job.settings(EvaluationConfig, **{k: str(v) if isinstance(v, Path) else v for k, v in flags.items()})
    kwargs = {} if log is None else {"log": log}
    return evaluate(job.real, job.synthetic, job.out, cfg, baselines=parse_baselines(job.baseline),
                    downstream=job.downstream, floor=job.floor, overwrite=job.overwrite, **kwargs)


class BaselinesJob(Job):
    """Autoencoder baselines: reconstructions, prior and class-prior samples."""

    autoencoder: Path
    real: str
    n_prior: int | None = None
    prior_by: Many = Field(default_factory=list)
    device: str = "cpu"
    seed: int | None = None
    allow_overlap: bool = False


def run_baselines(job: BaselinesJob) -> dict[str, Path]:
    """Write the baseline synthetic sets; returns their folders by name."""
    from ..evaluation.baselines import make_baselines

    return make_baselines(job.autoencoder, job.real, job.out, n_prior=job.n_prior, seed=job.seed or 0,
                          device=job.device, overwrite=job.overwrite, prior_by=job.prior_by or (),
                          allow_overlap=job.allow_overlap)


class EncoderJob(EmbeddingJob):
    """The in-domain feature encoder (``encoder.json`` marks it finished)."""


def run_encoder(job: EncoderJob, *, on_start: Callable[[int], None] | None = None,
                progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train and freeze the encoder; returns ``encoder.json``'s content."""
    from ..evaluation.config import EncoderTrainConfig
    from ..evaluation.contrastive import train_encoder

    return job.train(EncoderTrainConfig, train_encoder, on_start=on_start, progress=progress)
