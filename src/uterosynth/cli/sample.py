"""``uterosynth sample``: synthetic images or volumes from a diffusion checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import JsonOpt, OverwriteOpt, emit_summary, progress_bar


def _parse_conditions(items: list[str] | None) -> dict[str, str]:
    from ..core.config import split_assignment

    out: dict[str, str] = {}
    for item in items or []:
        name, value = split_assignment(item, what="--condition", expected="NAME=VALUE, e.g. --condition orientation=AVAF")
        out[name] = value.strip()
    return out


@app.command()
def sample(
    model: Path = typer.Option(..., "--model", "-m", help="Diffusion checkpoint or training run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Synthetic set folder to write."),
    n: int = typer.Option(None, "--n", "-n", help="Number of items (all with the same --condition); use -n under torchrun."),
    per_class: int = typer.Option(None, "--per-class", help="Items per class, balanced over every class."),
    condition: list[str] = typer.Option(None, "--condition", help="NAME=VALUE, repeatable."),
    prompt: str = typer.Option(None, "--prompt", help="Text prompt (text-conditioned models)."),
    guidance: str = typer.Option(None, "--guidance", help="One scale (3.0) or per condition (orientation=4,field_strength=1.5)."),
    sampler: str = typer.Option("dpmpp", "--sampler", help="ddpm | ddim | dpmpp | unipc | rflow."),
    steps: int = typer.Option(20, "--steps", help="Sampling steps."),
    spacing: str = typer.Option("trailing", "--spacing", help="Timestep spacing: trailing | leading | linspace."),
    seed: int = typer.Option(0, "--seed", help="Run seed; item i always uses the same noise."),
    batch_size: str = typer.Option("auto", "--batch-size", help="Items per batch, or auto."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network."),
    decode_memory_mb: float = typer.Option(None, "--decode-memory-mb", help="Tile 3D latent decoding under this budget."),
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Sample a synthetic set (NIfTI + PNG + metadata.jsonl) from a trained diffusion model."""
    from ..core.config import validate_config
    from ..core.errors import UserError
    from ..sampling.generate import SampleConfig, generate
    from ..sampling.guidance import parse_guidance

    if batch_size != "auto" and not batch_size.isdigit():
        raise UserError(f"--batch-size: expected a positive integer or 'auto', got '{batch_size}'")

    cfg = validate_config(SampleConfig, {
        "seed": seed, "n": n, "per_class": per_class, "conditions": _parse_conditions(condition), "prompt": prompt,
        "guidance": parse_guidance(guidance) if guidance is not None else None,
        "sampler": {"name": sampler, "steps": steps, "spacing": spacing},
        "runtime": {"device": device, "precision": precision, "compile": compile,
                    "batch_size": batch_size if batch_size == "auto" else int(batch_size)},
        "decode_memory_mb": decode_memory_mb,
    }, source="command line")
    with progress_bar(transient=True) as progress:
        task = progress.add_task("sample", total=None)
        summary = generate(model, cfg, out, overwrite=overwrite,
                           on_item=lambda done, total: progress.update(task, completed=done, total=total))
    emit_summary(summary, as_json=as_json, title="sample")
