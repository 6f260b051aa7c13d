"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, diffusion)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

train_app = typer.Typer(help="Train a model (autoencoder, diffusion) on a prepared dataset.", no_args_is_help=True)
app.add_typer(train_app, name="train")

_MODELS = {
    "autoencoder": "Train the KL autoencoder (2D or 3D); runs under torchrun for several processes.",
    "diffusion": "Train a diffusion model (pixel DDPM or latent LDM; 2D or 3D; conditions); runs under torchrun.",
}
"""Each trainable model's sub-command and its help."""


def _train_command(model: str, help: str) -> None:
    """Register ``train <model>``: training runs on this process (or this torchrun rank); rank 0 prints the summary."""

    @stage_command(train_app.command(model, help=help), f"train {model}")
    def train(
        data: Path = typer.Option(..., "--data", help="Prepared dataset folder (see 'uterosynth prepare')."),
        out: Path = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl, tensorboard/, images/."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
        **shared: Any,
    ) -> Job:
        from ..stages.training import TrainJob

        return TrainJob(data=data, out=out, resume=resume, **shared)


for _model, _help in _MODELS.items():
    _train_command(_model, _help)
