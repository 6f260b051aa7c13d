"""``uterosynth run pipeline.yaml``: the demo's chain of stages, from a file, on your data."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import emit_summary
from .demo import announce_stage, run_shown
from .options import AsJson


@app.command("run")
def run(
    pipeline: Path = typer.Argument(..., help="Pipeline file (see configs/pipeline_*.yaml)."),
    out: Path = typer.Option(None, "--out", help="Output folder (overrides the file's 'out')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands without running them."),
    as_json: AsJson = False,
) -> None:
    """Run (or resume) every stage of a pipeline file; skip finished stages; write report.html."""
    from ..pipeline import pipeline_stages, run_stages

    root, stages = pipeline_stages(pipeline, out=out)
    if dry_run:
        for stage in stages:
            launcher = f"torchrun --nproc_per_node={stage.nproc} -m " if stage.launcher == "torchrun" else ""
            typer.echo(f"{launcher}uterosynth {' '.join(stage.args)}")
        return
    timings = run_stages(root, stages, title=f"uterosynth pipeline {pipeline.name}", run_command=run_shown,
                         on_stage=announce_stage("stage"))
    emit_summary({"out": str(root), "report": str(root / "report.html"), "stages": timings}, as_json=as_json,
                 title="pipeline")
