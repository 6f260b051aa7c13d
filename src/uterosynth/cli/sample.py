"""``uterosynth sample``: synthetic images or volumes from a diffusion checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job


@stage_command(app.command(), "sample", shared=("config", "overrides"))
def sample(
    model: Path = typer.Option(..., "--model", "-m", help="Diffusion checkpoint or training run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Synthetic set folder to write."),
    n: int = typer.Option(None, "--n", "-n", help="Number of items (all with the same --condition); use -n under torchrun."),
    per_class: int = typer.Option(None, "--per-class", help="Items per class, balanced over every class."),
    condition: list[str] = typer.Option(None, "--condition", help="NAME=VALUE, repeatable."),
    prompt: str = typer.Option(None, "--prompt", help="Text prompt (text-conditioned models)."),
    guidance: str = typer.Option(None, "--guidance", help="One scale (3.0) or per condition (orientation=4,field_strength=1.5)."),
    sampler: str = typer.Option(None, "--sampler", help="ddpm | ddim | dpmpp (default) | unipc | rflow."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (default 20)."),
    spacing: str = typer.Option(None, "--spacing", help="Timestep spacing: trailing (default) | leading | linspace."),
    seed: int = typer.Option(None, "--seed", help="Run seed (default 0); item i always uses the same noise."),
    batch_size: str = typer.Option(None, "--batch-size", help="Items per batch, or auto (default)."),
    device: str = typer.Option(None, "--device", help="auto (default) | cpu | cuda."),
    precision: str = typer.Option(None, "--precision", help="auto (default) | fp32 | bf16."),
    compile: bool = typer.Option(None, "--compile", help="torch.compile the network."),
    decode_memory_mb: float = typer.Option(None, "--decode-memory-mb", help="Tile 3D latent decoding under this budget."),
    decoder: Path = typer.Option(None, "--decoder", help="Fast decoder ('uterosynth train decoder') instead of the "
                                 "autoencoder's: previews and bulk sampling, not releases."),
    **shared: Any,
) -> Job:
    """Sample a synthetic set (NIfTI + PNG + metadata.jsonl) from a trained diffusion model.

    --config is a YAML file of the sampling settings (seed, n, per_class, conditions, guidance,
    sampler, runtime); --set and the other options override it."""
    from ..core.errors import UserError
    from ..stages.sampling import SampleJob

    if batch_size is not None and batch_size != "auto" and not batch_size.isdigit():
        raise UserError(f"--batch-size: expected a positive integer or 'auto', got '{batch_size}'")
    return SampleJob(
        model=model, out=out, n=n, per_class=per_class, condition=condition or [], prompt=prompt, guidance=guidance,
        sampler=sampler, steps=steps, spacing=spacing, seed=seed,
        batch_size=None if batch_size is None else batch_size if batch_size == "auto" else int(batch_size),
        device=device, precision=precision, compile=compile or None, decode_memory_mb=decode_memory_mb,
        decoder=decoder, **shared)
