"""Resampling over the right unit: subjects, not slices.

A subject contributes several correlated items (slices of one scan, crops of one volume).
Resampling items as if they were independent makes intervals too narrow, so every interval
here resamples **groups** (subjects) and takes all items of a drawn group:

* :func:`cluster_bootstrap_mean` — the cluster bootstrap (Davison & Hinkley 1997, §3.8) of a
  mean of per-item values (precision/recall/density/coverage indicators, per-item scores).
* :func:`two_sample_jackknife` — the delete-a-group jackknife (Quenouille 1956; Kott 2001,
  "The delete-a-group jackknife") of a statistic of two independent samples (Arvesen 1969): the
  groups of each sample are dealt into ``n_blocks`` blocks and one block is deleted at a time.
  It gives a standard error *and* a bias estimate. For estimators whose bias is ``b / N``, as the
  Fréchet distance's (Chong & Forsyth 2020), the bias-corrected value is the linear
  extrapolation in ``1 / N`` to ``N = ∞`` from ``N`` and ``N (G - 1) / G``.
* :func:`fid_jackknife` — the same for the Fréchet distance, from per-block feature moments
  (one pass over the data, then ``2 G`` small eigendecompositions).

Bootstrap resampling with replacement duplicates items, which biases a Fréchet distance (and a
kernel MMD) upwards, so a percentile interval of such a statistic can miss its own point
estimate. Jackknife intervals are symmetric about the estimate they are reported with: the
point estimate lies inside its interval by construction.

``groups=None`` means each item is its own group (independent items).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..core.stats import percentile_interval

__all__ = [
    "JackknifeEstimate",
    "block_assignment",
    "cluster_bootstrap_indices",
    "cluster_bootstrap_mean",
    "cluster_bootstrap_replicates",
    "fid_jackknife",
    "group_codes",
    "jackknife_from_replicates",
    "pair_bootstrap_mean",
    "two_sample_jackknife",
]

Groups = Sequence[Hashable] | np.ndarray | None


def group_codes(groups: Groups, n: int) -> np.ndarray:
    """Integer group codes ``0 … G-1`` (in order of first appearance) for ``n`` items.

    Args:
        groups: one group label (subject id) per item, or ``None`` (each item its own group).
        n: number of items.

    Raises:
        ValueError: ``groups`` does not hold one label per item.

    >>> group_codes(["b", "a", "b"], 3).tolist()
    [0, 1, 0]
    """
    if groups is None:
        return np.arange(n)
    labels = list(groups)
    if len(labels) != n:
        raise ValueError(f"groups: {len(labels)} labels for {n} items; give one subject id per item")
    first: dict[Hashable, int] = {}
    return np.asarray([first.setdefault(g, len(first)) for g in labels], dtype=np.int64)


def _members(codes: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


def cluster_bootstrap_indices(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Item indices of one cluster-bootstrap replicate: ``G`` groups drawn with replacement, all their items."""
    members = _members(codes)
    draw = rng.integers(0, len(members), size=len(members))
    return np.concatenate([members[g] for g in draw])


