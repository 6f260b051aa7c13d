"""The in-domain feature encoder: SimCLR (Chen et al. 2020) on the real training split, then frozen.

A small MONAI ``ResNet`` (2D) learns features by contrasting two augmented views of each
slice with MONAI's ``ContrastiveLoss`` (NT-Xent). Augmentations are MONAI array transforms
chosen for MRI and for what the evaluation must stay sensitive to: small affine jitter,
crop-and-zoom, bias field, gamma, blur and noise — but **no flips or large rotations**, since
the uterine orientation (anteverted/retroverted, anteflexed/retroflexed) is a left-right /
up-down property the features must keep.

The frozen encoder is saved as TorchScript ``encoder.pt`` (resizing to the training size is
part of the scripted module, so it accepts any ``(N, 1, H, W)`` in ``[0, 1]``) with
``encoder.json`` (:mod:`uterosynth.models.encoder_artifact`; sha256, feature size, data and training provenance). Volumes are trained on
their three central orthogonal planes, matching the 2.5D features of
:class:`~uterosynth.evaluation.features.PlanarExtractor`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.artifacts import atomic_output_dir, provenance
from ..core.errors import DataError
from ..core.imageio import middle_slice
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.subjects import training_subjects
from ..models.encoder_artifact import write_encoder
from .config import EncoderTrainConfig

__all__ = ["FrozenEncoder", "build_backbone", "slices_for_training", "train_encoder", "view_transform"]


def build_backbone(cfg: EncoderTrainConfig) -> nn.Module:
    """MONAI ``ResNet`` (basic blocks, 2D, one input channel) returning pooled features ``(N, channels[-1])``."""
    from monai.networks.nets import ResNet

    return ResNet("basic", list(cfg.layers), list(cfg.channels), spatial_dims=2, n_input_channels=1,
                  conv1_t_size=7, conv1_t_stride=2, feed_forward=False)


class FrozenEncoder(nn.Module):
    """Resize to ``image_size`` then embed: ``(N, 1, H, W)`` in ``[0, 1]`` → ``(N, F)``."""

    def __init__(self, backbone: nn.Module, image_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.backbone(x).flatten(1)


def view_transform(image_size: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One random SimCLR view of an image ``(1, S, S)`` (MONAI transforms, seeded)."""
    from monai import transforms as T

    crop = max(8, int(round(0.7 * image_size)))
    compose = T.Compose([
        T.RandSpatialCrop((crop, crop), max_roi_size=(image_size, image_size), random_size=True),
        T.Resize((image_size, image_size), mode="bilinear"),
        T.RandAffine(prob=0.8, rotate_range=(np.pi / 18,), scale_range=(0.1, 0.1), translate_range=(0.05 * image_size,) * 2,
                     padding_mode="border"),
        T.RandBiasField(prob=0.5, coeff_range=(0.0, 0.2)),
        T.RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)),
        T.RandGaussianSmooth(prob=0.3, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
        T.RandGaussianNoise(prob=0.5, std=0.03),
        T.ScaleIntensityRange(0.0, 1.0, 0.0, 1.0, clip=True),
    ])
    compose.set_random_state(seed=seed)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(compose(x)).float()

    return apply


def slices_for_training(dataset: PreparedDataset, image_size: int, *, max_items: int | None = None,
                        seed: int = 0) -> torch.Tensor:
    """Training images ``(M, 1, S, S)``: 2D items, or the three central planes of each volume."""
    rows = dataset.rows
    if max_items is not None and len(rows) > max_items:
        keep = np.random.default_rng(seed).choice(len(rows), max_items, replace=False)
        rows = [rows[i] for i in sorted(keep)]
    images = []
    for row in rows:
        arr = torch.from_numpy(dataset.load_array(row)).float()
        planes = [arr] if arr.ndim == 2 else [middle_slice(arr, axis) for axis in (2, 1, 0)]
        for p in planes:
            images.append(F.interpolate(p[None, None], size=(image_size, image_size), mode="bilinear",
                                        align_corners=False)[0])
    return torch.stack(images).clamp(0, 1)


def train_encoder(
    data: str | Path, out: str | Path, cfg: EncoderTrainConfig, *, overwrite: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train the contrastive encoder on ``data`` (``DIR`` or ``DIR:split``) and write ``out``.

    Args:
        data: prepared dataset; its ``cfg.split`` split is used unless ``DIR:split`` names one.
        out: folder receiving ``encoder.pt`` and ``encoder.json``.
        cfg: training settings.
        progress: called after each epoch with ``(epoch, mean_loss)``.

    Returns:
        The ``encoder.json`` content.

    Raises:
        DataError: fewer than two training images.
    """
    from monai.losses import ContrastiveLoss

    root, ref_split = parse_dataset_ref(data)
    dataset = PreparedDataset.load(root, ref_split or cfg.split)
    images = slices_for_training(dataset, cfg.image_size, max_items=cfg.max_items, seed=cfg.seed)
    if images.shape[0] < 2:
        raise DataError(f"{data}: split '{cfg.split}' has {images.shape[0]} image(s); contrastive training needs >= 2")
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg).to(cfg.device)
    feat_dim = cfg.channels[-1]
    head = nn.Sequential(nn.Linear(feat_dim, feat_dim), nn.ReLU(), nn.Linear(feat_dim, cfg.projection_dim)).to(cfg.device)
    params = list(backbone.parameters()) + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = ContrastiveLoss(temperature=cfg.temperature)
    view_a, view_b = view_transform(cfg.image_size, cfg.seed), view_transform(cfg.image_size, cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, images.shape[0])
    losses = []
    for epoch in range(cfg.epochs):
        backbone.train()
        head.train()
        order = torch.randperm(images.shape[0], generator=gen)
        epoch_loss = []
        for s in range(0, images.shape[0] - batch + 1, batch):
            x = images[order[s : s + batch]]
            a = torch.stack([view_a(im) for im in x]).to(cfg.device)
            b = torch.stack([view_b(im) for im in x]).to(cfg.device)
            loss = loss_fn(head(backbone(a)), head(backbone(b)))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            epoch_loss.append(float(loss))
        losses.append(float(np.mean(epoch_loss)))
        if progress is not None:
            progress(epoch + 1, losses[-1])
    frozen = FrozenEncoder(backbone.cpu().eval(), cfg.image_size).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        scripted = torch.jit.trace(frozen, torch.rand(2, 1, cfg.image_size, cfg.image_size))
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        info = write_encoder(tmp, scripted, {
            "feature_dim": feat_dim,
            "image_size": cfg.image_size,
            "input": "(N, 1, H, W) float in [0, 1]; resized inside to image_size",
            "method": "SimCLR (NT-Xent, MONAI ContrastiveLoss) on a MONAI ResNet; frozen, eval-mode BatchNorm",
            "data": {"path": str(dataset.root), "split": sorted({r["split"] for r in dataset.rows}),
                     "items": len(dataset), "images": int(images.shape[0]), "dims": dataset.dims,
                     "prep_hash": sorted({r.get("prep_hash", "") for r in dataset.rows})},
            "training": {"losses": losses, "final_loss": losses[-1] if losses else None},
            "provenance": provenance(cfg, cfg.seed),
            "training_subjects": training_subjects(dataset, {r["split"] for r in dataset.rows}),
        })
    return info
