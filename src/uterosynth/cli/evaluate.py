"""``uterosynth evaluate``: metrics and report; ``uterosynth evaluate train-encoder``: the in-domain encoder."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import (
    ConfigOpt,
    JsonOpt,
    OverwriteOpt,
    SeedOpt,
    SetOpt,
    emit_summary,
    err_console,
    load_stage_config,
    progress_bar,
)

evaluate_app = typer.Typer(
    help="Evaluate synthetic sets against real data (FID/KID/PRDC/FRD/MS-SSIM/LPIPS/fidelity with 95 % CIs).",
    add_completion=False,
)
app.add_typer(evaluate_app, name="evaluate")


def _parse_baselines(items: list[str] | None) -> dict[str, Path]:
    from ..core.config import split_assignment

    out: dict[str, Path] = {}
    for item in items or []:
        name, path = split_assignment(item, what="--baseline",
                                      expected="NAME=DIR, e.g. --baseline reconstruction=runs/recon")
        if name in out:
            raise typer.BadParameter(f"'{name}' given twice", param_hint="--baseline")
        out[name] = Path(path)
    return out


@evaluate_app.callback(invoke_without_command=True)
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
    config: Path = ConfigOpt,
    seed: int = SeedOpt,
    set_: list[str] = SetOpt,
    overwrite: bool = OverwriteOpt,
    json_: bool = JsonOpt,
) -> None:
    """Compute every metric of --synthetic (and each --baseline, and the real-vs-real floor) against --real."""
    if ctx.invoked_subcommand is not None:
        return
    if real is None or out is None:
        raise typer.BadParameter("--real and --out are required (see 'uterosynth evaluate --help')")
    from ..evaluation.config import EvaluationConfig
    from ..evaluation.runner import evaluate as run

    flags = {"seed": seed, "extractor.path": extractor, "extractor.kind": extractor_kind,
             "classifier.path": classifier, "lpips.weights": lpips_weights}
    cfg = load_stage_config(EvaluationConfig, config, set_, **{k: str(v) if isinstance(v, Path) else v
                                                               for k, v in flags.items()})
    metrics = run(real, synthetic, out, cfg, baselines=_parse_baselines(baseline), downstream=downstream,
                  overwrite=overwrite,
                  log=lambda line: err_console.print(f"[dim]{line}[/]"))
    summary = {"out": str(out), "extractor": metrics["extractor"]["name"], "warnings": len(metrics["warnings"])}
    for name, s in metrics["sets"].items():
        for key in ("fid", "fid_2.5d", "kid", "frd", "conditioning_fidelity"):
            if key in s["metrics"]:
                summary[f"{name}.{key}"] = s["metrics"][key]["value"]
    emit_summary(summary, as_json=json_, title="evaluation")


@evaluate_app.command("baselines")
def baselines(
    autoencoder: Path = typer.Option(..., "--autoencoder", help="Autoencoder checkpoint or run folder."),
    real: str = typer.Option(..., "--real", help="Prepared dataset DIR[:split] to reconstruct (default split test)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: reconstruction/ and prior/ synthetic sets."),
    n_prior: int = typer.Option(None, "--n-prior", min=1, help="Prior samples (default: as many as the real split)."),
    prior_by: list[str] = typer.Option(None, "--prior-by", help="Also write class_prior/: per-class latent Gaussians "
                                       "of the train split by this attribute (repeatable), labelled samples."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    seed: int = SeedOpt,
    overwrite: bool = OverwriteOpt,
    json_: bool = JsonOpt,
) -> None:
    """Write the autoencoder baselines: reconstructions of the real split and decoded prior samples."""
    from ..evaluation.baselines import make_baselines

    made = make_baselines(autoencoder, real, out, n_prior=n_prior, seed=seed or 0, device=device, overwrite=overwrite,
                          prior_by=prior_by or ())
    emit_summary({"out": str(out), **{name: str(path) for name, path in made.items()},
                  "use": " ".join(f"--baseline {name}={path}" for name, path in made.items())},
                 as_json=json_, title="baselines")


@evaluate_app.command("train-encoder")
def train_encoder(
    data: str = typer.Option(..., "--data", help="Prepared dataset DIR[:split] (default split train)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (encoder.pt, encoder.json)."),
    config: Path = ConfigOpt,
    seed: int = SeedOpt,
    set_: list[str] = SetOpt,
    overwrite: bool = OverwriteOpt,
    json_: bool = JsonOpt,
) -> None:
    """Train the in-domain feature encoder (SimCLR) on real training data and freeze it."""
    from ..evaluation.config import EncoderTrainConfig
    from ..evaluation.contrastive import train_encoder as train

    cfg = load_stage_config(EncoderTrainConfig, config, set_, seed=seed)
    with progress_bar() as progress:
        task = progress.add_task("train encoder", total=cfg.epochs)
        info = train(data, out, cfg, overwrite=overwrite,
                     progress=lambda epoch, loss: progress.update(task, completed=epoch, description=f"loss {loss:.3f}"))
    emit_summary({"out": str(out), "name": info["name"], "sha256": info["sha256"], "feature_dim": info["feature_dim"],
                  "images": info["data"]["images"], "final_loss": info["training"]["final_loss"]},
                 as_json=json_, title="encoder")
