"""``uterosynth demo``: the whole pipeline on the digital phantom, no arguments needed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from . import app
from .common import emit_summary, err_console
from .options import AsJson


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_output"), "--out", help="Folder for every stage's artifact and report.html."),
    quick: bool = typer.Option(False, "--quick", help="A smoke run: tiny cohort, models and step counts."),
    dims: int = typer.Option(2, "--dims", help="2 (slices, the default) or 3 (volumes)."),
    as_json: AsJson = False,
) -> None:
    """Phantom → prepare → conditional pixel-space diffusion model (2D: slices; 3D: volumes) → samples → judge →
    autoencoder baselines → downstream gain → evaluation → audit → release → reader study, with one report.html."""
    from ..demo import QUICK_NOTICE, run_demo

    if quick:
        err_console.print(f"[bold yellow]{escape(QUICK_NOTICE)}[/]")
    emit_summary(run_demo(out, quick=quick, dims=dims, run_command=run_shown, on_stage=announce_stage("demo")),
                 as_json=as_json, title="demo")


def run_shown(stage, args) -> None:
    """Run a pipeline stage with the progress display and summary its own command shows."""
    from ..pipeline import run_stage
    from .stages import show_stage

    run_stage(stage, args, run_job=show_stage)


def announce_stage(what: str):
    """A progress line per stage: ``demo 3/14 KL autoencoder: running``."""

    def announce(i: int, total: int, stage, state: str) -> None:
        err_console.print(f"[bold]{what} {i + 1}/{total}[/] {escape(stage.title)}: {escape(state)}")

    return announce
