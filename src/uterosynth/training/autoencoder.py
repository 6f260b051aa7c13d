"""Training the KL autoencoder: the step (L1 + perceptual + KL + adversarial), validation, entry point.

Loss (Rombach et al. 2022, App. G; Esser et al. 2021 "Taming Transformers" Eq. 4-5)::

    L_G = |x - x̂|_1 + w_p · LPIPS(x, x̂) + w_kl · KL(q(z|x) ‖ N(0, I)) + w_adv · L_adv(D(x̂))
    L_D = w_adv · ½ (L_adv(D(x), real) + L_adv(D(x̂.detach()), fake))

with KL = ½ Σ (μ² + σ² − log σ² − 1) summed over latent elements and averaged over the batch,
and the patch discriminator switched on after ``loss.adv_warmup_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from ..core.config import StrictModel
from ..core.distributed import init_distributed
from ..core.errors import ConfigError, DataError
from ..core.imageio import middle_slice
from ..data.dataset import ImageDataset, default_augmentation, make_loader
from ..data.manifest import PreparedDataset
from ..data.subjects import training_subjects
from ..models.autoencoder import (
    AutoencoderConfig,
    DiscriminatorConfig,
    build_autoencoder,
    build_discriminator,
    downsample_factor,
)
from ..models.perceptual import PerceptualConfig, build_perceptual, check_weights_file
from .config import LoopConfig, OptimizerConfig
from .loop import OptimGroup, Parts, Run, Trainer, make_adamw
from .metrics import reconstruction_metrics

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .loop import RunOptions

__all__ = [
    "AutoencoderLossConfig",
    "AutoencoderTrainConfig",
    "AutoencoderStep",
    "kl_divergence",
    "train_autoencoder",
    "save_grid",
]


class AutoencoderLossConfig(StrictModel):
    """Weights of the loss terms and the adversarial schedule."""

    reconstruction: Literal["l1", "l2"] = "l1"
    perceptual_weight: float = Field(0.001, ge=0)
    kl_weight: float = Field(1e-6, ge=0)
    adv_weight: float = Field(0.01, ge=0)
    adv_criterion: Literal["hinge", "least_squares"] = "least_squares"
    adv_warmup_steps: int = Field(1000, ge=0, description="steps before the discriminator is switched on")


class AutoencoderTrainConfig(StrictModel):
    """Everything ``uterosynth train autoencoder`` needs (see configs/ae2d.yaml)."""

    seed: int = 0
    data_range: float = Field(1.0, gt=0, description="intensity range of the prepared images")
    model: AutoencoderConfig = AutoencoderConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    perceptual: PerceptualConfig = PerceptualConfig(network="none")
    loss: AutoencoderLossConfig = AutoencoderLossConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4)
    disc_optimizer: OptimizerConfig = OptimizerConfig(lr=5e-4)
    train: LoopConfig = LoopConfig()


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over all latent elements, averaged over the batch."""
    mu, sigma = z_mu.float(), z_sigma.float()
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2)) - 1)
    return kl.flatten(1).sum(1).mean()


class AutoencoderStep:
    """The autoencoder's :class:`~uterosynth.training.loop.StepFunction`: phases ``generator``, ``discriminator``."""

    def __init__(self, loss: AutoencoderLossConfig, perceptual: torch.nn.Module | None):
        from monai.losses import PatchAdversarialLoss

        self.cfg = loss
        self.perceptual = perceptual
        self.adv = PatchAdversarialLoss(criterion=loss.adv_criterion)

    def adversarial(self, step: int) -> bool:
        """Whether the discriminator is on at ``step`` (0-based)."""
        return self.cfg.adv_weight > 0 and step >= self.cfg.adv_warmup_steps

    def phases(self, step: int) -> Sequence[str]:
        return ("generator", "discriminator") if self.adversarial(step) else ("generator",)

    def loss(self, phase: str, batch: dict[str, Any], parts: Parts, *, step: int, cache: dict[str, Any]):
        x = batch["image"]
        cfg = self.cfg
        if phase == "generator":
            recon, z_mu, z_sigma = parts["autoencoder"](x)
            diff = recon.float() - x.float()
            rec = diff.abs().mean() if cfg.reconstruction == "l1" else diff.pow(2).mean()
            kl = kl_divergence(z_mu, z_sigma)
            total = rec + cfg.kl_weight * kl
            terms: dict[str, Any] = {"generator/recon": rec.detach(), "generator/kl": kl.detach()}
            if self.perceptual is not None and cfg.perceptual_weight > 0:
                p = self.perceptual(recon.float(), x.float()).mean()
                total = total + cfg.perceptual_weight * p
                terms["generator/perceptual"] = p.detach()
            if self.adversarial(step):
                logits = parts.raw["discriminator"](recon.contiguous())[-1]
                g = self.adv(logits, target_is_real=True, for_discriminator=False)
                total = total + cfg.adv_weight * g
                terms["generator/adv"] = g.detach()
            cache["recon"] = recon.detach()
            return total, terms
        disc = parts["discriminator"]
        fake = disc(cache["recon"].contiguous())[-1]
        real = disc(x.contiguous())[-1]
        d = 0.5 * (
            self.adv(fake, target_is_real=False, for_discriminator=True)
            + self.adv(real, target_is_real=True, for_discriminator=True)
        )
        return cfg.adv_weight * d, {"discriminator/loss": d.detach()}


