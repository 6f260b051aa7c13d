"""A small decoder distilled from the autoencoder's, for previews and bulk sampling (TAESD-style).

Latents ``(N, C_lat, *S)`` → images ``(N, 1, *S·f)``: a 3×3 convolution to ``width`` channels,
then at each of the ``log2 f`` levels a nearest ×2 upsampling, a 3×3 convolution (halving the
width, down to ``min_width``) and residual blocks of two 3×3 convolutions, and a 3×3
convolution to the image. No normalisation layer: an item decodes the same alone or in any
batch. It takes what the autoencoder's ``decode`` takes (latents divided by the scale factor).

Its artifact (``kind: fast_decoder``) names the autoencoder it was distilled from (path and
sha256), so sampling refuses it for a model trained with another autoencoder, and records its
PSNR to the full decoder's output on held-out latents.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.checkpoint import load_model_json, load_weights
from ..core.config import StrictModel
from ..core.errors import ConfigError, DataError

__all__ = ["FastDecoder", "FastDecoderConfig", "fast_decoder_for", "load_fast_decoder"]


class FastDecoderConfig(StrictModel):
    """Width and depth of the fast decoder."""

    width: int = Field(64, ge=4, description="channels at the latent resolution")
    min_width: int = Field(16, ge=4, description="the narrowest level (the width halves at each upsampling)")
    blocks: int = Field(1, ge=0, description="residual blocks per level")


class _Residual(nn.Module):
    def __init__(self, conv: type[nn.Module], channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3, padding=1), nn.SiLU(), conv(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x + self.body(x))


class FastDecoder(nn.Module):
    """``(N, latent_channels, *S)`` → ``(N, out_channels, *S · factor)``.

    Raises:
        ValueError: ``factor`` is not a power of two.
    """

    def __init__(self, spatial_dims: int, latent_channels: int, factor: int, config: FastDecoderConfig,
                 out_channels: int = 1) -> None:
        super().__init__()
        levels = int(round(math.log2(factor)))
        if 2**levels != factor:
            raise ValueError(f"factor {factor}: expected a power of two (the autoencoder's downsampling)")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        width = config.width
        layers: list[nn.Module] = [conv(latent_channels, width, 3, padding=1), nn.SiLU()]
        layers += [_Residual(conv, width) for _ in range(config.blocks)]
        for _ in range(levels):
            narrower = max(config.min_width, width // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(width, narrower, 3, padding=1), nn.SiLU()]
            layers += [_Residual(conv, narrower) for _ in range(config.blocks)]
            width = narrower
        layers.append(conv(width, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def load_fast_decoder(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[FastDecoder, dict[str, Any]]:
    """``(decoder in eval mode, model.json)`` from a fast decoder's run or checkpoint folder.

    Raises:
        DataError: no checkpoint, or not a fast decoder.
    """
    ckpt, meta = load_model_json(path)
    if meta.get("kind") != "fast_decoder":
        raise DataError(f"{ckpt / 'model.json'}: kind is {meta.get('kind')!r}, expected 'fast_decoder'")
    decoder = FastDecoder(int(meta["spatial_dims"]), int(meta["latent_channels"]), int(meta["factor"]),
                          FastDecoderConfig.model_validate(meta["network"]), out_channels=int(meta.get("out_channels", 1)))
    decoder.load_state_dict(load_weights(ckpt))
    return decoder.to(device).eval(), {**meta, "checkpoint": str(ckpt)}


def fast_decoder_for(path: str | Path, model: Any, *, device: str | torch.device = "cpu") -> tuple[FastDecoder, dict[str, Any]]:
    """:func:`load_fast_decoder`, checked against the latent diffusion ``model`` it is to decode for.

    Raises:
        ConfigError: ``model`` samples pixels, or the decoder was distilled from another autoencoder.
    """
    if model.autoencoder is None:
        raise ConfigError(f"decoder {path}: the model samples pixels; a decoder is for latent models", keys=("decoder",))
    decoder, meta = load_fast_decoder(path, device=device)
    if meta["autoencoder"]["sha256"] != model.meta["autoencoder"]["sha256"]:
        raise ConfigError(f"decoder {path}: distilled from autoencoder {meta['autoencoder']['sha256'][:12]}…, "
                          f"but the model decodes with {model.meta['autoencoder']['sha256'][:12]}…", keys=("decoder",))
    return decoder, meta
