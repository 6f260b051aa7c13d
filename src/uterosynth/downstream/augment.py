"""Classical augmentation for the downstream classifier, built from MONAI array transforms.

Random affine (small rotation, scale, translation), elastic deformation (``Rand2DElastic`` /
``Rand3DElastic``), intensity scale/shift and Gaussian noise. No flips: flipping the
anterior–posterior or superior–inferior axis would turn one uterine orientation into another.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .config import AugmentConfig

__all__ = ["build_augmentation", "augment_batch"]


def build_augmentation(
    cfg: AugmentConfig, spatial_dims: int, size: Sequence[int], *, seed: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A seeded MONAI ``Compose`` for one image ``(1, *spatial)`` of spatial ``size``."""
    from monai.transforms import (
        Compose,
        RandAffine,
        RandGaussianNoise,
        RandScaleIntensity,
        RandShiftIntensity,
    )

    rot = math.radians(cfg.rotate_deg)
    # In-plane rotation only: axis 2 of a volume is the slice axis (see docs/ARCHITECTURE.md).
    rotate = (rot,) if spatial_dims == 2 else (0.0, 0.0, rot)
    translate = tuple(cfg.translate_frac * s for s in size)
    affine = {"rotate_range": rotate, "scale_range": cfg.scale, "translate_range": translate, "padding_mode": "border"}
    transforms: list
    if cfg.elastic and cfg.elastic_magnitude > 0 and spatial_dims == 2:
        from monai.transforms import Rand2DElastic

        # the elastic transform applies the random affine in the same resampling (one pass)
        spacing = tuple(max(4, s // 4) for s in size)
        transforms = [Rand2DElastic(spacing=spacing, magnitude_range=(0.0, cfg.elastic_magnitude), prob=cfg.prob,
                                    **affine)]
    elif cfg.elastic and cfg.elastic_magnitude > 0:
        from monai.transforms import Rand3DElastic

        sigma = max(2.0, min(size) / 8)
        transforms = [Rand3DElastic(sigma_range=(sigma, 1.5 * sigma), magnitude_range=(0.0, cfg.elastic_magnitude * sigma),
                                    prob=cfg.prob, **affine)]
    else:
        transforms = [RandAffine(prob=cfg.prob, **affine)]
    transforms += [
        RandScaleIntensity(factors=cfg.intensity_scale, prob=cfg.prob),
        RandShiftIntensity(offsets=cfg.intensity_shift, prob=cfg.prob),
        RandGaussianNoise(prob=cfg.prob, std=cfg.noise_std),
    ]
    compose = Compose(transforms)
    compose.set_random_state(seed=seed % (2**32))
    return compose


def augment_batch(transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Apply a per-image transform to every image of ``(N, 1, *spatial)``.

    MONAI's metadata tracking is switched off meanwhile (plain tensors; about twice as fast).
    """
    from monai.data import get_track_meta, set_track_meta

    track = get_track_meta()
    set_track_meta(False)
    try:
        return torch.stack([torch.as_tensor(transform(img)).float() for img in images])
    finally:
        set_track_meta(track)
