"""Shortcut controls for a judge: does it read the anatomy, or the coarse layout and the padding?

A judge that passes samples for the wrong reason makes every fidelity number meaningless. Two
controls, run on real held-out items whose labels are known, are reported beside each fidelity
number:

- **blur**: the judge's accuracy on the items blurred with a Gaussian of σ pixels. Heavy blur
  leaves only the coarse layout; a judge that still scores high there would also pass blurry
  samples that merely have their class's silhouette.
- **bands**: the fraction of its answers that change when fill-value bands are pasted over the
  items, top and bottom (``rows``) or left and right (``columns``), as a square-padded crop of a
  tall or a wide uterus box carries them. The old square fit made those bands follow the class;
  a judge that reads them flips its answers. The bands also hide anatomy, so the same bands set
  to each item's mean intensity instead (``occlusion``) are the paired control: a judge of the
  anatomy flips about as often under both, a judge of the padding far more often under the bands.

A judge sensitive to bands misleads only on items that carry one: :func:`edge_bands` finds the
items (real or synthetic) with a padding-like band at an edge.

Both take the judge as a ``predict`` callable (images ``(N, H, W)`` in [0, 1] → class names), so
they serve any classifier: the frozen artifact (``downstream.judge.predict``) or a model in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.imageio import blur_in_plane

__all__ = ["BAND_SIDES", "edge_bands", "judge_controls", "with_bands"]

Predict = Callable[[np.ndarray], Sequence[str]]
BAND_SIDES = ("rows", "columns")
"""Where :func:`with_bands` pastes its two bands: top and bottom, or left and right."""


def with_bands(images: np.ndarray, side: str, fraction: float, *, fill: str = "min") -> np.ndarray:
    """``images`` ``(N, H, W)`` with two bands of ``fraction`` of the side each, set to every item's ``fill``.

    ``fill``: ``"min"`` (the padding value of a crop) or ``"mean"`` (an occlusion of the same area).
    """
    if fill not in ("min", "mean"):
        raise ValueError(f"fill must be 'min' or 'mean', not {fill!r}")
    if side not in BAND_SIDES:
        raise ValueError(f"side must be one of {BAND_SIDES}, not {side!r}")
    if not 0 < fraction < 0.5:
        raise ValueError(f"band fraction must lie in (0, 0.5), not {fraction}")
    out = images.copy()
    axis = 1 if side == "rows" else 2
    width = max(1, round(fraction * images.shape[axis]))
    flat = images.reshape(images.shape[0], -1)
    for i, value in enumerate(flat.min(1) if fill == "min" else flat.mean(1)):
        if axis == 1:
            out[i, :width], out[i, -width:] = value, value
        else:
            out[i, :, :width], out[i, :, -width:] = value, value
    return out


def judge_controls(
    predict: Predict, images: np.ndarray, labels: Sequence[str], *,
    blur_sigmas: Sequence[float] = (2.0, 4.0), band_fraction: float = 0.2,
) -> dict[str, Any]:
    """Per-item outcomes of the judge on ``images`` ``(N, H, W)`` with true ``labels``, plain and under each control.

    Returns ``{"correct": bool (N,), "blur": {sigma: bool (N,)}, "band_flips": {side: bool (N,)},
    "occlusion_flips": {side: bool (N,)}, "band_fraction": f}``: whether each item is classified
    right, right after the blur, and whether its answer changed under the padding bands and under
    the mean-valued bands. Averages (over subjects, with intervals) are the caller's.
    """
    if images.ndim != 3:
        raise ValueError(f"judge controls take 2D items (N, H, W), got shape {images.shape}")
    labels = np.asarray(labels)
    plain = np.asarray(predict(images))
    return {
        "correct": plain == labels,
        "blur": {float(s): np.asarray(predict(blur_in_plane(images, s))) == labels for s in blur_sigmas},
        "band_flips": {side: np.asarray(predict(with_bands(images, side, band_fraction))) != plain
                       for side in BAND_SIDES},
        "occlusion_flips": {side: np.asarray(predict(with_bands(images, side, band_fraction, fill="mean"))) != plain
                            for side in BAND_SIDES},
        "band_fraction": band_fraction,
    }


def edge_bands(images: np.ndarray, *, width: int = 6, tolerance: float = 0.03) -> np.ndarray:
    """Which items of ``images`` ``(N, H, W)`` carry a padding-like band: ``width`` rows or columns at one
    edge (top, bottom, left or right) whose every pixel lies within ``tolerance`` of the item's minimum."""
    if images.ndim != 3:
        raise ValueError(f"edge bands are read on 2D items (N, H, W), got shape {images.shape}")
    near = images <= images.reshape(len(images), -1).min(1)[:, None, None] + tolerance
    edges = (near[:, :width], near[:, -width:], near[:, :, :width], near[:, :, -width:])
    return np.any([e.reshape(len(images), -1).all(1) for e in edges], axis=0)
