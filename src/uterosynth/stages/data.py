"""The data stages: ``phantom`` (a digital-phantom cohort) and ``prepare`` (scans → prepared dataset)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .base import ConfiguredJob

__all__ = ["PhantomJob", "PrepareJob", "run_phantom", "run_prepare"]


class PhantomJob(ConfiguredJob):
    """A phantom cohort in the UMD layout (``labels.csv`` marks it finished)."""

    subjects: int | None = None
    seed: int | None = None
    preview: Path | None = None
    workers: int | None = None


def run_phantom(job: PhantomJob, *, progress: Callable[[int], None] | None = None,
                on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write the cohort; returns its summary (subjects, seconds, class and field-strength counts)."""
    from ..phantom import PhantomConfig, write_cohort

    cfg = job.settings(PhantomConfig, subjects=job.subjects, seed=job.seed, workers=job.workers)
    if on_start is not None:
        on_start(cfg.subjects)
    summary = write_cohort(cfg, job.out, overwrite=job.overwrite, preview=job.preview, progress=progress)
    return {
        "out": summary.out,
        "subjects": summary.subjects,
        "seconds": round(summary.seconds, 2),
        "subjects_per_second": round(summary.subjects / max(summary.seconds, 1e-9), 3),
        "classes": summary.class_counts,
        "field_strengths": summary.field_counts,
        "preview": summary.preview,
    }


class PrepareJob(ConfiguredJob):
    """Raw scans (UMD layout or a folder) → a prepared dataset (``manifest.csv`` marks it finished)."""

    source: Literal["umd", "folder"]
    input: Path
    labels: Path | None = None
    seed: int | None = None
    workers: int | None = None
    skip_bad: bool = False


def run_prepare(job: PrepareJob, *, on_start: Callable[[int], None] | None = None,
                on_subject: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prepare the dataset; returns its summary."""
    from ..data.config import PrepareConfig
    from ..data.prepare import prepare_dataset

    cfg = job.settings(PrepareConfig, seed=job.seed, workers=job.workers)
    result = prepare_dataset(job.source, job.input, job.out, cfg, labels=job.labels, skip_bad=job.skip_bad,
                             overwrite=job.overwrite, on_start=on_start, on_subject=on_subject)
    return result.summary()
