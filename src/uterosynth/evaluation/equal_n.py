"""Distributional metrics at one common N, with intervals over subjects.

A Fréchet distance is biased upwards by about ``b / N`` (Chong & Forsyth 2020, "Effectively
Unbiased FID and Inception Score and where to find them"): two samples of one distribution give
FID 287.7 at N = 80 and 55.5 at N = 640 with the same features. So a larger set "beats" a
smaller one by size alone. Every function here therefore compares the two sets at **one common
N**: a set larger than N is subsampled without replacement, ``draws`` times, and the metric is
the mean over the draws (the count is reported). Asking for an N larger than a set refuses with
:class:`UnequalNError` unless ``allow_unequal_n=True``, which compares the whole sets and says so
in the warnings.

Pick one N for every set of an evaluation with :func:`common_n` (the smallest set by default),
then call the ``*_at_n`` functions with it for each set against the reference.

What each metric reports:

* ``kid`` (lead with it): the unbiased MMD² U-statistic (Bińkowski et al. 2018) on all N items
  of each draw; its expectation does not depend on N.
* ``fid``: FID at N (the plug-in estimate, biased; comparable only between sets at the same N)
  and ``fid_inf``: the bias-corrected FID∞ — the delete-a-group jackknife's ``1/N``
  extrapolation, with the Chong & Forsyth extrapolation (FID at several N between
  ``min_fraction · N`` and N, least-squares line in ``1/N``, intercept) in its details.
* ``precision``, ``recall``, ``density``, ``coverage`` at N.
* ``frd`` at N from radiomics features.

Intervals: FID, FID∞, KID and FRD use the delete-a-group jackknife over **subjects**
(:mod:`.resampling`), ``estimate ± t · se``; the k-NN metrics a cluster bootstrap of their
per-item indicators over subjects, ``estimate ± z · se``. The standard error of a draw is
averaged over the draws, which bounds the standard error of their mean from above (a
conservative interval). Every interval is centred on the value it is reported with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..core.threads import torch_threads
from .bootstrap import MetricResult
from .metrics import FID_STABLE_N, frechet_distance_from_features, prdc_items
from .resampling import (
    Groups,
    block_assignment,
    cluster_bootstrap_mean,
    fid_jackknife,
    group_codes,
    jackknife_from_replicates,
    two_sample_jackknife,
)

__all__ = [
    "EqualN",
    "FIDExtrapolation",
    "UnequalNError",
    "common_n",
    "fid_at_n",
    "fid_extrapolated",
    "frd_at_n",
    "kid_at_n",
    "mmd2_jackknife",
    "per_item_groups",
    "prdc_at_n",
    "resolve_n",
    "subsample_draws",
]


class UnequalNError(ValueError):
    """Two sets would be compared at different sizes without ``allow_unequal_n``."""


def common_n(sizes: Mapping[str, int], *, n: int | None = None, allow_unequal_n: bool = False) -> int | None:
    """The one N every set of an evaluation is compared at.

    Args:
        sizes: items per set, e.g. ``{"reference": 240, "synthetic": 64, "real_vs_real": 30}``.
        n: the N asked for (``None``: the smallest set).
        allow_unequal_n: with ``n`` larger than a set, compare whole sets instead of refusing
            (returns ``None``: no common N).

    Raises:
        UnequalNError: ``n`` exceeds the size of a set and ``allow_unequal_n`` is off.
        ValueError: no sets, or ``n < 2``.

    >>> common_n({"reference": 240, "synthetic": 64, "real_vs_real": 30})
    30
    """
    if not sizes:
        raise ValueError("common_n: no sets given")
    name, smallest = min(sizes.items(), key=lambda kv: kv[1])
    if n is None:
        n = smallest
    if n < 2:
        raise ValueError(f"common N = {n}: every set needs at least 2 items (set '{name}' has {smallest})")
    if n > smallest:
        if allow_unequal_n:
            return None
        raise UnequalNError(
            f"equal-N comparison at N={n}, but set '{name}' has only {smallest} items: lower N to at most "
            f"{smallest}, add items to '{name}', or set allow_unequal_n to compare sets of different sizes "
            "(FID is then biased in favour of the larger set)"
        )
    return int(n)


@dataclass(frozen=True)
class EqualN:
    """How two sets were brought to one N: ``n`` items each (``None``: whole, unequal sets) over ``draws`` subsamples."""

    n: int | None
    draws: int
    sizes: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "draws": self.draws, "set_sizes": {"real": self.sizes[0], "synthetic": self.sizes[1]},
                "equal_n": self.n is not None, "sampling": "without replacement"}


def resolve_n(n_real: int, n_fake: int, n: int | None, *, draws: int, allow_unequal_n: bool = False) -> EqualN:
    """The common N of one comparison and the number of subsample draws it needs.

    ``n=None`` takes the smaller set's size. Whole sets of exactly N items need one draw.

    Raises:
        UnequalNError: ``n`` exceeds a set's size without ``allow_unequal_n``.
    """
    if draws < 1:
        raise ValueError(f"draws={draws}: need at least one subsample draw")
    if n is None and allow_unequal_n:
        return EqualN(None, 1, (n_real, n_fake))
    m = common_n({"real": n_real, "synthetic": n_fake}, n=n, allow_unequal_n=allow_unequal_n)
    if m is None:
        return EqualN(None, 1, (n_real, n_fake))
    return EqualN(m, 1 if n_real == n_fake == m else draws, (n_real, n_fake))


def subsample_draws(size: int, n: int | None, draws: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``draws`` index arrays of ``n`` items drawn without replacement (all items, once, when ``n`` is ``None`` or ``size``)."""
    if n is None or n >= size:
        return [np.arange(size)] * draws
    return [np.sort(rng.choice(size, n, replace=False)) for _ in range(draws)]