def cluster_bootstrap_replicates(values: np.ndarray, groups: Groups, n_boot: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """``(n_boot,)`` replicate means: each draws the groups with replacement and averages all their
    items (a ratio estimator when groups differ in size)."""
    values = np.asarray(values, dtype=np.float64)
    codes = group_codes(groups, values.size)
    n_groups = int(codes.max()) + 1
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    draw = rng.integers(0, n_groups, size=(n_boot, n_groups))
    return sums[draw].sum(1) / counts[draw].sum(1)


def cluster_bootstrap_mean(
    values: np.ndarray, groups: Groups = None, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float, float]:
    """Mean of per-item ``values`` with a cluster-bootstrap interval over groups.

    Each replicate draws the groups with replacement and averages the values of all their
    items (a ratio estimator when groups differ in size). The interval is the percentile
    interval of the replicates.

    Args:
        values: ``(N,)`` per-item values.
        groups: one subject id per item, or ``None`` (items independent: the ordinary bootstrap).
        n_boot: replicates; ``confidence``: interval coverage; ``seed``: reproducibility.

    Returns:
        ``(mean, low, high, se)`` with ``se`` the standard deviation of the replicates.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"),) * 4
    reps = cluster_bootstrap_replicates(values, groups, n_boot, np.random.default_rng(seed))
    mean = float(values.mean())
    low, high = percentile_interval(reps, confidence, estimate=mean)
    return mean, low, high, float(reps.std(ddof=1))


def pair_bootstrap_mean(
    values: np.ndarray, first: np.ndarray, second: np.ndarray, groups: Groups = None, *, n_items: int,
    n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of per-pair ``values`` with a bootstrap interval over the units the pairs are made of.

    Pairs of one set share items (and items share subjects), so they are not independent draws.
    Each replicate draws the units (subjects, or items when ``groups`` is ``None``) with
    replacement and weights a pair by the product of its two units' counts: the mean over all
    pairs of the resampled set (a U-statistic's bootstrap). Percentile interval.

    Args:
        values: ``(P,)`` one value per pair; ``first``, ``second``: ``(P,)`` item indices of each pair.
        groups: one subject id per item (``n_items`` of them), or ``None`` (items independent).
        n_items: items of the set the pairs index.

    Returns:
        ``(mean, low, high)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"),) * 3
    codes = group_codes(groups, n_items)
    n_units = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n_units))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_units), rng.integers(0, n_units, n_boot * n_units)), 1.0)
    weights = counts[:, codes[np.asarray(first)]] * counts[:, codes[np.asarray(second)]]
    total = weights.sum(1)
    reps = np.where(total > 0, weights @ values / np.where(total > 0, total, 1.0), np.nan)
    mean = float(values.mean())
    low, high = percentile_interval(reps, confidence, estimate=mean)
    return mean, low, high


def block_assignment(codes: np.ndarray, n_blocks: int, seed: int = 0) -> np.ndarray:
    """Deal the groups at random into ``min(n_blocks, G)`` blocks of equal group counts (±1).

    Returns the block of each item; all items of a group share a block.
    """
    n_groups = int(codes.max()) + 1
    blocks = min(n_blocks, n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    block_of_group = np.empty(n_groups, dtype=np.int64)
    block_of_group[order] = np.arange(n_groups) % blocks
    return block_of_group[codes]


@dataclass(frozen=True)
class JackknifeEstimate:
    """A statistic of two samples with its delete-a-group jackknife standard error and bias.

    Attributes:
        value: the statistic on all items.
        bias: jackknife estimate of ``E[value] - θ`` (the sum over both samples).
        se: jackknife standard error.
        ci_low, ci_high: ``value ± t · se`` (Student t with ``df`` degrees of freedom): the
            interval for the quantity ``value`` estimates at this sample size.
        corrected: ``value - bias``, the bias-corrected estimate.
        corrected_low, corrected_high: ``corrected ± t · se``.
        blocks: blocks of the first and second sample.
        df: degrees of freedom of the t quantile, ``min(blocks) - 1``.
        confidence: coverage of both intervals.
    """

    value: float
    bias: float
    se: float
    ci_low: float
    ci_high: float
    corrected: float
    corrected_low: float
    corrected_high: float
    blocks: tuple[int, int]
    df: int
    confidence: float


def jackknife_from_replicates(
    value: float, reps_x: Sequence[float], reps_y: Sequence[float], *, confidence: float = 0.95,
) -> JackknifeEstimate:
    """Combine delete-a-group replicates of two independent samples (Arvesen 1969; Kott 2001).

    For a sample with ``G`` blocks and replicates ``θ_(g)`` (block ``g`` deleted, the other
    sample whole): ``bias = (G - 1)(mean θ_(g) - θ)`` and ``var = (G - 1)/G Σ (θ_(g) - mean)²``;
    the two samples' biases and variances add. A sample with fewer than two blocks adds nothing.
    """
    bias, var, df_blocks = 0.0, 0.0, []
    for reps in (np.asarray(reps_x, dtype=np.float64), np.asarray(reps_y, dtype=np.float64)):
        g = reps.size
        df_blocks.append(g)
        if g < 2:
            continue
        mean = reps.mean()
        bias += (g - 1) * (mean - value)
        var += (g - 1) / g * float(((reps - mean) ** 2).sum())
    se = float(np.sqrt(var))
    usable = [g for g in df_blocks if g >= 2]
    df = max(min(usable) - 1, 1) if usable else 1
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se if usable else float("nan")
    corrected = value - bias
    return JackknifeEstimate(float(value), float(bias), se, value - half, value + half, float(corrected),
                             corrected - half, corrected + half, (df_blocks[0], df_blocks[1]), int(df), confidence)


def two_sample_jackknife(
    statistic: Callable[[np.ndarray, np.ndarray], float], n_x: int, n_y: int, *, groups_x: Groups = None,
    groups_y: Groups = None, n_blocks: int = 20, confidence: float = 0.95, seed: int = 0,
) -> JackknifeEstimate:
    """Delete-a-group jackknife of ``statistic(index_x, index_y)`` over the groups of both samples.

    Args:
        statistic: called with item index arrays of the first and second sample.
        n_x, n_y: items in each sample.
        groups_x, groups_y: subject id per item (``None``: items independent).
        n_blocks: blocks per sample (``2 n_blocks + 1`` calls of ``statistic``).
        confidence: interval coverage; ``seed``: how groups are dealt into blocks.
    """
    bx = block_assignment(group_codes(groups_x, n_x), n_blocks, seed)
    by = block_assignment(group_codes(groups_y, n_y), n_blocks, seed + 1)
    all_x, all_y = np.arange(n_x), np.arange(n_y)
    value = statistic(all_x, all_y)
    reps_x = [statistic(all_x[bx != b], all_y) for b in range(int(bx.max()) + 1)]
    reps_y = [statistic(all_x, all_y[by != b]) for b in range(int(by.max()) + 1)]
    return jackknife_from_replicates(value, reps_x, reps_y, confidence=confidence)


def _block_moments(x: torch.Tensor, blocks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre, per-block counts, sums and sums of outer products of centred features."""
    centre = x.mean(0)
    xc = x - centre
    b = torch.as_tensor(blocks)
    n_blocks = int(blocks.max()) + 1
    counts = torch.bincount(b, minlength=n_blocks).to(x.dtype)
    sums = torch.zeros(n_blocks, x.shape[1], dtype=x.dtype).index_add_(0, b, xc)
    outer = torch.stack([xc[b == k].T @ xc[b == k] for k in range(n_blocks)])
    return centre, counts, sums, outer


def _moments_without(centre, counts, sums, outer, drop: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(len(counts), dtype=torch.bool)
    if drop is not None:
        keep[drop] = False
    n = counts[keep].sum()
    mean_c = sums[keep].sum(0) / n
    sigma = (outer[keep].sum(0) - n * torch.outer(mean_c, mean_c)) / (n - 1)
    return centre + mean_c, sigma


def fid_jackknife(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, groups_real: Groups = None,
    groups_fake: Groups = None, n_blocks: int = 20, confidence: float = 0.95, seed: int = 0,
) -> JackknifeEstimate:
    """Fréchet distance of two feature sets with its delete-a-group jackknife over subjects.

    Equal to :func:`two_sample_jackknife` with the Fréchet distance as statistic, but the
    deleted-block means and covariances come from per-block moments instead of new passes
    over the features. ``corrected`` is the jackknife's ``1/N`` extrapolation, an estimate of
    FID∞ (the Fréchet distance between the two distributions).

    Args:
        real, fake: features ``(N, F)`` and ``(M, F)``.
        groups_real, groups_fake: subject id per item (``None``: items independent).
    """
    from ..core.threads import torch_threads
    from .metrics import frechet_distance, span_coordinates

    x, y = span_coordinates(real, fake)  # exact; small eigendecompositions when N + M <= F
    bx = block_assignment(group_codes(groups_real, x.shape[0]), n_blocks, seed)
    by = block_assignment(group_codes(groups_fake, y.shape[0]), n_blocks, seed + 1)
    with torch_threads(1):  # small dense linear algebra: one thread (see frechet_distance)
        mx, my = _block_moments(x, bx), _block_moments(y, by)
    full_x, full_y = _moments_without(*mx, None), _moments_without(*my, None)
    value = frechet_distance(*full_x, *full_y)
    reps_x = [frechet_distance(*_moments_without(*mx, b), *full_y) for b in range(len(mx[1]))]
    reps_y = [frechet_distance(*full_x, *_moments_without(*my, b)) for b in range(len(my[1]))]
    return jackknife_from_replicates(value, reps_x, reps_y, confidence=confidence)
