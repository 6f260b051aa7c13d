"""Version 2 acquisition: per-subject imaging draws and the artefacts they drive.

All functions work on the internal IPR layout ``(H, W, D)`` = (superior→inferior,
anterior→posterior, left→right) of :mod:`.render`, before the Rician noise is added:

- :func:`coil_shading`: surface-coil receive profile, brighter within a few centimetres of the
  anterior and posterior skin (phased-array coils lie on the body).
- :func:`mix_slices`: slice profile, each slice taking a share of its neighbours' signal
  (imperfect slice selection, thicker effective slices).
- :func:`acquire`: per slice, the 2D k-space is (1) corrupted by breathing motion of the
  anterior abdominal wall, one displacement per phase-encode line, which puts ghosts of the
  wall along the phase-encode axis (Wood & Henkelman, "MR image artifacts from periodic motion",
  Med Phys 1985); (2) truncated to the acquired matrix (lower in-plane resolution and Gibbs
  ringing at sharp edges); then (3) anatomy just beyond the field of view along the phase-encode
  axis folds in at the opposite edge (wrap-around; the anatomy outside the rendered grid is
  approximated by mirroring the edge band, so only a body that reaches the edge wraps).

The output of :func:`acquire` is complex: Rician noise is then added to both channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from .config import AppearancePriors

__all__ = ["Imaging", "acquire", "coil_shading", "mix_slices", "sample_imaging"]

PE_AXIS = {"SI": 0, "AP": 1}


@dataclass(frozen=True)
class Imaging:
    """Version 2 draws of one subject: texture, acquisition and artefact parameters."""

    texture_gain: float
    fat_septa: float
    snr_factor: float
    resolution: float
    slice_mix: float
    phase_encode: str
    ghost_amplitude_mm: float
    ghost_period: float
    ghost_phase: float
    ghost_depth_mm: float
    wrap_mm: float  # 0: no wrap-around
    wrap_gain: float
    coil_shading: float
    coil_depth_mm: float

    def row(self) -> dict:
        """The ``labels.csv`` columns of these draws."""
        return {
            "phase_encode": self.phase_encode,
            "resolution": round(self.resolution, 3),
            "slice_mix": round(self.slice_mix, 3),
            "ghost_amplitude_mm": round(self.ghost_amplitude_mm, 2),
            "wrap_mm": round(self.wrap_mm, 1),
            "coil_shading": round(self.coil_shading, 3),
            "texture_gain": round(self.texture_gain, 3),
        }


def sample_imaging(rng: np.random.Generator, pr: AppearancePriors) -> Imaging:
    """Draw the imaging parameters of one subject (fixed order of draws)."""
    values = {name: getattr(pr, name).draw(rng) for name in (
        "texture_gain", "fat_septa", "snr_factor", "resolution", "slice_mix", "phase_encode", "ghost_amplitude",
        "ghost_period", "ghost_depth_mm", "wrap_mm", "wrap_gain", "coil_shading", "coil_depth_mm")}
    ghost_phase = float(rng.uniform(0, 2 * np.pi))
    wrap = rng.random() < pr.p_wrap
    return Imaging(
        texture_gain=values["texture_gain"], fat_septa=values["fat_septa"], snr_factor=values["snr_factor"],
        resolution=values["resolution"], slice_mix=values["slice_mix"], phase_encode=values["phase_encode"],
        ghost_amplitude_mm=values["ghost_amplitude"], ghost_period=values["ghost_period"], ghost_phase=ghost_phase,
        ghost_depth_mm=values["ghost_depth_mm"], wrap_mm=values["wrap_mm"] if wrap else 0.0,
        wrap_gain=values["wrap_gain"], coil_shading=values["coil_shading"], coil_depth_mm=values["coil_depth_mm"],
    )


def _depth_from_skin(body: np.ndarray, spacing_ap: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm, along the anterior-posterior axis 1) from the anterior and from the posterior skin."""
    ant = np.cumsum(body, axis=1, dtype=np.float32) * np.float32(spacing_ap)
    post = np.cumsum(body[:, ::-1], axis=1, dtype=np.float32)[:, ::-1] * np.float32(spacing_ap)
    return ant, post


def coil_shading(body: np.ndarray, im: Imaging, spacing_ap: float) -> np.ndarray:
    """Multiplicative receive profile ``1 + a (exp(-d_ant / L) + exp(-d_post / L))``, mean 1 inside the body.

    Args:
        body: ``(H, W, D)`` boolean mask of the body (not air).
        im: the subject's imaging draws (``coil_shading`` = a, ``coil_depth_mm`` = L).
        spacing_ap: voxel size along axis 1 (mm).
    """
    ant, post = _depth_from_skin(body, spacing_ap)
    inv = np.float32(-1.0 / im.coil_depth_mm)
    prof = 1 + np.float32(im.coil_shading) * (np.exp(ant * inv) + np.exp(post * inv))
    mean = float(prof[body].mean()) if body.any() else 1.0
    return (prof / np.float32(mean)).astype(np.float32)


