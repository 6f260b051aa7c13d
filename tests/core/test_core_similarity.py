"""One SSIM / MS-SSIM / LPIPS for validation and evaluation, pinned to MONAI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uterosynth.core.similarity import LPIPSDistance, load_lpips, ms_ssim, ssim, ssim_kernel
from uterosynth.evaluation.image_metrics import lpips_pair_values, msssim_pair_values
from uterosynth.training.metrics import reconstruction_metrics


def _pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 1, *shape, generator=g)
    b = (0.8 * a + 0.2 * torch.rand(a.shape, generator=g)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 8)])
def test_validation_and_evaluation_report_the_same_msssim(shape):
    a, b = _pair(shape, 0)
    val = reconstruction_metrics(a, b, spatial_dims=len(shape))["ms_ssim"]
    np.testing.assert_array_equal(val.double().numpy(), msssim_pair_values(a, b))
    assert torch.isfinite(val).all() and (val < 1).all()


@pytest.mark.parametrize("shape", [(40, 24), (16, 16, 8)])
def test_ssim_matches_monai_metric_with_per_axis_windows(shape):
    from monai.metrics import SSIMMetric

    a, b = _pair(shape, 1)
    theirs = SSIMMetric(spatial_dims=len(shape), data_range=1.0, win_size=[ssim_kernel(s) for s in shape],
                        reduction="none")(a, b).flatten()
    torch.testing.assert_close(ssim(a, b), theirs)
    torch.testing.assert_close(ms_ssim(a, a), torch.ones(3))


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 8)])
def test_evaluation_lpips_is_the_training_distance(shape):
    torch.manual_seed(0)
    net = load_lpips(None)
    a, b = _pair(shape, 2)
    ours = lpips_pair_values(net, a, b, size=32)
    theirs = LPIPSDistance(len(shape), net=net, min_size=32)(a, b)
    np.testing.assert_allclose(ours, theirs.double().numpy(), rtol=1e-6)
    assert (ours > 0).all()
