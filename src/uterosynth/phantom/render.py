"""Rendering a subject: tissue map → T2-weighted image with partial volume, bias field and Rician noise.

Pipeline (per subject, ``float32`` throughout):

1. *Grids.* The image is a stack of sagittal slices centred on the scanner isocentre; the
   patient is placed in it by a rigid transform (the sampled shift and small rotation), so
   each voxel index maps linearly to patient coordinates. The supersampled grid has ``f``
   samples per voxel in-plane and includes every voxel centre.
2. *Tissue map.* Coarse shapes are painted at image resolution and copied to the
   supersampled grid (nearest neighbour); fine shapes are painted on the supersampled grid.
   The segmentation is the tissue map at voxel centres mapped to UMD labels.
3. *Signal.* Each supersample gets its tissue's relative T2 signal; a separable tent filter
   of width 2 voxels averages them back to image resolution (partial volume and a
   realistic point-spread function). A smooth per-tissue texture, then a smooth
   multiplicative bias field (receive-coil profile, plus a central dielectric shading at 3 T)
   are applied.
4. *Noise.* Rician magnitude noise ``|s + n_1 + i n_2|`` with ``n_k ~ N(0, sigma^2)`` and
   ``sigma = signal(myometrium) / SNR`` (Gudbjartsson & Patz, MRM 1995).
   Version 2 (``Subject.imaging`` set) uses two-scale texture with fat septa
   (:mod:`.texture`), a surface-coil profile, a slice profile, breathing ghosts, the acquired
   k-space matrix and wrap-around (:mod:`.artifacts`), and adds the noise to the complex image.
5. *Storage.* int16 scaled like scanner data, in a dcm2niix-like sagittal layout
   (:data:`SCANNER_AXCODES`), not the project's canonical IPR layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Subject
from .artifacts import Imaging, acquire, coil_shading, mix_slices
from .config import PhantomConfig
from .fields import smooth_field
from .scene import build_scene
from .shapes import Grid
from .texture import texture
from .tissues import T2_SIGNAL, TEXTURE, Tissue, seg_lut, tissue_lut

__all__ = ["Rendered", "SCANNER_AXCODES", "render_subject", "to_scanner", "scanner_affine", "ipr_affine"]

# Stored array axes (nibabel axis codes): rows anterior → posterior, columns inferior → superior,
# slices towards the patient's right, as dcm2niix writes a sagittal series.
SCANNER_AXCODES = ("P", "S", "R")


@dataclass(frozen=True)
class Rendered:
    """One rendered subject in the internal IPR layout ``(H, W, D)`` = (superior→inferior, anterior→posterior, left→right)."""

    image: np.ndarray  # int16
    seg: np.ndarray  # uint8 UMD labels
    tissue: np.ndarray  # uint8 tissue codes at voxel centres (internal ground truth)
    clean: np.ndarray  # float32 noise-free image (bias and texture applied)
    sigma: float  # Rician noise sigma (stored units)
    affine: np.ndarray  # (4, 4) voxel (IPR index) → world RAS mm
    landmarks: dict[str, np.ndarray]  # world RAS mm


def ipr_affine(cfg: PhantomConfig) -> np.ndarray:
    """Affine of the internal IPR array: FOV centred on the isocentre (world origin)."""
    n0, n1 = cfg.geometry.matrix
    n2 = cfg.geometry.slices
    dz, dy, dx = cfg.geometry.spacing
    aff = np.zeros((4, 4))
    aff[0, 2] = dx
    aff[1, 1] = -dy
    aff[2, 0] = -dz
    aff[:3, 3] = [-(n2 - 1) / 2 * dx, (n1 - 1) / 2 * dy, (n0 - 1) / 2 * dz]
    aff[3, 3] = 1
    return aff


def to_scanner(array: np.ndarray) -> np.ndarray:
    """Internal IPR array ``(H, W, D)`` → stored scanner layout (:data:`SCANNER_AXCODES`)."""
    return np.ascontiguousarray(array.transpose(1, 0, 2)[:, ::-1, :])


def scanner_affine(ipr: np.ndarray, shape_ipr: tuple[int, int, int]) -> np.ndarray:
    """Affine of :func:`to_scanner`'s output: stored ``[i, j, k]`` = internal ``[H-1-j, i, k]``."""
    h = shape_ipr[0]
    perm = np.zeros((4, 4))
    perm[0, 1] = -1
    perm[0, 3] = h - 1
    perm[1, 0] = 1
    perm[2, 2] = 1
    perm[3, 3] = 1
    return ipr @ perm


