"""``uterosynth audit``: calibrated memorisation audit of a synthetic set against its training data."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import ConfigOpt, JsonOpt, OverwriteOpt, SetOpt


@app.command("audit")
def audit(
    train: str = typer.Option(..., "--train", help="Prepared dataset DIR or DIR:train (training items)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic set folder."),
    out: Path = typer.Option(..., "--out", help="Output folder for audit.json and audit.html."),
    holdout: str = typer.Option(None, "--holdout", help="Held-out split calibrating the thresholds: test (default) or val."),
    encoder: Path = typer.Option(None, "--encoder", help="TorchScript feature extractor for the embedding measure."),
    quantile: float = typer.Option(None, "--quantile", help="Threshold quantile of held-out similarities (default 0.99)."),
    config: Path = ConfigOpt,
    overrides: list[str] = SetOpt,
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Find every synthetic sample's nearest training items (NCC, SSIM, embedding) and flag near-copies."""
    from ..core.config import parse_overrides
    from ..stages.release import AuditJob
    from .stages import show_stage

    show_stage("audit", AuditJob(train=train, synthetic=synthetic, out=out, holdout=holdout, encoder=encoder,
                                 quantile=quantile, config=config, overrides=parse_overrides(overrides or []),
                                 overwrite=overwrite), as_json=as_json)
