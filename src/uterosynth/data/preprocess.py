"""Preprocessing of one subject: resample → reorient → N4 → ROI → normalise → items.

Resampling runs on the native grid with each axis given the target spacing of the canonical
axis it becomes; per-axis resampling commutes with the flips/permutations of reorientation, so
this equals "reorient, then resample" while copying less data.

Every step keeps geometry: each operation on the voxel grid (flip/permute, resample, crop,
pad, resize) right-multiplies the affine by the matching index transform, so every item's
affine places its voxels where they were in the scanner. 2D and 3D items share all steps;
only the last one differs (slices vs. one volume).

Resampling and resizing act on the voxel grid axis by axis (:func:`resample_matrix`) rather
than through MONAI ``Spacing``/SimpleITK ``Resample``: the change of grid is a per-axis scale,
which a separable sparse operator applies several times faster than a general affine
resampler (``grid_sample``) on two CPU cores, and the affine update is exact (output index
``i'`` samples input index ``(i' + 0.5) r - 0.5``). Downsampling is anti-aliased by a Gaussian
pre-filter folded into the operator.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

from ..core.config import config_hash
from ..core.errors import DataError
from .config import N4Config, NormalizeConfig, OutputConfig, PreprocessConfig
from .io import CANONICAL, Scan, reorient

__all__ = [
    "Item",
    "crop_or_pad",
    "fit_inplane",
    "n4_correct",
    "normalize_intensity",
    "preprocess_subject",
    "resample",
    "resample_matrix",
    "resize_array",
    "roi_region",
    "sample_window",
    "scale_affine",
    "window_centre",
    "window_matrix",
]


@dataclass
class Item:
    """One prepared item: ``array`` ``(H, W)`` (2D) or ``(H, W, D)`` (3D), its affine, and
    ``slice_index`` (the sagittal index in the reoriented, resampled volume; -1 for 3D)."""

    array: np.ndarray
    affine: np.ndarray
    slice_index: int = -1
    pad: np.ndarray | None = None  # ``roi.mode: window``: True where the window left the field of view
    label: np.ndarray | None = None  # the label map on the item's grid (``fit: pad_resize``: before the resize)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def scale_affine(affine: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Affine of a grid resampled with index ratio ``r = n_in / n_out`` per axis.

    With ``align_corners=False`` output index ``i'`` samples input index ``(i' + 0.5) r - 0.5``,
    so ``A' = A @ [[diag(r), (r - 1) / 2], [0, 1]]`` (field of view preserved).
    """
    r = np.asarray(ratios, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = np.diag(r)
    t[:3, 3] = (r - 1.0) / 2.0
    return affine @ t


def translate_affine(affine: np.ndarray, start: Sequence[float]) -> np.ndarray:
    """Affine of the sub-grid whose index 0 is index ``start`` of the original grid."""
    t = np.eye(4)
    t[:3, 3] = np.asarray(start, dtype=np.float64)
    return affine @ t


@functools.lru_cache(maxsize=64)
def resample_matrix(n_in: int, n_out: int, *, antialias: bool = True):
    """Sparse ``(n_out, n_in)`` operator resampling one axis linearly (``align_corners=False``).

    Output index ``i'`` samples input position ``(i' + 0.5) r - 0.5`` with ``r = n_in / n_out``
    (edges replicated). When shrinking, a Gaussian pre-filter with ``sigma = (r - 1) / 2`` (the
    scikit-image ``resize`` rule) is folded in. Both factors are symmetric, so a linear ramp is
    reproduced exactly away from the borders, i.e. geometry is exact. Written by hand because
    torch's ``antialias=True`` shifts samples by up to 0.1 voxel for non-integer ratios, and a
    separable sparse operator is faster than a dense Gaussian filter followed by resampling.
    """
    from scipy import sparse

    r = n_in / n_out
    centres = np.clip((np.arange(n_out) + 0.5) * r - 0.5, 0, n_in - 1)
    k0 = np.floor(centres).astype(np.int64)
    k1 = np.minimum(k0 + 1, n_in - 1)
    frac = centres - k0
    rows = np.repeat(np.arange(n_out), 2)
    op = sparse.csr_matrix(
        (np.stack([1 - frac, frac], axis=1).ravel(), (rows, np.stack([k0, k1], axis=1).ravel())), shape=(n_out, n_in)
    )
    sigma = (r - 1.0) / 2.0 if antialias else 0.0
    if sigma > 0.05:
        radius = max(1, int(3.0 * sigma + 0.5))
        taps = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        cols = np.clip(np.arange(n_in)[:, None] + taps[None, :], 0, n_in - 1).ravel()  # 'nearest' edges
        gauss = sparse.csr_matrix(
            (np.tile(kernel, n_in), (np.repeat(np.arange(n_in), len(taps)), cols)), shape=(n_in, n_in)
        )
        op = op @ gauss
    return op.astype(np.float32).tocsr()


def _apply_along(array: np.ndarray, n_out: int, axis: int, op=None) -> np.ndarray:
    """Resample ``axis`` of ``array`` to ``n_out`` samples with ``op`` (default :func:`resample_matrix`)."""
    op = resample_matrix(array.shape[axis], n_out) if op is None else op
    if array.flags.f_contiguous and not array.flags.c_contiguous:  # NIfTI (Fortran-ordered) data
        if axis == 0 and array.ndim == 3:  # slice by slice: each transpose fits in cache
            return np.stack([op @ np.ascontiguousarray(array[:, :, z]) for z in range(array.shape[2])], axis=2)
        return _apply_along(array.T, n_out, array.ndim - 1 - axis, op).T
    shape = array.shape
    pre, n, post = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1 :]))
    block = np.ascontiguousarray(array, dtype=np.float32).reshape(pre, n, post)
    if pre == 1:
        out = op @ block[0]
    elif post == 1:  # resampled axis is the fastest in memory: transpose in cache-sized chunks
        flat = block[:, :, 0]
        out = np.empty((pre, op.shape[0]), dtype=np.float32)
        for s in range(0, pre, 2048):
            out[s : s + 2048] = (op @ np.ascontiguousarray(flat[s : s + 2048].T)).T
    else:
        out = np.stack([op @ block[p] for p in range(pre)])
    return np.ascontiguousarray(out, dtype=np.float32).reshape(*shape[:axis], op.shape[0], *shape[axis + 1 :])


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Nearest input index for each output index (``nearest-exact``: ``floor((i' + 0.5) r)``)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_array(array: np.ndarray, size: Sequence[int], *, label: bool = False) -> np.ndarray:
    """Resize an ``(X, Y, Z)`` array to ``size`` axis by axis (linear, or nearest for labels)."""
    out = array
    for axis, (n_in, n_out) in enumerate(zip(array.shape, size, strict=True)):
        if n_in == n_out:
            continue
        if label:
            out = np.take(out, nearest_indices(n_in, int(n_out)), axis=axis)
        else:
            out = _apply_along(out, int(n_out), axis)
    return out if label else np.asarray(out, dtype=np.float32)


def resample(scan: Scan, spacing: Sequence[float | None], *, label: bool = False) -> Scan:
    """Resample to ``spacing`` (mm per axis; ``None`` keeps an axis), linear or nearest.

    The output size is ``round(n s / s')``; the actual spacing ``n s / n'`` keeps the field of
    view exactly (it equals ``s'`` whenever ``n s / s'`` is whole).
    """
    current = scan.spacing
    size = [
        n if target is None else max(1, int(round(n * s / target)))
        for n, s, target in zip(scan.shape, current, spacing, strict=True)
    ]
    if list(size) == list(scan.shape):
        return scan
    array = resize_array(scan.array, size, label=label)
    ratios = [n / m for n, m in zip(scan.shape, size, strict=True)]
    return Scan(array=array, affine=scale_affine(scan.affine, ratios), path=scan.path, digest=scan.digest)


def n4_correct(array: np.ndarray, spacing: Sequence[float], cfg: N4Config) -> np.ndarray:
    """N4 bias-field correction (Tustison et al. 2010, IEEE TMI 29(6)) with SimpleITK.

    The bias field is fitted on a copy shrunk by ``cfg.shrink`` in-plane (less along thick
    slices) inside an Otsu foreground mask, evaluated at full resolution and divided out.

    Args:
        array: ``(X, Y, Z)`` float32 image.
        spacing: voxel size (mm).
    """
    import SimpleITK as sitk

    lo = float(array.min())
    image = sitk.GetImageFromArray(np.ascontiguousarray((array - lo + 1.0).transpose(2, 1, 0), dtype=np.float32))
    image.SetSpacing([float(s) for s in spacing])
    finest = min(spacing)
    shrink = [max(1, min(cfg.shrink, int(round(cfg.shrink * finest / s)))) for s in spacing]
    small = sitk.Shrink(image, shrink)
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in cfg.iterations])
    if cfg.fitting_levels is not None:
        corrector.SetNumberOfFittingLevels(cfg.fitting_levels)
    try:
        corrector.Execute(small, mask)
    except RuntimeError as err:  # e.g. an empty mask on a blank image
        raise DataError(f"N4 bias-field correction failed ({str(err).strip().splitlines()[-1][:160]})") from err
    log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image)).transpose(2, 1, 0)
    corrected = (array - lo + 1.0) / np.exp(log_bias, dtype=np.float32)
    return corrected.astype(np.float32, copy=False)


