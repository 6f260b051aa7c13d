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

from ..core.artifacts import provenance
from ..core.errors import DataError
from ..core.imageio import middle_slice
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.subjects import training_subjects
from ..models.contrastive import FrozenEncoder, fit_contrastive, per_image, save_frozen, shuffled_batches
from ..models.contrastive import build_backbone as build_resnet
from .config import EncoderTrainConfig

__all__ = ["FrozenEncoder", "build_backbone", "slices_for_training", "train_encoder", "view_transform"]


def build_backbone(cfg: EncoderTrainConfig) -> nn.Module:
    """The encoder's MONAI ``ResNet`` for ``cfg`` (pooled features ``(N, channels[-1])``)."""
    return build_resnet(cfg.layers, cfg.channels)


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
    root, ref_split = parse_dataset_ref(data)
    dataset = PreparedDataset.load(root, ref_split or cfg.split)
    images = slices_for_training(dataset, cfg.image_size, max_items=cfg.max_items, seed=cfg.seed)
    if images.shape[0] < 2:
        raise DataError(f"{data}: split '{cfg.split}' has {images.shape[0]} image(s); contrastive training needs >= 2")
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg)
    losses, _ = fit_contrastive(
        images, backbone,
        views=(per_image(view_transform(cfg.image_size, cfg.seed)), per_image(view_transform(cfg.image_size, cfg.seed + 1))),
        batches=shuffled_batches(images.shape[0], min(cfg.batch_size, images.shape[0]),
                                 torch.Generator().manual_seed(cfg.seed)),
        epochs=cfg.epochs, feature_dim=cfg.channels[-1], projection_dim=cfg.projection_dim,
        temperature=cfg.temperature, lr=cfg.lr, weight_decay=cfg.weight_decay, device=cfg.device, progress=progress)
    info = save_frozen(backbone, cfg.image_size, out, {
        "feature_dim": cfg.channels[-1],
        "image_size": cfg.image_size,
        "input": "(N, 1, H, W) float in [0, 1]; resized inside to image_size",
        "method": "SimCLR (NT-Xent, MONAI ContrastiveLoss) on a MONAI ResNet; frozen, eval-mode BatchNorm",
        "data": {"path": str(dataset.root), "split": sorted({r["split"] for r in dataset.rows}),
                 "items": len(dataset), "images": int(images.shape[0]), "dims": dataset.dims,
                 "prep_hash": sorted({r.get("prep_hash", "") for r in dataset.rows})},
        "training": {"losses": losses, "final_loss": losses[-1] if losses else None},
        "provenance": provenance(cfg, cfg.seed),
        "training_subjects": training_subjects(dataset, {r["split"] for r in dataset.rows}),
    }, overwrite=overwrite)
    return info
