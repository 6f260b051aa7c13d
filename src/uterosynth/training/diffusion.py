"""Training diffusion models: pixel-space DDPM and latent diffusion, 2D and 3D, conditioned or not.

One step (Ho et al. 2020, Alg. 1; Rombach et al. 2022 for latents)::

    x0  = image                      (pixel space)   or  (μ + σ ε') · scale_factor   (latent space)
    t   ~ U{0..T-1} (ddpm)  or  U{1..T} (rflow);  eps ~ N(0, I);  x_t = alpha_t x0 + sigma_t eps
    c   = codec.drop(codec.encode(attributes), p, p_all=q)   (per-attribute and joint CFG dropout, Ho & Salimans 2022)
    L   = mean_i  w(t_i) · ‖ model(x_t, t, c) − target(x0, eps, t) ‖²    (w: min-SNR-γ, Hang et al. 2023)

Everything else — AdamW, AMP, EMA, accumulation, DDP, checkpoints and resume — is the shared
:class:`~uterosynth.training.loop.Trainer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator

from ..core.config import StrictModel
from ..core.distributed import init_distributed
from ..core.errors import ConfigError, DataError
from ..data.dataset import ImageDataset, default_augmentation
from ..data.manifest import PreparedDataset, label_value
from ..data.subjects import training_subjects
from ..diffusion.schedule import NoiseSchedule, NoiseScheduleConfig
from ..models.conditioning import ConditionCodec, ConditioningConfig
from ..models.diffusion_unet import ConditionedUNet, UNetConfig
from ..models.latent import LatentCache, load_autoencoder
from .config import LoopConfig, OptimizerConfig
from .latents import LatentDataset, latent_sample
from .loop import OptimGroup, Parts, Run, Trainer, make_adamw
from .preview import PreviewWriter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .loop import RunOptions

__all__ = ["DiffusionStep", "DiffusionTrainConfig", "PreviewConfig", "class_balanced_weights", "train_diffusion"]


class PreviewConfig(StrictModel):
    """Sample grids drawn at every validation: one row per class of ``attribute``."""

    sampler: str = "ddim"
    steps: int = Field(25, ge=1)
    per_class: int = Field(4, ge=1)
    guidance: float = Field(3.0, ge=0)
    attribute: str | None = Field(None, description="default: the first categorical attribute")


class DiffusionTrainConfig(StrictModel):
    """Everything ``uterosynth train diffusion`` needs (see configs/ddpm2d.yaml, configs/ldm2d.yaml)."""

    seed: int = 0
    space: Literal["pixel", "latent"] = "pixel"
    spatial_dims: Literal[2, 3] = 2
    autoencoder: Path | None = Field(None, description="autoencoder checkpoint (latent space)")
    latents: Path | None = Field(None, description="latent cache from 'uterosynth encode' (latent space)")
    unet: UNetConfig = UNetConfig()
    schedule: NoiseScheduleConfig = NoiseScheduleConfig()
    conditioning: ConditioningConfig = ConditioningConfig()
    min_snr_gamma: float | None = Field(5.0, gt=0)
    balance_by: str | None = Field(
        None, description="categorical manifest column whose values are drawn equally often in training"
    )
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-4)
    train: LoopConfig = LoopConfig()
    preview: PreviewConfig = PreviewConfig()

    @model_validator(mode="after")
    def _check(self) -> DiffusionTrainConfig:
        if self.space == "latent" and (self.autoencoder is None or self.latents is None):
            raise ValueError(
                "space: latent needs 'autoencoder' (its checkpoint) and 'latents' (the cache written by "
                "'uterosynth encode')"
            )
        if self.space == "latent" and self.train.augment:
            raise ValueError("train.augment works on images: a latent model trains on cached latents (augment the "
                             "images before 'uterosynth encode', or set train.augment: false)")
        return self


class DiffusionStep:
    """The diffusion :class:`~uterosynth.training.loop.StepFunction` (one phase, ``model``)."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        codec: ConditionCodec | None,
        *,
        drop_prob: float,
        min_snr_gamma: float | None,
        scale_factor: float | None = None,
        drop_all_prob: float = 0.0,
    ) -> None:
        self.schedule, self.codec = schedule, codec
        self.drop_prob, self.min_snr_gamma, self.scale_factor = drop_prob, min_snr_gamma, scale_factor
        self.drop_all_prob = drop_all_prob

    def phases(self, step: int) -> Sequence[str]:
        return ("model",)

    def clean(self, batch: dict[str, Any]) -> torch.Tensor:
        """``x0`` of the batch: the image, or a fresh draw from the cached latent posterior."""
        if self.scale_factor is None:
            return batch["image"]

        return latent_sample(batch, self.scale_factor)

    def condition(self, batch: dict[str, Any], n: int, device: torch.device, *, drop: bool = True):
        if self.codec is None:
            return None
        names = [*self.codec.vocab.categorical, *self.codec.vocab.continuous]
        extra = [self.codec.config.text_column] if self.codec.config.text == "column" else []
        records = [{k: batch[k][i] for k in [*names, *extra] if k in batch} for i in range(n)]
        cond = self.codec.encode(records, device=device)
        if not drop or (self.drop_prob == 0 and self.drop_all_prob == 0):
            return cond
        return self.codec.drop(cond, self.drop_prob, p_all=self.drop_all_prob)

    def loss(self, phase: str, batch: dict[str, Any], parts: Parts, *, step: int, cache: dict[str, Any]):
        x0 = self.clean(batch).float()
        n, device = x0.shape[0], x0.device
        eps = torch.randn_like(x0)
        t = self.schedule.sample_timesteps(n, device=device)
        x_t = self.schedule.add_noise(x0, eps, t)
        target = self.schedule.training_target(x0, eps, t)
        pred = parts["unet"](x_t, t, self.condition(batch, n, device))
        mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
        if self.min_snr_gamma is not None:
            weight = self.schedule.min_snr_weight(t.cpu(), self.min_snr_gamma).to(device)
            loss = (weight * mse).mean()
        else:
            loss = mse.mean()
        return loss, {"model/mse": mse.mean().detach()}