def _grids(cfg: PhantomConfig, s: Subject) -> tuple[Grid, np.ndarray, np.ndarray]:
    """Image grid (index → patient mm) and the rigid pose (world = rot @ patient + t)."""
    geo = cfg.geometry
    aff = ipr_affine(cfg)
    rot = s.rotation
    fov_c = np.array([0.0, geo.fov_center[0], geo.fov_center[1]])
    t = s.shift - rot @ fov_c
    origin = rot.T @ (aff[:3, 3] - t)
    steps = rot.T @ aff[:3, :3]
    return Grid((geo.matrix[0], geo.matrix[1], geo.slices), origin, steps), rot, t


def _sub_grids(base: Grid, box, f: int) -> tuple[Grid, Grid]:
    """The image grid restricted to ``box`` and its in-plane supersampled version (voxel centres included)."""
    start = np.array([b.start for b in box], float)
    shape = tuple(b.stop - b.start for b in box)
    origin = base.origin + base.steps @ start
    ss_steps = base.steps.copy()
    ss_steps[:, :2] /= f
    ss_origin = origin - (f - 1) / f * (base.steps[:, 0] + base.steps[:, 1])
    return Grid(shape, origin, base.steps), Grid((f * shape[0] + f - 1, f * shape[1] + f - 1, shape[2]), ss_origin, ss_steps)


def _union_box(base: Grid, shapes, margin: int = 2):
    boxes = [b for b in (base.box(*sh.bounds()) for sh in shapes) if b is not None]
    if not boxes:
        return None
    return tuple(slice(max(min(b[a].start for b in boxes) - (margin if a < 2 else 0), 0),
                       min(max(b[a].stop for b in boxes) + (margin if a < 2 else 0), base.shape[a])) for a in range(3))


def _filter3(a: np.ndarray, f: int) -> np.ndarray:
    """What nearest-neighbour upsampling by ``f`` followed by :func:`_tent_downsample` does, as a 3-tap filter."""
    if f == 1:
        return a
    d = np.arange(-(f - 1), f)
    w = (f - np.abs(d)) / f**2
    wm, wp = float(w[d / f < -0.5].sum()), float(w[d / f >= 0.5].sum())
    w0 = 1.0 - wm - wp
    for axis in (0, 1):
        a = np.moveaxis(a, axis, 0)
        out = a * np.float32(w0)
        if wm:
            out[1:] += a[:-1] * np.float32(wm)
            out[0] += a[0] * np.float32(wm)
        if wp:
            out[:-1] += a[1:] * np.float32(wp)
            out[-1] += a[-1] * np.float32(wp)
        a = np.moveaxis(out, 0, axis)
    return np.ascontiguousarray(a)


