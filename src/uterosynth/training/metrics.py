"""Reconstruction quality: PSNR (MONAI), SSIM and MS-SSIM (:mod:`uterosynth.core.similarity`)."""

from __future__ import annotations

import torch
from monai.metrics import PSNRMetric

from ..core.similarity import ms_ssim, ssim

__all__ = ["reconstruction_metrics"]


@torch.no_grad()
def reconstruction_metrics(
    x: torch.Tensor, y: torch.Tensor, *, spatial_dims: int, data_range: float = 1.0
) -> dict[str, torch.Tensor]:
    """Per-item ``psnr``, ``ssim`` and ``ms_ssim``, the same numbers ``uterosynth evaluate`` reports.

    Args:
        x: reconstructions ``(N, C, *spatial)``; clipped to ``[0, data_range]``.
        y: originals, same shape.
        spatial_dims: 2 or 3; the shape of ``x`` already says it (kept for callers).
    """
    x = x.float().clamp(0, data_range)
    y = y.float().clamp(0, data_range)
    return {
        "psnr": PSNRMetric(max_val=data_range, reduction="none")(x, y).flatten(),
        "ssim": ssim(x, y, data_range=data_range),
        "ms_ssim": ms_ssim(x, y, data_range=data_range),
    }
