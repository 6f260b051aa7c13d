"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, diffusion)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

train_app = typer.Typer(help="Train a model (autoencoder, diffusion, fast decoder).", no_args_is_help=True)
app.add_typer(train_app, name="train")

_PREPARED = "Prepared dataset folder (see 'uterosynth prepare')."
_MODELS = {
    "autoencoder": ("Train the KL autoencoder (2D or 3D); runs under torchrun for several processes.", _PREPARED),
    "diffusion": ("Train a diffusion model (pixel DDPM or latent LDM; 2D or 3D; conditions); runs under torchrun.",
                  _PREPARED),
    "decoder": ("Distil a fast decoder from an autoencoder's (previews and bulk sampling: 'sample --decoder').",
                "Latent cache folder (see 'uterosynth encode'); its autoencoder is the teacher."),
}
"""Each trainable model's sub-command, its help and what its --data is."""


def _train_command(model: str, help: str, data_help: str) -> None:
    """Register ``train <model>``: training runs on this process (or this torchrun rank); rank 0 prints the summary."""

    @stage_command(train_app.command(model, help=help), f"train {model}")
    def train(
        data: Path = typer.Option(..., "--data", help=data_help),
        out: Path = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl, tensorboard/, images/."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
        **shared: Any,
    ) -> Job:
        from ..stages.training import TrainJob

        return TrainJob(data=data, out=out, resume=resume, **shared)


for _model, (_help, _data_help) in _MODELS.items():
    _train_command(_model, _help, _data_help)
