"""``uterosynth sample``: generate a synthetic set from a diffusion checkpoint.

Item ``i`` starts from noise drawn by its own generator (``seeding.index_generator(seed, i)``)
and stochastic samplers draw their per-step noise from it too, so it is the same alone, in a
batch of any size, or on any rank. Under ``torchrun`` rank ``r`` makes items ``i ≡ r (mod
world)``; rank 0 merges the shards into one synthetic set (see
:mod:`uterosynth.data.synthetic`). Items are written in the training data's geometry.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ..core.artifacts import check_output_free, provenance, replace_dir, write_json
from ..core.config import StrictModel
from ..core.distributed import barrier, init_distributed
from ..core.errors import ConfigError
from ..core.seeding import index_generator
from ..data.subjects import merge_subjects
from ..data.synthetic import (
    COUNT_KEY,
    merge_metadata_shards,
    write_item,
    write_metadata_shard,
)
from ..diffusion.conditions import Condition
from ..diffusion.generate import sample_batch
from ..diffusion.guidance import check_guidance, embedded_scales, guided_denoiser, shadowed_by_prompt
from ..diffusion.samplers import SamplerConfig, build_sampler, initial_noise
from ..models.diffusion import load_diffusion
from ..models.fast_decoder import fast_decoder_for
from .plan import PlannedItem, plan_items
from .runtime import RuntimeConfig, auto_batch_size, inference_context, prepare_input, prepare_model, use_bf16

__all__ = ["SampleConfig", "generate"]

log = logging.getLogger(__name__)


class SampleConfig(StrictModel):
    """A sampling run (the ``uterosynth sample`` options)."""

    seed: int = 0
    n: int | None = Field(None, ge=1)
    per_class: int | None = Field(None, ge=1)
    conditions: dict[str, str] = Field(default_factory=dict)
    prompt: str | None = None
    guidance: float | dict[str, float] | None = None
    sampler: SamplerConfig = SamplerConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    decode_memory_mb: float | None = Field(None, gt=0, description="tile latent decoding under this budget")
    decoder: Path | None = Field(None, description="a fast decoder (previews, bulk sampling) instead of the autoencoder's")


def _affine(meta: dict[str, Any]) -> np.ndarray:
    geometry = meta.get("geometry", {})
    if "affine" in geometry:
        return np.asarray(geometry["affine"], dtype=np.float64)
    spacing = list(geometry.get("spacing", [1.0, 1.0, 1.0])) + [1.0] * 3
    return np.diag([*spacing[:3], 1.0])


def _batches(items: Sequence[PlannedItem], size: int) -> list[list[PlannedItem]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _plan(cfg: SampleConfig, model: Any) -> list[PlannedItem]:
    """The items of the run, after checking the steps and the guidance against the model.

    Raises:
        ConfigError: more steps than training timesteps; a condition the model does not know;
            guidance on an unconditional model, an unknown name, a negative scale.
    """
    if cfg.sampler.steps > model.schedule.num_train_timesteps:
        raise ConfigError(f"sampler.steps: at most {model.schedule.num_train_timesteps} (the training timesteps), "
                          f"got {cfg.sampler.steps}", keys=("sampler.steps",))
    items = plan_items(model.vocab, n=cfg.n, per_class=cfg.per_class, conditions=cfg.conditions, prompt=cfg.prompt)
    if cfg.guidance is not None:
        scales = check_guidance(model.vocab, cfg.guidance, has_condition=model.codec is not None)
        _warn_shadowed(scales, model.codec)
    return items


def _warn_shadowed(scales: dict[str, float], codec: Any) -> None:
    """Warn when a per-name scale guides an attribute that the structured prompt also states."""
    if codec is None:
        return
    shadowed = shadowed_by_prompt(scales, codec.config.prompt_names)
    if shadowed:
        log.warning("guidance %s: the model's structured prompt also states %s and stays in the base branch, so "
                    "these scales guide only what the class embedding adds to it; one scale (--guidance 3) guides "
                    "every condition (docs/guide/sampling.md)", ",".join(f"{k}={v:g}" for k, v in scales.items()),
                    ", ".join(shadowed))


def _run_shard(
    mine: Sequence[PlannedItem], batch_size: int, run: Callable[[Sequence[PlannedItem]], torch.Tensor],
    prompt_of: Callable[[PlannedItem], str | None], partial: Path, affine: np.ndarray, cfg: SampleConfig,
    model_hash: str, on_item: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Sample this rank's items batch by batch, write each into ``partial``; return their metadata records."""
    records = []
    for batch in _batches(mine, batch_size):
        t0 = time.perf_counter()
        images = run(batch)
        seconds = (time.perf_counter() - t0) / len(batch)
        for it, image in zip(batch, images, strict=True):
            rel, preview = write_item(partial, it.index, image[0].numpy(), affine)
            records.append({
                "index": it.index, "path": rel, "preview": preview, "seed": cfg.seed,
                "condition": it.condition,
                "prompt": prompt_of(it),
                "sampler": cfg.sampler.name, "steps": cfg.sampler.steps, "spacing": cfg.sampler.spacing,
                "guidance": cfg.guidance, "model_hash": model_hash, "seconds": round(seconds, 4),
            })
            if on_item is not None:
                on_item(len(records), len(mine))
    return records


