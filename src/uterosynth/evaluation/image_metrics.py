"""Image-space metrics: MS-SSIM and LPIPS diversity within a set, slice-to-slice consistency of volumes.

Diversity is the mean similarity of random pairs of distinct items of one set: a synthetic set
that is much more self-similar than the real set (higher MS-SSIM, lower LPIPS) has collapsed
modes. MS-SSIM is MONAI's (Wang et al. 2003) with the number of scales reduced for small
images; LPIPS is the ``lpips`` package (Zhang et al. 2018) with local backbone weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError
from .bootstrap import MetricResult, bootstrap_mean

__all__ = [
    "MSSSIM_WEIGHTS",
    "load_lpips",
    "lpips_pair_values",
    "msssim_pair_values",
    "msssim_scales",
    "random_pairs",
    "similarity_result",
    "slice_consistency",
]

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def msssim_scales(shape: Sequence[int], kernel_size: int = 11) -> tuple[int, tuple[float, ...]]:
    """Kernel size and weights that fit images of spatial ``shape``.

    MS-SSIM halves the image ``len(weights) - 1`` times and needs the coarsest scale larger
    than the kernel. Small images get fewer scales (the first weights of Wang et al. 2003,
    renormalised to sum to 1; all five unchanged when they fit) and, below 11 pixels, a smaller odd kernel.
    """
    side = min(shape)
    kernel = min(kernel_size, side - 1 if side % 2 == 0 else side)
    kernel = max(3, kernel - (1 - kernel % 2))
    scales = 1
    for s in range(len(MSSSIM_WEIGHTS), 0, -1):
        div = max(2 ** (s - 1), max(1, s - 1) ** 2)  # MONAI checks (s-1)^2, pooling needs 2^(s-1)
        if side // div > kernel - 1:
            scales = s
            break
    if scales == len(MSSSIM_WEIGHTS):
        return kernel, MSSSIM_WEIGHTS
    weights = np.asarray(MSSSIM_WEIGHTS[:scales])
    return kernel, tuple(float(w) for w in weights / weights.sum())


def msssim_pair_values(
    a: torch.Tensor, b: torch.Tensor, *, kernel_size: int = 11, batch_size: int = 64
) -> np.ndarray:
    """MS-SSIM of item pairs ``a[i]`` vs ``b[i]`` for images ``(N, 1, *spatial)`` in ``[0, 1]``."""
    from monai.metrics.regression import compute_ms_ssim

    spatial_dims = a.ndim - 2
    kernel, weights = msssim_scales(a.shape[2:], kernel_size)
    out = []
    for s in range(0, a.shape[0], batch_size):
        out.append(compute_ms_ssim(a[s : s + batch_size].float(), b[s : s + batch_size].float(), spatial_dims,
                                   data_range=1.0, kernel_size=kernel, weights=weights).flatten())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def random_pairs(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` random index pairs ``(i, j)`` with ``i != j`` from ``range(n)``."""
    if n < 2:
        raise UserError(f"diversity needs at least 2 items, found {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n
    return i, j


def similarity_result(
    name: str, synthetic: np.ndarray, real: np.ndarray | None, *, n_items: dict[str, int], better: str,
    n_boot: int, confidence: float, seed: int, details: dict | None = None,
) -> MetricResult:
    """A per-pair (or per-item) metric: synthetic mean with CI, the real set's mean beside it."""
    value, low, high = bootstrap_mean(synthetic, n_boot=n_boot, confidence=confidence, seed=seed)
    details = dict(details or {})
    if real is not None and real.size:
        r, rl, rh = bootstrap_mean(real, n_boot=n_boot, confidence=confidence, seed=seed + 1)
        details.update(real_value=r, real_ci=[rl, rh])
    warnings = ()
    if synthetic.size < 100:
        warnings = (f"{name}: only {synthetic.size} pairs/items; the mean is noisy",)
    return MetricResult(name, value, low, high, {**n_items, "pairs": int(synthetic.size)}, better, confidence,
                        warnings, details)


def load_lpips(weights: str | Path | None, *, device: str = "cpu") -> torch.nn.Module:
    """LPIPS-alex (Zhang et al. 2018) whose AlexNet backbone comes from a local safetensors file.

    The linear heads are the ``lpips`` package's own v0.1 weights (shipped inside the package);
    the backbone is built with random weights (``pnet_rand=True``, nothing is downloaded) and
    then loaded from ``weights`` (torchvision key names ``features.0.weight`` … ``features.10.bias``).
    ``weights=None`` keeps the random backbone (tests only: such numbers mean nothing).

    Raises:
        UserError: the file is missing or lacks the expected keys.
    """
    import lpips
    from safetensors.torch import load_file

    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"{path}: LPIPS AlexNet weights not found (set lpips.weights to a local safetensors file "
                            "with torchvision keys features.0.weight ... features.10.bias, or leave it empty to skip LPIPS)")
        state = load_file(str(path))
        slices = [model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5]
        modules = {name: mod for sl in slices for name, mod in sl.named_children()}
        for key, tensor in state.items():
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "features" or parts[1] not in modules:
                raise UserError(f"{path}: unexpected key '{key}' (expected torchvision AlexNet 'features.N.weight/bias')")
            getattr(modules[parts[1]], parts[2]).data.copy_(tensor)
        expected = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")}
        missing = expected - set(state)
        if missing:
            raise UserError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
    return model.to(device).eval()


