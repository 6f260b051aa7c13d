"""``uterosynth train <model>``: one sub-command per trainable model (autoencoder, ...)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SeedOpt, SetOpt, emit_summary

train_app = typer.Typer(help="Train a model (autoencoder, ...) on a prepared dataset.", no_args_is_help=True)
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
    from ..config import load_config, parse_overrides
    from ..training.autoencoder import AutoencoderTrainConfig, train_autoencoder
    from ..training.distributed import init_distributed, shutdown_distributed

    values = parse_overrides(overrides or [])
    if seed is not None:
        values["seed"] = seed
    cfg = load_config(AutoencoderTrainConfig, config, overrides=values)
    try:
        summary = train_autoencoder(cfg, data, out, resume=resume, overwrite=overwrite)
        if init_distributed(cfg.train.device).is_main:
            emit_summary(summary, as_json=as_json, title="autoencoder")
    finally:
        shutdown_distributed()
