"""``uterosynth prepare``: raw scans (UMD layout or a folder of NIfTI/DICOM) → prepared dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt, emit_summary, progress_bar


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
    from ..core.config import load_config, parse_overrides
    from ..data.config import PrepareConfig
    from ..data.prepare import prepare_dataset

    overrides = parse_overrides(set_ or [])
    overrides.update({"seed": seed, "workers": workers})
    cfg = load_config(PrepareConfig, config, overrides=overrides)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("prepare", total=None)
        result = prepare_dataset(
            source.value,
            input,
            out,
            cfg,
            labels=labels,
            skip_bad=skip_bad,
            overwrite=overwrite,
            on_start=lambda n: progress.update(task, total=n),
            on_subject=lambda subject: progress.update(task, advance=1, description=f"prepare {subject}"),
        )
    emit_summary(result.summary(), as_json=as_json, title="prepared dataset")
