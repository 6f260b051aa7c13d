"""Image similarity shared by validation and evaluation: SSIM, MS-SSIM and LPIPS, one rule each.

* SSIM is MONAI's (Wang et al. 2004) with a Gaussian window (sigma 1.5) of the largest odd size
  ≤ 11 that fits each axis.
* MS-SSIM is MONAI's (Wang et al. 2003). Small images get fewer scales — the first weights,
  renormalised to sum to 1 (all five unchanged when they fit) — and, below 11 pixels, a smaller
  odd window (:func:`msssim_scales`).
* LPIPS is the ``lpips`` package (Zhang et al. 2018, AlexNet variant) with its backbone loaded
  from a local torchvision-named safetensors file (``features.0.weight`` … ``features.10.bias``),
  never downloaded: MONAI's ``PerceptualLoss`` fetches AlexNet even with ``pretrained=False``,
  ``lpips.LPIPS(pnet_rand=True)`` does not. Volumes use the 2.5D mode of Pinaya et al. 2022:
  the 2D network over evenly spaced slices along each of the three axes, averaged per axis and
  then over the axes; slices smaller than ``min_size`` are bilinearly upsampled first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .errors import DataError

__all__ = [
    "MSSSIM_WEIGHTS",
    "LPIPSDistance",
    "load_alexnet_features",
    "load_lpips",
    "ms_ssim",
    "msssim_scales",
    "ssim",
    "ssim_kernel",
]

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003

# torchvision ``alexnet().features`` index -> lpips slice holding that layer
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def ssim_kernel(side: int, preferred: int = 11) -> int:
    """Largest odd Gaussian window ≤ ``preferred`` that fits an axis of ``side`` pixels.

    >>> ssim_kernel(64), ssim_kernel(8), ssim_kernel(7)
    (11, 7, 7)
    """
    k = min(preferred, side if side % 2 else side - 1)
    return max(k, 1)


@torch.no_grad()
def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-item SSIM ``(N,)`` of ``x`` vs ``y`` ``(N, C, *spatial)``, window :func:`ssim_kernel` per axis."""
    from monai.metrics.regression import compute_ssim_and_cs

    spatial = tuple(x.shape[2:])
    value, _ = compute_ssim_and_cs(
        x.float(), y.float(), spatial_dims=len(spatial), data_range=data_range,
        kernel_size=[ssim_kernel(s) for s in spatial], kernel_sigma=[1.5] * len(spatial),
    )
    return value.flatten(1).mean(1)


def msssim_scales(shape: Sequence[int], kernel_size: int = 11) -> tuple[int, tuple[float, ...]]:
    """Kernel size and weights that fit images of spatial ``shape``.

    MS-SSIM halves the image ``len(weights) - 1`` times and needs the coarsest scale larger
    than the kernel. Small images get fewer scales (the first weights of Wang et al. 2003,
    renormalised to sum to 1; all five unchanged when they fit) and, below 11 pixels, a
    smaller odd kernel.

    >>> msssim_scales((192, 192))[1] == MSSSIM_WEIGHTS
    True
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
    weights = MSSSIM_WEIGHTS[:scales]
    total = sum(weights)
    return kernel, tuple(float(w / total) for w in weights)


@torch.no_grad()
def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, kernel_size: int = 11, batch_size: int = 64
) -> torch.Tensor:
    """Per-item MS-SSIM ``(N,)`` of ``x`` vs ``y`` ``(N, C, *spatial)``; scales from :func:`msssim_scales`."""
    from monai.metrics.regression import compute_ms_ssim

    kernel, weights = msssim_scales(x.shape[2:], kernel_size)
    out = [
        compute_ms_ssim(x[s : s + batch_size].float(), y[s : s + batch_size].float(), x.ndim - 2,
                        data_range=data_range, kernel_size=kernel, weights=weights).flatten()
        for s in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0)


def _missing(path: Path) -> None:
    raise DataError(
        f"{path}: perceptual weights file not found (expected ImageNet AlexNet features as "
        "safetensors with keys features.0.weight … features.10.bias; set the weights path, "
        "or leave it empty to skip LPIPS)"
    )


def load_alexnet_features(path: str | Path) -> dict[str, torch.Tensor]:
    """Read torchvision-named AlexNet ``features.*`` weights.

    Raises:
        DataError: the file is missing or unreadable, holds an unexpected key or lacks one.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        _missing(path)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for broken files
        raise DataError(f"{path}: not a readable safetensors file ({err})") from err
    for key in state:
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "features" or not parts[1].isdigit() or int(parts[1]) not in _ALEX_SLICES:
            raise DataError(f"{path}: unexpected key '{key}' (expected torchvision AlexNet 'features.N.weight/bias')")
    expected = {f"features.{i}.{p}" for i in _ALEX_SLICES for p in ("weight", "bias")}
    missing = sorted(expected - set(state))
    if missing:
        raise DataError(f"{path}: missing AlexNet tensor(s) {', '.join(missing)}")
    return state


