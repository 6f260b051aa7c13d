"""``uterosynth downstream``: the downstream-utility grid, and ``downstream train-classifier``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.errors import UserError
from . import app
from .common import (
    ConfigOpt,
    JsonOpt,
    OverwriteOpt,
    SeedOpt,
    SetOpt,
    emit_summary,
    load_stage_config,
    progress_bar,
)

downstream_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Does synthetic data help a classifier? Protocols × label budgets × seeds, tested on real data.",
)
app.add_typer(downstream_app, name="downstream")

QUICK_PRESET = "configs/downstream_quick.yaml"


@downstream_app.callback()
def downstream(
    ctx: typer.Context,
    real: Path | None = typer.Option(None, "--real", help="Prepared dataset (train/val/test by subject)."),
    synthetic: list[str] | None = typer.Option(
        None, "--synthetic", help="Synthetic set NAME=DIR or DIR (named after the folder); repeatable or comma-separated."
    ),
    task: str | None = typer.Option(None, "--task", help="Categorical attribute to classify (default: orientation)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder."),
    quick: bool = typer.Option(False, "--quick", help="The quick CPU preset (2 budgets, 2 seeds, few epochs)."),
    config: Path | None = ConfigOpt,
    seed: int | None = SeedOpt,
    overrides: list[str] | None = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a ResNet-18 per protocol, label budget and seed; test on the real test split; write
    results.json, a plot and an HTML section for the evaluation report."""
    if ctx.invoked_subcommand is not None:
        if real or synthetic or out:
            raise UserError(
                f"'uterosynth downstream {ctx.invoked_subcommand}' takes its own options; put --real/--synthetic/--out "
                "only on 'uterosynth downstream' without a subcommand"
            )
        return
    if real is None or out is None:
        raise UserError("uterosynth downstream: --real PREPARED and --out DIR are required (see --help)")

    from ..downstream.config import DownstreamConfig
    from ..downstream.experiment import parse_synthetic_specs, run_downstream

    if quick and config is not None:
        raise UserError("--quick and --config both choose a preset; give one of them")
    if quick:
        config = _preset(QUICK_PRESET)
    cfg = load_stage_config(DownstreamConfig, config, overrides, task=task, seed=seed)
    sets = parse_synthetic_specs(synthetic)
    with progress_bar() as bar:
        job = bar.add_task("downstream", total=None)

        def _progress(desc: str, done: int, total: int) -> None:
            bar.update(job, completed=done, total=total, description=desc)

        results = run_downstream(real, sets, cfg, out, overwrite=overwrite, progress=_progress)
    low = min(results["budgets"])
    headline = {
        r["protocol"]: round(r["balanced_accuracy"]["mean"], 4)
        for r in results["summary"] if r["budget"] == low and r["balanced_accuracy"]["mean"] is not None
    }
    emit_summary(
        {"out": str(out), "task": results["task"], "runs": len(results["runs"]), "seconds": results["seconds"],
         f"balanced_accuracy@{low:g}": headline},
        as_json=as_json, title="downstream",
    )


@downstream_app.command("train-classifier")
def train_classifier_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset to train and test on."),
    task: str | None = typer.Option(None, "--task", help="Categorical attribute to classify (default: orientation)."),
    out: Path = typer.Option(..., "--out", help="Output folder (classifier.pt + classifier.json)."),
    config: Path | None = ConfigOpt,
    seed: int | None = SeedOpt,
    overrides: list[str] | None = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train and freeze the judge classifier (TorchScript) used by evaluation and acceptance checks."""
    from ..downstream.config import JudgeConfig
    from ..downstream.judge import train_judge

    cfg = load_stage_config(JudgeConfig, config, overrides, task=task, seed=seed)
    meta = train_judge(data, cfg, out, overwrite=overwrite)
    emit_summary(
        {"out": str(out), "task": meta["task"], "classes": meta["classes"],
         "val_balanced_accuracy": round(meta["val_balanced_accuracy"], 4),
         "test_accuracy": round(meta["test_accuracy"], 4), "sha256": meta["sha256"]},
        as_json=as_json, title="train-classifier",
    )


def _preset(relative: str) -> Path:
    """A preset: ``relative`` under the working folder if present there, else the one shipped with uterosynth."""
    from ..pipeline import PRESETS

    for path in (Path.cwd() / relative, PRESETS / Path(relative).name):
        if path.is_file():
            return path
    raise UserError(f"{relative}: preset not found; pass --config")
