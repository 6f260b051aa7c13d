import numpy as np
import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.core.similarity import load_lpips, msssim_scales
from uterosynth.evaluation.image_metrics import (
    lpips_pair_values,
    msssim_pair_values,
    random_pairs,
    slice_consistency,
)


def _smooth(n, shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, *[s // 8 for s in shape], generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(x, size=shape, mode=mode, align_corners=False)


def test_msssim_matches_pytorch_msssim():
    from pytorch_msssim import ms_ssim

    a, b = _smooth(3, (192, 192), 0), _smooth(3, (192, 192), 1)
    b = (0.7 * a + 0.3 * b).clamp(0, 1)
    ours = msssim_pair_values(a, b)
    theirs = ms_ssim(a, b, data_range=1.0, size_average=False).double().numpy()
    assert msssim_scales((192, 192)) == (11, (0.0448, 0.2856, 0.3001, 0.2363, 0.1333))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_msssim_small_images_use_fewer_scales(spatial_dims):
    shape = (32, 32) if spatial_dims == 2 else (16, 16, 8)
    kernel, weights = msssim_scales(shape)
    assert len(weights) < 5 and sum(weights) == pytest.approx(1.0) and kernel <= min(shape)
    a = _smooth(4, shape, 2)
    same = msssim_pair_values(a, a)
    other = msssim_pair_values(a, torch.rand_like(a))
    np.testing.assert_allclose(same, 1.0, atol=1e-5)
    assert (other < same).all()


def test_random_pairs_never_repeat_a_pair():
    i, j = random_pairs(8, 1000, seed=0)   # more than the 28 pairs there are: each once
    assert len(i) == 28 and set(zip(i.tolist(), j.tolist(), strict=True)) == {(a, b) for a in range(8) for b in range(a + 1, 8)}
    i, j = random_pairs(300, 2000, seed=1)  # a subset of the 44 850 pairs, without repeats
    assert len(i) == 2000 and (i < j).all() and j.max() < 300
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 2000


def test_random_pairs_are_distinct_and_need_two_items():
    i, j = random_pairs(5, 100, seed=0)
    assert (i != j).all() and i.max() < 5 and j.max() < 5
    with pytest.raises(UserError):
        random_pairs(1, 10, seed=0)


def test_slice_consistency_smooth_volume_beats_noise():
    smooth = _smooth(2, (16, 16, 16), 3)
    noise = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    s_ssim, s_corr = slice_consistency(smooth)
    n_ssim, n_corr = slice_consistency(noise)
    assert s_ssim.shape == (2,) and (s_ssim > n_ssim).all() and (s_corr > n_corr + 0.3).all()


@pytest.fixture
def alexnet_weights(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {f"features.{k}": v.contiguous() for k, v in alexnet(weights=None).features.state_dict().items()}
    path = tmp_path / "alexnet.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_lpips_loads_local_backbone_and_scores_pairs(alexnet_weights, spatial_dims):
    path, state = alexnet_weights
    model = load_lpips(path)
    assert torch.equal(model.net.slice1[0].weight, state["features.0.weight"])
    shape = (32, 32) if spatial_dims == 2 else (32, 32, 8)
    a = _smooth(2, shape, 4)
    same = lpips_pair_values(model, a, a, size=64)
    diff = lpips_pair_values(model, a, torch.rand_like(a), size=64)
    assert np.allclose(same, 0.0, atol=1e-6) and (diff > 0).all()


def test_lpips_missing_weights_names_file(tmp_path):
    with pytest.raises(UserError, match="nope.safetensors"):
        load_lpips(tmp_path / "nope.safetensors")


def test_lpips_wrong_keys(tmp_path):
    from safetensors.torch import save_file

    save_file({"classifier.1.weight": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UserError, match="unexpected key"):
        load_lpips(tmp_path / "bad.safetensors")
