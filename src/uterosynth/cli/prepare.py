"""``uterosynth prepare``: raw scans (UMD layout or a folder of NIfTI/DICOM) → prepared dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt


class Source(str, Enum):
    umd = "umd"
    folder = "folder"


@app.command()
def prepare(
    source: Source = typer.Option(..., "--source", help="Layout of the input: 'umd' (UMD/UMD_<date>_<NNN>/) or 'folder'."),
    input: Path = typer.Option(..., "--input", "-i", exists=True, file_okay=False, help="Raw dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Prepared dataset folder to create."),
    labels: Path | None = typer.Option(
        None, "--labels", exists=True, dir_okay=False, help="Labels CSV (subject column + attribute columns)."
    ),
    config: Path | None = ConfigOpt,
    seed: int | None = SeedOpt,
    workers: int | None = typer.Option(None, "--workers", help="Parallel worker processes (overrides the config)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad subjects (listed with reasons) instead of stopping."),
    overwrite: bool = OverwriteOpt,
    set_: list[str] | None = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Read, check and preprocess scans into items + manifest.csv + dataset.json (splits by subject)."""
    from ..core.config import parse_overrides
    from ..stages.data import PrepareJob
    from .stages import show_stage

    show_stage("prepare", PrepareJob(source=source.value, input=input, out=out, labels=labels, config=config,
                                     seed=seed, workers=workers, skip_bad=skip_bad,
                                     overrides=parse_overrides(set_ or []), overwrite=overwrite),
               as_json=as_json)
