"""Training the fast decoder: the autoencoder's decoder is the teacher, the latent cache the data.

One step: ``z = mean + std · eps`` from the cached posterior of a training item (unscaled, as the
autoencoder's ``decode`` takes it); the loss is the L1 distance between the fast decoder's image
and the full decoder's image of the same ``z`` (Bohan 2023, TAESD, without its adversarial term).
Validation: PSNR of the fast decoder's images to the full decoder's, on the validation split's
posterior means; the last value is the artifact's ``psnr_to_full_db``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import default_collate

from ..core.config import StrictModel
from ..core.distributed import init_distributed
from ..core.errors import DataError
from ..data.subjects import training_subjects
from ..models.autoencoder import AutoencoderConfig, downsample_factor
from ..models.fast_decoder import FastDecoder, FastDecoderConfig
from ..models.latent import LatentCache, load_autoencoder
from .config import LoopConfig, OptimizerConfig
from .latents import LatentDataset
from .loop import OptimGroup, Parts, Run, Trainer, make_adamw

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .loop import RunOptions

__all__ = ["FastDecoderStep", "FastDecoderTrainConfig", "psnr_to_full", "train_fast_decoder"]


class FastDecoderTrainConfig(StrictModel):
    """Everything ``uterosynth train decoder`` needs (see configs/fast_decoder.yaml)."""

    seed: int = 0
    autoencoder: Path | None = None  # default: the one the latent cache was encoded with
    network: FastDecoderConfig = FastDecoderConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3)
    train: LoopConfig = LoopConfig(steps=2000, batch_size=32, val_every=500)


class FastDecoderStep:
    """The :class:`~uterosynth.training.loop.StepFunction` of the fast decoder (one phase, ``decoder``)."""

    def __init__(self, autoencoder: torch.nn.Module) -> None:
        self.autoencoder = autoencoder

    def phases(self, step: int) -> Sequence[str]:
        return ("decoder",)

    def loss(self, phase: str, batch: dict[str, Any], parts: Parts, *, step: int, cache: dict[str, Any]):
        mean, std = batch["mean"].float(), batch["std"].float()
        z = mean + std * torch.randn_like(mean)
        with torch.no_grad():
            target = self.autoencoder.decode(z)
        l1 = (parts["decoder"](z).float() - target.float()).abs().mean()
        return l1, {"decoder/l1": l1.detach()}


@torch.no_grad()
def psnr_to_full(fast: torch.nn.Module, autoencoder: torch.nn.Module, latents: torch.Tensor, *,
                 batch_size: int = 32) -> float:
    """PSNR (dB, peak 1) of the fast decoder's images to the full decoder's, over every voxel of ``latents``."""
    se, count = 0.0, 0
    for start in range(0, len(latents), batch_size):
        z = latents[start:start + batch_size]
        full = autoencoder.decode(z).clamp(0, 1)
        se += float((fast(z).clamp(0, 1) - full).pow(2).sum())
        count += full.numel()
    return float(10 * torch.log10(torch.tensor(count / max(se, 1e-12))))


def train_fast_decoder(cfg: FastDecoderTrainConfig, data: str | Path, out: str | Path,
                       **options: Unpack[RunOptions]) -> dict[str, Any]:
    """Distil a fast decoder from the autoencoder of latent cache ``data``.

    Raises:
        DataError: the cache or the autoencoder is missing, or the cache was encoded with another
            autoencoder; ``out`` exists without resume/overwrite.
    """
    run = Run(Path(out), **options)
    cache = LatentCache.load(data)
    ae_path = cfg.autoencoder or Path(cache.info["autoencoder"]["path"])
    autoencoder, ae_meta, ae_ckpt = load_autoencoder(ae_path)
    if ae_meta.get("sha256") != cache.autoencoder_sha256:
        raise DataError(f"{data}: latents were encoded with autoencoder {cache.autoencoder_sha256[:12]}…, not with "
                        f"{ae_ckpt} ({str(ae_meta.get('sha256'))[:12]}…)")
    train_set = LatentDataset(cache, "train")
    held_out = LatentDataset(cache, "val") if cache.split("val") else train_set
    dist_info = init_distributed(cfg.train.device)
    run.start(cfg.train, cfg.seed, dist_info)
    device = dist_info.device
    ae_cfg = AutoencoderConfig.model_validate(ae_meta["network"])
    autoencoder.to(device).requires_grad_(False)
    decoder = FastDecoder(ae_cfg.spatial_dims, ae_cfg.latent_channels, downsample_factor(ae_cfg), cfg.network,
                          out_channels=ae_cfg.out_channels).to(device)
    val_latents = default_collate([held_out[i] for i in range(len(held_out))])["mean"].float()

    def validate(trainer: Trainer, step: int) -> dict[str, float]:
        fast = trainer.ema.module if trainer.ema is not None else trainer.parts.raw["decoder"]  # what is exported
        fast.eval()
        try:
            psnr = psnr_to_full(fast, autoencoder, val_latents.to(device))
            trainer.model_meta["psnr_to_full_db"] = round(psnr, 2)  # written with the next checkpoint
            return {"val/psnr_to_full_db": psnr}
        finally:
            fast.train()

    meta = {"kind": "fast_decoder", "spatial_dims": ae_cfg.spatial_dims, "latent_channels": ae_cfg.latent_channels,
            "out_channels": ae_cfg.out_channels,
            "factor": downsample_factor(ae_cfg), "network": cfg.network.model_dump(mode="json"),
            "autoencoder": {"path": str(ae_ckpt.resolve()), "sha256": ae_meta["sha256"]},
            "latents": str(cache.root), "training_subjects": training_subjects(cache, ("train",))}
    groups = [OptimGroup("decoder", make_adamw(decoder.parameters(), cfg.optimizer, device=device,
                                                    total_steps=cfg.train.steps), ("decoder",), cfg.optimizer.grad_clip)]
    trainer = Trainer({"decoder": decoder}, groups, FastDecoderStep(autoencoder), train_set, cfg=cfg.train,
                      out=run.out, seed=cfg.seed, export="decoder", model_meta=meta, config=cfg, validate=validate,
                      dist_info=dist_info, on_step_end=run.on_step_end, progress=run.progress)
    return run.fit(trainer)