def _student_inputs(cfg: SampleConfig, model: Any, items: Sequence[PlannedItem], sampler: Any):
    """A distilled student's input scales ``(G,)`` and the guidance they stand for (``{name: scale}``,
    or one number), after checking the run against what the student was distilled on.

    Raises:
        ConfigError: an item without every categorical attribute (the student only saw whole
            classes), step times off the grid a ``grid`` student was trained at, or a scale
            outside its trained range.
    """
    spec = model.distilled
    needed = set(model.vocab.categorical)  # class embeddings and prompt attributes alike
    for it in items:
        missing = sorted(needed - set(it.condition))
        if missing:
            raise ConfigError(f"conditions: the student was distilled on whole classes; give {', '.join(missing)} "
                              "too (or use per_class)", keys=("conditions",))
    if spec.get("time_sampling") == "grid":
        trained = build_sampler("rflow", model.schedule).timesteps(int(spec["student_steps"])).tolist()
        visited = sampler.timesteps(cfg.sampler.steps).tolist()
        if not set(visited) <= set(trained):
            raise ConfigError(f"sampler.steps={cfg.sampler.steps}: the student was distilled for "
                              f"{spec['student_steps']} Euler steps (times {', '.join(f'{t:g}' for t in trained)}); "
                              f"sample it at {spec['student_steps']} steps or a divisor of that", keys=("sampler.steps",))
    scales = embedded_scales(spec["guidance"], cfg.guidance)
    names = list(spec["guidance"]["names"])
    resolved: float | dict[str, float] = scales[0] if names == [""] else dict(zip(names, scales, strict=True))
    return torch.tensor(scales), resolved


def _fast_decoder(cfg: SampleConfig, model: Any, device: torch.device):
    """The fast decoder of ``cfg.decoder`` and its record, or ``(None, {"kind": "full"})``.

    Raises:
        ConfigError: a fast decoder for a pixel-space model, or one distilled from another autoencoder.
    """
    if cfg.decoder is None:
        return None, {"kind": "full"}
    if cfg.decode_memory_mb is not None:
        raise ConfigError("decode_memory_mb tiles the autoencoder's decoder; the fast decoder decodes whole latents "
                          "(give one of decoder and decode_memory_mb)", keys=("decoder", "decode_memory_mb"))
    decoder, meta = fast_decoder_for(cfg.decoder, model, device=device)
    return decoder, {"kind": "fast", "path": meta["checkpoint"], "sha256": meta.get("sha256"),
                     "psnr_to_full_db": meta.get("psnr_to_full_db"), "training_subjects": meta.get("training_subjects")}


def _write_set_info(partial: Path, config_json: dict[str, Any], cfg: SampleConfig, model: Any, items: int,
                    world_size: int, batch_size: int, decoder: dict[str, Any], precision: str) -> None:
    """``synthetic.json``: provenance, model, sampler, geometry and the precision the network ran in."""
    write_json(partial / "synthetic.json", {
        **provenance(config_json, cfg.seed),
        "dims": model.spatial_dims,
        "model": {"path": str(model.checkpoint), "sha256": model.sha256, "space": model.meta.get("space"),
                  "training_subjects": merge_subjects(model=model.training_subjects,
                                                      decoder=decoder.get("training_subjects"))},
        "sampler": cfg.sampler.model_dump(mode="json"),
        "guidance": cfg.guidance,
        "decoder": decoder,
        COUNT_KEY: items,
        "image_shape": model.meta.get("image_shape"),
        "geometry": model.meta.get("geometry", {}),
        "world_size": world_size,
        "batch_size": batch_size,
        "precision": precision,   # runtime.precision resolved on this device (auto: bf16 or fp32)
    })


