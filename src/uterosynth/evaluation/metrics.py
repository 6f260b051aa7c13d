"""Distribution metrics on features ``(N, F)``: Fréchet distance, KID, precision/recall, density/coverage.

Each comes twice: a plain function of two feature matrices (the maths, tested against scipy and
torchmetrics), and a ``*_result`` function that adds the bootstrap interval, the sample sizes
and small-sample warnings (a :class:`~uterosynth.evaluation.bootstrap.MetricResult`).

The Fréchet distance is written here rather than taken from torchmetrics because the bootstrap
needs it on precomputed feature statistics many times; the k-NN metrics because no maintained
torch implementation returns the per-item indicators the bootstrap resamples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .bootstrap import MetricResult, bootstrap_ci, bootstrap_mean

__all__ = [
    "PRDCItems",
    "feature_statistics",
    "fid_result",
    "frechet_distance",
    "frechet_distance_from_features",
    "kid",
    "kid_result",
    "mmd2_unbiased",
    "prdc_items",
    "prdc_results",
]

FID_STABLE_N = 2000


def _as64(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` of features ``(N, F)`` in float64."""
    f = _as64(features)
    mu = f.mean(0)
    centred = f - mu
    sigma = centred.T @ centred / max(f.shape[0] - 1, 1)
    return mu, sigma


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run small dense linear algebra on one thread: on a shared CPU, multi-threaded ``eigh`` of a
    256x256 matrix was measured 60x slower than single-threaded (threads spin waiting for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet distance between Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017).

    ``d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``, with
    ``Tr((S1 S2)^{1/2}) = Σ sqrt(eig(S1^{1/2} S2 S1^{1/2}))`` computed by two symmetric
    eigendecompositions (stable for singular covariances, unlike ``sqrtm``).

    Args:
        mu1, mu2: means ``(F,)``.
        sigma1, sigma2: covariances ``(F, F)``.
    """
    mu1, mu2, sigma1, sigma2 = (_as64(t) for t in (mu1, mu2, sigma1, sigma2))
    with _single_thread():
        root1 = _sqrt_psd(sigma1)
        middle = root1 @ sigma2 @ root1
        tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets ``(N, F)`` and ``(M, F)``."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def _fid_warnings(n_min: int, dim: int, label: str = "FID") -> tuple[str, ...]:
    out = []
    if n_min <= dim:
        out.append(f"{label}: N={n_min} <= feature dimension {dim}: the covariance is singular; the value is unstable")
    if n_min < FID_STABLE_N:
        out.append(
            f"{label}: N={n_min} < {FID_STABLE_N}: the estimate is biased upwards at small N "
            "(Chong & Forsyth 2020); compare only sets of equal size"
        )
    return tuple(out)


def fid_result(
    real: torch.Tensor, fake: torch.Tensor, *, n_boot: int = 100, confidence: float = 0.95, seed: int = 0,
    name: str = "fid",
) -> MetricResult:
    """FID with a bootstrap interval over features (both sets resampled with replacement)."""
    real64, fake64 = _as64(real), _as64(fake)
    value = frechet_distance_from_features(real64, fake64)
    low, high = bootstrap_ci(
        lambda i, j: frechet_distance_from_features(real64[torch.as_tensor(i)], fake64[torch.as_tensor(j)]),
        [real64.shape[0], fake64.shape[0]], n_boot=n_boot, confidence=confidence, seed=seed,
    )
    n_min = min(real64.shape[0], fake64.shape[0])
    return MetricResult(name, value, low, high, {"real": real64.shape[0], "synthetic": fake64.shape[0]},
                        "lower", confidence, _fid_warnings(n_min, real64.shape[1], name.upper()),
                        {"feature_dim": int(real64.shape[1])})


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, *, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> float:
    """Unbiased MMD² with the polynomial kernel ``k(a, b) = (gamma a·b + coef)^degree`` (Bińkowski et al. 2018, eq. 3).

    Args:
        x: features ``(m, F)``; y: features ``(n, F)``; ``gamma`` defaults to ``1 / F``.
    """
    x, y = _as64(x), _as64(y)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    m, n = x.shape[0], y.shape[0]
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    term_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(term_x + term_y - 2 * k_xy.mean())


def kid(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
    degree: int = 3, gamma: float | None = None, coef: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance: mean and std of unbiased MMD² over random subsets.

    Each subset draws ``min(subset_size, N, M)`` items without replacement from each set (as
    torchmetrics' ``KernelInceptionDistance``).

    Returns:
        ``(mean, std)`` over subsets.
    """
    real, fake = _as64(real), _as64(fake)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size == real.shape[0] == fake.shape[0]:  # every subset is the whole of both sets: one MMD suffices
        return mmd2_unbiased(real, fake, degree=degree, gamma=gamma, coef=coef), 0.0
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        i = torch.as_tensor(rng.choice(real.shape[0], size, replace=False))
        j = torch.as_tensor(rng.choice(fake.shape[0], size, replace=False))
        values.append(mmd2_unbiased(real[i], fake[j], degree=degree, gamma=gamma, coef=coef))
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std())


