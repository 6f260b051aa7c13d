"""What every stage job shares: the job model base, list options, and the stage's own config.

A stage *job* is one run of a stage: its inputs and output folder, the stage config file, its
``overrides`` (dotted keys, as ``--set`` gives them) and the options the command line offers as
flags. The command line and the pipeline runner both build a job and call the stage's ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, Field

from ..core.config import StrictModel, load_config

__all__ = ["PRESETS", "ConfiguredJob", "EmbeddingJob", "Job", "Many", "Overrides", "stage_config"]

PRESETS = Path(__file__).resolve().parent.parent / "configs"
"""The shipped presets (``configs/`` at the repository root links here)."""

M = TypeVar("M", bound=BaseModel)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | Path) else value


Many = Annotated[list[str], BeforeValidator(_as_list)]
"""An option that may be repeated (``--synthetic A --synthetic B``); one value is a list of one."""


class Job(StrictModel):
    """Base of every stage job: the output folder and whether it may be replaced."""

    out: Path
    overwrite: bool = False


def stage_config(model: type[M], path: str | Path | None, overrides: Mapping[str, Any], **flags: Any) -> M:
    """A stage's config: the YAML file, then ``overrides``, then the job's flags (``None``: not given).

    Raises:
        ConfigError: the file is missing or invalid, or a value does not fit the model.
    """
    values = dict(overrides)
    values.update({key: value for key, value in flags.items() if value is not None})
    return load_config(model, path, overrides=values)


Overrides = Annotated[dict[str, Any], Field(default_factory=dict, description="dotted-key config overrides")]


class ConfiguredJob(Job):
    """A job whose settings come from a YAML file (or the model's defaults) and dotted-key overrides."""

    config: Path | None = None
    overrides: Overrides

    def settings(self, model: type[M], **flags: Any) -> M:
        """The settings: :func:`stage_config` of this job's file and overrides, then ``flags``."""
        return stage_config(model, self.config, self.overrides, **flags)


class EmbeddingJob(ConfiguredJob):
    """A contrastive embedding trained on a prepared dataset (``encoder.json`` marks it finished)."""

    data: str
    seed: int | None = None

    def train(self, config_model: type[M], train: Callable[..., dict[str, Any]], *,
              on_start: Callable[[int], None] | None = None,
              progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Resolve the settings, announce the epochs, run ``train(data, out, cfg, ...)``; returns ``encoder.json``."""
        cfg = self.settings(config_model, seed=self.seed)
        if on_start is not None:
            on_start(cfg.epochs)  # type: ignore[attr-defined]
        return train(self.data, self.out, cfg, overwrite=self.overwrite, progress=progress)