def normalize_intensity(array: np.ndarray, cfg: NormalizeConfig) -> np.ndarray:
    """Clip to the ``cfg.percentiles`` of ``array`` and map linearly onto ``cfg.range``."""
    lo, hi = np.percentile(array, cfg.percentiles)
    out_lo, out_hi = cfg.range
    if hi <= lo:  # constant image
        return np.full(array.shape, out_lo, dtype=np.float32)
    scale = (out_hi - out_lo) / (hi - lo)
    out = (np.clip(array, lo, hi) - lo) * np.float32(scale) + np.float32(out_lo)
    return out.astype(np.float32, copy=False)


def crop_or_pad(array: np.ndarray, affine: np.ndarray, start: Sequence[int], size: Sequence[int], *, fill: float = 0.0):
    """The window ``[start, start + size)`` of ``array``; parts outside are ``fill``.

    Returns:
        ``(window, affine)`` with the affine translated so voxels keep their world position.
    """
    out = np.full(tuple(int(s) for s in size), fill, dtype=array.dtype)
    src, dst = [], []
    for a, (s0, n) in enumerate(zip(start, size, strict=True)):
        lo, hi = max(0, s0), min(array.shape[a], s0 + n)
        if hi <= lo:
            return out, translate_affine(affine, start)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = array[tuple(src)]
    return out, translate_affine(affine, start)


