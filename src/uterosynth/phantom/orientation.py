"""Estimate the uterine orientation class from a label map and its affine alone.

Used to check that the phantom's ground truth is visible in its images (and usable on real
segmentations). Method, in world (RAS) millimetres:

1. Voxels of labels 1–2 (uterine wall and cavity) are projected onto the sagittal (A–S) plane
   and rasterised at 1 mm; the outline is closed and its holes (myomas inside the wall) filled.
2. The two ends of the organ are the geodesic extremities of that outline; the cervical end is
   the narrower one (smaller mean inscribed radius near the end, from a distance transform).
3. Geodesic distance from the cervical end, as a fraction of the organ's length, orders the
   organ. The **cervical axis** is the principal direction of the outline's level-set
   centroids at 5–30 % of the length; the **corpus axis** that of the cavity's (label 2)
   centroids at 55–95 % (the endometrium runs along the corpus axis; the outline's centroids
   are used when the cavity is missing). Where a myoma interrupts the cavity it is bridged
   through the myoma, inside the outline only.
4. Version: anteverted when the cervical axis, pointing from the external os upwards, is
   tilted anteriorly beyond ``version_threshold`` degrees from the superior direction (the
   vagina itself is not segmented; its axis is about −24° to −40° in this frame). Flexion:
   anteflexed when the corpus axis is rotated anteriorly relative to the cervical axis.

Geodesic distances use :class:`skimage.graph.MCP_Geometric`; morphology and the distance
transform use :mod:`scipy.ndimage`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.errors import DataError

__all__ = ["OrientationEstimate", "estimate_orientation"]


@dataclass(frozen=True)
class OrientationEstimate:
    """Estimated orientation: class, both axis tilts and the flexion angle (degrees)."""

    orientation: str
    cervix_tilt: float
    corpus_tilt: float
    flexion_angle: float
    length_mm: float


def _tilt(v: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(v[0], v[1])))  # v = (anterior, superior)


def _axis(points: np.ndarray) -> np.ndarray:
    """Unit direction of the principal axis of ``points`` (N, 2), oriented from first to last point."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    d = vt[0]
    if np.dot(points[-1] - points[0], d) < 0:
        d = -d
    return d


def estimate_orientation(seg: np.ndarray, affine: np.ndarray, *, version_threshold: float = -15.0) -> OrientationEstimate:
    """Estimate the orientation class of the uterus in ``seg`` (any array layout) from ``affine``.

    Args:
        seg: (I, J, K) integer label map (1 uterine wall, 2 cavity).
        affine: (4, 4) voxel → world RAS millimetres.
        version_threshold: cervical-axis tilt (degrees, anterior positive) separating
            anteverted from retroverted.

    Raises:
        DataError: the label map holds no uterus (labels 1–2).
    """
    seg = np.asarray(seg)
    n_uterus = int(np.count_nonzero((seg == 1) | (seg == 2)))
    if n_uterus < 20 or not np.any(seg == 2):
        raise DataError(f"label map has {n_uterus} uterus voxels (labels 1-2, with a cavity); at least 20 are needed")
    affine = np.asarray(affine, dtype=float)
    idx_all = np.argwhere((seg == 1) | (seg == 2))
    world = idx_all @ affine[:3, :3].T + affine[:3, 3]
    pts = world[:, [1, 2]]  # (anterior, superior) mm
    lo = pts.min(0) - 6
    shape = tuple(np.floor(pts.max(0) - lo).astype(int) + 7)

    def raster(p: np.ndarray, close: int, largest: bool = True) -> np.ndarray:
        ij = np.clip(np.floor(p - lo).astype(int), 0, np.array(shape) - 1)
        m = np.zeros(shape, dtype=bool)
        m[ij[:, 0], ij[:, 1]] = True
        m = ndimage.binary_closing(m, structure=np.ones((3, 3)), iterations=close)
        m = ndimage.binary_fill_holes(m)
        lab, n = ndimage.label(m)
        return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1) if n > 1 and largest else m

    def project(mask3d: np.ndarray) -> np.ndarray:
        return (np.argwhere(mask3d) @ affine[:3, :3].T + affine[:3, 3])[:, [1, 2]]

    silhouette = raster(pts, 3)
    cavity = raster(project(seg == 2), 2, largest=False) & silhouette
    if ndimage.label(cavity)[1] > 1 and np.any(seg == 3):
        # A myoma interrupts the cavity: bridge the gap through it (only inside the uterine outline).
        cavity |= raster(project(seg == 3), 1, largest=False) & silhouette
    lab, n = ndimage.label(cavity)
    if n > 1:
        cavity = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    if not cavity.any():
        cavity = silhouette

    from skimage.graph import MCP_Geometric

    costs = np.where(silhouette, 1.0, np.inf)
    inside = np.argwhere(silhouette)
    start = tuple(inside[np.argmin(((inside - inside.mean(0)) ** 2).sum(1))])
    dist, _ = MCP_Geometric(costs).find_costs([start])
    end_a = tuple(np.unravel_index(np.argmax(np.where(silhouette, dist, -1)), shape))
    dist_a, _ = MCP_Geometric(costs).find_costs([end_a])
    end_b = tuple(np.unravel_index(np.argmax(np.where(silhouette, dist_a, -1)), shape))
    dist_b, _ = MCP_Geometric(costs).find_costs([end_b])
    length = float(dist_a[end_b])
    edt = ndimage.distance_transform_edt(silhouette)

    def width(end: tuple[int, int]) -> float:
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        near = silhouette & ((yy - end[0]) ** 2 + (xx - end[1]) ** 2 < (0.3 * length) ** 2)
        return float(edt[near].mean()) if near.any() else 0.0

    d_cx = dist_a if width(end_a) < width(end_b) else dist_b  # geodesic distance from the cervical end
    frac = np.where(silhouette, d_cx / max(length, 1e-6), np.nan)
    bins = np.linspace(0, 1, 41)
    mid = 0.5 * (bins[:-1] + bins[1:])

    def centre_line(region: np.ndarray) -> np.ndarray:
        out = np.full((len(mid), 2), np.nan)
        for i, (a, b) in enumerate(zip(bins[:-1], bins[1:], strict=True)):
            sel = region & (frac >= a) & (frac < b)
            if sel.any():
                out[i] = np.argwhere(sel).mean(0)
        return out

    def axis(centres: np.ndarray, a: float, b: float) -> np.ndarray | None:
        sel = (mid >= a) & (mid <= b) & ~np.isnan(centres[:, 0])
        return _axis(centres[sel]) if sel.sum() >= 3 else None

    outline = centre_line(silhouette)
    cervix = axis(outline, 0.05, 0.3)
    corpus = axis(centre_line(cavity), 0.55, 0.95)  # the endometrium marks the corpus axis best
    if corpus is None:
        corpus = axis(outline, 0.6, 0.95)
    if cervix is None or corpus is None:
        raise DataError("uterus too small to estimate its orientation (fewer than 3 centre-line points)")
    cervix_tilt, corpus_tilt = _tilt(cervix), _tilt(corpus)
    flexion = (corpus_tilt - cervix_tilt + 180.0) % 360.0 - 180.0
    version = "AV" if cervix_tilt > version_threshold else "RV"
    return OrientationEstimate(
        orientation=version + ("AF" if flexion > 0 else "RF"),
        cervix_tilt=cervix_tilt,
        corpus_tilt=corpus_tilt,
        flexion_angle=float(flexion),
        length_mm=length,
    )
