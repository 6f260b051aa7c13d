"""Autoencoder/discriminator factories: shapes, config rules, activation checkpointing."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.config import validate_config
from uterosynth.core.errors import ConfigError
from uterosynth.models.autoencoder import (
    AutoencoderConfig,
    DiscriminatorConfig,
    build_autoencoder,
    build_discriminator,
    downsample_factor,
)


def _cfg(spatial_dims: int, **kw) -> AutoencoderConfig:
    return AutoencoderConfig(spatial_dims=spatial_dims, channels=(4, 8), attention_levels=(False, False),
                             norm_num_groups=4, latent_channels=2, num_res_blocks=1, **kw)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes(spatial_dims):
    cfg = _cfg(spatial_dims)
    ae = build_autoencoder(cfg)
    x = torch.rand(2, 1, *([16] * spatial_dims))
    recon, mu, sigma = ae(x)
    assert recon.shape == x.shape
    assert mu.shape == (2, 2, *([16 // downsample_factor(cfg)] * spatial_dims)) and (sigma > 0).all()
    disc = build_discriminator(DiscriminatorConfig(channels=4, num_layers_d=1, kernel_size=3), spatial_dims=spatial_dims)
    assert disc(x)[-1].shape[:2] == (2, 1)


def test_activation_checkpointing_gives_same_gradients():
    x = torch.rand(1, 1, 8, 8, 8)
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        ae = build_autoencoder(_cfg(3, use_checkpoint=flag)).train()
        z_mu, _ = ae.encode(x)
        ae.decode(z_mu).abs().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in ae.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_attention_levels_must_match_channels():
    with pytest.raises(ConfigError, match="attention_levels"):
        validate_config(AutoencoderConfig, {"channels": [8, 16], "attention_levels": [False], "norm_num_groups": 4})


def test_channels_must_be_multiples_of_groups():
    with pytest.raises(ConfigError, match="norm_num_groups"):
        validate_config(AutoencoderConfig, {"channels": [6, 16], "attention_levels": [False, False], "norm_num_groups": 4})
