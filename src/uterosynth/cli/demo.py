"""``uterosynth demo``: the whole pipeline on the digital phantom, no arguments needed."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import JsonOpt, emit_summary, err_console


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_output"), "--out", help="Folder for every stage's artifact and report.html."),
    quick: bool = typer.Option(False, "--quick", help="A smoke run: tiny cohort, models and step counts."),
    as_json: bool = JsonOpt,
) -> None:
    """Phantom → prepare → autoencoder → latent diffusion → samples → audit → release → reader study."""
    from ..demo import run_demo

    def announce(i: int, total: int, stage, state: str) -> None:
        err_console.print(f"[bold]demo {i + 1}/{total}[/] {stage.title}: {state}")

    emit_summary(run_demo(out, quick=quick, on_stage=announce), as_json=as_json, title="demo")
