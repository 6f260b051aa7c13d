"""The judge's and the downstream grid's network: resize, then a MONAI ResNet-18 (2D or 3D)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Classifier", "build_resnet_classifier"]


class Classifier(nn.Module):
    """Resize to the network's input size, then a MONAI ResNet-18.

    Input ``(N, 1, *spatial)`` with intensities in ``[0, 1]`` (any spatial size) → logits
    ``(N, num_classes)``. Scriptable with ``torch.jit.script``.
    """

    def __init__(self, net: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.size: list[int] = [int(s) for s in size]
        self.mode: str = "bilinear" if len(self.size) == 2 else "trilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=self.size, mode=self.mode, align_corners=False)
        return self.net(x)


def build_resnet_classifier(
    spatial_dims: int, num_classes: int, size: Sequence[int], *, widen_factor: float, stem_stride: int,
    no_max_pool: bool,
) -> Classifier:
    """MONAI ``resnet18(spatial_dims, n_input_channels=1, num_classes)`` wrapped in :class:`Classifier`."""
    from monai.networks.nets import resnet18

    net = resnet18(spatial_dims=spatial_dims, n_input_channels=1, num_classes=num_classes, widen_factor=widen_factor,
                   conv1_t_stride=stem_stride, no_max_pool=no_max_pool)
    return Classifier(net, size)
