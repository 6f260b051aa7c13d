"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, diffusion)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt, emit_summary

train_app = typer.Typer(help="Train a model (autoencoder, diffusion) on a prepared dataset.", no_args_is_help=True)
app.add_typer(train_app, name="train")

DataOpt = typer.Option(..., "--data", help="Prepared dataset folder (see 'uterosynth prepare').")
OutOpt = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl, tensorboard/, images/.")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")


@train_app.command("autoencoder")
def autoencoder(
    data: Path = DataOpt,
    out: Path = OutOpt,
    config: Path | None = ConfigOpt,
    resume: bool = ResumeOpt,
    seed: int | None = SeedOpt,
    overrides: list[str] | None = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train the KL autoencoder (2D or 3D); runs under torchrun for several processes."""
    from ..stages.training import run_train_autoencoder

    _run(run_train_autoencoder, data, out, config, overrides, seed=seed, resume=resume, overwrite=overwrite,
         as_json=as_json, title="autoencoder")


@train_app.command("diffusion")
def diffusion(
    data: Path = DataOpt,
    out: Path = OutOpt,
    config: Path | None = ConfigOpt,
    resume: bool = ResumeOpt,
    seed: int | None = SeedOpt,
    overrides: list[str] | None = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a diffusion model (pixel DDPM or latent LDM; 2D or 3D; conditions); runs under torchrun."""
    from ..stages.training import run_train_diffusion

    _run(run_train_diffusion, data, out, config, overrides, seed=seed, resume=resume, overwrite=overwrite,
         as_json=as_json, title="diffusion")


def _run(run, data: Path, out: Path, config: Path | None, overrides: list[str] | None, *, seed: int | None,
         resume: bool, overwrite: bool, as_json: bool, title: str) -> None:
    """Train on this process (or this torchrun rank); rank 0 prints the summary."""
    import os

    from ..core.config import parse_overrides
    from ..stages.training import TrainJob

    job = TrainJob(data=data, out=out, config=config, overrides=parse_overrides(overrides or []), seed=seed,
                   resume=resume, overwrite=overwrite)
    summary = run(job)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: rank 0 prints
        emit_summary(summary, as_json=as_json, title=title)