def _upsample(tissue: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return tissue.copy()
    idx = [np.clip(np.floor((np.arange(f * n + f - 1) - (f - 1)) / f + 0.5).astype(int), 0, n - 1)
           for n in tissue.shape[:2]]
    return tissue[idx[0]][:, idx[1]]


def _tent_downsample(a: np.ndarray, f: int, n: tuple[int, int]) -> np.ndarray:
    """Weights ``(f - |d|) / f^2`` for ``|d| < f`` around each voxel centre, along axes 0 and 1."""
    if f == 1:
        return a
    for axis in (0, 1):
        out = None
        for d in range(-(f - 1), f):
            w = np.float32((f - abs(d)) / f**2)
            sl = [slice(None)] * a.ndim
            sl[axis] = slice(f - 1 + d, f - 1 + d + f * (n[axis] - 1) + 1, f)
            term = a[tuple(sl)] * w
            out = term if out is None else out + term
        a = out
    return a


def _bias_field(cfg: PhantomConfig, s: Subject, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth multiplicative field ``exp(b * p)`` in scanner coordinates normalised to [-1, 1].

    ``p`` is a sum of a (superior, anterior) term and a left-right term, so the field is built
    as an outer product: phased-array receive coils anteriorly and posteriorly (brighter
    towards both surfaces), a random low-order tilt, and at 3 T a central dielectric shading.
    """
    zz = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    yy = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    xx = np.linspace(-1, 1, shape[2], dtype=np.float32)
    c = s.bias_coeffs.astype(np.float32)
    plane = (0.9 + 0.3 * abs(c[0])) * yy * yy + 0.5 * (c[1] * yy + c[2] * zz) + 0.3 * c[4] * zz * zz + 0.3 * c[5] * yy * zz
    if s.field_strength == "3T":
        plane = plane - (0.6 + 0.15 * c[6]) * np.exp(-((yy / 0.45) ** 2) - ((zz / 0.55) ** 2))
    line = 0.25 * c[3] * xx
    b = np.float32(s.bias_strength)
    return (np.exp(b * (plane - plane.mean()))[:, :, None] * np.exp(b * (line - line.mean()))[None, None, :]).astype(np.float32)


def relative_signal(cfg: PhantomConfig, s: Subject) -> np.ndarray:
    """Per-tissue relative T2 signal of this subject (jittered; 3 T contrast applied)."""
    lut = tissue_lut(T2_SIGNAL) * s.tissue_jitter
    lut[int(Tissue.URINE)] = 1.0
    lut[int(Tissue.AIR)] = 0.0
    if s.field_strength == "3T":
        lut = lut ** np.float32(cfg.acquisition.contrast_3t)
        lut[int(Tissue.FAT)] *= 0.94
    return lut.astype(np.float32)


def _acquire_v2(cfg: PhantomConfig, signal: np.ndarray, tissue: np.ndarray, im: Imaging) -> np.ndarray:
    """Version 2: coil shading, slice profile, then the k-space artefacts; a complex64 image."""
    body = tissue != int(Tissue.AIR)
    spacing = (cfg.geometry.spacing[0], cfg.geometry.spacing[1])
    signal = signal * coil_shading(body, im, spacing[1])
    signal = mix_slices(signal, im.slice_mix)
    return acquire(signal, body, im, spacing)


def render_subject(s: Subject, cfg: PhantomConfig, rng: np.random.Generator) -> Rendered:
    """Render subject ``s``; ``rng`` drives texture and noise (deterministic given its state)."""
    f = cfg.geometry.supersample
    base, rot, t = _grids(cfg, s)
    coarse, fine = build_scene(s)
    tissue = np.zeros(base.shape, dtype=np.uint8)
    for shape in coarse:
        shape.paint(tissue, base)
    rel = relative_signal(cfg, s) * np.float32(s.gain)
    signal = _filter3(rel[tissue], f)
    # Supersample only where the fine shapes are; elsewhere the filter above is identical.
    fb = _union_box(base, fine)
    if fb is not None:
        _, ss = _sub_grids(base, fb, f)
        fine_map = _upsample(tissue[fb], f)
        for shape in fine:
            shape.paint(fine_map, ss)
        tissue[fb] = fine_map[f - 1 :: f, f - 1 :: f, :]
        signal[fb] = _tent_downsample(rel[fine_map], f, tissue[fb].shape[:2])
        del fine_map
    centre = tissue
    seg = seg_lut()[centre]
    if s.imaging is None:
        tex = smooth_field(rng, base.shape, (7.0, 7.0, 2.5))
        tex *= tissue_lut(TEXTURE)[centre]
        tex += 1.0
        np.maximum(tex, 0.2, out=tex)
    else:
        tex = texture(rng, centre, s.imaging, cfg.geometry.spacing[0])
    tex *= _bias_field(cfg, s, base.shape)
    signal *= tex
    del tex
    cplx = None if s.imaging is None else _acquire_v2(cfg, signal, centre, s.imaging)
    if cplx is not None:
        signal = np.abs(cplx)

    sigma = np.float32(rel[int(Tissue.MYOMETRIUM)] / s.snr)
    real = rng.standard_normal(base.shape, dtype=np.float32)
    imag = rng.standard_normal(base.shape, dtype=np.float32)
    real *= sigma
    imag *= sigma
    if cplx is None:
        real += signal
    else:
        real += cplx.real
        imag += cplx.imag
        del cplx
    noisy = np.hypot(real, imag, out=real)  # Rician magnitude
    noisy += 0.5
    np.minimum(noisy, 32767.0, out=noisy)
    image = noisy.astype(np.int16)  # values are >= 0, so truncation after +0.5 rounds
    del real, imag
    sigma = float(sigma)

    aff = ipr_affine(cfg)
    ut = s.uterus
    pts = {"internal_os": ut.internal_os, "external_os": ut.external_os, "fundus": ut.fundus,
           "corpus_mid": ut.points[-2], "symphysis": np.zeros(3), "bladder": s.bladder_center}
    landmarks = {k: rot @ v + t for k, v in pts.items()}
    return Rendered(image=image, seg=seg, tissue=centre, clean=signal, sigma=sigma, affine=aff, landmarks=landmarks)
