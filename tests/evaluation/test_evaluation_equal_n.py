import numpy as np
import pytest
import torch

from uterosynth.evaluation.equal_n import (
    UnequalNError,
    common_n,
    fid_at_n,
    fid_extrapolated,
    frd_at_n,
    kid_at_n,
    mmd2_jackknife,
    per_item_groups,
    prdc_at_n,
    resolve_n,
)
from uterosynth.evaluation.metrics import frechet_distance_from_features, mmd2_unbiased
from uterosynth.evaluation.radiomics import frd_available
from uterosynth.evaluation.resampling import two_sample_jackknife

F = 8


def gaussian(seed, n, shift=0.0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.standard_normal((n, F)) + shift)


def test_common_n_is_the_smallest_set():
    assert common_n({"reference": 240, "synthetic": 64, "real_vs_real": 30}) == 30
    assert common_n({"a": 100, "b": 80}, n=50) == 50


def test_common_n_refuses_an_n_larger_than_a_set():
    with pytest.raises(UnequalNError, match="set 'real_vs_real' has only 30 items"):
        common_n({"reference": 240, "real_vs_real": 30}, n=64)
    assert common_n({"reference": 240, "real_vs_real": 30}, n=64, allow_unequal_n=True) is None


@pytest.mark.parametrize("sizes", [{}, {"a": 1}])
def test_common_n_rejects_empty_or_tiny(sizes):
    with pytest.raises(ValueError):
        common_n(sizes)


def test_resolve_n_draws_and_unequal():
    assert resolve_n(30, 30, None, draws=10).draws == 1  # whole sets of N items: nothing to draw
    plan = resolve_n(240, 64, None, draws=10)
    assert (plan.n, plan.draws) == (64, 10)
    with pytest.raises(UnequalNError):
        resolve_n(240, 64, 100, draws=10)
    assert resolve_n(240, 64, None, draws=10, allow_unequal_n=True).n is None
    with pytest.raises(UnequalNError):
        fid_at_n(gaussian(0, 50), gaussian(1, 20), n=40)


def test_equal_n_removes_the_size_advantage():
    # one distribution: at unequal N the larger set "wins"; at one common N both sets score alike
    reference = gaussian(0, 640)
    small, large = gaussian(1, 80), gaussian(2, 640)
    raw_small = frechet_distance_from_features(reference, small)
    raw_large = frechet_distance_from_features(reference, large)
    assert raw_small > 2 * raw_large
    fid_small = fid_at_n(reference, small, n=80, draws=10)[0]
    fid_large = fid_at_n(reference, large, n=80, draws=10)[0]
    assert fid_small.details["n"] == fid_large.details["n"] == 80 and fid_large.details["draws"] == 10
    assert abs(fid_small.value - fid_large.value) < 0.35 * fid_small.value
    assert fid_large.ci_low <= fid_small.value <= fid_large.ci_high


def test_fid_inf_is_close_to_the_truth_while_fid_at_n_is_biased():
    # N(0, I) vs N(0.5, I) in 8 dims: the Fréchet distance is 8 * 0.25 = 2; average over 20 repetitions
    runs = [fid_at_n(gaussian(s, 150), gaussian(50 + s, 150, shift=0.5), draws=1, seed=s) for s in range(20)]
    fid = np.mean([r[0].value for r in runs])
    fid_inf = np.mean([r[1].value for r in runs])
    chong_forsyth = np.mean([r[1].details["chong_forsyth"]["fid_inf"] for r in runs])
    assert fid - 2.0 > 0.1  # FID at N = 150 is biased upwards (by about 16 / N)
    assert abs(fid_inf - 2.0) < 0.3 * (fid - 2.0)
    assert abs(chong_forsyth - 2.0) < 0.5 * (fid - 2.0)
    assert np.mean([r[0].details["bias_at_n"] for r in runs]) > 0.05
    assert sum(r[1].ci_low <= 2.0 <= r[1].ci_high for r in runs) >= 16


def test_chong_forsyth_extrapolation_recovers_a_linear_bias():
    # identical distributions: FID(N) ≈ b / N, so the intercept is near zero and the slope positive
    extra = fid_extrapolated(gaussian(5, 2000), gaussian(6, 2000), n=2000, points=5, min_fraction=0.2)
    assert len(extra.ns) == 5 and extra.ns[-1] == 2000 and extra.ns[0] == 400
    assert extra.slope > 0 and abs(extra.fid_inf) < 0.05


def test_mmd2_jackknife_matches_direct_computation():
    x, y = gaussian(7, 40), gaussian(8, 30, shift=0.3)
    gx, gy = np.repeat(np.arange(20), 2), np.repeat(np.arange(10), 3)
    fast = mmd2_jackknife(x, y, groups_x=gx, groups_y=gy, n_blocks=5, seed=1)
    slow = two_sample_jackknife(lambda i, j: mmd2_unbiased(x[torch.as_tensor(i)], y[torch.as_tensor(j)]), 40, 30,
                                groups_x=gx, groups_y=gy, n_blocks=5, seed=1)
    assert fast.value == pytest.approx(mmd2_unbiased(x, y), rel=1e-9)
    assert fast.se == pytest.approx(slow.se, rel=1e-7) and fast.bias == pytest.approx(slow.bias, abs=1e-12)


def test_kid_at_n_is_unbiased_across_n():
    ref = gaussian(9, 800)
    values = [kid_at_n(ref, gaussian(10 + k, 800), n=n, draws=4).value for k, n in enumerate((50, 400))]
    assert all(abs(v) < 0.05 for v in values)  # near zero at every N, unlike FID


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_fake", [30, 90])
def test_every_metric_lies_inside_its_interval(seed, n_fake):
    ref, fake = gaussian(seed, 120), gaussian(100 + seed, n_fake, shift=0.2)
    groups = per_item_groups([f"s{k // 3}" for k in range(120)])
    results = [*fid_at_n(ref, fake, draws=3, groups_real=groups, seed=seed),
               kid_at_n(ref, fake, draws=3, groups_real=groups, seed=seed),
               *prdc_at_n(ref, fake, draws=3, groups_real=groups, n_boot=200, seed=seed)]
    for r in results:
        assert r.ci_low <= r.value <= r.ci_high, r.name
        assert r.n == {"real": n_fake, "synthetic": n_fake}
        assert r.details["unit"] == "subject"


def test_per_item_groups():
    assert per_item_groups(None) is None and per_item_groups(["", ""]) is None
    assert per_item_groups(["a", "", "a"]) == ["a", "item-1", "a"]


@pytest.mark.skipif(not frd_available(), reason="frd-score / pyradiomics-bhklab not installed")
def test_frd_at_n_records_its_subsample():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((60, 5)) + 3, rng.standard_normal((40, 5)) + 3.5
    r = frd_at_n(real, fake, draws=2, n_blocks=5)
    assert r.details["radiomics_items"] == 40 and r.details["draws"] == 2
    assert r.ci_low <= r.value <= r.ci_high
