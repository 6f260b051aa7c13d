"""The downstream stages: ``downstream`` (the utility grid) and ``downstream train-classifier`` (the judge)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from ..core.errors import ConfigError, DataError
from .base import PRESETS, ConfiguredJob, Many, stage_config

__all__ = ["QUICK_PRESET", "DownstreamJob", "JudgeJob", "run_downstream_grid", "run_judge"]

QUICK_PRESET = "configs/downstream_quick.yaml"


class DownstreamJob(ConfiguredJob):
    """Protocols × label budgets × seeds on real data (``results.json`` marks it finished)."""

    real: Path
    synthetic: Many = Field(default_factory=list, description="NAME=DIR or DIR; comma-separated allowed")
    task: str | None = None
    quick: bool = False
    allow_overlap: bool = False
    seed: int | None = None
    test: str | None = Field(None, description="test on this prepared dataset (DIR or DIR:split, e.g. a fresh "
                             "cohort) instead of --real's test split")


def _preset(relative: str) -> Path:
    """A preset: ``relative`` under the working folder if present there, else the one shipped with uterosynth."""
    for path in (Path.cwd() / relative, PRESETS / Path(relative).name):
        if path.is_file():
            return path
    raise DataError(f"{relative}: preset not found in the working folder nor among the shipped presets; "
                    "give a config file", keys=("config",))


def run_downstream_grid(job: DownstreamJob, *,
                        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run the grid; returns ``results.json``'s content.

    Raises:
        ConfigError: ``quick`` and ``config`` both given, or a synthetic set is malformed.
    """
    from ..downstream.config import DownstreamConfig
    from ..downstream.experiment import parse_synthetic_specs, run_downstream

    if job.quick and job.config is not None:
        raise ConfigError("quick and config both choose a preset; give one of them", keys=("quick", "config"))
    config = _preset(QUICK_PRESET) if job.quick else job.config
    cfg = stage_config(DownstreamConfig, config, job.overrides, task=job.task, seed=job.seed,
                       allow_overlap=job.allow_overlap or None)
    sets = parse_synthetic_specs(job.synthetic)
    return run_downstream(job.real, sets, cfg, job.out, overwrite=job.overwrite, progress=progress, test=job.test)


class JudgeJob(ConfiguredJob):
    """The frozen judge classifier (``classifier.json`` marks it finished)."""

    data: Path
    task: str | None = None
    seed: int | None = None


def run_judge(job: JudgeJob) -> dict[str, Any]:
    """Train, test and freeze the judge; returns ``classifier.json``'s content."""
    from ..downstream.config import JudgeConfig
    from ..downstream.judge import train_judge

    cfg = job.settings(JudgeConfig, task=job.task, seed=job.seed)
    return train_judge(job.data, cfg, job.out, overwrite=job.overwrite)
