"""``uterosynth phantom``: write a digital-phantom cohort in the UMD layout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


@stage_command(app.command("phantom"), "phantom", shared=("config", "overrides"))
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (UMD layout + labels.csv + phantom.json)."),
    subjects: int = typer.Option(None, "--subjects", "-n", min=1, help="Number of subjects (overrides the config)."),
    seed: int = typer.Option(None, "--seed", min=0, help="Random seed (overrides the config)."),
    preview: Path = typer.Option(None, "--preview", help="Also write a PNG grid of mid-sagittal slices."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (overrides the config)."),
    **shared: Any,
) -> Job:
    """Generate a labelled female-pelvis phantom cohort (sagittal T2, four orientation classes)."""
    from ..stages.data import PhantomJob

    return PhantomJob(out=out, subjects=subjects, seed=seed, preview=preview, workers=workers, **shared)
