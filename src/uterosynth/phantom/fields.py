"""Smooth random fields (texture, bowel pattern) by separable cubic B-spline upsampling.

A coarse lattice of i.i.d. normal coefficients is upsampled with a cubic B-spline along each
axis (three small matrix products, so a 320×320×28 field costs a few milliseconds), and
normalised to unit variance at every point (Unser, "Splines: a perfect fit for signal and image
processing", IEEE SPM 1999).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["smooth_field"]


def _bspline3(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    out = np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, 0.0)
    return np.where((t >= 1) & (t < 2), (2 - t) ** 3 / 6, out)


@functools.lru_cache(maxsize=64)
def _matrix(n_out: int, n_coarse: int) -> np.ndarray:
    pos = np.linspace(1.0, n_coarse - 2.0, n_out)
    w = _bspline3(pos[:, None] - np.arange(n_coarse)[None, :])
    w /= np.sqrt((w**2).sum(1, keepdims=True))
    return w.astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cell: tuple[float, ...]) -> np.ndarray:
    """A float32 random field of ``shape`` with unit variance and correlation length ~``cell`` voxels.

    Args:
        rng: generator (consumed deterministically).
        shape: output shape (any number of axes).
        cell: lattice spacing per axis in output voxels (larger = smoother).
    """
    coarse_shape = tuple(max(4, int(np.ceil(n / c)) + 3) for n, c in zip(shape, cell, strict=True))
    field = rng.standard_normal(coarse_shape).astype(np.float32)
    if len(shape) != 3:
        for axis, (n_out, n_c) in enumerate(zip(shape, coarse_shape, strict=True)):
            field = np.moveaxis(np.tensordot(_matrix(n_out, n_c), np.moveaxis(field, axis, 0), axes=(1, 0)), 0, axis)
        return np.ascontiguousarray(field, dtype=np.float32)
    (n0, n1, n2), (c0, c1, c2) = shape, coarse_shape
    field = (_matrix(n0, c0) @ field.reshape(c0, c1 * c2)).reshape(n0, c1, c2)
    field = np.matmul(_matrix(n1, c1)[None], field)
    return np.matmul(field, _matrix(n2, c2).T)
