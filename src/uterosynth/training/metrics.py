"""Reconstruction quality: PSNR, SSIM, MS-SSIM (MONAI metrics) that cope with small images."""

from __future__ import annotations

import math

import torch

__all__ = ["ssim_kernel", "msssim_setup", "reconstruction_metrics"]

_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def ssim_kernel(min_side: int, preferred: int = 11) -> int:
    """Largest odd Gaussian window ≤ ``preferred`` that fits an image whose smallest side is ``min_side``."""
    k = min(preferred, min_side if min_side % 2 else min_side - 1)
    return max(k, 1)


def msssim_setup(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """Per-axis ``(kernel, weights)`` for MS-SSIM on images of spatial ``shape``, or ``None``.

    MS-SSIM halves the image ``len(weights) - 1`` times and needs the coarsest scale to be
    larger than the window on every axis. Small images get fewer scales (weights
    renormalised: Wang et al. 2003 Eq. 7 with fewer terms) and smaller windows on short axes
    (down to 3); below two scales it is undefined.
    """
    for smallest in (5, 3):  # prefer windows of at least 5, then accept 3
        for levels in range(5, 1, -1):
            kernels = []
            for side in shape:
                coarse = side // 2 ** (levels - 1)
                kernels.append(min(11, coarse - 1 if (coarse - 1) % 2 else coarse - 2))
            if min(kernels) >= smallest:
                w = _MS_WEIGHTS[:levels]
                return tuple(kernels), tuple(x / sum(w) for x in w)
    return None


@torch.no_grad()
def reconstruction_metrics(
    x: torch.Tensor, y: torch.Tensor, *, spatial_dims: int, data_range: float = 1.0
) -> dict[str, torch.Tensor]:
    """Per-item ``psnr``, ``ssim`` and ``ms_ssim`` (NaN when the image is too small).

    Args:
        x: reconstructions ``(N, C, *spatial)``; clipped to ``[0, data_range]``.
        y: originals, same shape.
    """
    from monai.metrics import MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

    x = x.float().clamp(0, data_range)
    y = y.float().clamp(0, data_range)
    shape = tuple(y.shape[2:])
    out = {
        "psnr": PSNRMetric(max_val=data_range, reduction="none")(x, y).flatten(),
        "ssim": SSIMMetric(
            spatial_dims=spatial_dims, data_range=data_range, win_size=[ssim_kernel(s) for s in shape], reduction="none"
        )(x, y).flatten(),
    }
    setup = msssim_setup(shape)
    if setup is None:
        out["ms_ssim"] = torch.full((x.shape[0],), math.nan)
    else:
        kernel, weights = setup
        metric = MultiScaleSSIMMetric(
            spatial_dims=spatial_dims, data_range=data_range, kernel_size=list(kernel), weights=weights, reduction="none"
        )
        out["ms_ssim"] = metric(x, y).flatten()
    return out