def _planes_2d(x: torch.Tensor) -> list[torch.Tensor]:
    """2D images for LPIPS: the image itself, or the three central orthogonal planes of a volume."""
    if x.ndim == 4:
        return [x]
    h, w, d = x.shape[2:]
    return [x[:, :, :, :, d // 2], x[:, :, :, w // 2, :], x[:, :, h // 2, :, :]]


@torch.inference_mode()
def lpips_pair_values(
    model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, *, size: int = 128, batch_size: int = 32
) -> np.ndarray:
    """LPIPS of item pairs ``a[i]`` vs ``b[i]`` (``(N, 1, *spatial)`` in ``[0, 1]``); volumes: mean over 3 central planes."""
    device = next(model.parameters()).device
    values = []
    for pa, pb in zip(_planes_2d(a), _planes_2d(b), strict=True):
        per_plane = []
        for s in range(0, pa.shape[0], batch_size):
            xa, xb = (F.interpolate(t[s : s + batch_size].float(), size=(size, size), mode="bilinear", align_corners=False)
                      .repeat(1, 3, 1, 1).mul(2).sub(1).to(device) for t in (pa, pb))
            per_plane.append(model(xa, xb).flatten().cpu())
        values.append(torch.cat(per_plane))
    return torch.stack(values).mean(0).double().numpy()


@torch.inference_mode()
def slice_consistency(volumes: torch.Tensor, *, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Per-volume mean SSIM and Pearson correlation of adjacent slices along ``axis``.

    Args:
        volumes: ``(N, 1, H, W, D)`` in ``[0, 1]``; the sagittal slice axis is the last.

    Returns:
        ``(ssim, correlation)``, each ``(N,)``.
    """
    from monai.metrics.regression import compute_ssim_and_cs

    v = volumes.float().movedim(axis, 2)  # (N, 1, S, a, b)
    n, _, s = v.shape[:3]
    a, b = v[:, :, :-1].reshape(-1, 1, *v.shape[3:]), v[:, :, 1:].reshape(-1, 1, *v.shape[3:])
    kernel = max(3, min(11, min(v.shape[3:]) - (1 - min(v.shape[3:]) % 2)))
    ssim, _ = compute_ssim_and_cs(a, b, spatial_dims=2, data_range=1.0, kernel_size=(kernel, kernel),
                                  kernel_sigma=(1.5, 1.5))
    ssim = ssim.flatten(1).mean(1).reshape(n, s - 1).mean(1)
    fa, fb = a.flatten(1), b.flatten(1)
    fa, fb = fa - fa.mean(1, keepdim=True), fb - fb.mean(1, keepdim=True)
    corr = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    return ssim.double().numpy(), corr.reshape(n, s - 1).mean(1).double().numpy()
