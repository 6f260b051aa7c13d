"""``uterosynth prepare``: raw scans (UMD layout or a folder of NIfTI/DICOM) → prepared dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


class Source(str, Enum):
    umd = "umd"
    folder = "folder"


@stage_command(app.command(), "prepare")
def prepare(
    source: Source = typer.Option(..., "--source", help="Layout of the input: 'umd' (UMD/UMD_<date>_<NNN>/) or 'folder'."),
    input: Path = typer.Option(..., "--input", "-i", exists=True, file_okay=False, help="Raw dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Prepared dataset folder to create."),
    labels: Path | None = typer.Option(
        None, "--labels", exists=True, dir_okay=False, help="Labels CSV (subject column + attribute columns)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Parallel worker processes (overrides the config)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad subjects (listed with reasons) instead of stopping."),
    **shared: Any,
) -> Job:
    """Read, check and preprocess scans into items + manifest.csv + dataset.json (splits by subject)."""
    from ..stages.data import PrepareJob

    return PrepareJob(source=source.value, input=input, out=out, labels=labels, workers=workers, skip_bad=skip_bad,
                      **shared)
