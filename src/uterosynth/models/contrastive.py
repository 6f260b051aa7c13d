"""Contrastive embedding training shared by the in-domain encoder and the copy detector.

Both learn a small MONAI ``ResNet`` (2D, one channel) by contrasting two views of images with
MONAI's ``ContrastiveLoss`` (NT-Xent, Chen et al. 2020) through a projection head, then freeze
the backbone (resizing to the training size is part of the frozen module) and save it as the
TorchScript encoder artifact of :mod:`uterosynth.models.encoder_artifact`. What differs is
what counts as "the same image": the views (augmentations) and which items pair up in a batch,
passed in as ``views`` (each maps a batch of images to a batch of views) and ``batches``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ..core.artifacts import atomic_output_dir
from ..core.config import StrictModel
from .encoder_artifact import write_encoder

__all__ = ["ContrastiveConfig", "FrozenEncoder", "MirrorSymmetric", "build_backbone", "fit_contrastive", "per_image", "save_frozen", "shuffled_batches"]



class ContrastiveConfig(StrictModel):
    """What every contrastive embedding's training sets: data split, backbone, loss and optimiser."""

    seed: int = 0
    device: str = "cpu"
    split: Literal["train", "val", "test"] = "train"
    image_size: int = Field(128, ge=16, description="items (or planes of volumes) are resized to this square")
    layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    channels: tuple[int, int, int, int] = (32, 64, 128, 256)
    projection_dim: int = Field(128, ge=8, description="output of the projection head the loss sees")
    temperature: float = Field(0.1, gt=0, description="NT-Xent temperature (MONAI ContrastiveLoss)")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=2, description="images per step; each gives two augmented views")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0)

    @model_validator(mode="after")
    def _check_backbone(self) -> ContrastiveConfig:
        if any(c < 1 for c in self.channels) or any(n < 1 for n in self.layers):
            raise ValueError("layers and channels must be positive")
        return self


View = Callable[[torch.Tensor], torch.Tensor]
Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def build_backbone(layers: Sequence[int], channels: Sequence[int]) -> nn.Module:
    """MONAI ``ResNet`` (basic blocks, 2D, one input channel) returning pooled features ``(N, channels[-1])``."""
    from monai.networks.nets import ResNet

    return ResNet("basic", list(layers), list(channels), spatial_dims=2, n_input_channels=1,
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


class MirrorSymmetric(nn.Module):
    """``normalize(f(x)) + normalize(f(mirror(x)))``: a descriptor that is the same for an image and its mirror image."""

    def __init__(self, embed: nn.Module) -> None:
        super().__init__()
        self.embed = embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(x), dim=1) + F.normalize(self.embed(x.flip(-1)), dim=1)


def shuffled_batches(n: int, batch: int, generator: torch.Generator) -> Batches:
    """SimCLR batches: every epoch a new permutation of the ``n`` images, each paired with itself."""

    def epoch(_: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(n, generator=generator)
        for s in range(0, n - batch + 1, batch):
            idx = order[s : s + batch]
            yield idx, idx

    return epoch


def fit_contrastive(
    images: torch.Tensor,
    backbone: nn.Module,
    *,
    views: tuple[View, View],
    batches: Batches,
    epochs: int,
    feature_dim: int,
    projection_dim: int,
    temperature: float,
    lr: float,
    weight_decay: float,
    device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> tuple[list[float], nn.Module]:
    """Train ``backbone`` (in place) on ``images`` ``(M, 1, S, S)``; returns the mean loss per epoch and the head.

    Each batch ``(a, b)`` of image indices gives the pairs ``(views[0](images[a])[i],
    views[1](images[b])[i])``: positives on the diagonal, every other image of the batch a negative.
    """
    from monai.losses import ContrastiveLoss

    backbone.to(device)
    head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, projection_dim)).to(device)
    optimiser = torch.optim.AdamW(list(backbone.parameters()) + list(head.parameters()), lr=lr, weight_decay=weight_decay)
    loss_fn = ContrastiveLoss(temperature=temperature)
    view_a, view_b = views
    losses = []
    for epoch in range(epochs):
        backbone.train()
        head.train()
        epoch_loss = []
        for a_idx, b_idx in batches(epoch):
            a = view_a(images[a_idx]).to(device)
            b = view_b(images[b_idx]).to(device)
            loss = loss_fn(head(backbone(a)), head(backbone(b)))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            epoch_loss.append(float(loss))
        losses.append(float(np.mean(epoch_loss)) if epoch_loss else float("nan"))
        if progress is not None:
            progress(epoch + 1, losses[-1])
    return losses, head


def per_image(view: Callable[[torch.Tensor], torch.Tensor]) -> View:
    """A batch view from a view of one image ``(1, S, S)`` (for per-image transforms such as MONAI's)."""
    return lambda batch: torch.stack([view(im) for im in batch])


def save_frozen(backbone: nn.Module, image_size: int, out: str | Path, info: Mapping[str, Any], *,
                head: nn.Module | None = None, mirror_symmetric: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Freeze ``backbone`` (and ``head``; eval-mode BatchNorm, no gradients), trace it with its resize (and, with
    ``mirror_symmetric``, :class:`MirrorSymmetric`) and write the artifact."""
    frozen: nn.Module = FrozenEncoder(backbone.cpu().eval(), image_size)
    if head is not None:
        frozen = nn.Sequential(frozen, head.cpu())
    if mirror_symmetric:
        frozen = MirrorSymmetric(frozen)
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        scripted = torch.jit.trace(frozen, torch.rand(2, 1, image_size, image_size))
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        return write_encoder(tmp, scripted, info)