def save_grid(path: str | Path, originals: torch.Tensor, recons: torch.Tensor, *, data_range: float = 1.0) -> None:
    """PNG grid: originals (top), reconstructions (middle), |difference| (bottom); mid-slice for 3D.

    Args:
        originals, recons: ``(N, 1, *spatial)``; at most 8 items are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def view(t: torch.Tensor) -> Any:
        t = t[:, 0].float().cpu()
        if t.ndim == 4:
            t = middle_slice(t)
        return t.numpy()

    a, b = view(originals[:8]), view(recons[:8])
    n = a.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6), squeeze=False)
    for i in range(n):
        for row, (img, vmax) in enumerate(((a[i], data_range), (b[i], data_range), (abs(a[i] - b[i]), data_range / 4))):
            axes[row, i].imshow(img, cmap="gray", vmin=0, vmax=vmax)
            axes[row, i].axis("off")
    for row, name in enumerate(("original", "reconstruction", "|diff| ×4")):
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def evaluate_reconstruction(
    autoencoder: torch.nn.Module,
    loader,
    *,
    spatial_dims: int,
    device: torch.device,
    data_range: float = 1.0,
    lpips: torch.nn.Module | None = None,
    max_batches: int | None = None,
) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor] | None]:
    """Mean PSNR/SSIM/MS-SSIM (and LPIPS) of ``decode(μ(x))`` over ``loader``; also the first batch."""
    was_training = autoencoder.training
    autoencoder.eval()
    sums: dict[str, list[torch.Tensor]] = {}
    first = None
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x = batch["image"].to(device)
        z_mu, _ = autoencoder.encode(x)
        recon = autoencoder.decode(z_mu).float()
        metrics = reconstruction_metrics(recon, x, spatial_dims=spatial_dims, data_range=data_range)
        if lpips is not None:
            metrics["lpips"] = lpips(recon.clamp(0, data_range) / data_range, x / data_range).float().cpu()
        for k, v in metrics.items():
            sums.setdefault(k, []).append(v.cpu())
        if first is None:
            first = (x.cpu(), recon.cpu())
    autoencoder.train(was_training)
    out = {}
    for k, vs in sums.items():
        v = torch.cat(vs)
        out[k] = float(v.mean()) if not torch.isnan(v).all() else math.nan
    return out, first


def _check_data(cfg: AutoencoderTrainConfig, data) -> None:
    if data.dims != cfg.model.spatial_dims:
        raise ConfigError(
            f"config model.spatial_dims={cfg.model.spatial_dims} but dataset {data.root} holds {data.dims}D items "
            f"(dataset.json dims={data.dims}); use configs/ae{data.dims}d.yaml or set model.spatial_dims={data.dims}",
            keys=("model.spatial_dims",),
        )
    shape = [int(s) for s in data.info.get("shape", [])]
    factor = downsample_factor(cfg.model)
    bad = [s for s in shape if s % factor]
    if bad:
        raise ConfigError(
            f"dataset {data.root}: image shape {shape} is not divisible by the autoencoder's downsampling "
            f"factor {factor} (2**(len(model.channels)-1)); use fewer levels or prepare another shape"
        )
    if not any(r["split"] == "train" for r in data.rows):
        raise DataError(f"dataset {data.root}: no items in split 'train'")


def model_meta(cfg: AutoencoderTrainConfig, data) -> dict[str, Any]:
    """The autoencoder-specific part of ``model.json``."""
    return {
        "kind": "autoencoder",
        "network": cfg.model.model_dump(mode="json"),
        "spatial_dims": cfg.model.spatial_dims,
        "downsample_factor": downsample_factor(cfg.model),
        "data_range": cfg.data_range,
        "image_shape": [int(s) for s in data.info.get("shape", [])],
        "dataset": str(data.root),
        "training_subjects": training_subjects(data, ("train",)),
    }


def train_autoencoder(cfg: AutoencoderTrainConfig, data_path: str | Path, out: str | Path,
                      **options: Unpack[RunOptions]) -> dict[str, Any]:
    """Train an autoencoder on a prepared dataset; returns a summary (rank 0) for the CLI.

    Works alone or under ``torchrun`` (one process per GPU / CPU share). ``options``: ``resume``,
    ``overwrite``, ``progress``, ``on_step_end`` (:class:`~.loop.RunOptions`).

    Raises:
        DataError: the dataset is missing or unusable.
        ConfigError: the config does not fit the dataset (dimensionality, shape).
        DataError: perceptual weights missing; ``out`` exists without ``resume``/``overwrite``.
        NonFiniteLossError: a loss became NaN/Inf (the last good checkpoint is kept); a ConfigError.
    """
    run = Run(Path(out), **options)
    check_weights_file(cfg.perceptual)
    data = PreparedDataset.load(data_path)
    _check_data(cfg, data)
    dist_info = init_distributed(cfg.train.device)
    if cfg.train.precision == "fp16" and dist_info.device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    run.start(cfg.train, cfg.seed, dist_info)
    perceptual = build_perceptual(cfg.perceptual, spatial_dims=cfg.model.spatial_dims)
    device = dist_info.device
    autoencoder = build_autoencoder(cfg.model).to(device)
    parts: dict[str, torch.nn.Module] = {"autoencoder": autoencoder}
    groups = [OptimGroup("generator", make_adamw(autoencoder.parameters(), cfg.optimizer, device=device,
                                                      total_steps=cfg.train.steps),
                         ("autoencoder",), cfg.optimizer.grad_clip)]
    if cfg.loss.adv_weight > 0:
        disc = build_discriminator(cfg.discriminator, spatial_dims=cfg.model.spatial_dims,
                                   in_channels=cfg.model.in_channels).to(device)
        parts["discriminator"] = disc
        groups.append(OptimGroup("discriminator", make_adamw(disc.parameters(), cfg.disc_optimizer, device=device,
                                                             total_steps=cfg.train.steps),
                                 ("discriminator",), cfg.disc_optimizer.grad_clip))
    if perceptual is not None:
        perceptual.to(device)
    if dist_info.rank:
        torch.manual_seed(cfg.seed + dist_info.rank)  # per-rank noise streams (latent sampling)
    train_set = ImageDataset(data.split("train"))
    val_rows = data.split("val")
    val_loader = make_loader(val_rows if len(val_rows) else data.split("train"), batch_size=cfg.train.batch_size,
                             shuffle=False)
    lpips_metric = perceptual if (perceptual is not None and cfg.perceptual.pretrained) else None

    def validate(trainer: Trainer, step: int) -> dict[str, float]:
        model = trainer.ema.module if trainer.ema is not None else trainer.parts.raw["autoencoder"]
        metrics, first = evaluate_reconstruction(
            model, val_loader, spatial_dims=cfg.model.spatial_dims, device=device, data_range=cfg.data_range,
            lpips=lpips_metric, max_batches=cfg.train.val_batches,
        )
        if first is not None:
            save_grid(trainer.out / "images" / f"step_{step:07d}.png", *first, data_range=cfg.data_range)
        return {f"val/{k}": v for k, v in metrics.items()}

    trainer = Trainer(
        parts, groups, AutoencoderStep(cfg.loss, perceptual), train_set,
        cfg=cfg.train, out=run.out, seed=cfg.seed, export="autoencoder", model_meta=model_meta(cfg, data),
        config=cfg, validate=validate,
        transform=default_augmentation(cfg.model.spatial_dims, seed=cfg.seed) if cfg.train.augment else None,
        dist_info=dist_info, on_step_end=run.on_step_end, progress=run.progress,
    )
    return run.fit(trainer)
