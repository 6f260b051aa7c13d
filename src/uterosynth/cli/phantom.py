"""``uterosynth phantom``: write a digital-phantom cohort in the UMD layout."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SetOpt


@app.command("phantom")
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (UMD layout + labels.csv + phantom.json)."),
    subjects: int = typer.Option(None, "--subjects", "-n", min=1, help="Number of subjects (overrides the config)."),
    seed: int = typer.Option(None, "--seed", min=0, help="Random seed (overrides the config)."),
    config: Path = ConfigOpt,
    preview: Path = typer.Option(None, "--preview", help="Also write a PNG grid of mid-sagittal slices."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (overrides the config)."),
    overrides: list[str] = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Generate a labelled female-pelvis phantom cohort (sagittal T2, four orientation classes)."""
    from ..core.config import parse_overrides
    from ..stages.data import PhantomJob
    from .stages import show_stage

    show_stage("phantom", PhantomJob(out=out, subjects=subjects, seed=seed, config=config, preview=preview,
                                     workers=workers, overrides=parse_overrides(overrides or []), overwrite=overwrite),
               as_json=as_json)