def window_matrix(n_in: int, n_out: int, origin: float, ratio: float) -> tuple[object, np.ndarray]:
    """Sparse ``(n_out, n_in)`` operator sampling input positions ``origin + i' * ratio`` linearly.

    Like :func:`resample_matrix` (Gaussian anti-aliasing with ``sigma = (ratio - 1) / 2`` when
    shrinking), but for a window that may leave the grid: ``valid[i']`` is False where the
    position lies more than half a voxel outside ``[0, n_in - 1]``; those rows are zero.

    Returns:
        ``(op, valid)``.
    """
    from scipy import sparse

    pos = origin + np.arange(n_out) * ratio
    valid = (pos >= -0.5) & (pos <= n_in - 0.5)
    centres = np.clip(pos, 0, n_in - 1)
    k0 = np.floor(centres).astype(np.int64)
    k1 = np.minimum(k0 + 1, n_in - 1)
    frac = centres - k0
    weights = np.stack([1 - frac, frac], axis=1) * valid[:, None]
    op = sparse.csr_matrix(
        (weights.ravel(), (np.repeat(np.arange(n_out), 2), np.stack([k0, k1], axis=1).ravel())), shape=(n_out, n_in)
    )
    sigma = (ratio - 1.0) / 2.0
    if sigma > 0.05:
        radius = max(1, int(3.0 * sigma + 0.5))
        taps = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        cols = np.clip(np.arange(n_in)[:, None] + taps[None, :], 0, n_in - 1).ravel()
        gauss = sparse.csr_matrix(
            (np.tile(kernel, n_in), (np.repeat(np.arange(n_in), len(taps)), cols)), shape=(n_in, n_in)
        )
        op = op @ gauss
    return op.astype(np.float32).tocsr(), valid


