"""``uterosynth demo``: the whole mission on the digital phantom, as a chain of stage commands.

Every stage is the same CLI command a user would run, reading the previous stage's artifact
and writing its own into ``<out>/<NN_stage>`` (atomically; training stages resume from their
last checkpoint), so re-running the demo skips finished stages and Ctrl-C never leaves a
half-written one. The stages run through :mod:`uterosynth.pipeline`, whose ``report.html``
links every artifact and picture; ``configs/pipeline_cpu.yaml`` is the same chain as a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .core.errors import UserError
from .pipeline import PRESETS, Stage, run_stage, run_stages

__all__ = ["demo_stages", "run_demo"]


def _config(name: str) -> str:
    path = PRESETS / name
    if not path.is_file():
        raise UserError(f"{path}: demo preset not found (the uterosynth installation is incomplete; reinstall it)")
    return str(path)


@dataclass(frozen=True)
class _Size:
    """What --quick, the default run and --dims change."""

    subjects: str
    shape: str
    ae_budget: tuple[str, ...]
    ldm_budget: tuple[str, ...]
    per_class: str
    judge: tuple[str, ...]
    encoder: tuple[str, ...]
    downstream: tuple[str, ...]
    evaluate: tuple[str, ...]
    readers_per_source: str


def _size(quick: bool, dims: int) -> _Size:
    if quick:
        return _Size(
            subjects="16", shape="[64,64]" if dims == 2 else "[32,32,8]",
            ae_budget=("--set", "train.steps=20", "--set", "loss.adv_warmup_steps=10", "--set", "model.channels=[16,32,32]",
                       "--set", "discriminator.channels=16"),
            ldm_budget=("--set", "train.steps=20", "--set", "unet.channels=[32,64]",
                        "--set", "unet.attention_levels=[false,true]"),
            per_class="2",
            judge=("--set", "train.max_epochs=2", "--set", "train.min_epochs=1", "--set", "classifier.image_size=32"),
            encoder=("--set", "epochs=1", "--set", "image_size=32", "--set", "channels=[8,8,8,16]"),
            downstream=("--set", "budgets=[1.0]", "--set", "n_seeds=1", "--set", "train.max_epochs=2",
                        "--set", "train.min_epochs=1", "--set", "protocols.augment=false"),
            evaluate=("--set", "bootstrap.n=20", "--set", "kid.subsets=5", "--set", "msssim.pairs=50",
                      "--set", "frd.enabled=false", "--set", "lpips.pairs=20"),
            readers_per_source="4" if dims == 2 else "2",
        )
    return _Size(
        subjects="60", shape="[128,128]" if dims == 2 else "[64,64,16]",
        ae_budget=("--set", "train.steps=100000", "--set", "train.max_minutes=3"),
        ldm_budget=("--set", "train.steps=100000", "--set", "train.max_minutes=5.5"),
        per_class="8",
        judge=(),
        encoder=("--set", "epochs=8"),
        downstream=("--set", "n_seeds=2"),
        evaluate=("--set", "frd.max_items=64", "--set", "bootstrap.n=50"),
        readers_per_source="20" if dims == 2 else "4",
    )


def demo_stages(out: Path, *, quick: bool, dims: int = 2) -> list[Stage]:
    """The demo's stages; ``quick`` shrinks cohort, models and step counts to a smoke run."""
    if dims not in (2, 3):
        raise UserError(f"--dims: 2 or 3, got {dims}")
    size = _size(quick, dims)
    p = {name: str(out / name) for name in (
        "01_phantom", "02_prepared", "03_autoencoder", "04_latents", "05_ldm", "06_samples", "07_judge",
        "08_encoder", "09_baselines", "10_downstream", "11_evaluation", "12_audit", "13_release", "14_reader_study")}
    prepare = ("--config", _config("prepare2d.yaml"), "--set", "preprocess.output.slices=central") if dims == 2 else (
        "--config", _config("prepare3d.yaml"), "--set", "preprocess.roi.mode=uterus")
    ae, ldm = ("ae2d_demo.yaml", "ldm2d_demo.yaml") if dims == 2 else ("ae3d_demo.yaml", "ldm3d_demo.yaml")
    return [
        Stage("01_phantom", "digital phantom cohort", ("phantom", "--out", p["01_phantom"], "--subjects", size.subjects,
              "--seed", "0", "--preview", str(out / "phantom_preview.png")), "labels.csv"),
        Stage("02_prepared", f"prepared dataset (uterus ROI, {dims}D)", (
            "prepare", "--source", "umd", "--input", p["01_phantom"], *prepare,
            "--set", f"preprocess.output.shape={size.shape}", "--out", p["02_prepared"]), "manifest.csv"),
        Stage("03_autoencoder", "KL autoencoder", (
            "train", "autoencoder", "--config", _config(ae), "--data", p["02_prepared"], "--out", p["03_autoencoder"],
            *size.ae_budget), "summary.json", resumable=True),
        Stage("04_latents", "latent cache", ("encode", "--model", p["03_autoencoder"], "--data", p["02_prepared"],
              "--out", p["04_latents"]), "latents.json"),
        Stage("05_ldm", "conditional latent diffusion model", (
            "train", "diffusion", "--config", _config(ldm), "--data", p["02_prepared"], "--out", p["05_ldm"],
            "--set", f"autoencoder={p['03_autoencoder']}", "--set", f"latents={p['04_latents']}", *size.ldm_budget),
            "summary.json", resumable=True),
        Stage("06_samples", "synthetic set (balanced per class)", (
            "sample", "--model", p["05_ldm"], "--per-class", size.per_class, "--sampler", "dpmpp", "--steps", "20",
            "--guidance", "orientation=3,field_strength=1.5", "--seed", "0", "--out", p["06_samples"]),
            "metadata.jsonl"),
        Stage("07_judge", "independent orientation classifier (the judge)", (
            "downstream", "train-classifier", "--data", p["02_prepared"], "--out", p["07_judge"], *size.judge),
            "classifier.json"),
        Stage("08_encoder", "in-domain feature encoder", (
            "evaluate", "train-encoder", "--data", p["02_prepared"], "--out", p["08_encoder"], *size.encoder),
            "encoder.json"),
        Stage("09_baselines", "autoencoder baselines (reconstructions, prior and class-prior samples)", (
            "evaluate", "baselines", "--autoencoder", p["03_autoencoder"], "--real", f"{p['02_prepared']}:test",
            "--prior-by", "orientation", "--out", p["09_baselines"]), "class_prior/metadata.jsonl"),
        Stage("10_downstream", "downstream gain of an orientation classifier", (
            "downstream", "--real", p["02_prepared"], "--synthetic", f"diffusion={p['06_samples']}",
            "--synthetic", f"vae_prior={p['09_baselines']}/class_prior", "--task", "orientation",
            "--config", _config("downstream_quick.yaml"), *size.downstream, "--out", p["10_downstream"]),
            "results.json"),
        Stage("11_evaluation", "evaluation report (metrics with 95 % CIs, baselines, downstream)", (
            "evaluate", "--real", f"{p['02_prepared']}:train", "--synthetic", p["06_samples"],
            "--baseline", f"reconstruction={p['09_baselines']}/reconstruction",
            "--baseline", f"prior={p['09_baselines']}/prior", "--extractor", p["08_encoder"],
            "--classifier", p["07_judge"], "--downstream", p["10_downstream"], *size.evaluate,
            "--out", p["11_evaluation"]), "report.html"),
        Stage("12_audit", "memorisation audit", ("audit", "--train", p["02_prepared"], "--synthetic", p["06_samples"],
              "--out", p["12_audit"]), "audit.json"),
        Stage("13_release", "released synthetic dataset", ("release", "--synthetic", p["06_samples"],
              "--audit", p["12_audit"], "--out", p["13_release"]), "SHA256SUMS"),
        Stage("14_reader_study", "reader study, ready to serve", (
            "reader-study", "create", "--real", f"{p['02_prepared']}:test", "--synthetic", p["06_samples"],
            "--per-source", size.readers_per_source, "--raters", "reader1,reader2",
            "--class-by", "none" if quick or dims == 3 else "orientation", "--out", p["14_reader_study"]), "study.json"),
    ]


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    dims: int = 2,
    run_command: Callable[[Stage, Sequence[str]], None] = run_stage,
    on_stage: Callable[[int, int, Stage, str], None] | None = None,
) -> dict:
    """Run (or resume) every stage into ``out``; returns a summary with per-stage seconds.

    Raises:
        UserError: a stage failed (its message was printed by the stage itself).
    """
    out = Path(out)
    stages = demo_stages(out, quick=quick, dims=dims)
    timings = run_stages(out, stages, title="uterosynth demo on the digital phantom", run_command=run_command,
                         on_stage=on_stage)
    summary = {"out": str(out), "quick": quick, "dims": dims, "report": str(out / "report.html"), "stages": timings,
               "seconds": round(sum(t for t in timings.values() if isinstance(t, float)), 1)}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