def load_lpips(weights: str | Path | None, *, device: str | torch.device = "cpu") -> nn.Module:
    """The frozen ``lpips.LPIPS`` AlexNet network, backbone from ``weights`` (``None``: random).

    The linear heads are the ``lpips`` package's own v0.1 weights (shipped inside the package);
    the backbone is built with random weights (``pnet_rand=True``, nothing is downloaded) and
    then loaded from ``weights``. ``weights=None`` keeps the random backbone (tests and demos
    only: such numbers are not LPIPS).

    Raises:
        DataError: see :func:`load_alexnet_features`.
    """
    import lpips

    state = load_alexnet_features(weights) if weights is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", pnet_rand=True, pretrained=True, verbose=False)
    if state is not None:
        mapped = {f"net.slice{_ALEX_SLICES[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in state.items()}
        net.load_state_dict(mapped, strict=False)
    return net.to(device).eval().requires_grad_(False)


class LPIPSDistance(nn.Module):
    """LPIPS between two batches of images in ``[0, 1]``; frozen, always in eval mode.

    Args:
        spatial_dims: 2 for images ``(N, C, H, W)``, 3 for volumes ``(N, C, H, W, D)`` (2.5D).
        weights: local AlexNet features file, or ``None`` for a random backbone.
        slice_fraction: 3D only, share of evenly spaced slices per axis (1.0 = all).
        min_size: slices smaller than this are bilinearly upsampled (AlexNet's first layers
            need about 32 pixels).
        net: an already loaded ``lpips.LPIPS`` network (:func:`load_lpips`) instead of ``weights``.
    """

    def __init__(
        self,
        spatial_dims: int,
        *,
        weights: str | Path | None = None,
        slice_fraction: float = 1.0,
        min_size: int = 32,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.net = net if net is not None else load_lpips(weights)
        self.spatial_dims = spatial_dims
        self.slice_fraction = slice_fraction
        self.min_size = min_size

    def train(self, mode: bool = True) -> LPIPSDistance:  # noqa: ARG002 - always frozen
        return super().train(False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        small = min(x.shape[-2:])
        if small < self.min_size:
            scale = self.min_size / small
            size = [max(self.min_size, round(s * scale)) for s in x.shape[-2:]]
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def _distance2d(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(self._prep(a), self._prep(b), normalize=True).flatten(1).mean(1)

    def _slices(self, x: torch.Tensor, axis: int) -> tuple[torch.Tensor, int]:
        # (N, C, H, W, D) -> (N * S, C, *two remaining axes) along spatial ``axis`` (0, 1, 2)
        n, c = x.shape[:2]
        size = x.shape[2 + axis]
        keep = max(1, round(size * self.slice_fraction))
        index = torch.linspace(0, size - 1, keep, device=x.device).round().long()
        x = x.index_select(2 + axis, index).movedim(2 + axis, 1)
        return x.reshape(n * keep, c, *x.shape[3:]), keep

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-item distance ``(N,)`` between ``a`` and ``b`` of shape ``(N, C, *spatial)``."""
        if self.spatial_dims == 2:
            return self._distance2d(a, b)
        total = a.new_zeros(a.shape[0], dtype=torch.float32)
        for axis in range(3):
            sa, keep = self._slices(a, axis)
            sb, _ = self._slices(b, axis)
            total = total + self._distance2d(sa, sb).float().view(a.shape[0], keep).mean(1)
        return total / 3
