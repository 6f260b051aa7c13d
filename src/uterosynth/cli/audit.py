"""``uterosynth audit``: calibrated memorisation audit of a synthetic set against its training data;
``uterosynth audit membership``: a membership-inference attack on the model itself;
``uterosynth audit train-encoder``: the learned copy detector for the embedding measure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

audit_app = typer.Typer(
    help="Find every synthetic sample's nearest training items (NCC, SSIM, embedding) and flag near-copies.",
    add_completion=False,
)
app.add_typer(audit_app, name="audit")


@stage_command(audit_app.callback(invoke_without_command=True), "audit", shared=("config", "overrides"))
def audit(
    ctx: typer.Context,
    train: Annotated[str | None, typer.Option("--train", help="Prepared dataset DIR or DIR:train (training items).")] = None,
    synthetic: Annotated[Path | None, typer.Option("--synthetic", help="Synthetic set folder.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder for audit.json and audit.html.")] = None,
    holdout: Annotated[str | None, typer.Option(
        "--holdout", help="Held-out split calibrating the thresholds: test (default) or val.")] = None,
    encoder: Annotated[Path | None, typer.Option(
        "--encoder", help="Encoder folder (e.g. the copy detector of 'audit train-encoder') or TorchScript file for "
        "the embedding measure.")] = None,
    controls: Annotated[Path | None, typer.Option(
        "--controls", help="Synthetic set of model-made controls that calibrate the thresholds: samples of a model "
        "trained on other subjects, or autoencoder reconstructions of other subjects.")] = None,
    quantile: Annotated[float | None, typer.Option(
        "--quantile", help="Conformal threshold quantile of the calibration similarities (default 0.99).")] = None,
    **shared: Any,
) -> Job | None:
    """Find every synthetic sample's nearest training items (NCC, SSIM, embedding) and flag near-copies."""
    if ctx.invoked_subcommand is not None:
        return None
    if train is None or synthetic is None or out is None:
        raise typer.BadParameter("--train, --synthetic and --out are required (see 'uterosynth audit --help')")
    from ..stages.release import AuditJob

    return AuditJob(train=train, synthetic=synthetic, out=out, holdout=holdout, encoder=encoder, controls=controls,
                    quantile=quantile, **shared)


@stage_command(audit_app.command("membership"), "audit membership")
def membership(
    model: Path = typer.Option(..., "--model", help="Diffusion model run or checkpoint folder."),
    members: str = typer.Option(..., "--members", help="Prepared dataset DIR[:split] of the model's training "
                                "subjects (default split train)."),
    nonmembers: str = typer.Option(..., "--nonmembers", help="Prepared dataset DIR[:split] of subjects the model "
                                   "never saw (default split test), e.g. another cohort."),
    out: Path = typer.Option(..., "--out", help="Output folder for membership.json."),
    **shared: Any,
) -> Job:
    """Membership inference: do the model's denoising errors tell its training subjects from unseen ones?"""
    from ..stages.release import MembershipJob

    return MembershipJob(model=model, members=members, nonmembers=nonmembers, out=out, **shared)


@stage_command(audit_app.command("train-encoder"), "audit train-encoder")
def train_encoder(
    data: str = typer.Option(..., "--data", help="Prepared dataset DIR[:split] (default split train); best a cohort "
                             "of other subjects, so every calibration item counts."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (encoder.pt, encoder.json)."),
    **shared: Any,
) -> Job:
    """Train the copy detector (contrastive on copy-like augmentations) for 'uterosynth audit --encoder'."""
    from ..stages.release import CopyDetectorJob

    return CopyDetectorJob(data=data, out=out, **shared)
