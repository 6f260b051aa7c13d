"""LPIPS perceptual distance for 2D images and 2.5D volumes, with weights from local files only.

Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"
(LPIPS, AlexNet variant). Written around the ``lpips`` package rather than MONAI's
``PerceptualLoss`` because the latter downloads the AlexNet backbone even with
``pretrained=False``: here the backbone is built with ``lpips.LPIPS(pnet_rand=True)`` (no
download; its calibrated linear heads ship inside the pip package) and its convolution weights
are then loaded from a torchvision-named safetensors file given in the config
(``features.0.weight`` … ``features.10.bias``). Volumes use the 2.5D mode of Pinaya et al.
2022: the 2D network over slices along each of the three axes, averaged.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.config import StrictModel
from ..core.errors import UserError

__all__ = ["PerceptualConfig", "LPIPSDistance", "build_perceptual", "check_weights_file", "load_alexnet_features"]

# torchvision ``alexnet().features`` index -> lpips slice holding that layer
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


class PerceptualConfig(StrictModel):
    """Which perceptual network to use and where its pretrained weights are.

    ``network: none`` switches the perceptual term off. ``weights`` is a local safetensors
    file of ImageNet AlexNet ``features.*`` tensors (never downloaded). ``random_init: true``
    allows a randomly initialised backbone (tests and demos only: the distance is then not
    LPIPS, and validation reports no LPIPS value).
    """

    network: Literal["none", "alex"] = "alex"
    weights: Path | None = None
    random_init: bool = False
    slice_fraction: float = Field(1.0, gt=0.0, le=1.0, description="3D: share of slices per axis used")
    min_size: int = Field(32, ge=16, description="slices smaller than this are upsampled first")

    @model_validator(mode="after")
    def _check(self) -> PerceptualConfig:
        if self.network != "none" and self.weights is None and not self.random_init:
            raise ValueError(
                "perceptual.weights is not set: give a local AlexNet features .safetensors file, "
                "or set perceptual.random_init=true (tests/demos) or perceptual.network=none"
            )
        return self

    @property
    def pretrained(self) -> bool:
        """True when the distance is real LPIPS (ImageNet backbone loaded from a file)."""
        return self.network != "none" and self.weights is not None


def check_weights_file(cfg: PerceptualConfig) -> None:
    """Fail early (before any network is built) when the configured weights file is missing."""
    if cfg.network != "none" and cfg.weights is not None and not Path(cfg.weights).is_file():
        _missing(Path(cfg.weights))


def _missing(path: Path) -> None:
    raise UserError(
        f"{path}: perceptual weights file not found (expected ImageNet AlexNet features as "
        "safetensors with keys features.0.weight … features.10.bias; set perceptual.weights, "
        "or perceptual.network=none)"
    )


def load_alexnet_features(path: str | Path) -> dict[str, torch.Tensor]:
    """Read torchvision-named AlexNet ``features.*`` weights; a missing file is a :class:`UserError`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        _missing(path)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for broken files
        raise UserError(f"{path}: not a readable safetensors file ({err})") from err
    expected = {f"features.{i}.{p}" for i in _ALEX_SLICES for p in ("weight", "bias")}
    missing = sorted(expected - set(state))
    if missing:
        raise UserError(f"{path}: missing AlexNet tensor(s) {', '.join(missing)}")
    return state


class LPIPSDistance(nn.Module):
    """LPIPS between two batches of images in ``[0, 1]``; frozen, always in eval mode.

    Args:
        spatial_dims: 2 for images ``(N, C, H, W)``, 3 for volumes ``(N, C, H, W, D)`` (2.5D).
        weights: local AlexNet features file, or ``None`` for a random backbone.
        slice_fraction: 3D only, share of evenly spaced slices per axis (1.0 = all).
        min_size: slices smaller than this are bilinearly upsampled (AlexNet's first layers
            need about 32 pixels).
    """

    def __init__(
        self,
        spatial_dims: int,
        *,
        weights: str | Path | None = None,
        slice_fraction: float = 1.0,
        min_size: int = 32,
    ) -> None:
        super().__init__()
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", pnet_rand=True, pretrained=True, verbose=False)
        if weights is not None:
            state = load_alexnet_features(weights)
            mapped = {
                f"net.slice{_ALEX_SLICES[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in state.items()
            }
            net.load_state_dict(mapped, strict=False)
        net.eval().requires_grad_(False)
        self.net = net
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

    def _slices(self, x: torch.Tensor, axis: int) -> torch.Tensor:
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


def build_perceptual(cfg: PerceptualConfig, *, spatial_dims: int) -> LPIPSDistance | None:
    """The configured perceptual distance, or ``None`` for ``network: none``.

    Raises:
        UserError: the weights file is missing or unreadable.
    """
    if cfg.network == "none":
        return None
    return LPIPSDistance(
        spatial_dims,
        weights=cfg.weights,
        slice_fraction=cfg.slice_fraction,
        min_size=cfg.min_size,
    )
