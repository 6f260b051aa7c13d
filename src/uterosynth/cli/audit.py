"""``uterosynth audit``: calibrated memorisation audit of a synthetic set against its training data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


@stage_command(app.command("audit"), "audit", shared=("config", "overrides"))
def audit(
    train: str = typer.Option(..., "--train", help="Prepared dataset DIR or DIR:train (training items)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic set folder."),
    out: Path = typer.Option(..., "--out", help="Output folder for audit.json and audit.html."),
    holdout: str = typer.Option(None, "--holdout", help="Held-out split calibrating the thresholds: test (default) or val."),
    encoder: Path = typer.Option(None, "--encoder", help="TorchScript feature extractor for the embedding measure."),
    quantile: float = typer.Option(None, "--quantile", help="Threshold quantile of held-out similarities (default 0.99)."),
    **shared: Any,
) -> Job:
    """Find every synthetic sample's nearest training items (NCC, SSIM, embedding) and flag near-copies."""
    from ..stages.release import AuditJob

    return AuditJob(train=train, synthetic=synthetic, out=out, holdout=holdout, encoder=encoder, quantile=quantile,
                    **shared)