def generate(
    model_path: str | Path,
    cfg: SampleConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    on_item: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Sample the planned items and write the synthetic set ``out``.

    Raises:
        ConfigError: unknown sampler, steps < 1, a condition or value the model was not trained
            on, guidance on an unconditional model.
        DataError: ``out`` exists without ``overwrite``; the model cannot be loaded.
    """
    out = Path(out)
    check_output_free(out, overwrite=overwrite)
    dist = init_distributed(cfg.runtime.device)
    device = dist.device
    model = load_diffusion(model_path, device=device)
    sampler = build_sampler(cfg.sampler.name, model.schedule, spacing=cfg.sampler.spacing)
    items = _plan(cfg, model)
    mine = [it for it in items if it.index % dist.world_size == dist.rank]
    unet = prepare_model(model.unet, cfg.runtime, device, spatial_dims=model.network_dims)
    affine = _affine(model.meta)

    takes_text = model.codec is not None and model.vocab.text_null_tokens is not None
    # a distilled student takes its guidance scales as input (one pass); a teacher runs the CFG branches
    input_scales = None
    if model.distilled is not None:
        input_scales, resolved = _student_inputs(cfg, model, items, sampler)
        cfg = cfg.model_copy(update={"guidance": resolved})  # the sets record the scales the student ran at
    guidance = None if model.distilled is not None else cfg.guidance
    fast, decoder_record = _fast_decoder(cfg, model, device)

    def decode(z: torch.Tensor) -> torch.Tensor:
        if fast is not None:
            return fast(z.float() / model.scale_factor)
        return model.decode(z.float(), memory_budget_mb=cfg.decode_memory_mb)

    def prompt_of(it: PlannedItem) -> str | None:
        if not takes_text:
            return None
        return it.prompt if it.prompt is not None else model.codec.prompts([it.condition])[0]  # type: ignore[union-attr]

    def encode(batch: Sequence[PlannedItem]) -> Condition | None:
        if model.codec is None:
            return None
        prompts = [prompt_of(it) or "" for it in batch] if takes_text else None
        cond = model.codec.encode([it.condition for it in batch], prompts=prompts, device=device)
        return cond if input_scales is None else cond.with_guidance(input_scales)

    def run(batch: Sequence[PlannedItem]) -> torch.Tensor:
        return sample_batch(
            unet, sampler, model.sample_shape, [index_generator(cfg.seed, it.index) for it in batch],
            steps=cfg.sampler.steps, condition=encode(batch), vocab=model.vocab, guidance=guidance,
            step_generators=[index_generator(cfg.seed, it.index, salt="steps") for it in batch],
            prepare=lambda x: prepare_input(x, cfg.runtime, device),
            context=lambda: inference_context(cfg.runtime, device, model.network_dims),
            decode=decode,
        )

    def trial(size: int) -> None:
        probe = [PlannedItem(0, items[0].condition, items[0].prompt)] * size
        gens = [index_generator(cfg.seed, 0)] * size
        x = prepare_input(initial_noise((size, *model.sample_shape), gens), cfg.runtime, device)
        with inference_context(cfg.runtime, device, model.network_dims):
            guided_denoiser(unet, encode(probe), model.vocab, guidance)(x, sampler.timesteps(1).to(device).expand(size))

    batch_size = auto_batch_size(trial, cfg.runtime, device, limit=max(len(mine), 1))
    partial = out.with_name(f".{out.name}.partial")
    if dist.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "items").mkdir(parents=True)
        (partial / "previews").mkdir()
    barrier(dist)
    config_json = cfg.model_dump(mode="json")
    try:
        records = _run_shard(mine, batch_size, run, prompt_of, partial, affine, cfg, model.sha256, on_item)
        write_metadata_shard(partial, dist.rank, records)
        barrier(dist)
        if not dist.is_main:
            return {"out": str(out), "rank": dist.rank, "items": len(records)}
        merged = merge_metadata_shards(partial)
        precision = "bf16" if use_bf16(cfg.runtime, device, model.network_dims) else "fp32"
        _write_set_info(partial, config_json, cfg, model, len(merged), dist.world_size, batch_size, decoder_record,
                        precision)
        replace_dir(partial, out)
    except BaseException:
        if dist.is_main:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    total = sum(r["seconds"] for r in merged)
    return {"out": str(out), "items": len(merged), "sampler": cfg.sampler.name, "steps": cfg.sampler.steps,
            "batch_size": batch_size, "seconds_per_item": round(total / max(len(merged), 1), 4),
            "world_size": dist.world_size, "device": str(device)}
