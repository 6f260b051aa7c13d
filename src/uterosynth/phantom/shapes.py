"""Implicit shapes painted into a tissue map: ellipsoids, rounded boxes, curved tubes.

Every shape is an implicit function of patient coordinates (millimetres; x towards the
patient's right, y anterior, z superior) evaluated only inside its own bounding box on a
:class:`Grid`, and painted with the painter's algorithm (later shapes cover earlier ones).
Nested layers (cortex around marrow, junctional zone around endometrium …) are thresholds of
the same implicit function, so they stay concentric by construction.

Hand-written because no maintained library paints layered implicit solids on an arbitrary
oblique voxel grid with bounding-box culling; the maths is the usual signed-distance /
normalised-radius formulation (Hart, "Sphere tracing", The Visual Computer 1996; Quilez'
rounded-box distance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "Shape", "Ellipsoid", "RoundedBox", "Tube", "rotation_x", "rotation_xyz"]

Box = tuple[slice, slice, slice]


def rotation_x(deg: float) -> np.ndarray:
    """Rotation about the patient x (left-right) axis; positive turns +z (superior) towards +y (anterior)."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def rotation_xyz(deg_x: float, deg_y: float, deg_z: float) -> np.ndarray:
    """Rotation ``Rz @ Ry @ Rx`` (degrees) about the patient axes."""
    ax, ay, az = np.deg2rad([deg_x, deg_y, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Grid:
    """A voxel grid whose index ``(i, j, k)`` maps linearly to patient coordinates.

    ``p = origin + steps @ (i, j, k)``: ``steps[:, a]`` is the patient-space step (mm) of one
    index along array axis ``a``. The map may be oblique (patient rotated in the scanner).
    """

    shape: tuple[int, int, int]
    origin: np.ndarray
    steps: np.ndarray

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Box | None:
        """Index box (clipped to the grid) covering the patient-space box ``[lo, hi]``; None if empty."""
        corners = np.array([[lo[0], lo[1], lo[2]], [hi[0], hi[1], hi[2]]])
        pts = np.array([[corners[a, 0], corners[b, 1], corners[c, 2]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
        idx = np.linalg.solve(self.steps, (pts - self.origin).T).T
        start = np.maximum(np.floor(idx.min(0)).astype(int) - 1, 0)
        stop = np.minimum(np.ceil(idx.max(0)).astype(int) + 2, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))  # type: ignore[return-value]

    def full(self) -> Box:
        return tuple(slice(0, n) for n in self.shape)  # type: ignore[return-value]

    def linear(self, box: Box, v: np.ndarray, c: float = 0.0) -> np.ndarray:
        """``v · p + c`` over ``box`` as a float32 array, built from three 1D ramps (one full-size add).

        Any linear function of patient coordinates is linear in the voxel index, so projections
        onto a shape's axes never need the coordinate arrays themselves.
        """
        v = np.asarray(v, dtype=float)
        w = v @ self.steps
        start = float(v @ self.origin + c)
        r = [float(w[a]) * np.arange(b.start, b.stop, dtype=np.float32) for a, b in enumerate(box)]
        return (r[0][:, None, None] + start + r[1][None, :, None]) + r[2][None, None, :]

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient coordinates ``(x, y, z)`` (float32 arrays of the box's shape) of the voxels in ``box``."""
        axes = [np.arange(s.start, s.stop, dtype=np.float32) for s in box]
        out = []
        for c in range(3):
            a = float(self.steps[c, 0]) * axes[0][:, None, None] + float(self.origin[c])
            b = float(self.steps[c, 1]) * axes[1][None, :, None]
            k = float(self.steps[c, 2]) * axes[2][None, None, :]
            out.append((a + b) + k)
        return out[0], out[1], out[2]


def _sub(outer: Box, inner: Box) -> Box | None:
    """``inner`` expressed relative to ``outer`` after intersecting them."""
    res = []
    for o, i in zip(outer, inner, strict=True):
        a, b = max(o.start, i.start), min(o.stop, i.stop)
        if b <= a:
            return None
        res.append(slice(a - o.start, b - o.start))
    return tuple(res)  # type: ignore[return-value]


class Shape:
    """Base class: ``bounds()`` in patient space and ``paint(tissue_map, grid)``.

    ``only_on`` restricts painting to voxels that currently hold one of those tissue codes
    (e.g. a gas bubble only inside rectal content); ``clip=(normal, offset)`` keeps only the
    half-space ``p · normal >= offset``.
    """

    only_on: tuple[int, ...] | None = None
    clip: tuple[np.ndarray, float] | None = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def paint(self, tissue: np.ndarray, grid: Grid) -> None:
        raise NotImplementedError

    def _mask_extra(self, view: np.ndarray, mask: np.ndarray, grid: Grid, box: Box) -> np.ndarray:
        if self.only_on is not None:
            allowed = np.zeros(256, dtype=bool)
            allowed[list(self.only_on)] = True
            mask &= allowed[view]
        if self.clip is not None:
            n, off = self.clip
            mask &= grid.linear(box, n, -float(off)) >= 0
        return mask


class Ellipsoid(Shape):
    """Solid ellipsoid with nested layers.

    Args:
        center: (3,) patient mm.
        radii: (3,) semi-axes (mm) along the columns of ``axes``.
        layers: ``(inset_mm, tissue)`` from the outside in; a layer fills the ellipsoid whose
            semi-axes are ``radii - inset``.
        axes: (3, 3) orthonormal matrix whose columns are the ellipsoid's axes.
    """

    def __init__(self, center, radii, layers: Sequence[tuple[float, int]], *, axes=None, only_on=None, clip=None):
        self.center = np.asarray(center, dtype=float)
        self.radii = np.asarray(radii, dtype=float)
        self.axes = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
        self.layers = [(float(t), int(c)) for t, c in layers]
        self.only_on = None if only_on is None else tuple(int(c) for c in only_on)
        self.clip = clip

    def bounds(self):
        ext = np.sqrt(((self.axes * self.radii[None, :]) ** 2).sum(1))
        return self.center - ext, self.center + ext

    def paint(self, tissue, grid):
        box = grid.box(*self.bounds())
        if box is None:
            return
        view = tissue[box]
        u2 = [grid.linear(box, self.axes[:, k], -float(self.axes[:, k] @ self.center)) ** 2 for k in range(3)]
        for inset, code in self.layers:
            r = np.maximum(self.radii - inset, 1e-3).tolist()
            mask = (u2[0] * (1 / r[0] ** 2) + u2[1] * (1 / r[1] ** 2) + u2[2] * (1 / r[2] ** 2)) <= 1.0
            mask = self._mask_extra(view, mask, grid, box)
            view[mask] = code


class RoundedBox(Shape):
    """Box with rounded edges (vertebral bodies, discs) and nested layers.

    Args:
        center: (3,) patient mm. half: (3,) half sizes (mm) along the columns of ``axes``.
        radius: edge rounding (mm). layers: ``(inset_mm, tissue)`` from the outside in.
    """

    def __init__(self, center, half, radius: float, layers, *, axes=None, only_on=None):
        self.center = np.asarray(center, dtype=float)
        self.half = np.asarray(half, dtype=float)
        self.radius = float(radius)
        self.axes = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
        self.layers = [(float(t), int(c)) for t, c in layers]
        self.only_on = None if only_on is None else tuple(int(c) for c in only_on)

    def bounds(self):
        ext = np.abs(self.axes) @ self.half
        return self.center - ext, self.center + ext

    def paint(self, tissue, grid):
        box = grid.box(*self.bounds())
        if box is None:
            return
        half = self.half.tolist()
        q = [np.abs(grid.linear(box, self.axes[:, k], -float(self.axes[:, k] @ self.center))) - (half[k] - self.radius)
             for k in range(3)]
        outside = np.sqrt(sum(np.maximum(c, 0) ** 2 for c in q))
        inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0)
        sdf = outside + inside - self.radius
        view = tissue[box]
        for inset, code in self.layers:
            mask = self._mask_extra(view, sdf <= -inset, grid, box)
            view[mask] = code


class Tube(Shape):
    """A tube along a polyline centre line with an elliptical, varying cross-section.

    The tube is the union of capsules around the segments; at each centre-line vertex every
    layer has an in-plane radius (along the normal lying in the plane of the centre line and
    the patient's left-right axis' normal) and a lateral radius (towards the patient's right).
    Radii are interpolated linearly along each segment and the ends are rounded, so a densely
    sampled curve gives a smooth curved organ (uterus, vagina, rectum, sacrum).

    Args:
        points: (K, 3) centre-line vertices (patient mm).
        radii: (L, K, 2) per layer (outside → inside) and vertex: (in-plane, lateral) radius.
        tissues: L tissue codes, one per layer.
        split: optional arc length (mm, from ``points[0]``) beyond which ``tissues_after`` are
            painted instead of ``tissues`` (cervix → corpus zonal anatomy).
    """

    def __init__(self, points, radii, tissues: Sequence[int], *, split: float | None = None,
                 tissues_after: Sequence[int] | None = None, only_on=None):
        self.points = np.asarray(points, dtype=float)
        self.radii = np.asarray(radii, dtype=float)
        if self.radii.ndim != 3 or self.radii.shape[1] != len(self.points) or self.radii.shape[2] != 2:
            raise ValueError(f"radii must be (layers, {len(self.points)}, 2), got {self.radii.shape}")
        self.tissues = [int(t) for t in tissues]
        self.split = split
        self.tissues_after = [int(t) for t in (tissues_after or tissues)]
        self.only_on = None if only_on is None else tuple(int(c) for c in only_on)
        seg = np.diff(self.points, axis=0)
        self.lengths = np.maximum(np.linalg.norm(seg, axis=1), 1e-6)
        self.arc = np.concatenate([[0.0], np.cumsum(self.lengths)])
        self._frames = [self._make_frame(j) for j in range(len(seg))]

    def _segment_bounds(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box of capsule ``j`` (exact extent of its elliptical cross-section and caps)."""
        _, _, lat = self._frame(j)
        ra = max(self.radii[0, j, 0], self.radii[0, j + 1, 0])
        rl = max(self.radii[0, j, 1], self.radii[0, j + 1, 1])
        ext = np.sqrt(ra**2 * (1 - lat**2) + rl**2 * lat**2) + 0.5
        a, b = self.points[j], self.points[j + 1]
        return np.minimum(a, b) - ext, np.maximum(a, b) + ext

    def bounds(self):
        boxes = [self._segment_bounds(j) for j in range(len(self.points) - 1)]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def _frame(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tangent, in-plane normal, lateral) unit vectors of segment ``j``."""
        return self._frames[j]

    def _make_frame(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = (self.points[j + 1] - self.points[j]) / self.lengths[j]
        lat = np.array([1.0, 0.0, 0.0]) - t[0] * t
        if np.linalg.norm(lat) < 1e-6:
            lat = np.array([0.0, 1.0, 0.0]) - t[1] * t
        lat /= np.linalg.norm(lat)
        return t, np.cross(t, lat), lat

    def paint(self, tissue, grid):
        box = grid.box(*self.bounds())
        if box is None:
            return
        n_layers = len(self.tissues)
        shape = tuple(s.stop - s.start for s in box)
        rho = np.full((n_layers, *shape), np.inf, dtype=np.float32)
        arc = np.zeros(shape, dtype=np.float32) if self.split is not None else None
        for j in range(len(self.points) - 1):
            a = self.points[j]
            sbox = grid.box(*self._segment_bounds(j))
            rel = None if sbox is None else _sub(box, sbox)
            if rel is None:
                continue
            absbox = tuple(slice(o.start + r.start, o.start + r.stop) for o, r in zip(box, rel, strict=True))
            td, nd, ld = self._frame(j)
            length = float(self.lengths[j])
            t = grid.linear(absbox, td, -float(td @ a))
            n = grid.linear(absbox, nd, -float(nd @ a))
            lat = grid.linear(absbox, ld, -float(ld @ a))
            tc = np.clip(t, 0.0, length)
            e = t - tc
            n2 = n * n + e * e
            l2 = lat * lat
            w = tc * (1.0 / length)
            for k in range(n_layers):
                r0, r1 = self.radii[k, j].tolist(), self.radii[k, j + 1].tolist()
                if r0 == r1:
                    q = n2 * (1.0 / r0[0] ** 2) + l2 * (1.0 / r0[1] ** 2)
                else:
                    ra = r0[0] + (r1[0] - r0[0]) * w
                    rl = r0[1] + (r1[1] - r0[1]) * w
                    q = n2 / (ra * ra) + l2 / (rl * rl)
                cur = rho[k][rel]
                if k == 0 and arc is not None:
                    better = q < cur
                    arc[rel][better] = (tc + float(self.arc[j]))[better]
                np.minimum(cur, q, out=cur)
        view = tissue[box]
        for k in range(n_layers):
            mask = rho[k] <= 1.0
            if self.only_on is not None:
                mask = self._mask_extra(view, mask, grid, box)
            if arc is None or self.tissues[k] == self.tissues_after[k]:
                view[mask] = self.tissues[k]
            else:
                after = arc >= self.split
                view[mask & ~after] = self.tissues[k]
                view[mask & after] = self.tissues_after[k]
