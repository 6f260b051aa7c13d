import numpy as np
import pytest
import scipy.linalg
from scipy import stats

from uterosynth.evaluation.metrics import feature_statistics, frechet_distance, frechet_distance_from_features
from uterosynth.evaluation.resampling import (
    block_assignment,
    cluster_bootstrap_indices,
    cluster_bootstrap_mean,
    fid_jackknife,
    group_codes,
    pair_bootstrap_mean,
    two_sample_jackknife,
)

D = 4
_RNG = np.random.default_rng(123)
_A = _RNG.standard_normal((D, D)) / np.sqrt(D)
_B = _RNG.standard_normal((D, D)) / np.sqrt(D)
S1, S2 = _A @ _A.T + 0.5 * np.eye(D), _B @ _B.T + 0.5 * np.eye(D)
MU1, MU2 = np.zeros(D), np.full(D, 0.3)
TRUE_FD = float(((MU1 - MU2) ** 2).sum() + np.trace(S1 + S2 - 2 * scipy.linalg.sqrtm(S1 @ S2).real))


def clustered(rng, mu, sigma, subjects, per, rho):
    """Items of ``subjects`` subjects, ``per`` each; a subject effect carries a fraction ``rho`` of the covariance.

    The items' marginal distribution is N(mu, sigma) whatever rho is, so the true Fréchet
    distance is known in closed form; rho only makes items of one subject correlated.
    """
    chol = np.linalg.cholesky(sigma)
    effect = rng.standard_normal((subjects, D)) @ chol.T * np.sqrt(rho)
    noise = rng.standard_normal((subjects, per, D)) @ chol.T * np.sqrt(1 - rho)
    return (mu + effect[:, None] + noise).reshape(-1, D), np.repeat(np.arange(subjects), per)


def test_group_codes_and_errors():
    assert group_codes(["s2", "s1", "s2", "s3"], 4).tolist() == [0, 1, 0, 2]
    assert group_codes(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="one subject id per item"):
        group_codes(["a"], 2)


def test_cluster_bootstrap_draws_whole_subjects():
    codes = group_codes(np.repeat(["a", "b", "c"], [1, 2, 3]), 6)
    idx = cluster_bootstrap_indices(codes, np.random.default_rng(0))
    drawn = codes[idx]
    for g in np.unique(drawn):  # every drawn subject comes with all its items, as often as drawn
        assert (drawn == g).sum() % (codes == g).sum() == 0


def test_block_assignment_keeps_subjects_together():
    codes = group_codes(np.repeat(np.arange(30), 3), 90)
    blocks = block_assignment(codes, 7, seed=1)
    for g in range(30):
        assert len(set(blocks[codes == g])) == 1
    sizes = np.bincount(blocks) // 3
    assert sizes.max() - sizes.min() <= 1 and len(sizes) == 7


def test_cluster_bootstrap_is_wider_than_item_bootstrap_for_correlated_items():
    rng = np.random.default_rng(0)
    subject_mean = rng.normal(0, 1, 40)
    values = np.repeat(subject_mean, 5) + rng.normal(0, 0.1, 200)
    groups = np.repeat(np.arange(40), 5)
    _, lo_c, hi_c, se_c = cluster_bootstrap_mean(values, groups, n_boot=500)
    _, lo_i, hi_i, se_i = cluster_bootstrap_mean(values, None, n_boot=500)
    assert se_c > 1.8 * se_i  # design effect sqrt(1 + (5 - 1) * ICC) ≈ 2.2
    assert hi_c - lo_c > hi_i - lo_i


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("subjects", [12, 40])
def test_point_estimates_lie_inside_their_intervals(seed, subjects):
    rng = np.random.default_rng(seed)
    x, gx = clustered(rng, MU1, S1, subjects, 3, 0.5)
    y, gy = clustered(rng, MU2, S2, subjects + 5, 2, 0.5)
    j = fid_jackknife(x, y, groups_real=gx, groups_fake=gy, seed=seed)
    assert j.ci_low <= j.value <= j.ci_high
    assert j.corrected_low <= j.corrected <= j.corrected_high
    mean, low, high, _ = cluster_bootstrap_mean(x[:, 0] > 0, gx, seed=seed)
    assert low <= mean <= high


def test_fid_jackknife_equals_generic_jackknife():
    rng = np.random.default_rng(3)
    x, gx = clustered(rng, MU1, S1, 15, 3, 0.3)
    y, gy = clustered(rng, MU2, S2, 11, 4, 0.3)
    fast = fid_jackknife(x, y, groups_real=gx, groups_fake=gy, n_blocks=6, seed=2)
    slow = two_sample_jackknife(lambda i, j: frechet_distance_from_features(x[i], y[j]), len(x), len(y),
                                groups_x=gx, groups_y=gy, n_blocks=6, seed=2)
    assert fast.value == pytest.approx(frechet_distance_from_features(x, y), rel=1e-9)
    for key in ("value", "bias", "se", "corrected"):
        assert getattr(fast, key) == pytest.approx(getattr(slow, key), rel=1e-7, abs=1e-10)