def _pairs(plan: EqualN, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    a = subsample_draws(plan.sizes[0], plan.n, plan.draws, rng)
    b = subsample_draws(plan.sizes[1], plan.n, plan.draws, rng)
    return list(zip(a, b, strict=True))


def _sub(groups: Groups, idx: np.ndarray) -> list | None:
    if groups is None:
        return None
    labels = list(groups)
    return [labels[i] for i in idx]


def _unit(groups_real: Groups, groups_fake: Groups) -> str:
    return "subject" if groups_real is not None or groups_fake is not None else "item"


def _warnings(plan: EqualN, label: str) -> list[str]:
    if plan.n is None:
        return [f"{label}: sets compared at unequal N ({plan.sizes[0]} vs {plan.sizes[1]}; allow_unequal_n): "
                "the value is not comparable with other sets"]
    return []


def _as64(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)


@dataclass(frozen=True)
class FIDExtrapolation:
    """FID∞ by Chong & Forsyth's extrapolation: ``FID(N) ≈ fid_inf + slope / N`` fitted on ``ns``."""

    fid_inf: float
    slope: float
    ns: tuple[int, ...]
    values: tuple[float, ...]


def fid_extrapolated(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, n: int | None = None, points: int = 5,
    min_fraction: float = 0.2, draws: int = 3, seed: int = 0,
) -> FIDExtrapolation:
    """Chong & Forsyth (2020) FID∞: FID at ``points`` sizes from ``min_fraction · n`` to ``n``, line in ``1/N``.

    The sizes are evenly spaced in ``1/N``; at each, FID is averaged over ``draws`` pairs of
    subsamples drawn without replacement; the intercept of the least-squares line
    ``FID = fid_inf + slope / N`` is FID∞ and ``slope / n`` the bias of FID at ``n``.

    Args:
        real, fake: features ``(N, F)`` and ``(M, F)``.
        n: the largest size (default the smaller set's).
    """
    x, y = _as64(real), _as64(fake)
    n = min(x.shape[0], y.shape[0]) if n is None else n
    lowest = max(2, int(round(min_fraction * n)))
    ns = sorted({int(round(1 / v)) for v in np.linspace(1 / n, 1 / lowest, points)})
    rng = np.random.default_rng(seed)
    values = []
    with torch_threads(1):  # small dense linear algebra: one thread (see frechet_distance)
        for size in ns:
            per = []
            for _ in range(draws):
                i = torch.as_tensor(rng.choice(x.shape[0], size, replace=False))
                j = torch.as_tensor(rng.choice(y.shape[0], size, replace=False))
                per.append(frechet_distance_from_features(x[i], y[j]))
            values.append(float(np.mean(per)))
    slope, intercept = np.polyfit(1.0 / np.asarray(ns, dtype=np.float64), values, 1) if len(ns) > 1 else (0.0, values[0])
    return FIDExtrapolation(float(intercept), float(slope), tuple(ns), tuple(values))


def _t_half(se: float, df: int, confidence: float) -> float:
    return float(stats.t.ppf((1 + confidence) / 2, max(df, 1))) * se


def fid_at_n(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, n: int | None = None, draws: int = 10,
    groups_real: Groups = None, groups_fake: Groups = None, n_blocks: int = 20, allow_unequal_n: bool = False,
    confidence: float = 0.95, seed: int = 0, extrapolation_points: int = 5, extrapolation_min_fraction: float = 0.2,
    name: str = "fid",
) -> list[MetricResult]:
    """FID at N and the bias-corrected FID∞, each with a jackknife interval over subjects.

    Args:
        real, fake: features ``(N_r, F)`` and ``(N_s, F)``.
        n: the common N (see :func:`common_n`; default the smaller set).
        draws: subsample pairs when a set is larger than ``n``.
        groups_real, groups_fake: subject id per item (``None``: items independent).
        n_blocks: jackknife blocks per set.
        name: ``fid`` or ``fid_2.5d``; the second result is ``<name>_inf``.

    Returns:
        ``[fid, fid_inf]``: ``fid`` is the mean FID at N over the draws with ``± t · se``;
        ``fid_inf`` the mean jackknife-corrected value with the same ``se``. Details hold
        ``bias_at_n`` (``fid - fid_inf``) and the Chong & Forsyth extrapolation.

    Raises:
        UnequalNError: ``n`` exceeds a set without ``allow_unequal_n``.
    """
    x, y = _as64(real), _as64(fake)
    plan = resolve_n(x.shape[0], y.shape[0], n, draws=draws, allow_unequal_n=allow_unequal_n)
    jacks = [fid_jackknife(x[torch.as_tensor(i)], y[torch.as_tensor(j)], groups_real=_sub(groups_real, i),
                           groups_fake=_sub(groups_fake, j), n_blocks=n_blocks, confidence=confidence, seed=seed + d)
             for d, (i, j) in enumerate(_pairs(plan, seed))]
    value = float(np.mean([jk.value for jk in jacks]))
    corrected = float(np.mean([jk.corrected for jk in jacks]))
    se = float(np.mean([jk.se for jk in jacks]))
    half = _t_half(se, min(jk.df for jk in jacks), confidence)
    size = plan.n or min(plan.sizes)
    extra = fid_extrapolated(x, y, n=size, points=extrapolation_points, min_fraction=extrapolation_min_fraction,
                             seed=seed)
    n_used = {"real": plan.n or plan.sizes[0], "synthetic": plan.n or plan.sizes[1]}
    common = {**plan.as_dict(), "feature_dim": int(x.shape[1]), "interval": "delete-a-group jackknife, value ± t·se",
              "unit": _unit(groups_real, groups_fake), "jackknife_blocks": list(jacks[0].blocks), "se": se,
              "draw_std": float(np.std([jk.value for jk in jacks]))}
    warn = _warnings(plan, name.upper())
    if size <= x.shape[1]:
        warn.append(f"{name.upper()}: N={size} <= feature dimension {x.shape[1]}: the covariance is singular")
    if size < FID_STABLE_N:
        warn.append(f"{name.upper()}: N={size} < {FID_STABLE_N}: FID at N is biased upwards by about "
                    f"{value - corrected:.3g}; compare it only at the same N, or read {name}_inf")
    fid = MetricResult(name, value, value - half, value + half, n_used, "lower", confidence, tuple(warn),
                       {**common, "fid_inf": corrected, "bias_at_n": value - corrected})
    fid_inf = MetricResult(f"{name}_inf", corrected, corrected - half, corrected + half, n_used, "lower", confidence,
                           tuple(_warnings(plan, name.upper())),
                           {**common, "method": "jackknife 1/N extrapolation (Quenouille); Chong & Forsyth 2020 "
                                               "line in 1/N alongside", "fid_at_n": value,
                            "chong_forsyth": {"fid_inf": extra.fid_inf, "slope": extra.slope, "ns": list(extra.ns),
                                              "values": list(extra.values)}})
    return [fid, fid_inf]


def _poly_kernel(a: torch.Tensor, b: torch.Tensor, degree: int, gamma: float, coef: float) -> torch.Tensor:
    return (a @ b.T * gamma + coef) ** degree


def _kernel_block_sums(a: torch.Tensor, b: torch.Tensor, ba: np.ndarray, bb: np.ndarray, *, same: bool, degree: int,
                       gamma: float, coef: float, chunk: int = 1024) -> torch.Tensor:
    """``(G_a, G_b)`` sums of ``k(a_i, b_j)`` per pair of blocks (the diagonal ``i = j`` left out when ``same``)."""
    ga, gb = int(ba.max()) + 1, int(bb.max()) + 1
    onehot_b = torch.nn.functional.one_hot(torch.as_tensor(bb), gb).to(a.dtype)
    rows = torch.as_tensor(ba)
    out = torch.zeros(ga, gb, dtype=a.dtype)
    for s in range(0, a.shape[0], chunk):
        k = _poly_kernel(a[s : s + chunk], b, degree, gamma, coef)
        if same:
            idx = torch.arange(s, min(s + chunk, a.shape[0]))
            k[idx - s, idx] = 0
        out.index_add_(0, rows[s : s + chunk], k @ onehot_b)
    return out


def mmd2_jackknife(
    x: torch.Tensor, y: torch.Tensor, *, groups_x: Groups = None, groups_y: Groups = None, n_blocks: int = 20,
    degree: int = 3, gamma: float | None = None, coef: float = 1.0, confidence: float = 0.95, seed: int = 0,
):
    """Unbiased MMD² (polynomial kernel, Bińkowski et al. 2018 eq. 3) on all items, with its jackknife over subjects.

    The kernel is summed per pair of blocks once; every deleted-block replicate follows from
    those sums, so the cost is one pass over the ``N × M`` kernel.
    """
    x, y = _as64(x), _as64(y)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    bx = block_assignment(group_codes(groups_x, x.shape[0]), n_blocks, seed)
    by = block_assignment(group_codes(groups_y, y.shape[0]), n_blocks, seed + 1)
    kw = {"degree": degree, "gamma": gamma, "coef": coef}
    with torch_threads(1):  # small dense linear algebra: one thread (see frechet_distance)
        sxx = _kernel_block_sums(x, x, bx, bx, same=True, **kw)
        syy = _kernel_block_sums(y, y, by, by, same=True, **kw)
        sxy = _kernel_block_sums(x, y, bx, by, same=False, **kw)
    cx = torch.bincount(torch.as_tensor(bx)).to(torch.float64)
    cy = torch.bincount(torch.as_tensor(by)).to(torch.float64)

    def mmd(xx: torch.Tensor, yy: torch.Tensor, xy: torch.Tensor, m: torch.Tensor, n: torch.Tensor) -> float:
        return float(xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n))

    m, n = cx.sum(), cy.sum()
    total = (sxx.sum(), syy.sum(), sxy.sum())
    value = mmd(*total, m, n)
    reps_x = [mmd(total[0] - 2 * sxx[g].sum() + sxx[g, g], total[1], total[2] - sxy[g].sum(), m - cx[g], n)
              for g in range(len(cx))]
    reps_y = [mmd(total[0], total[1] - 2 * syy[g].sum() + syy[g, g], total[2] - sxy[:, g].sum(), m, n - cy[g])
              for g in range(len(cy))]
    return jackknife_from_replicates(value, reps_x, reps_y, confidence=confidence)


