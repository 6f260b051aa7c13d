"""``uterosynth distill``: a few-step student of a trained diffusion model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


@stage_command(app.command("distill"), "distill")
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="Trained diffusion model (run or checkpoint folder)."),
    out: Path = typer.Option(..., "--out", help="The student's run folder (sample it like any model)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Sampling steps the student is made for (default 4)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (its couplings are reused)."),
    **shared: Any,
) -> Job:
    """Distil the teacher into a student that samples in --steps Euler steps with guidance as an input.

    Sample it with 'uterosynth sample --model OUT --sampler rflow --steps N'."""
    from ..stages.training import DistillJob

    return DistillJob(teacher=teacher, out=out, student_steps=steps, resume=resume, **shared)