def test_fid_jackknife_of_small_sets_equals_the_full_dimensional_one():
    # 8 + 6 items of 64 features: the jackknife runs in the sets' 13-dimensional span
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 64)), rng.standard_normal((6, 64)) * 1.5 + 0.2
    gx, gy = [f"a{k // 2}" for k in range(8)], [f"b{k // 2}" for k in range(6)]

    def full(i, j):
        return frechet_distance(*feature_statistics(x[i]), *feature_statistics(y[j]))

    fast = fid_jackknife(x, y, groups_real=gx, groups_fake=gy, n_blocks=4, seed=1)
    slow = two_sample_jackknife(full, len(x), len(y), groups_x=gx, groups_y=gy, n_blocks=4, seed=1)
    for key in ("value", "se", "corrected"):
        assert getattr(fast, key) == pytest.approx(getattr(slow, key), rel=1e-6)


def _coverage(rho, unit, reps=200):
    hits, raw_bias, corrected_bias = 0, [], []
    for r in range(reps):
        rng = np.random.default_rng(r)
        x, gx = clustered(rng, MU1, S1, 50, 4, rho)
        y, gy = clustered(rng, MU2, S2, 50, 4, rho)
        groups = (gx, gy) if unit == "subject" else (None, None)
        j = fid_jackknife(x, y, groups_real=groups[0], groups_fake=groups[1], seed=r)
        hits += j.corrected_low <= TRUE_FD <= j.corrected_high
        raw_bias.append(j.value - TRUE_FD)
        corrected_bias.append(j.corrected - TRUE_FD)
    return hits / reps, float(np.mean(raw_bias)), float(np.mean(corrected_bias))


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_subject_jackknife_covers_the_true_frechet_distance(rho):
    coverage, raw_bias, corrected_bias = _coverage(rho, "subject")
    # 200 repetitions: accept what a binomial(200, 0.95) gives with probability 99.8 %
    low, high = stats.binom.ppf([0.001, 0.999], 200, 0.95) / 200
    assert low <= coverage <= high, coverage
    assert raw_bias > 0.05  # the plug-in FID is biased upwards at N = 200 ...
    assert abs(corrected_bias) < raw_bias / 3  # ... and the jackknife removes most of it


def test_item_jackknife_undercovers_when_slices_share_subjects():
    coverage, _, _ = _coverage(0.6, "item")
    assert coverage < 0.9


def _pair_coverage(reps=100):
    """Coverage of the true mean 0 by pair intervals: items independent, then 8 subjects of 4 slices."""
    from uterosynth.evaluation.bootstrap import bootstrap_mean
    from uterosynth.evaluation.image_metrics import random_pairs

    hits = {"units": 0, "pairs": 0, "subjects": 0, "slices": 0}
    subject = np.repeat(np.arange(8), 4)
    for r in range(reps):
        rng = np.random.default_rng(r)
        item = rng.standard_normal(20)
        i, j = random_pairs(20, 1000, r)
        v = item[i] + item[j] + 0.1 * rng.standard_normal(len(i))
        hits["units"] += _covers(pair_bootstrap_mean(v, i, j, n_items=20, n_boot=400, seed=r))
        hits["pairs"] += _covers(bootstrap_mean(v, n_boot=400, seed=r))
        item = rng.standard_normal(8)[subject] + 0.3 * rng.standard_normal(32)
        i, j = random_pairs(32, 1000, r)
        v = item[i] + item[j]
        groups = [f"s{k}" for k in subject]
        hits["subjects"] += _covers(pair_bootstrap_mean(v, i, j, groups, n_items=32, n_boot=400, seed=r))
        hits["slices"] += _covers(pair_bootstrap_mean(v, i, j, n_items=32, n_boot=400, seed=r))
    return {k: h / reps for k, h in hits.items()}


def _covers(result):
    return result[1] <= 0.0 <= result[2]


def test_pair_intervals_resample_items_and_subjects_not_pairs():
    # pairs of one set share items: an interval over pairs covers the mean a third of the time
    cover = _pair_coverage()
    assert cover["units"] >= 0.85 and cover["pairs"] <= 0.5
    assert cover["subjects"] >= 0.8 and cover["slices"] <= cover["subjects"] - 0.15


def test_pair_bootstrap_mean_is_the_plain_mean_inside_its_interval():
    v = np.array([0.2, 0.4, 0.9, 0.5])
    mean, low, high = pair_bootstrap_mean(v, np.array([0, 0, 1, 2]), np.array([1, 2, 2, 3]), n_items=4, seed=0)
    assert mean == pytest.approx(0.5) and low <= mean <= high
