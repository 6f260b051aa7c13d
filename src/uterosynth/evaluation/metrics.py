"""Distribution metrics on features ``(N, F)``: Fréchet distance, KID, precision/recall, density/coverage.

Each comes twice: a plain function of two feature matrices (the maths, tested against scipy and
torchmetrics), and a ``*_result`` function that adds the bootstrap interval, the sample sizes
and small-sample warnings (a :class:`~uterosynth.evaluation.bootstrap.MetricResult`).

The Fréchet distance is written here rather than taken from torchmetrics because the bootstrap
needs it on precomputed feature statistics many times; the k-NN metrics because no maintained
torch implementation returns the per-item indicators the bootstrap resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.threads import torch_threads

__all__ = [
    "PRDCItems",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "kid",
    "mmd2_unbiased",
    "prdc_items",
    "span_coordinates",
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

    Returns:
        The distance; NaN when a statistic is not finite (a covariance of fewer than two items).
    """
    mu1, mu2, sigma1, sigma2 = (_as64(t) for t in (mu1, mu2, sigma1, sigma2))
    if not all(bool(torch.isfinite(t).all()) for t in (mu1, mu2, sigma1, sigma2)):
        # a covariance of fewer than two items (a jackknife replicate of a one-subject set)
        return float("nan")
    # one thread: on a shared CPU, multi-threaded ``eigh`` of a 256x256 matrix was measured 60x
    # slower than single-threaded (threads spin waiting for each other)
    with torch_threads(1):
        root1 = _sqrt_psd(sigma1)
        middle = root1 @ sigma2 @ root1
        tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


def span_coordinates(real: np.ndarray | torch.Tensor,
                     fake: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets in an orthonormal basis of their affine span, when that is smaller than ``F``.

    Every mean difference and every covariance of any subset of the ``N + M`` items lies in the
    span of their differences (at most ``N + M - 1`` dimensions), and the Fréchet distance is
    invariant to translation and rotation. So the distance of any subsets is the same in these
    coordinates, exactly, and its eigendecompositions shrink from ``F x F`` to at most
    ``(N + M - 1)`` squared: the small-N case (a few held-out subjects, 768 or 2048 features).
    Returned unchanged (as float64) when ``N + M - 1 >= F``.
    """
    x, y = _as64(real), _as64(fake)
    rank = x.shape[0] + y.shape[0] - 1
    if rank >= x.shape[1]:
        return x, y
    origin = x[0]
    basis, _ = torch.linalg.qr((torch.cat([x[1:], y]) - origin).T, mode="reduced")
    return (x - origin) @ basis, (y - origin) @ basis


def frechet_distance_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets ``(N, F)`` and ``(M, F)``."""
    x, y = span_coordinates(real, fake)
    return frechet_distance(*feature_statistics(x), *feature_statistics(y))


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
