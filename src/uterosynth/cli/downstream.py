"""``uterosynth downstream``: the downstream-utility grid, and ``downstream train-classifier``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..core.errors import UserError
from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

downstream_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Does synthetic data help a classifier? Protocols × label budgets × seeds, tested on real data.",
)
app.add_typer(downstream_app, name="downstream")


@stage_command(downstream_app.callback(), "downstream")
def downstream(
    ctx: typer.Context,
    real: Path | None = typer.Option(None, "--real", help="Prepared dataset (train/val/test by subject)."),
    synthetic: list[str] | None = typer.Option(
        None, "--synthetic", help="Synthetic set NAME=DIR or DIR (named after the folder); repeatable or comma-separated."
    ),
    task: str | None = typer.Option(None, "--task", help="Categorical attribute to classify (default: orientation)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder."),
    quick: bool = typer.Option(False, "--quick", help="The quick CPU preset (2 budgets, 2 seeds, few epochs)."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Run even when a synthetic set's generator was "
                                       "trained on (or reconstructs) subjects of the real test split (refused by "
                                       "default; the overlaps are recorded in results.json)."),
    test: str | None = typer.Option(None, "--test", help="Test on this prepared dataset (DIR or DIR:split, e.g. a "
                                    "fresh cohort of the same preparation) instead of --real's test split."),
    **shared: Any,
) -> Job | None:
    """Train a ResNet-18 per protocol, label budget and seed; test on the real test split (or --test); write
    results.json, a plot and an HTML section for the evaluation report."""
    if ctx.invoked_subcommand is not None:
        if real or synthetic or out or test:
            raise UserError(
                f"'uterosynth downstream {ctx.invoked_subcommand}' takes its own options; put --real/--synthetic/--out "
                "only on 'uterosynth downstream' without a subcommand"
            )
        return None
    if real is None or out is None:
        raise UserError("uterosynth downstream: --real PREPARED and --out DIR are required (see --help)")
    from ..stages.downstream import DownstreamJob

    return DownstreamJob(real=real, synthetic=synthetic or [], task=task, out=out, quick=quick,
                         allow_overlap=allow_overlap, test=test, **shared)


@stage_command(downstream_app.command("train-classifier"), "downstream train-classifier")
def train_classifier_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset to train and test on."),
    task: str | None = typer.Option(None, "--task", help="Categorical attribute to classify (default: orientation)."),
    out: Path = typer.Option(..., "--out", help="Output folder (classifier.pt, classifier.safetensors, classifier.json)."),
    **shared: Any,
) -> Job:
    """Train and freeze the judge classifier (TorchScript) used by evaluation and acceptance checks."""
    from ..stages.downstream import JudgeJob

    return JudgeJob(data=data, task=task, out=out, **shared)
