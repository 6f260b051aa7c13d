"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, diffusion)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt

train_app = typer.Typer(help="Train a model (autoencoder, diffusion) on a prepared dataset.", no_args_is_help=True)
app.add_typer(train_app, name="train")

DataOpt = typer.Option(..., "--data", help="Prepared dataset folder (see 'uterosynth prepare').")
OutOpt = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl, tensorboard/, images/.")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")


def _train_command(model: str, help_text: str) -> None:
    """Register ``uterosynth train <model>``: every model takes the same options."""

    def command(
        data: Path = DataOpt,
        out: Path = OutOpt,
        config: Path | None = ConfigOpt,
        resume: bool = ResumeOpt,
        seed: int | None = SeedOpt,
        overrides: list[str] | None = SetOpt,
        overwrite: bool = OverwriteOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        _run(f"train {model}", data, out, config, overrides, seed=seed, resume=resume, overwrite=overwrite,
             as_json=as_json)

    command.__doc__ = help_text
    train_app.command(model, help=help_text)(command)


_train_command("autoencoder", "Train the KL autoencoder (2D or 3D); runs under torchrun for several processes.")
_train_command("diffusion",
               "Train a diffusion model (pixel DDPM or latent LDM; 2D or 3D; conditions); runs under torchrun.")


def _run(command: str, data: Path, out: Path, config: Path | None, overrides: list[str] | None, *,
         seed: int | None, resume: bool, overwrite: bool, as_json: bool) -> None:
    """Train on this process (or this torchrun rank); rank 0 prints the summary."""
    from ..core.config import parse_overrides
    from ..stages.training import TrainJob
    from .stages import show_stage

    show_stage(command, TrainJob(data=data, out=out, config=config, overrides=parse_overrides(overrides or []),
                                 seed=seed, resume=resume, overwrite=overwrite), as_json=as_json)
