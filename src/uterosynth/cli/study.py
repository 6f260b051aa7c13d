"""``uterosynth study STUDY.yaml``: a grid of pipeline runs over named axes, with one comparison table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from . import app
from .common import emit_summary, err_console
from .options import AsJson


@app.command("study")
def study(
    study_file: Path = typer.Argument(..., help="Study file (see configs/study_*.yaml)."),
    out: Path = typer.Option(None, "--out", help="Output folder (overrides the file's 'out')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their pipeline changes; run nothing."),
    cell: list[str] = typer.Option(None, "--cell", help="Run only the cells whose names match this shell pattern "
                                   "(repeatable); the others are read as they stand."),
    report_only: bool = typer.Option(False, "--report-only", help="Run no cell: read the cells as they stand and "
                                     "write study.html, study.md and study.json again (e.g. after a claim changed)."),
    as_json: AsJson = False,
) -> None:
    """Run (or resume) every cell of a study on its executor; finished cells are kept; write study.html."""
    from ..study import plan, run_study, summarize

    root, cfg, cells = plan(study_file, out=out)
    if dry_run:
        for cell in cells:
            typer.echo(f"{cell.name}: base {cell.pipeline.name}, override {cell.override}")
        return

    def announce(cell, state: str) -> None:
        err_console.print(f"[bold]cell[/] {escape(cell.name)}: {escape(state)}")

    if report_only:
        document = summarize(root, cfg, cells)
    else:
        document = run_study(root, cfg, cells, on_cell=announce, only=cell or ())
    emit_summary({"out": str(root), "report": str(root / "study.html"), "cells": len(cells),
                  "claims": {c["statement"]: c["verdict"] for c in document["claims"]}}, as_json=as_json, title="study")
