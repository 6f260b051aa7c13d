"""The shipped training presets validate, and the 3D demo UNet runs at the latent size it is sized for."""

from __future__ import annotations

import pytest
import torch

from uterosynth.config import load_config, parse_overrides
from uterosynth.models.autoencoder import downsample_factor
from uterosynth.models.diffusion_unet import ConditionedUNet
from uterosynth.pipeline import PRESETS
from uterosynth.training.autoencoder import AutoencoderTrainConfig
from uterosynth.training.diffusion import DiffusionTrainConfig

DIFFUSION = sorted(p.name for p in PRESETS.glob("*.yaml") if p.name.startswith(("ddpm", "ldm")))
AUTOENCODER = sorted(p.name for p in PRESETS.glob("ae*.yaml"))


@pytest.mark.parametrize("name", DIFFUSION)
def test_diffusion_presets_validate(name: str):
    cfg = load_config(DiffusionTrainConfig, PRESETS / name)
    assert len(cfg.unet.channels) == len(cfg.unet.attention_levels)


@pytest.mark.parametrize("name", AUTOENCODER)
def test_autoencoder_presets_validate(name: str):
    assert load_config(AutoencoderTrainConfig, PRESETS / name).model.spatial_dims in (2, 3)


def test_ldm3d_demo_unet_runs_on_the_demo_latents():
    """ae3d_demo turns the demo's 64 x 64 x 16 volumes into 3 x 16 x 16 x 4 latents."""
    assert {"ldm3d_demo.yaml", "ldm2d_demo.yaml", "ddpm2d_demo.yaml"} <= set(DIFFUSION)
    cfg = load_config(DiffusionTrainConfig, PRESETS / "ldm3d_demo.yaml")
    torch.manual_seed(0)
    unet = ConditionedUNet(3, 3, cfg.unet)
    x = torch.randn(2, 3, 16, 16, 4)
    out = unet(x, torch.tensor([10, 900]))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)


def _sets(args: tuple[str, ...]) -> dict:
    """The ``--set key=value`` overrides of a demo stage, parsed as the CLI parses them."""
    return parse_overrides([v for a, v in zip(args, args[1:]) if a == "--set"])


@pytest.mark.parametrize("quick", [True, False])
def test_3d_demo_ldm_stage_builds_at_its_latent_size(tmp_path, quick: bool):
    """The 3D demo's LDM overrides fit the preset, and its UNet runs at the demo's latent size."""
    from uterosynth.demo import demo_stages

    stages = {s.name: s.args for s in demo_stages(tmp_path, quick=quick, dims=3)}
    volume = _sets(stages["02_prepared"])["preprocess.output.shape"]
    ae = load_config(AutoencoderTrainConfig, PRESETS / "ae3d_demo.yaml", overrides=_sets(stages["03_autoencoder"])).model
    x = torch.randn(1, ae.latent_channels, *[s // downsample_factor(ae) for s in volume])
    cfg = load_config(DiffusionTrainConfig, PRESETS / "ldm3d_demo.yaml", overrides=_sets(stages["05_ldm"]))
    assert ConditionedUNet(3, ae.latent_channels, cfg.unet)(x, torch.tensor([500])).shape == x.shape