def kid_at_n(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, n: int | None = None, draws: int = 10,
    groups_real: Groups = None, groups_fake: Groups = None, n_blocks: int = 20, allow_unequal_n: bool = False,
    degree: int = 3, gamma: float | None = None, coef: float = 1.0, confidence: float = 0.95, seed: int = 0,
) -> MetricResult:
    """KID at N: the unbiased MMD² on all N items of each draw, mean over draws, jackknife interval over subjects.

    KID is unbiased at every N, so it is the metric to lead with; the U-statistic on all items
    has the same expectation as the usual mean over random subsets (torchmetrics) and a smaller
    variance. The interval is ``value ± t · se`` (it can reach below zero, as KID can).
    """
    x, y = _as64(real), _as64(fake)
    plan = resolve_n(x.shape[0], y.shape[0], n, draws=draws, allow_unequal_n=allow_unequal_n)
    jacks = [mmd2_jackknife(x[torch.as_tensor(i)], y[torch.as_tensor(j)], groups_x=_sub(groups_real, i),
                            groups_y=_sub(groups_fake, j), n_blocks=n_blocks, degree=degree, gamma=gamma, coef=coef,
                            confidence=confidence, seed=seed + d)
             for d, (i, j) in enumerate(_pairs(plan, seed))]
    value = float(np.mean([jk.value for jk in jacks]))
    se = float(np.mean([jk.se for jk in jacks]))
    half = _t_half(se, min(jk.df for jk in jacks), confidence)
    warn = _warnings(plan, "KID")
    size = plan.n or min(plan.sizes)
    if size < 100:
        warn.append(f"KID: N={size} < 100: the estimate is noisy (its interval says how noisy)")
    return MetricResult("kid", value, value - half, value + half,
                        {"real": plan.n or plan.sizes[0], "synthetic": plan.n or plan.sizes[1]}, "lower", confidence,
                        tuple(warn), {**plan.as_dict(), "estimator": "unbiased MMD² U-statistic on all items",
                                      "kernel": f"polynomial degree {degree}", "bias": "none (unbiased)",
                                      "interval": "delete-a-group jackknife, value ± t·se",
                                      "unit": _unit(groups_real, groups_fake), "se": se,
                                      "jackknife_blocks": list(jacks[0].blocks),
                                      "draw_std": float(np.std([jk.value for jk in jacks]))})