def sample_window(
    array: np.ndarray,
    affine: np.ndarray,
    origin: Sequence[float],
    ratio: Sequence[float],
    size: Sequence[int],
    *,
    label: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the window whose voxel ``i`` lies at input index ``origin + i * ratio`` (per axis).

    Linear (anti-aliased) for images, nearest for labels; outside the field of view the window
    holds 0. The affine is updated exactly: ``A' = A @ [[diag(ratio), origin], [0, 1]]``, so
    the output spacing is the input spacing times ``ratio``.

    Args:
        array: ``(X, Y, Z)`` input.
        affine: its voxel-to-world affine.
        origin, ratio, size: per axis, the input index of output voxel 0, the step in input
            voxels, and the number of output voxels.

    Returns:
        ``(window, affine, pad)`` — ``pad`` is True where the window left the field of view.
    """
    out = array
    valids = []
    for axis in range(3):
        n_in, o, r, n = array.shape[axis], float(origin[axis]), float(ratio[axis]), int(size[axis])
        if n == n_in and o == 0.0 and r == 1.0:
            valids.append(np.ones(n, dtype=bool))
            continue
        if label:
            pos = o + np.arange(n) * r
            valids.append((pos >= -0.5) & (pos <= n_in - 0.5))
            idx = np.clip(np.floor(pos + 0.5).astype(np.int64), 0, n_in - 1)
            out = np.take(out, idx, axis=axis)
            continue
        op, valid = window_matrix(n_in, n, o, r)
        valids.append(valid)
        out = _apply_along(out, n, axis, op)
    pad = ~(valids[0][:, None, None] & valids[1][None, :, None] & valids[2][None, None, :])
    if label:
        out = np.where(pad, 0, out).astype(array.dtype, copy=False)
    else:
        out = np.asarray(out, dtype=np.float32)
    t = np.eye(4)
    t[:3, :3] = np.diag(np.asarray(ratio, dtype=np.float64))
    t[:3, 3] = np.asarray(origin, dtype=np.float64)
    return out, affine @ t, pad


def window_centre(cfg: PreprocessConfig, scan: Scan, label: np.ndarray | None, *, where: str,
                  label_where: str = "") -> list[float]:
    """Continuous voxel index of the ``roi.mode: window`` centre (``roi.centre`` + ``roi.centre_offset_mm``).

    Raises:
        DataError: a uterus centre without a label map, or with no uterus voxel in it.
    """
    roi = cfg.roi
    if roi.centre == "image_centre":
        centre = [(n - 1) / 2 for n in scan.shape]
    else:
        if label is None:
            raise DataError(f"{where}: roi.centre '{roi.centre}' needs a label map, none found beside the image; "
                            "use roi.centre: image_centre")
        mask = np.isin(label, roi.labels)
        if not mask.any():
            raise DataError(
                f"{label_where or where}: label map has no uterus voxels (labels {', '.join(map(str, roi.labels))}); "
                f"roi.centre '{roi.centre}' needs them (fix the segmentation, or use roi.centre: image_centre)"
            )
        centre = []
        for axis in range(3):
            counts = mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64)
            hits = np.flatnonzero(counts)
            if roi.centre == "uterus_centroid":
                centre.append(float((counts * np.arange(len(counts))).sum() / counts.sum()))
            else:
                centre.append((hits[0] + hits[-1]) / 2)
    return [c + o / s for c, o, s in zip(centre, roi.centre_offset_mm, scan.spacing, strict=True)]


def _centred_start(length: int, target: int) -> int:
    return (length - target) // 2


def roi_region(
    cfg: PreprocessConfig, scan: Scan, label: np.ndarray | None, *, where: str, label_where: str = ""
) -> tuple[list[int], list[int]]:
    """``(start, stop)`` voxel indices of the region of interest (may exceed the volume for ``box``).

    Raises:
        DataError: ``uterus`` without a label map, or with no uterus voxel in it.
    """
    roi = cfg.roi
    shape = scan.shape
    spacing = scan.spacing
    if roi.mode == "full":
        return [0, 0, 0], list(shape)
    if roi.mode == "box":
        size = [max(1, int(round(b / s))) for b, s in zip(roi.box_mm or (), spacing, strict=False)]
        if len(size) == 2:
            size.append(shape[2])
        centre = [n / 2 + o / s for n, o, s in zip(shape, roi.box_offset_mm, spacing, strict=True)]
        start = [int(round(c - m / 2)) for c, m in zip(centre, size, strict=True)]
        return start, [s + m for s, m in zip(start, size, strict=True)]
    if label is None:
        raise DataError(f"{where}: roi 'uterus' needs a label map, none found beside the image; use roi.mode: full or box")
    mask = np.isin(label, roi.labels)
    if not mask.any():
        raise DataError(
            f"{label_where or where}: label map has no uterus voxels (labels {', '.join(map(str, roi.labels))}); "
            "roi 'uterus' needs them (fix the segmentation, or use roi.mode: full)"
        )
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        margin = int(np.ceil(roi.margin_mm[axis] / spacing[axis]))
        start.append(max(0, int(hits[0]) - margin))
        stop.append(min(shape[axis], int(hits[-1]) + 1 + margin))
    return start, stop


def fit_inplane(array: np.ndarray, affine: np.ndarray, shape: Sequence[int], fit: str, *, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Bring axes 0 and 1 of ``(X, Y, Z)`` to ``shape`` (``crop_pad`` or ``pad_resize``).

    ``pad_resize`` pads the region symmetrically to the aspect ratio of ``shape`` (so nothing is
    distorted), then resizes it (bilinear, Gaussian anti-aliasing when shrinking). That is a
    shortcut a classifier can read: the pad bands and the spacing follow the ROI's aspect
    ratio, i.e. the uterus orientation — use ``roi.mode: window`` instead.
    """
    if fit == "pad_resize":
        warnings.warn(
            "output.fit 'pad_resize' pads the ROI with bands and rescales it per item: band widths and spacing follow "
            "the uterus box's aspect ratio and so give the orientation class away; use roi.mode: window",
            UserWarning,
            stacklevel=2,
        )
    h, w = int(shape[0]), int(shape[1])
    x, y, z = array.shape
    if fit == "crop_pad":
        start = [_centred_start(x, h), _centred_start(y, w), 0]
        return crop_or_pad(array, affine, start, (h, w, z), fill=fill)
    # pad to the target aspect ratio, then resize
    if x * w >= y * h:
        px, py = x, max(y, int(round(x * w / h)))
    else:
        px, py = max(x, int(round(y * h / w))), y
    array, affine = crop_or_pad(array, affine, [_centred_start(x, px), _centred_start(y, py), 0], (px, py, z), fill=fill)
    if (px, py) == (h, w):
        return array, affine
    resized = resize_array(array, (h, w, z))
    return resized, scale_affine(affine, [px / h, py / w, 1.0])


# Bumped when the same preprocessing configuration gives other pixels, so that the hash recorded
# with prepared data tells the two apart. 2: a 3D window keeping the scan's slice spacing is
# aligned to the acquired slices.
REVISION = 2


def preprocess_hash(cfg: PreprocessConfig) -> str:
    """Short hash of what makes an item's pixels: the configuration and :data:`REVISION`."""
    return config_hash(cfg, salt=f"{REVISION}:")


def _slice_indices(
    cfg: PreprocessConfig, depth: int, label: np.ndarray | None, *, where: str, label_where: str = ""
) -> list[int]:
    out = cfg.output
    if out.slices == "central":
        first = max(0, depth // 2 - out.k // 2)
        return list(range(first, min(depth, first + out.k)))
    if label is None:
        raise DataError(f"{where}: output.slices 'uterus' needs a label map, none found beside the image")
    counts = np.isin(label, cfg.roi.labels).sum(axis=(0, 1))
    picked = [int(k) for k in np.flatnonzero(counts >= out.min_uterus_voxels)]
    if not picked:
        raise DataError(
            f"{label_where or where}: no sagittal slice holds >= {out.min_uterus_voxels} uterus voxels; "
            "fix the segmentation or use output.slices: central"
        )
    return picked


def preprocess_subject(cfg: PreprocessConfig, image: Scan, label: Scan | None = None) -> list[Item]:
    """Turn one subject's image (and optional label map on the same grid) into items.

    Args:
        cfg: the preprocessing configuration.
        image: the scan, ``(X, Y, Z)``.
        label: its label map on the same grid, or ``None``.

    Returns:
        2D: one :class:`Item` per selected sagittal slice, ``(H, W)``; 3D: one ``(H, W, D)``.

    Raises:
        DataError: a step cannot be applied to this subject (e.g. ``uterus`` ROI, no labels).
    """
    where = str(image.path) if image.path is not None else "image"
    label_where = str(label.path) if label is not None and label.path is not None else ""
    windowed = cfg.roi.mode == "window"
    if cfg.resample.enabled:  # resample first (per-axis, so it commutes with reorienting): less to copy
        canonical = [*cfg.resample.spacing, cfg.resample.slice_thickness]
        if windowed:  # the window samples its own spacing; 2D keeps (or resamples) the slice axis
            canonical = [None, None, cfg.resample.slice_thickness if cfg.output.dims == 2 else None]
        target = canonical
        if cfg.reorient:
            transform = nio.ornt_transform(nio.io_orientation(image.affine), nio.axcodes2ornt(CANONICAL))
            target = [canonical[int(transform[axis, 0])] for axis in range(3)]
        image = resample(image, target)
        label = resample(label, target, label=True) if label is not None else None
    if cfg.reorient:
        image = reorient(image, CANONICAL)
        label = reorient(label, CANONICAL) if label is not None else None
    array = image.array
    if cfg.n4.enabled:
        array = n4_correct(array, image.spacing, cfg.n4)
    label_array = label.array if label is not None else None
    if windowed:
        return _window_items(cfg, Scan(array=array, affine=image.affine, path=image.path), label_array,
                             where=where, label_where=label_where)

    start, stop = roi_region(cfg, image, label_array, where=where, label_where=label_where)
    inner_lo = [max(0, s) for s in start]
    inner_hi = [min(n, e) for n, e in zip(image.shape, stop, strict=True)]
    if any(h <= lo for lo, h in zip(inner_lo, inner_hi, strict=True)):
        raise DataError(f"{where}: roi box lies outside the field of view; check roi.box_mm / roi.box_offset_mm")
    window = tuple(slice(lo, h) for lo, h in zip(inner_lo, inner_hi, strict=True))
    cropped = array[window]
    if cfg.normalize.enabled:
        cropped = normalize_intensity(cropped, cfg.normalize)
        fill = float(cfg.normalize.range[0])
    else:
        fill = float(cropped.min())
    size = [e - s for s, e in zip(start, stop, strict=True)]
    rel = [s - lo for s, lo in zip(start, inner_lo, strict=True)]
    affine = translate_affine(image.affine, inner_lo)
    volume, affine = crop_or_pad(cropped, affine, rel, size, fill=fill)
    label_roi = None
    if label_array is not None:
        label_roi, _ = crop_or_pad(label_array[window], np.eye(4), rel, size, fill=0)

    out = cfg.output
    if out.dims == 3:
        depth = int(out.shape[2])
        first = _centred_start(volume.shape[2], depth)
        volume, affine = crop_or_pad(volume, affine, [0, 0, first], (*volume.shape[:2], depth), fill=fill)
        volume, affine = fit_inplane(volume, affine, out.shape[:2], out.fit, fill=fill)
        labels = _item_labels(label_roi, first, depth, out)
        return [Item(array=volume, affine=affine, slice_index=-1, label=labels)]
    indices = _slice_indices(cfg, volume.shape[2], label_roi, where=where, label_where=label_where)
    depth = indices[-1] - indices[0] + 1
    stack, affine = crop_or_pad(volume, affine, [0, 0, indices[0]], (*volume.shape[:2], depth), fill=fill)
    stack, affine = fit_inplane(stack, affine, out.shape, out.fit, fill=fill)
    labels = _item_labels(label_roi, indices[0], depth, out)
    items = []
    for k in indices:
        local = k - indices[0]
        items.append(Item(array=np.ascontiguousarray(stack[:, :, local]), affine=translate_affine(affine, [0, 0, local]),
                          slice_index=start[2] + k, label=None if labels is None else labels[:, :, local]))
    return items


def _item_labels(label_roi: np.ndarray | None, first: int, depth: int, out: OutputConfig) -> np.ndarray | None:
    """The ROI's label map cut to the items' slices and, for ``crop_pad``, their in-plane window
    (``pad_resize`` rescales per item: its labels stay on the ROI grid, which holds the same structures)."""
    if label_roi is None:
        return None
    labels, _ = crop_or_pad(label_roi, np.eye(4), [0, 0, first], (*label_roi.shape[:2], depth), fill=0)
    if out.fit == "crop_pad":
        labels, _ = fit_inplane(labels, np.eye(4), out.shape[:2], "crop_pad", fill=0)
    return labels


def _window_items(cfg: PreprocessConfig, image: Scan, label: np.ndarray | None, *, where: str,
                  label_where: str) -> list[Item]:
    """``roi.mode: window``: sample a ``window_mm`` window at the one spacing ``window_mm / shape``.

    A 3D window whose slice spacing is the scan's is aligned to the acquired slices (slice
    ``D // 2`` is the one nearest the centre); every other axis is centred on the centre.

    3D: one ``(H, W, D)`` window. 2D: the in-plane window on every sagittal slice, then the
    slices picked by ``output.slices`` (``central``: ``k`` around the window centre). Intensities
    are normalised on the selected voxels inside the field of view; outside it the items hold
    the range's low end and ``Item.pad`` is True.
    """
    out = cfg.output
    centre = window_centre(cfg, image, label, where=where, label_where=label_where)
    target = cfg.window_spacing()
    ratio = [t / s for t, s in zip(target, image.spacing, strict=False)]
    size = [int(n) for n in out.shape[:2]]
    if out.dims == 3:
        size.append(int(out.shape[2]))
    else:
        ratio.append(1.0)
        size.append(image.shape[2])
    origin = [c - (n - 1) / 2 * r for c, n, r in zip(centre, size, ratio, strict=True)]
    if out.dims == 2:
        origin[2] = 0.0
    elif math.isclose(ratio[2], 1.0, rel_tol=1e-6):
        # the window keeps the acquired slices: aligned to them, nothing is interpolated between
        # slices and slice D // 2 is the 2D 'central' rule's middle slice (the one a 2D judge sees)
        origin[2] = float(int(round(centre[2])) - size[2] // 2)
    volume, affine, pad = sample_window(image.array, image.affine, origin, ratio, size)
    label_win = sample_window(label, np.eye(4), origin, ratio, size, label=True)[0] if label is not None else None
    if out.dims == 3:
        indices = [0]
    elif out.slices == "central":
        mid = int(round(centre[2]))
        first = min(max(0, mid - out.k // 2), max(0, image.shape[2] - out.k))
        indices = list(range(first, min(image.shape[2], first + out.k)))
    else:
        indices = _slice_indices(cfg, image.shape[2], label_win, where=where, label_where=label_where)
    if out.dims == 2:
        volume, pad = volume[:, :, indices], pad[:, :, indices]
        label_win = label_win[:, :, indices] if label_win is not None else None
    inside = ~pad
    if cfg.normalize.enabled:
        normed = normalize_intensity(volume[inside], cfg.normalize) if inside.any() else np.empty(0, np.float32)
        fill = float(cfg.normalize.range[0])
        volume = np.full(volume.shape, fill, dtype=np.float32)
        volume[inside] = normed
    else:
        volume = np.where(pad, float(volume[inside].min()) if inside.any() else 0.0, volume).astype(np.float32)
    if out.dims == 3:
        return [Item(array=volume, affine=affine, slice_index=-1, pad=pad, label=label_win)]
    return [
        Item(array=np.ascontiguousarray(volume[:, :, j]), affine=translate_affine(affine, [0, 0, k]), slice_index=k,
             pad=np.ascontiguousarray(pad[:, :, j]), label=None if label_win is None else label_win[:, :, j])
        for j, k in enumerate(indices)
    ]
