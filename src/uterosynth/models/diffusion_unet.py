"""The denoising network: MONAI ``DiffusionModelUNet`` plus the condition embedder.

Conditions enter twice (Rombach et al. 2022; Dhariwal & Nichol 2021): as cross-attention
context at the attention levels, and as a pooled vector added to the time embedding in every
residual block. The pooled path reuses MONAI's class-embedding slot: the UNet is built with
``num_class_embeds`` set and its ``class_embedding`` replaced by an identity, so the pooled
vector can be passed as ``class_labels`` without touching MONAI's code.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from ..config import StrictModel
from ..diffusion.conditions import Condition
from .conditioning import ConditionCodec, ConditionEmbedder

__all__ = ["ConditionedUNet", "UNetConfig"]


class UNetConfig(StrictModel):
    """Width and depth of the denoising UNet (MONAI ``DiffusionModelUNet`` arguments)."""

    channels: list[int] = Field(default_factory=lambda: [64, 128, 256])
    attention_levels: list[bool] = Field(default_factory=lambda: [False, True, True])
    num_res_blocks: int = Field(2, ge=1)
    num_head_channels: int = Field(32, ge=1)
    norm_num_groups: int = Field(32, ge=1)
    transformer_num_layers: int = Field(1, ge=1)
    use_flash_attention: bool = False

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


class ConditionedUNet(nn.Module):
    """``(x_t (N, C, *spatial), t (N,), cond) → prediction (N, C, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image (DDPM) or latent (LDM) channels.
        config: network width/depth.
        codec: the condition codec, or ``None`` for an unconditional model.
    """

    def __init__(self, spatial_dims: int, in_channels: int, config: UNetConfig, codec: ConditionCodec | None = None) -> None:
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        conditioned = codec is not None and codec.config.enabled
        self.unet = DiffusionModelUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=in_channels,
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
        if conditioned:
            time_embed_dim = config.channels[0] * 4
            self.unet.class_embedding = nn.Identity()
            self.embedder = ConditionEmbedder(codec, time_embed_dim=time_embed_dim)

    @property
    def conditioned(self) -> bool:
        return self.embedder is not None

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        if self.embedder is None:
            return self.unet(x, timesteps=t)
        if cond is None:
            raise ValueError("this model is conditioned: pass a condition batch (codec.null(n) for unconditional)")
        context, pooled = self.embedder(cond)
        return self.unet(x, timesteps=t, context=context.to(x.dtype), class_labels=pooled)
