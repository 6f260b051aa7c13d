"""KL autoencoder and patch discriminator built from typed configs (MONAI networks).

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models") §3 and
Pinaya et al. 2022 ("Brain imaging generation with latent diffusion models"): a KL-regularised
autoencoder compresses images ``(N, C, *spatial)`` into latents ``(N, latent_channels,
*spatial / 2**(len(channels) - 1))``; a patch discriminator (Isola et al. 2017) sharpens its
reconstructions. 2D and 3D share this code through ``spatial_dims``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel

__all__ = [
    "AutoencoderConfig",
    "DiscriminatorConfig",
    "build_autoencoder",
    "build_discriminator",
    "downsample_factor",
]


class AutoencoderConfig(StrictModel):
    """Arguments of MONAI ``AutoencoderKL`` (see its docstring); ``spatial_dims`` comes first."""

    spatial_dims: Literal[2, 3] = 2
    in_channels: int = Field(1, ge=1)
    out_channels: int = Field(1, ge=1)
    channels: tuple[int, ...] = (64, 128, 128)
    num_res_blocks: int = Field(2, ge=1)
    attention_levels: tuple[bool, ...] = (False, False, False)
    latent_channels: int = Field(3, ge=1)
    norm_num_groups: int = Field(32, ge=1)
    with_encoder_nonlocal_attn: bool = False
    with_decoder_nonlocal_attn: bool = False
    use_checkpoint: bool = Field(False, description="activation checkpointing (saves memory in 3D)")
    use_flash_attention: bool = False

    @model_validator(mode="after")
    def _check(self) -> AutoencoderConfig:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries but channels has "
                f"{len(self.channels)}: give one flag per level"
            )
        bad = [c for c in self.channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"channels {bad} are not multiples of norm_num_groups={self.norm_num_groups}")
        return self


class DiscriminatorConfig(StrictModel):
    """Arguments of MONAI ``PatchDiscriminator``."""

    channels: int = Field(64, ge=1)
    num_layers_d: int = Field(3, ge=1)
    kernel_size: int = Field(4, ge=2, description="3 suits tiny volumes")
    norm: Literal["BATCH", "INSTANCE", "GROUP"] = "BATCH"


def downsample_factor(cfg: AutoencoderConfig) -> int:
    """How much each spatial axis shrinks from image to latent."""
    return 2 ** (len(cfg.channels) - 1)


def build_autoencoder(cfg: AutoencoderConfig):
    """MONAI ``AutoencoderKL`` from ``cfg``: ``forward(x) -> (reconstruction, z_mu, z_sigma)``."""
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        channels=tuple(cfg.channels),
        num_res_blocks=cfg.num_res_blocks,
        attention_levels=tuple(cfg.attention_levels),
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        with_encoder_nonlocal_attn=cfg.with_encoder_nonlocal_attn,
        with_decoder_nonlocal_attn=cfg.with_decoder_nonlocal_attn,
        use_checkpoint=cfg.use_checkpoint,
        use_flash_attention=cfg.use_flash_attention,
    )


def build_discriminator(cfg: DiscriminatorConfig, *, spatial_dims: int, in_channels: int = 1):
    """MONAI ``PatchDiscriminator``; ``forward(x)`` returns a list whose last item is the logits map."""
    from monai.networks.nets import PatchDiscriminator

    norm = cfg.norm if cfg.norm != "GROUP" else ("GROUP", {"num_groups": 1})
    return PatchDiscriminator(
        spatial_dims=spatial_dims,
        num_layers_d=cfg.num_layers_d,
        channels=cfg.channels,
        in_channels=in_channels,
        out_channels=1,
        kernel_size=cfg.kernel_size,
        norm=norm,
    )