def kid_result(
    real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000, bootstrap_subsets: int = 10,
    n_boot: int = 100, confidence: float = 0.95, seed: int = 0,
) -> MetricResult:
    """KID with a bootstrap interval over features (each replicate uses ``bootstrap_subsets`` subsets)."""
    real64, fake64 = _as64(real), _as64(fake)
    value, std = kid(real64, fake64, subsets=subsets, subset_size=subset_size, seed=seed)
    counter = iter(range(1, n_boot + 1))

    def stat(i: np.ndarray, j: np.ndarray) -> float:
        return kid(real64[torch.as_tensor(i)], fake64[torch.as_tensor(j)], subsets=bootstrap_subsets,
                   subset_size=subset_size, seed=seed + next(counter))[0]

    low, high = bootstrap_ci(stat, [real64.shape[0], fake64.shape[0]], n_boot=n_boot, confidence=confidence, seed=seed)
    n_min = min(real64.shape[0], fake64.shape[0])
    warnings = []
    if n_min < subset_size:
        warnings.append(f"KID: N={n_min} < subset size {subset_size}: subsets use all {n_min} items")
    if n_min < 100:
        warnings.append(f"KID: N={n_min} < 100: the estimate is noisy")
    return MetricResult("kid", value, low, high, {"real": real64.shape[0], "synthetic": fake64.shape[0]}, "lower",
                        confidence, tuple(warnings),
                        {"subset_std": std, "subset_size": min(subset_size, n_min), "subsets": subsets})


@dataclass(frozen=True)
class PRDCItems:
    """Per-item indicators behind precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

    Attributes:
        precision: ``(M,)`` 1 when synthetic item j lies in some real k-NN ball.
        density: ``(M,)`` number of real k-NN balls holding synthetic item j, divided by k.
        recall: ``(N,)`` 1 when real item i lies in some synthetic k-NN ball.
        coverage: ``(N,)`` 1 when real item i's k-NN ball holds some synthetic item.
    """

    precision: np.ndarray
    density: np.ndarray
    recall: np.ndarray
    coverage: np.ndarray


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    radii = []
    for s in range(0, x.shape[0], chunk):
        d = torch.cdist(x[s : s + chunk], x)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def prdc_items(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5, chunk: int = 1024) -> PRDCItems:
    """Per-item indicators of the four k-NN manifold metrics on features ``(N, F)`` and ``(M, F)``.

    The means of the returned arrays are precision, density, recall and coverage (strict
    ``<`` comparisons, as the authors' ``prdc`` package).
    """
    real = torch.as_tensor(real, dtype=torch.float32)
    fake = torch.as_tensor(fake, dtype=torch.float32)
    k = min(k, real.shape[0] - 1, fake.shape[0] - 1)
    r_real, r_fake = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    precision, density = [], []
    for s in range(0, fake.shape[0], chunk):
        inside = torch.cdist(fake[s : s + chunk], real) < r_real[None]
        precision.append(inside.any(1))
        density.append(inside.sum(1) / k)
    recall, coverage = [], []
    for s in range(0, real.shape[0], chunk):
        d = torch.cdist(real[s : s + chunk], fake)
        recall.append((d < r_fake[None]).any(1))
        coverage.append(d.min(1).values < r_real[s : s + chunk])
    cat = lambda parts: torch.cat(parts).double().numpy()  # noqa: E731
    return PRDCItems(cat(precision), cat(density), cat(recall), cat(coverage))


def prdc_results(
    real: torch.Tensor, fake: torch.Tensor, *, k: int = 5, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> list[MetricResult]:
    """Precision, recall, density and coverage with bootstrap intervals.

    The intervals resample the evaluated items (synthetic items for precision/density, real
    items for recall/coverage) with the k-NN manifolds held fixed: they describe the sampling
    of the items, not the variability of the manifold estimate itself.
    """
    items = prdc_items(real, fake, k=k)
    n = {"real": int(real.shape[0]), "synthetic": int(fake.shape[0])}
    warnings = ()
    if min(n.values()) < 1000:
        warnings = (f"k-NN manifold metrics with N={min(n.values())} < 1000 items per set are unstable "
                    "(Naeem et al. 2020 use 10 000)",)
    out = []
    for name, values in (("precision", items.precision), ("recall", items.recall),
                         ("density", items.density), ("coverage", items.coverage)):
        value, low, high = bootstrap_mean(values, n_boot=n_boot, confidence=confidence, seed=seed)
        better = "closer_to_1" if name == "density" else "higher"
        out.append(MetricResult(name, value, low, high, n, better, confidence, warnings, {"k": k}))
    return out
