"""``uterosynth demo``: the whole mission on the digital phantom, as a chain of stage commands.

Every stage is the same CLI command a user would run, reading the previous stage's artifact
and writing its own into ``<out>/<NN_stage>`` (atomically), so re-running the demo skips the
stages whose artifact is complete and Ctrl-C never leaves a half-written one. The last stage
writes ``report.html`` linking every artifact and picture.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["Stage", "demo_stages", "run_demo"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Stage:
    """One step of the demo: a folder name, what it is, and the CLI arguments that make it."""

    name: str
    title: str
    args: tuple[str, ...]
    done_marker: str


def _config(name: str) -> str:
    path = CONFIGS / name
    if not path.is_file():
        raise UserError(f"{path}: demo preset not found (run the demo from a source checkout of uterosynth)")
    return str(path)


def demo_stages(out: Path, *, quick: bool) -> list[Stage]:
    """The demo's stages; ``quick`` shrinks cohort, models and step counts to a smoke run."""
    p = {name: out / name for name in ("01_phantom", "02_prepared", "03_autoencoder", "04_latents",
                                       "05_ldm", "06_samples", "07_audit", "08_release", "09_reader_study")}
    subjects, shape = ("12", "[64,64]") if quick else ("40", "[128,128]")
    ae_steps, ldm_steps, per_class = ("20", "20", "2") if quick else ("600", "1500", "8")
    small_ae = ["--set", "model.channels=[16,32,32]", "--set", "discriminator.channels=16"] if quick else []
    small_ldm = ["--set", "unet.channels=[32,64]"] if quick else []
    return [
        Stage("01_phantom", "digital phantom cohort", ("phantom", "--out", str(p["01_phantom"]), "--subjects",
              subjects, "--seed", "0", "--preview", str(out / "phantom_preview.png")), "labels.csv"),
        Stage("02_prepared", "prepared dataset (uterus ROI, 2D)", (
            "prepare", "--source", "umd", "--input", str(p["01_phantom"]), "--config", _config("prepare2d.yaml"),
            "--set", f"preprocess.output.shape={shape}", "--out", str(p["02_prepared"])), "manifest.csv"),
        Stage("03_autoencoder", "KL autoencoder", (
            "train", "autoencoder", "--config", _config("ae2d_demo.yaml"), "--data", str(p["02_prepared"]),
            "--out", str(p["03_autoencoder"]), "--set", f"train.steps={ae_steps}",
            "--set", f"loss.adv_warmup_steps={int(ae_steps) // 2}", *small_ae), "checkpoint/model.json"),
        Stage("04_latents", "latent cache", ("encode", "--model", str(p["03_autoencoder"]), "--data",
              str(p["02_prepared"]), "--out", str(p["04_latents"])), "latents.json"),
        Stage("05_ldm", "conditional latent diffusion model", (
            "train", "diffusion", "--config", _config("ldm2d_demo.yaml"), "--data", str(p["02_prepared"]),
            "--out", str(p["05_ldm"]), "--set", f"autoencoder={p['03_autoencoder']}",
            "--set", f"latents={p['04_latents']}", "--set", f"train.steps={ldm_steps}", *small_ldm),
            "checkpoint/model.json"),
        Stage("06_samples", "synthetic set (balanced per class)", (
            "sample", "--model", str(p["05_ldm"]), "--per-class", per_class, "--sampler", "dpmpp", "--steps", "20",
            "--guidance", "orientation=3,field_strength=1.5", "--seed", "0", "--out", str(p["06_samples"])),
            "metadata.jsonl"),
        Stage("07_audit", "memorisation audit", ("audit", "--train", str(p["02_prepared"]), "--synthetic",
              str(p["06_samples"]), "--out", str(p["07_audit"])), "audit.json"),
        Stage("08_release", "released synthetic dataset", ("release", "--synthetic", str(p["06_samples"]),
              "--audit", str(p["07_audit"]), "--out", str(p["08_release"])), "SHA256SUMS"),
        Stage("09_reader_study", "reader study, ready to serve", (
            "reader-study", "create", "--real", f"{p['02_prepared']}:test", "--synthetic", str(p["06_samples"]),
            "--per-source", "4" if quick else "20", "--raters", "reader1,reader2",
            "--class-by", "none" if quick else "orientation", "--out", str(p["09_reader_study"])), "study.json"),
    ]


def _run_command(args: Sequence[str]) -> None:
    from .cli import main

    try:
        main(list(args))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise UserError(f"demo stage 'uterosynth {' '.join(args[:2])}' failed (exit code {exit_.code})") from None


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    run_command: Callable[[Sequence[str]], None] = _run_command,
    on_stage: Callable[[int, int, Stage, str], None] | None = None,
) -> dict:
    """Run (or resume) every stage into ``out``; returns a summary with per-stage seconds.

    Raises:
        UserError: a stage failed (its message was printed by the stage itself).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = demo_stages(out, quick=quick)
    timings: dict[str, float | str] = {}
    for i, stage in enumerate(stages):
        if (out / stage.name / stage.done_marker).is_file():
            timings[stage.name] = "done earlier"
            if on_stage:
                on_stage(i, len(stages), stage, "skipped (done)")
            continue
        if on_stage:
            on_stage(i, len(stages), stage, "running")
        t0 = time.perf_counter()
        run_command(stage.args)
        timings[stage.name] = round(time.perf_counter() - t0, 1)
    write_report(out, stages)
    summary = {"out": str(out), "quick": quick, "report": str(out / "report.html"), "stages": timings}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pictures(folder: Path) -> list[Path]:
    pictures = sorted(folder.glob("images/*.png"))[-1:] + sorted(folder.glob("previews/*.png"))[:8]
    return pictures + sorted(folder.glob("*.png"))


def write_report(out: Path, stages: Sequence[Stage]) -> Path:
    """``report.html``: one section per stage with links to its files and its pictures."""
    parts = ["<!doctype html><meta charset='utf-8'><title>uterosynth demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{height:128px;margin:2px}</style>",
             "<h1>uterosynth demo on the digital phantom</h1>"]
    if (out / "phantom_preview.png").is_file():
        parts.append("<img src='phantom_preview.png' style='height:360px'>")
    for stage in stages:
        folder = out / stage.name
        parts.append(f"<h2>{html.escape(stage.title)}</h2><p><code>uterosynth {html.escape(' '.join(stage.args))}</code></p>")
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        links = " · ".join(f"<a href='{html.escape(str(p.relative_to(out)))}'>{html.escape(p.name)}</a>" for p in files)
        parts.append(f"<p>{links or 'not run'}</p>")
        parts += [f"<img src='{html.escape(str(p.relative_to(out)))}'>" for p in _pictures(folder)] if folder.is_dir() else []
    path = out / "report.html"
    path.write_text("\n".join(parts) + "\n")
    return path
