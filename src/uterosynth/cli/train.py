"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, diffusion)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt, emit_summary, load_stage_config

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
    from ..training.autoencoder import AutoencoderTrainConfig, train_autoencoder

    cfg = load_stage_config(AutoencoderTrainConfig, config, overrides, seed=seed)
    _run(train_autoencoder, cfg, data, out, resume=resume, overwrite=overwrite, as_json=as_json, title="autoencoder")


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
    from ..training.diffusion import DiffusionTrainConfig, train_diffusion

    cfg = load_stage_config(DiffusionTrainConfig, config, overrides, seed=seed)
    _run(train_diffusion, cfg, data, out, resume=resume, overwrite=overwrite, as_json=as_json, title="diffusion")


def _run(train, cfg, data: Path, out: Path, *, resume: bool, overwrite: bool, as_json: bool, title: str) -> None:
    """Train on this process (or this torchrun rank); rank 0 writes ``summary.json`` (the mark
    of a finished run) and prints the summary."""
    from ..core.artifacts import provenance, write_json
    from ..core.distributed import init_distributed, shutdown_distributed

    try:
        summary = train(cfg, data, out, resume=resume, overwrite=overwrite)
        if init_distributed(cfg.train.device).is_main:
            write_json(Path(out) / "summary.json", {**provenance(cfg.model_dump(mode="json"), cfg.seed), **summary})
            emit_summary(summary, as_json=as_json, title=title)
    finally:
        shutdown_distributed()
