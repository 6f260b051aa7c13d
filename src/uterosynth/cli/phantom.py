"""``uterosynth phantom``: write a digital-phantom cohort in the UMD layout."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SetOpt, emit_summary, load_stage_config, progress_bar


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
    from ..phantom import PhantomConfig, write_cohort

    cfg = load_stage_config(PhantomConfig, config, overrides, subjects=subjects, seed=seed, workers=workers)
    with progress_bar(transient=True) as bar:
        task = bar.add_task("phantom", total=cfg.subjects)
        summary = write_cohort(cfg, out, overwrite=overwrite, preview=preview,
                               progress=lambda n: bar.advance(task, n))
    emit_summary(
        {
            "out": summary.out,
            "subjects": summary.subjects,
            "seconds": round(summary.seconds, 2),
            "subjects_per_second": round(summary.subjects / max(summary.seconds, 1e-9), 3),
            "classes": summary.class_counts,
            "field_strengths": summary.field_counts,
            "preview": summary.preview,
        },
        as_json=as_json,
        title="phantom cohort",
    )
