"""The denoising network: MONAI ``DiffusionModelUNet`` plus the condition embedder.

Conditions enter twice (Rombach et al. 2022; Dhariwal & Nichol 2021): as cross-attention
context at the attention levels, and as a pooled vector added to the time embedding in every
residual block. The pooled path reuses MONAI's class-embedding slot: the UNet is built with
``num_class_embeds`` set and its ``class_embedding`` replaced by an identity, so the pooled
vector can be passed as ``class_labels`` without touching MONAI's code.

``patch_size > 1`` folds each ``p × p (× p)`` patch into channels before the UNet and unfolds
the prediction after it (pixel-unshuffle; Hoogeboom et al. 2023, "simple diffusion"), so a
pixel-space model runs its first level at ``1/p`` of the resolution: the cost of a latent model
without an autoencoder. Noise and loss stay in pixel space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.config import StrictModel
from ..diffusion.conditions import Condition
from .conditioning import ConditionCodec, ConditionEmbedder, GuidanceEmbedder

__all__ = ["ConditionedUNet", "UNetConfig", "fold_depth", "patchify", "unfold_depth", "unpatchify"]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``(N, C, *S)`` → ``(N, C·p^d, *S/p)``: each ``p^d`` patch folded into channels (2D: ``pixel_unshuffle``)."""
    if p == 1:
        return x
    n, c, *spatial = x.shape
    d = len(spatial)
    x = x.reshape(n, c, *[v for s in spatial for v in (s // p, p)])
    x = x.permute(0, 1, *[3 + 2 * i for i in range(d)], *[2 + 2 * i for i in range(d)])
    return x.reshape(n, c * p**d, *[s // p for s in spatial])


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    if p == 1:
        return x
    n, cp, *spatial = x.shape
    d = len(spatial)
    x = x.reshape(n, cp // p**d, *[p] * d, *spatial)
    x = x.permute(0, 1, *[v for i in range(d) for v in (2 + d + i, 2 + i)])
    return x.reshape(n, cp // p**d, *[s * p for s in spatial])


def fold_depth(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W, D)`` → ``(N, C·D, H, W)``: the slices of a volume as channels of one image."""
    n, c, h, w, d = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(n, c * d, h, w)


def unfold_depth(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`fold_depth` for a volume batch of ``shape`` ``(N, C, H, W, D)``."""
    n, c, h, w, d = shape
    return x.reshape(n, c, d, h, w).permute(0, 1, 3, 4, 2)


class UNetConfig(StrictModel):
    """Width and depth of the denoising UNet (MONAI ``DiffusionModelUNet`` arguments)."""

    channels: list[int] = Field(default_factory=lambda: [64, 128, 256])
    attention_levels: list[bool] = Field(default_factory=lambda: [False, True, True])
    num_res_blocks: int = Field(2, ge=1)
    num_head_channels: int = Field(32, ge=1)
    norm_num_groups: int = Field(32, ge=1)
    transformer_num_layers: int = Field(1, ge=1)
    use_flash_attention: bool = False
    patch_size: int = Field(1, ge=1, description="fold p^dims pixels into channels before the UNet")
    fold_depth: int | None = Field(None, ge=1, description="3D items only: fold their last axis (this many "
                                   "slices) into channels and run a 2D UNet over the in-plane grid")

    @model_validator(mode="after")
    def _check(self) -> UNetConfig:
        if len(self.channels) != len(self.attention_levels):
            raise ValueError(
                f"channels ({len(self.channels)} levels) and attention_levels ({len(self.attention_levels)}) "
                "must have the same length"
            )
        bad = [c for c in self.channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"channels {bad} are not multiples of norm_num_groups={self.norm_num_groups}")
        return self

    def network_dims(self, spatial_dims: int) -> int:
        """Dimensions of the UNet's convolutions for items of ``spatial_dims``: 2 when it folds the slices."""
        return 2 if self.fold_depth else spatial_dims


class ConditionedUNet(nn.Module):
    """``(x_t (N, C, *spatial), t (N,), cond) → prediction (N, C, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image (DDPM) or latent (LDM) channels.
        config: network width/depth.
        codec: the condition codec, or ``None`` for an unconditional model.
        guidance_names: the guided names of a distilled student, which takes their scales as an
            input (``cond.guidance``, one column per name; :class:`GuidanceEmbedder`); empty for
            a model sampled with classifier-free guidance.
    """

    def __init__(self, spatial_dims: int, in_channels: int, config: UNetConfig, codec: ConditionCodec | None = None,
                 guidance_names: Sequence[str] = ()) -> None:
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        conditioned = codec is not None and codec.config.enabled
        if config.fold_depth is not None and spatial_dims != 3:
            raise ValueError(f"unet.fold_depth folds the slices of 3D items: this model is {spatial_dims}D")
        self.patch_size, self.fold_depth = config.patch_size, config.fold_depth
        network_dims = config.network_dims(spatial_dims)
        folded = in_channels * (self.fold_depth or 1) * config.patch_size**network_dims
        self.unet = DiffusionModelUNet(
            spatial_dims=network_dims,
            in_channels=folded,
            out_channels=folded,
            channels=tuple(config.channels),
            attention_levels=tuple(config.attention_levels),
            num_res_blocks=config.num_res_blocks,
            num_head_channels=config.num_head_channels,
            norm_num_groups=config.norm_num_groups,
            transformer_num_layers=config.transformer_num_layers,
            with_conditioning=conditioned,
            cross_attention_dim=codec.config.embed_dim if conditioned else None,
            num_class_embeds=1 if conditioned else None,
            use_flash_attention=config.use_flash_attention,
        )
        self.embedder: ConditionEmbedder | None = None
        time_embed_dim = config.channels[0] * 4  # MONAI's time-embedding width
        if conditioned:
            self.unet.class_embedding = nn.Identity()
            self.embedder = ConditionEmbedder(codec, time_embed_dim=time_embed_dim)
        self.guidance_names = list(guidance_names)
        self.guidance_embedder: GuidanceEmbedder | None = None
        if self.guidance_names:
            if not conditioned:
                raise ValueError("guidance_names: an unconditional model takes no guidance")
            self.guidance_embedder = GuidanceEmbedder(len(self.guidance_names), time_embed_dim=time_embed_dim)

    @property
    def conditioned(self) -> bool:
        return self.embedder is not None

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        shape = x.shape
        if self.fold_depth and (x.ndim != 5 or shape[-1] != self.fold_depth):
            raise ValueError(f"this model folds {self.fold_depth} slices into channels: expected volumes "
                             f"(N, C, H, W, {self.fold_depth}), got {tuple(shape)}")
        x = patchify(fold_depth(x) if self.fold_depth else x, self.patch_size)
        out = self._unet(x, t, cond)
        out = unpatchify(out, self.patch_size)
        return unfold_depth(out, shape) if self.fold_depth else out

    def _unet(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        if self.embedder is None:
            return self.unet(x, timesteps=t)
        if cond is None:
            raise ValueError("this model is conditioned: pass a condition batch (codec.null(n) for unconditional)")
        context, pooled = self.embedder(cond)
        if self.guidance_embedder is not None:
            if cond.guidance is None:
                raise ValueError(f"this distilled model takes its guidance scales ({', '.join(self.guidance_names)}) "
                                 "as input: pass cond.with_guidance(scales)")
            pooled = pooled + self.guidance_embedder(cond.guidance)
        return self.unet(x, timesteps=t, context=context.to(x.dtype), class_labels=pooled)
