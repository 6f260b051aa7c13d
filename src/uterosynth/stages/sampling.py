"""The ``sample`` stage: a synthetic set from a diffusion checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .base import ConfiguredJob, Many

__all__ = ["SampleJob", "run_sample", "sample_config"]


class SampleJob(ConfiguredJob):
    """A sampling run (``metadata.jsonl`` marks it finished). The options left ``None`` keep the
    value of ``config`` (or of :class:`~uterosynth.sampling.generate.SampleConfig`)."""

    model: Path
    n: int | None = None
    per_class: int | None = None
    condition: Many = Field(default_factory=list, description="NAME=VALUE")
    prompt: str | None = None
    guidance: str | float | None = Field(None, description="3.0 or orientation=4,field_strength=1.5")
    sampler: str | None = None
    steps: int | None = None
    spacing: str | None = None
    seed: int | None = None
    batch_size: int | Literal["auto"] | None = None
    device: str | None = None
    precision: str | None = None
    compile: bool | None = None
    decode_memory_mb: float | None = None
    decoder: Path | None = None


def _conditions(items: list[str]) -> dict[str, str]:
    from ..core.config import split_assignment

    out: dict[str, str] = {}
    for item in items:
        name, value = split_assignment(item, what="conditions", expected="NAME=VALUE, e.g. orientation=AVAF",
                                       keys=("conditions",))
        out[name] = value.strip()
    return out


def sample_config(job: SampleJob):
    """The :class:`~uterosynth.sampling.generate.SampleConfig` of ``job``.

    Raises:
        ConfigError: a condition or the guidance is malformed, or a value does not fit.
    """
    from ..diffusion.guidance import parse_guidance
    from ..sampling.generate import SampleConfig

    guidance = parse_guidance(job.guidance) if isinstance(job.guidance, str) else job.guidance
    return job.settings(
        SampleConfig, seed=job.seed, n=job.n, per_class=job.per_class,
        conditions=_conditions(job.condition) if job.condition else None, prompt=job.prompt, guidance=guidance,
        **{"sampler.name": job.sampler, "sampler.steps": job.steps, "sampler.spacing": job.spacing,
           "runtime.device": job.device, "runtime.precision": job.precision, "runtime.compile": job.compile,
           "runtime.batch_size": job.batch_size},
        decode_memory_mb=job.decode_memory_mb, decoder=job.decoder,
    )


def run_sample(job: SampleJob, *, on_item: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Sample the synthetic set (NIfTI + PNG + metadata.jsonl); returns its summary."""
    from ..sampling.generate import generate

    return generate(job.model, sample_config(job), job.out, overwrite=job.overwrite, on_item=on_item)