def mix_slices(signal: np.ndarray, weight: float) -> np.ndarray:
    """Each slice keeps ``1 - 2 w`` of its signal and takes ``w`` from each neighbour (edges replicated)."""
    if weight <= 0 or signal.shape[2] < 2:
        return signal
    w = np.float32(weight)
    padded = np.concatenate([signal[:, :, :1], signal, signal[:, :, -1:]], axis=2)
    return (np.float32(1 - 2 * weight) * signal + w * (padded[:, :, :-2] + padded[:, :, 2:])).astype(np.float32)


def _breathing(signal: np.ndarray, body: np.ndarray, im: Imaging, spacing: tuple[float, float],
               pe: int) -> tuple[np.ndarray, np.ndarray]:
    """k-spaces (axes 0, 1) of the static part and of the moving anterior wall after its per-line motion."""
    ant, _ = _depth_from_skin(body, spacing[1])
    moving = (np.clip((im.ghost_depth_mm - ant) / 10.0, 0, 1) * body).astype(np.float32)  # smooth inner edge of the moving layer
    k_static = sfft.fft2(signal * (1 - moving), axes=(0, 1))
    k_moving = sfft.fft2(signal * moving, axes=(0, 1))
    n_pe = signal.shape[pe]
    order = np.fft.fftfreq(n_pe) * n_pe + n_pe // 2  # acquisition order: lines from -k_max to +k_max
    disp = im.ghost_amplitude_mm / spacing[1] * np.sin(2 * np.pi * order / im.ghost_period + im.ghost_phase)
    k_ap = np.fft.fftfreq(signal.shape[1])  # motion is anterior-posterior (axis 1)
    if pe == 0:  # line i (axis 0 frequency) shifts every anterior-posterior frequency
        phase = np.exp(-2j * np.pi * np.multiply.outer(disp, k_ap))
    else:  # the line is the anterior-posterior frequency itself
        phase = np.exp(-2j * np.pi * disp * k_ap)[None, :]
    k_moving *= phase[:, :, None].astype(np.complex64)
    return k_static, k_moving


def _truncate(k: np.ndarray, im: Imaging, pe: int) -> None:
    """Keep the acquired part of k-space: ``resolution`` of the lines along the phase-encode axis,
    ``(1 + resolution) / 2`` along the readout axis (in place)."""
    for axis, frac in ((pe, im.resolution), (1 - pe, (1 + im.resolution) / 2)):
        n = k.shape[axis]
        keep = np.abs(np.fft.fftfreq(n)) <= frac / 2 + 1e-9
        shape = [1, 1, 1]
        shape[axis] = n
        k *= keep.reshape(shape)


def _wrap(img: np.ndarray, im: Imaging, spacing: tuple[float, float], pe: int) -> np.ndarray:
    """Fold a band of ``wrap_mm`` beyond each phase-encode edge (mirrored edge band) into the opposite edge."""
    w = int(round(im.wrap_mm / spacing[pe]))
    if w <= 0:
        return img
    img = np.moveaxis(img, pe, 0).copy()
    g = np.float32(im.wrap_gain)
    near, far = img[:w].copy(), img[-w:].copy()
    img[:w] += g * far[::-1]  # beyond the far edge → appears at the near edge
    img[-w:] += g * near[::-1]
    return np.moveaxis(img, 0, pe)


def acquire(signal: np.ndarray, body: np.ndarray, im: Imaging, spacing: tuple[float, float]) -> np.ndarray:
    """Complex image after breathing ghosts, k-space truncation and wrap-around (see the module docstring).

    Args:
        signal: ``(H, W, D)`` float32 noise-free magnitude.
        body: ``(H, W, D)`` boolean body mask (the moving anterior wall is measured from its edge).
        im: imaging draws.
        spacing: in-plane voxel size (mm) along axes 0 and 1.

    Returns:
        complex64 array of ``signal``'s shape.
    """
    pe = PE_AXIS[im.phase_encode]
    k_static, k_moving = _breathing(signal, body, im, spacing, pe)
    k = k_static + k_moving
    del k_static, k_moving
    _truncate(k, im, pe)
    img = sfft.ifft2(k, axes=(0, 1)).astype(np.complex64, copy=False)
    return _wrap(img, im, spacing, pe)