def prdc_at_n(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, n: int | None = None, draws: int = 10,
    groups_real: Groups = None, groups_fake: Groups = None, k: int = 5, allow_unequal_n: bool = False,
    n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> list[MetricResult]:
    """Precision, recall, density and coverage at N (k-NN manifolds on N items per set).

    k-NN radii shrink as N grows, so these metrics also depend on N. Per draw, the per-item
    indicators are averaged and their standard error taken by a cluster bootstrap over the
    subjects of the set they belong to (synthetic for precision/density, real for
    recall/coverage; manifolds held fixed). Reported: the mean over draws ``± z · se``.
    """
    x = torch.as_tensor(np.asarray(real) if not isinstance(real, torch.Tensor) else real, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(fake) if not isinstance(fake, torch.Tensor) else fake, dtype=torch.float32)
    plan = resolve_n(x.shape[0], y.shape[0], n, draws=draws, allow_unequal_n=allow_unequal_n)
    per: dict[str, list[tuple[float, float]]] = {m: [] for m in ("precision", "recall", "density", "coverage")}
    for d, (i, j) in enumerate(_pairs(plan, seed)):
        items = prdc_items(x[torch.as_tensor(i)], y[torch.as_tensor(j)], k=k)
        for name, values, groups in (("precision", items.precision, _sub(groups_fake, j)),
                                     ("density", items.density, _sub(groups_fake, j)),
                                     ("recall", items.recall, _sub(groups_real, i)),
                                     ("coverage", items.coverage, _sub(groups_real, i))):
            mean, _, _, se = cluster_bootstrap_mean(values, groups, n_boot=n_boot, confidence=confidence,
                                                    seed=seed + d)
            per[name].append((mean, se))
    z = float(stats.norm.ppf((1 + confidence) / 2))
    size = plan.n or min(plan.sizes)
    warn = _warnings(plan, "PRDC")
    if size < 1000:
        warn.append(f"k-NN manifold metrics at N={size} < 1000 are unstable (Naeem et al. 2020 use 10 000)")
    out = []
    for name in ("precision", "recall", "density", "coverage"):
        value = float(np.mean([v for v, _ in per[name]]))
        se = float(np.mean([s for _, s in per[name]]))
        low, high = value - z * se, value + z * se
        if name != "density":
            low, high = max(low, 0.0), min(high, 1.0)
        out.append(MetricResult(name, value, low, high,
                                {"real": plan.n or plan.sizes[0], "synthetic": plan.n or plan.sizes[1]},
                                "closer_to_1" if name == "density" else "higher", confidence, tuple(warn),
                                {**plan.as_dict(), "k": k, "se": se, "unit": _unit(groups_real, groups_fake),
                                 "interval": "cluster bootstrap of the per-item indicators, value ± z·se"}))
    return out


def frd_at_n(
    real: np.ndarray, fake: np.ndarray, *, n: int | None = None, draws: int = 3, groups_real: Groups = None,
    groups_fake: Groups = None, n_blocks: int = 10, allow_unequal_n: bool = False, version: str = "v1",
    confidence: float = 0.95, seed: int = 0,
) -> MetricResult:
    """FRD at N from radiomics features ``(N, R)``, with a jackknife interval over subjects.

    Radiomics are slow: extract them for ``min(common N, frd.max_items)`` items per set, then
    call this with that N (one draw when both sets hold exactly N). The subsample size is
    recorded in ``details["n"]`` and ``details["set_sizes"]``.
    """
    import warnings as _w

    from .radiomics import frd_from_features

    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    plan = resolve_n(len(real), len(fake), n, draws=draws, allow_unequal_n=allow_unequal_n)
    jacks = []
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        for d, (i, j) in enumerate(_pairs(plan, seed)):
            r, f = real[i], fake[j]
            jacks.append(two_sample_jackknife(lambda a, b: frd_from_features(r[a], f[b], version=version),  # noqa: B023
                                              len(i), len(j), groups_x=_sub(groups_real, i),
                                              groups_y=_sub(groups_fake, j), n_blocks=n_blocks,
                                              confidence=confidence, seed=seed + d))
    value = float(np.mean([jk.value for jk in jacks]))
    se = float(np.mean([jk.se for jk in jacks]))
    half = _t_half(se, min(jk.df for jk in jacks), confidence)
    warn = _warnings(plan, "FRD")
    size = plan.n or min(plan.sizes)
    if size <= real.shape[1]:
        warn.append(f"FRD: N={size} <= {real.shape[1]} radiomics features: the covariance is singular")
    return MetricResult("frd", value, value - half, value + half,
                        {"real": plan.n or plan.sizes[0], "synthetic": plan.n or plan.sizes[1]}, "lower", confidence,
                        tuple(warn), {**plan.as_dict(), "version": version, "radiomics_features": int(real.shape[1]),
                                      "radiomics_items": size, "log_transformed": version == "v1", "se": se,
                                      "unit": _unit(groups_real, groups_fake),
                                      "interval": "delete-a-group jackknife, value ± t·se"})


def per_item_groups(subjects: Sequence[str] | None) -> list[str] | None:
    """Subject ids as the ``groups`` argument (``None`` or empty ids: items are independent)."""
    if subjects is None or not any(subjects):
        return None
    return [s if s else f"item-{k}" for k, s in enumerate(subjects)]
