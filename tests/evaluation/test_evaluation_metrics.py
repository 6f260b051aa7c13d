import numpy as np
import pytest
import scipy.linalg
import torch

from uterosynth.evaluation.bootstrap import bootstrap_ci, bootstrap_mean, percentile_interval
from uterosynth.evaluation.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kid,
    mmd2_unbiased,
    prdc_items,
)


def _features(seed, n=300, f=16, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).standard_normal((f, f)) / np.sqrt(f)
    return torch.as_tensor(rng.standard_normal((n, f)) @ mix * scale + shift)


def test_frechet_distance_matches_scipy_sqrtm():
    a, b = _features(0), _features(1, shift=0.3, scale=1.5)
    mu1, s1 = a.mean(0).numpy(), np.cov(a.numpy(), rowvar=False)
    mu2, s2 = b.mean(0).numpy(), np.cov(b.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    ours = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(expected, rel=1e-4)


def test_frechet_distance_of_identical_sets_is_zero():
    a = _features(2)
    assert abs(frechet_distance(*feature_statistics(a), *feature_statistics(a))) < 1e-8


def test_small_sets_use_their_span_and_match_the_exact_low_rank_distance():
    # N + M - 1 < F: the distance in the sets' own span equals the nuclear-norm form of
    # Tr((S1 S2)^1/2) = ||A^T B||_* (S1 = A A^T), which needs no F x F eigendecomposition
    a, b = _features(5, n=8, f=96), _features(6, n=6, f=96, shift=0.4, scale=2.0)
    ca, cb = (a - a.mean(0)).numpy() / np.sqrt(7), (b - b.mean(0)).numpy() / np.sqrt(5)
    diff = (a.mean(0) - b.mean(0)).numpy()
    nuclear = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    expected = float(diff @ diff + (ca**2).sum() + (cb**2).sum() - 2 * nuclear)
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_from_features(a, b) == pytest.approx(
        frechet_distance(*feature_statistics(a), *feature_statistics(b)), rel=1e-5)


def test_kid_matches_torchmetrics_on_identical_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _features(3, n=120).float(), _features(4, n=120, shift=0.2).float()
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=3, subset_size=120)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    tm_mean, _ = metric.compute()
    ours, _ = kid(real, fake, subsets=3, subset_size=120)
    assert ours == pytest.approx(float(tm_mean), rel=1e-4)


def test_mmd2_unbiased_handles_unequal_sizes():
    a, b = _features(5, n=50), _features(5, n=80)[:80]
    same = mmd2_unbiased(a, _features(6, n=80))
    shifted = mmd2_unbiased(a, b + 1.0)
    assert abs(same) < 0.05 < shifted
    # direct formula with unequal sizes
    k = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    direct = ((kxx.sum() - kxx.trace()) / (50 * 49) + (kyy.sum() - kyy.trace()) / (80 * 79) - 2 * kxy.mean())
    assert mmd2_unbiased(a, b) == pytest.approx(float(direct), rel=1e-10)


def test_prdc_identical_and_disjoint_sets():
    a = _features(7, n=200)
    same = prdc_items(a, a.clone(), k=5)
    assert same.precision.mean() == 1.0 and same.recall.mean() == 1.0 and same.coverage.mean() == 1.0
    far = prdc_items(a, a + 100.0, k=5)
    assert far.precision.mean() == 0.0 and far.recall.mean() == 0.0
    assert far.density.mean() == 0.0 and far.coverage.mean() == 0.0


def test_bootstrap_helpers():
    mean, low, high = bootstrap_mean(np.arange(100.0), n_boot=500, seed=1)
    assert mean == 49.5 and low < 49.5 < high
    assert np.isnan(percentile_interval([float("nan")])[0])
    low, high = bootstrap_ci(lambda i: float(np.mean(i)), [10], n_boot=50, seed=0)
    assert 0 <= low <= high <= 9
