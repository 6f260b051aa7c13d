"""LPIPS from local weights only: 2D, 2.5D, missing files, config rules."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from uterosynth.core.config import validate_config
from uterosynth.core.errors import ConfigError, UserError
from uterosynth.core.similarity import LPIPSDistance
from uterosynth.models.perceptual import PerceptualConfig, build_perceptual


def _fake_alexnet(path):
    torch.manual_seed(3)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    tensors = {}
    for i, shape in shapes.items():
        tensors[f"features.{i}.weight"] = torch.randn(shape) * 0.05
        tensors[f"features.{i}.bias"] = torch.zeros(shape[0])
    save_file(tensors, str(path))
    return tensors


def test_weights_file_is_loaded_into_lpips_slices(tmp_path):
    tensors = _fake_alexnet(tmp_path / "alex.safetensors")
    net = LPIPSDistance(2, weights=tmp_path / "alex.safetensors")
    assert torch.equal(getattr(net.net.net.slice1, "0").weight, tensors["features.0.weight"])
    assert torch.equal(getattr(net.net.net.slice5, "10").weight, tensors["features.10.weight"])
    assert not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_distance_is_zero_for_identical_and_positive_otherwise(spatial_dims):
    torch.manual_seed(0)
    net = LPIPSDistance(spatial_dims, slice_fraction=0.5)
    shape = (2, 1, 32, 32) if spatial_dims == 2 else (2, 1, 16, 16, 8)
    a = torch.rand(shape)
    assert torch.allclose(net(a, a), torch.zeros(2), atol=1e-6)
    d = net(a, a.flip(2))
    assert d.shape == (2,) and (d > 0).all()


def test_gradients_flow_to_the_input():
    net = LPIPSDistance(2)
    a = torch.rand(1, 1, 32, 32, requires_grad=True)
    net(a, torch.rand(1, 1, 32, 32)).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_missing_weights_file_names_it(tmp_path):
    cfg = PerceptualConfig(network="alex", weights=tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="missing.safetensors.*not found"):
        build_perceptual(cfg, spatial_dims=2)


def test_weights_file_lacking_tensors_is_user_error(tmp_path):
    save_file({"features.0.weight": torch.zeros(64, 3, 11, 11)}, str(tmp_path / "part.safetensors"))
    with pytest.raises(UserError, match="missing AlexNet tensor"):
        LPIPSDistance(2, weights=tmp_path / "part.safetensors")


def test_unset_weights_without_random_init_is_config_error():
    with pytest.raises(ConfigError, match="perceptual.weights"):
        validate_config(PerceptualConfig, {"network": "alex"})


def test_none_builds_nothing_and_random_is_not_lpips():
    assert build_perceptual(PerceptualConfig(network="none"), spatial_dims=2) is None
    assert not PerceptualConfig(network="alex", random_init=True).pretrained
