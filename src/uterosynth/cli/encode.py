"""``uterosynth encode``: cache latent means and standard deviations of a prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


@stage_command(app.command("encode"), "encode", shared=())
def encode(
    model: Path = typer.Option(..., "--model", help="Autoencoder checkpoint (or its run folder)."),
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (all splits are encoded)."),
    out: Path = typer.Option(..., "--out", help="Latent cache folder to write."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Items per encoder batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    **shared: Any,
) -> Job:
    """Encode every item to latent μ and σ, and fix the latent scale factor (1/std over training latents)."""
    from ..stages.training import EncodeJob

    return EncodeJob(model=model, data=data, out=out, batch_size=batch_size, device=device, **shared)
