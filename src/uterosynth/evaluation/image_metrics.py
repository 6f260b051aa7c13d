"""Image-space metrics: MS-SSIM and LPIPS diversity within a set, slice-to-slice consistency of volumes.

Diversity is the mean similarity of random pairs of distinct items of one set: a synthetic set
that is much more self-similar than the real set (higher MS-SSIM, lower LPIPS) has collapsed
modes. MS-SSIM, SSIM and LPIPS are the ones of :mod:`uterosynth.core.similarity` (the same
numbers the autoencoder's validation reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import DataError
from ..core.similarity import LPIPSDistance, load_lpips, ms_ssim, ssim
from .bootstrap import MetricResult
from .resampling import Groups, cluster_bootstrap_mean, pair_bootstrap_mean

__all__ = [
    "ItemValues",
    "load_lpips",  # the network lives in core.similarity; re-exported for the runner
    "lpips_pair_values",
    "msssim_pair_values",
    "random_pairs",
    "similarity_result",
    "slice_consistency",
]


def msssim_pair_values(
    a: torch.Tensor, b: torch.Tensor, *, kernel_size: int = 11, batch_size: int = 64
) -> np.ndarray:
    """MS-SSIM of item pairs ``a[i]`` vs ``b[i]`` for images ``(N, 1, *spatial)`` in ``[0, 1]``."""
    return ms_ssim(a, b, data_range=1.0, kernel_size=kernel_size, batch_size=batch_size).double().numpy()


def random_pairs(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``pairs`` distinct unordered index pairs ``(i, j)``, ``i < j``, from ``range(n)``.

    Every pair once when ``pairs`` covers all ``n (n - 1) / 2`` of them (a small set's diversity
    is then its exact mean over pairs, not a mean over repeats of the same few pairs); otherwise
    a random subset drawn without replacement.
    """
    if n < 2:
        raise DataError(f"diversity needs at least 2 items, found {n}")
    total = n * (n - 1) // 2
    if pairs >= total:
        i, j = np.triu_indices(n, k=1)
        return i, j
    k = np.sort(np.random.default_rng(seed).choice(total, size=pairs, replace=False))
    # row i of the upper triangle starts at index i n - i (i + 1) / 2
    i = (n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7) / 2 - 0.5)).astype(np.int64)
    j = k + i + 1 - total + (n - i) * (n - i - 1) // 2
    return i, j


@dataclass(frozen=True)
class ItemValues:
    """Values of one set's item pairs (``second`` given) or of its items (``second`` is ``None``),
    with what the interval resamples: the set's subjects (``groups``, one per item) or its items."""

    values: np.ndarray
    first: np.ndarray
    second: np.ndarray | None
    n_items: int
    groups: Groups = None

    def mean_interval(self, *, n_boot: int, confidence: float, seed: int) -> tuple[float, float, float]:
        """``(mean, low, high)``: a bootstrap over subjects (items when ``groups`` is ``None``)."""
        if self.second is None:
            groups = None if self.groups is None else [self.groups[k] for k in self.first]
            return cluster_bootstrap_mean(self.values, groups, n_boot=n_boot, confidence=confidence, seed=seed)[:3]
        return pair_bootstrap_mean(self.values, self.first, self.second, self.groups, n_items=self.n_items,
                                   n_boot=n_boot, confidence=confidence, seed=seed)


def similarity_result(
    name: str, synthetic: ItemValues, real: ItemValues | None, *, n_items: dict[str, int], better: str,
    n_boot: int, confidence: float, seed: int, details: dict | None = None,
) -> MetricResult:
    """A per-pair (or per-item) metric: synthetic mean with CI, the real set's mean beside it.

    Intervals resample the sets' subjects (items when a set has none), not the pairs: pairs of one
    set share items, and a subject's slices share their anatomy.
    """
    value, low, high = synthetic.mean_interval(n_boot=n_boot, confidence=confidence, seed=seed)
    details = dict(details or {})
    if real is not None and real.values.size:
        r, rl, rh = real.mean_interval(n_boot=n_boot, confidence=confidence, seed=seed + 1)
        details.update(real_value=r, real_ci=[rl, rh])
    details["interval"] = "bootstrap over subjects (items without subject ids), pairs weighted by their units' counts"
    size = int(synthetic.values.size)
    warnings = (f"{name}: only {size} pairs/items; the mean is noisy",) if size < 100 else ()
    return MetricResult(name, value, low, high, {**n_items, "pairs": size}, better, confidence, warnings, details)


@torch.inference_mode()
def lpips_pair_values(
    model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, *, size: int = 128, batch_size: int = 32
) -> np.ndarray:
    """LPIPS of item pairs ``a[i]`` vs ``b[i]`` (``(N, 1, *spatial)`` in ``[0, 1]``).

    ``model`` is the network of :func:`~uterosynth.core.similarity.load_lpips`; the distance is
    :class:`~uterosynth.core.similarity.LPIPSDistance` (2.5D for volumes) with slices smaller
    than ``size`` upsampled.
    """
    device = next(model.parameters()).device
    distance = LPIPSDistance(a.ndim - 2, net=model, min_size=size)
    values = [distance(a[s : s + batch_size].float().to(device), b[s : s + batch_size].float().to(device)).cpu()
              for s in range(0, a.shape[0], batch_size)]
    return torch.cat(values).double().numpy() if values else np.zeros(0)


@torch.inference_mode()
def slice_consistency(volumes: torch.Tensor, *, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Per-volume mean SSIM and Pearson correlation of adjacent slices along ``axis``.

    Args:
        volumes: ``(N, 1, H, W, D)`` in ``[0, 1]``; the sagittal slice axis is the last.

    Returns:
        ``(ssim, correlation)``, each ``(N,)``.
    """
    v = volumes.float().movedim(axis, 2)  # (N, 1, S, a, b)
    n, _, s = v.shape[:3]
    a, b = v[:, :, :-1].reshape(-1, 1, *v.shape[3:]), v[:, :, 1:].reshape(-1, 1, *v.shape[3:])
    per_slice = ssim(a, b, data_range=1.0).reshape(n, s - 1).mean(1)
    fa, fb = a.flatten(1), b.flatten(1)
    fa, fb = fa - fa.mean(1, keepdim=True), fb - fb.mean(1, keepdim=True)
    corr = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    return per_slice.double().numpy(), corr.reshape(n, s - 1).mean(1).double().numpy()