def _geometry(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in ("spacing", "affine", "shape") if k in info}


def _prepare_inputs(cfg: DiffusionTrainConfig, data_path: str | Path):
    """Training set, validation set, codec records, metadata for the chosen space."""

    data = PreparedDataset.load(data_path)
    if data.dims != cfg.spatial_dims:
        raise ConfigError(
            f"config spatial_dims={cfg.spatial_dims} but dataset {data.root} holds {data.dims}D items; "
            f"use a {data.dims}D preset or set spatial_dims={data.dims}", keys=("spatial_dims",)
        )
    train_rows = data.split("train").rows
    if not train_rows:
        raise DataError(f"dataset {data.root}: no items in split 'train'")
    meta: dict[str, Any] = {"space": cfg.space, "spatial_dims": cfg.spatial_dims, "dataset": str(data.root),
                            "image_shape": [int(s) for s in data.info.get("shape", [])],
                            "geometry": _geometry(data.info), "attributes_available": data.attributes,
                            "training_subjects": training_subjects(data, ("train",))}
    if cfg.space == "pixel":
        train = ImageDataset(data.split("train"))
        val = ImageDataset(data.split("val")) if data.split("val").rows else train
        meta.update(in_channels=1, sample_shape=[1, *meta["image_shape"]], scale_factor=None, autoencoder=None)
        return train, val, train_rows, meta, None

    cache = LatentCache.load(cfg.latents)  # type: ignore[arg-type]
    ae, ae_meta, ae_ckpt = load_autoencoder(cfg.autoencoder)  # type: ignore[arg-type]
    if int(ae_meta["spatial_dims"]) != cfg.spatial_dims:
        raise ConfigError(
            f"autoencoder {ae_ckpt} is {ae_meta['spatial_dims']}D but the config trains a {cfg.spatial_dims}D model"
        )
    if cache.autoencoder_sha256 != ae_meta["sha256"]:
        raise DataError(
            f"{cfg.latents}: latents were encoded with autoencoder {cache.autoencoder_sha256[:12]}…, not with "
            f"{ae_ckpt} ({str(ae_meta['sha256'])[:12]}…); re-run 'uterosynth encode' with this autoencoder"
        )
    train = LatentDataset(cache, "train")
    val = LatentDataset(cache, "val") if cache.split("val") else train
    latent_shape = [int(s) for s in cache.info["latent_shape"]]
    meta.update(in_channels=latent_shape[0], sample_shape=latent_shape, scale_factor=cache.scale_factor,
                autoencoder={"path": str(ae_ckpt.resolve()), "sha256": ae_meta["sha256"]})
    return train, val, cache.split("train"), meta, (ae, ae_meta)


