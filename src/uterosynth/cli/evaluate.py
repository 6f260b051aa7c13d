"""``uterosynth evaluate``: metrics and report; ``uterosynth evaluate train-encoder``: the in-domain encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

evaluate_app = typer.Typer(
    help="Evaluate synthetic sets against real data (FID/KID/PRDC/FRD/MS-SSIM/LPIPS/fidelity with 95 % CIs).",
    add_completion=False,
)
app.add_typer(evaluate_app, name="evaluate")


@stage_command(evaluate_app.callback(invoke_without_command=True), "evaluate")
def evaluate(
    ctx: typer.Context,
    real: str = typer.Option(None, "--real", help="Prepared dataset DIR[:split] (reference; default split train)."),
    synthetic: Path = typer.Option(None, "--synthetic", help="Synthetic set folder to evaluate."),
    baseline: list[str] = typer.Option(None, "--baseline", help="NAME=DIR: another synthetic set shown side by side (repeatable)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (metrics.json, report.html)."),
    extractor: Path = typer.Option(None, "--extractor", help="Feature extractor path (sets extractor.path)."),
    extractor_kind: str = typer.Option(None, "--extractor-kind", help="encoder | inception | torchscript."),
    classifier: Path = typer.Option(None, "--classifier", help="Condition classifier folder or classifier.pt."),
    lpips_weights: Path = typer.Option(None, "--lpips-weights", help="AlexNet features safetensors for LPIPS."),
    downstream: Path = typer.Option(None, "--downstream", help="A 'uterosynth downstream' output folder to include."),
    floor: str = typer.Option(None, "--floor", help="DIR[:split]: real subjects disjoint from --real for the "
                              "real-vs-real noise floor (default: real_vs_real_split of --real)."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Evaluate even when the judge or the extractor "
                                       "was trained on evaluated real subjects or on a generator's training subjects "
                                       "(refused by default; the overlaps are recorded in metrics.json)."),
    **shared: Any,
) -> Job | None:
    """Compute every metric of --synthetic (and each --baseline, and the real-vs-real floor) against --real."""
    if ctx.invoked_subcommand is not None:
        return None
    if real is None or out is None:
        raise typer.BadParameter("--real and --out are required (see 'uterosynth evaluate --help')")
    from ..stages.evaluation import EvaluateJob

    return EvaluateJob(real=real, synthetic=synthetic, baseline=baseline or [], out=out, extractor=extractor,
                       extractor_kind=extractor_kind, classifier=classifier, lpips_weights=lpips_weights,
                       downstream=downstream, floor=floor, allow_overlap=allow_overlap, **shared)


@stage_command(evaluate_app.command("baselines"), "evaluate baselines", shared=("seed",))
def baselines(
    autoencoder: Path = typer.Option(..., "--autoencoder", help="Autoencoder checkpoint or run folder."),
    real: str = typer.Option(..., "--real", help="Prepared dataset DIR[:split] to reconstruct (default split test)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: reconstruction/ and prior/ synthetic sets."),
    n_prior: int = typer.Option(None, "--n-prior", min=1, help="Prior samples (default: as many as the real split)."),
    prior_by: list[str] = typer.Option(None, "--prior-by", help="Also write class_prior/: per-class latent Gaussians "
                                       "of the train split by this attribute (repeatable), labelled samples."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Reconstruct subjects the autoencoder was "
                                       "trained on (refused by default: the reconstruction would flatter it)."),
    **shared: Any,
) -> Job:
    """Write the autoencoder baselines: reconstructions of the real split and decoded prior samples."""
    from ..stages.evaluation import BaselinesJob

    return BaselinesJob(autoencoder=autoencoder, real=real, out=out, n_prior=n_prior, prior_by=prior_by or [],
                        device=device, allow_overlap=allow_overlap, **shared)


@stage_command(evaluate_app.command("train-encoder"), "evaluate train-encoder")
def train_encoder(
    data: str = typer.Option(..., "--data", help="Prepared dataset DIR[:split] (default split train)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (encoder.pt, encoder.json)."),
    **shared: Any,
) -> Job:
    """Train the in-domain feature encoder (SimCLR) on real training data and freeze it."""
    from ..stages.evaluation import EncoderJob

    return EncoderJob(data=data, out=out, **shared)