def class_balanced_weights(records: Sequence[dict[str, Any]], column: str, *, source: str) -> list[float]:
    """Per-item weights so every value of ``column`` is drawn equally often.

    Weights are ``1 / count(value)``. Items with no value (empty, e.g. a myoma too small to label)
    are not a class: they are drawn as often as without balancing, and the values share the rest.

    Raises:
        ConfigError: ``column`` is not in the manifest.
    """
    from collections import Counter

    if column not in records[0]:
        raise ConfigError(f"{source}: balance_by column '{column}' not in the manifest", keys=("balance_by",))
    values = [label_value(r[column]) for r in records]
    counts = Counter(v for v in values if v is not None)
    empty_weight = len(counts) / max(sum(counts.values()), 1)  # their share of the draws = their share of the items
    return [1.0 / counts[v] if v is not None else empty_weight for v in values]


def _check_patch_size(cfg: DiffusionTrainConfig, sample_shape: list[int]) -> None:
    """Patching and the UNet's downsampling levels must both divide the sample size; a folded depth
    must be the items' number of slices."""
    p, levels, depth = cfg.unet.patch_size, len(cfg.unet.channels), cfg.unet.fold_depth
    if depth is not None and (cfg.spatial_dims != 3 or sample_shape[-1] != depth):
        raise ConfigError(f"unet.fold_depth={depth} must be the slices of the 3D {cfg.space} samples; got "
                          f"{cfg.spatial_dims}D samples of size {sample_shape[1:]}")
    grid = sample_shape[1:-1] if depth is not None else sample_shape[1:]
    multiple = p * 2 ** (levels - 1)
    if any(s % multiple for s in grid):
        raise ConfigError(
            f"unet.patch_size={p} with {levels} UNet levels needs the {cfg.space} sample size to be a multiple "
            f"of {multiple}; got {grid}"
        )


def train_diffusion(cfg: DiffusionTrainConfig, data_path: str | Path, out: str | Path,
                    **options: Unpack[RunOptions]) -> dict[str, Any]:
    """Train a diffusion model on a prepared dataset (pixel) or its latent cache (latent).

    ``options``: ``resume``, ``overwrite``, ``progress``, ``on_step_end`` (:class:`~.loop.RunOptions`).

    Raises:
        DataError: the dataset or latent cache is missing or unusable.
        ConfigError: dimensionality mismatch between config, dataset and autoencoder.
        ConfigError: a ``balance_by`` attribute the manifest lacks; a NaN/Inf loss (NonFiniteLossError).
        DataError: a condition attribute the manifest lacks; latents from another autoencoder;
            ``out`` exists without ``resume``/``overwrite``.
    """
    run = Run(Path(out), **options)
    train_set, val_set, records, meta, ae = _prepare_inputs(cfg, data_path)
    _check_patch_size(cfg, meta["sample_shape"])
    weights = class_balanced_weights(records, cfg.balance_by, source=str(data_path)) if cfg.balance_by else None
    dist_info = init_distributed(cfg.train.device)
    run.start(cfg.train, cfg.seed, dist_info)
    codec = ConditionCodec.fit(cfg.conditioning, records, source=str(data_path)) if cfg.conditioning.enabled else None
    device = dist_info.device
    unet = ConditionedUNet(cfg.spatial_dims, int(meta["in_channels"]), cfg.unet, codec).to(device)
    schedule = NoiseSchedule(cfg.schedule)
    if dist_info.rank:
        torch.manual_seed(cfg.seed + dist_info.rank)
    step = DiffusionStep(schedule, codec, drop_prob=cfg.conditioning.drop_prob, min_snr_gamma=cfg.min_snr_gamma,
                         scale_factor=meta["scale_factor"], drop_all_prob=cfg.conditioning.drop_all_prob)
    meta.update(kind="diffusion", network=cfg.unet.model_dump(mode="json"),
                network_dims=cfg.unet.network_dims(cfg.spatial_dims),
                schedule=cfg.schedule.model_dump(mode="json"),
                conditioning=codec.to_json() if codec is not None else None)
    preview = PreviewWriter(cfg.preview, schedule, codec, step, val_set, autoencoder=ae[0].to(device) if ae else None,
                            seed=cfg.seed, device=device)
    groups = [OptimGroup("model", make_adamw(unet.parameters(), cfg.optimizer, device=device,
                                                  total_steps=cfg.train.steps), ("unet",),
                         cfg.optimizer.grad_clip)]
    trainer = Trainer(
        {"unet": unet}, groups, step, train_set, cfg=cfg.train, out=run.out, seed=cfg.seed, export="unet",
        model_meta=meta, config=cfg, validate=preview, dist_info=dist_info, on_step_end=run.on_step_end,
        progress=run.progress, sample_weights=weights,
        transform=default_augmentation(cfg.spatial_dims, seed=cfg.seed) if cfg.train.augment else None,
    )
    return run.fit(trainer)
