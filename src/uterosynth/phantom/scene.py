"""From a sampled :class:`~uterosynth.phantom.anatomy.Subject` to the ordered list of shapes.

Two lists are built: *coarse* shapes (body outline, fat, muscles, bones, bowel) painted at the
image resolution, and *fine* shapes (bladder, rectum, vagina, uterus, leiomyomas, cysts,
ovaries) painted on the supersampled grid where partial volume matters most.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Subject, anterior_wall, direction
from .fields import smooth_field
from .shapes import Ellipsoid, Grid, RoundedBox, Shape, Tube, rotation_x
from .tissues import Tissue as T

__all__ = ["build_scene", "Body", "BowelRegion"]

BIG = 1e4


class Body(Shape):
    """Body outline, subcutaneous fat, skin, abdominal-wall, back/gluteal and pelvic side-wall muscles."""

    def __init__(self, s: Subject, canal_yz: np.ndarray):
        self.s = s
        self.canal_yz = canal_yz  # (n, 2) posterior limit of the back muscles (y, z), z descending

    def bounds(self):
        return np.full(3, -BIG), np.full(3, BIG)

    def paint(self, tissue, grid: Grid):
        """Evaluated on the central slice plane and extended along the slice axis.

        Coordinates are exact (they are linear in the index); the height-dependent outlines are
        evaluated at the central slice's heights, which differ from the exact ones by at most
        a few millimetres under the small patient roll/yaw — invisible for the body outline and
        five times cheaper than evaluating them in 3D.
        """
        s = self.s
        sc = s.pelvis_scale
        n0, n1, n2 = grid.shape
        kc = n2 // 2
        x2, y2, z2 = grid.coords((slice(0, n0), slice(0, n1), slice(kc, kc + 1)))
        kk = np.arange(n2, dtype=np.float32) - kc
        dy_k = (float(grid.steps[1, 2]) * kk)[None, None, :]
        xk = np.float32(x2.mean()) + float(grid.steps[0, 2]) * kk  # slice positions (1D)
        axk = np.abs(xk)[None, None, :]
        curv = (xk * xk / 440.0)[None, None, :]
        skin_t, wall_t = anterior_wall(s.fat_ant, s.rectus, s.belly, z2)
        # Signed distances along y to each outline on the central plane; the slice offset dy_k
        # and the lateral curvature are added when broadcasting to 3D.
        d_a = skin_t - y2  # > 0 inside
        skin_p2 = -(160 * sc + s.fat_post) + 10 * np.tanh((z2 - 60) / 60)
        glute = 10 * np.exp(-(((z2 + 10) / 40) ** 2))
        d_p = y2 - skin_p2
        body = (d_a - curv > dy_k) & (d_p + glute * np.minimum(axk / 25, 1) - curv * 0.5 > -dy_k)
        skin = (d_a - curv < dy_k + 2) | (d_p + glute * np.minimum(axk / 25, 1) - curv * 0.5 < 2 - dy_k)
        dyb = y2 + 40.0
        bottom = np.where(dyb > 0, 0.012 * dyb * dyb, np.minimum(0.006 * dyb * dyb, 34.0)) - (52 * sc)
        bottom3 = bottom - np.maximum(axk - 20, 0) * 8
        dz_k = (float(grid.steps[2, 2]) * kk)[None, None, :]
        above = z2 + dz_k > bottom3
        body &= above
        skin |= z2 + dz_k < bottom3 + 2
        skin &= body
        np.copyto(tissue, np.uint8(T.FAT), where=body)
        # Rectus abdominis (thin linea alba at the midline), inserting on the pubis.
        rect_t = s.rectus * np.clip(axk / 9, 0.25, 1)
        d_w = (wall_t - y2) * (z2 > 12)  # > 0 behind the inner surface of the abdominal wall
        rectus = (d_w - curv < dy_k) & (d_w - curv + rect_t > dy_k) & (z2 > 12)
        np.copyto(tissue, np.uint8(T.MUSCLE), where=rectus & body)
        # Back and gluteal muscles up to the spinal canal / sacrum.
        zs, ys = self.canal_yz[::-1, 1], self.canal_yz[::-1, 0]
        limit = np.interp(z2.ravel(), zs, ys).reshape(z2.shape).astype(np.float32)
        inner_p = skin_p2 + s.fat_post * 0.9
        d_in = y2 - inner_p  # > 0 anterior to the back fat
        # Gluteus maximus thickens below the sacrum (lateral to the cleft), smoothly.
        ramp = np.clip((-15 * sc - z2) / 30, 0, 1)
        front = np.maximum(limit - inner_p, 70 * ramp * (axk > 16))  # anterior limit, relative to inner_p
        back = (d_in + glute * np.minimum(axk / 25, 1) > -dy_k) & (d_in < front - dy_k)
        back &= (z2 > -15 * sc) | (axk > 16)  # fat in the gluteal cleft at the midline
        np.copyto(tissue, np.uint8(T.MUSCLE), where=back & body)
        # Pelvic side walls (obturator internus, then the innominate bone) in a rounded region.
        side = 47 * sc + 0.2 * (z2 + 20) - 0.12 * (y2 + 55 * sc)  # oblique, wider above and behind
        wall_zone = ((y2 + 55 * sc) / (62 * sc)) ** 2 + ((z2 - 12 * sc) / (60 * sc)) ** 2
        band = body & (wall_zone < 1) & (axk > side)
        np.copyto(tissue, np.uint8(T.MUSCLE), where=band)
        bone = band & (axk > side + 13) & (wall_zone < 0.7)
        np.copyto(tissue, np.uint8(T.CORTEX), where=bone)
        np.copyto(tissue, np.uint8(T.MARROW), where=bone & (axk > side + 15) & (wall_zone < 0.62))
        np.copyto(tissue, np.uint8(T.SKIN), where=skin)


class BowelRegion(Shape):
    """Small-bowel loops and mesentery above the pelvic organs: a thresholded smooth random field."""

    def __init__(self, s: Subject):
        self.s = s
        _, wall = anterior_wall(s.fat_ant, s.rectus, s.belly, 80.0)
        self.lo = np.array([-80.0, -100.0 * s.pelvis_scale, 30.0 + 20 * s.bladder_filling])
        self.hi = np.array([80.0, float(wall) - 2, 260.0])

    def bounds(self):
        return self.lo, self.hi

    def paint(self, tissue, grid):
        box = grid.box(self.lo, self.hi)
        if box is None:
            return
        y = grid.linear(box, np.array([0.0, 1.0, 0.0]))
        z = grid.linear(box, np.array([0.0, 0.0, 1.0]))
        _, wall = anterior_wall(self.s.fat_ant, self.s.rectus, self.s.belly, z)
        inside = (y < wall - 3) & (y > self.lo[1]) & (z > self.lo[2] + 0.15 * np.abs(y + 40))
        view = tissue[box]
        inside &= view == T.FAT
        rng = np.random.default_rng(self.s.bowel_seed)
        shape = view.shape
        step = float(np.linalg.norm(grid.steps[:, 0]))
        cell = (11.0 / step, 11.0 / step, 3.0)
        f = smooth_field(rng, shape, cell)
        fluid = inside & (f > 0.45)
        np.copyto(view, np.uint8(T.BOWEL_WALL), where=inside & (f > -0.1))
        np.copyto(view, np.uint8(T.BOWEL_FLUID), where=fluid)
        np.copyto(view, np.uint8(T.GAS), where=fluid & (f > 2.1))


def _column(s: Subject) -> tuple[list[Shape], np.ndarray]:
    """Lumbar vertebral bodies and discs above the sacrum, with the spinal canal."""
    sc = s.pelvis_scale
    shapes: list[Shape] = []
    p0, p1 = s.sacrum_points[0], s.sacrum_points[1]
    axis_tilt = float(np.rad2deg(np.arctan2(p0[1] - p1[1], p0[2] - p1[2])))
    top = p0 + direction(axis_tilt) * 6 * sc
    centres, tilts = [], []
    elements = [("disc", 10, axis_tilt + 6), ("body", 27, 18), ("disc", 10, 9), ("body", 27, 3),
                ("disc", 10, -1), ("body", 27, -5), ("disc", 10, -8), ("body", 27, -9), ("disc", 10, -10),
                ("body", 27, -10)]
    for kind, h, a in elements:
        h = h * sc
        d = direction(a)
        c = top + d * h / 2
        axes = np.column_stack([[1.0, 0, 0], [0, np.cos(np.deg2rad(a)), -np.sin(np.deg2rad(a))], d])
        if kind == "body":
            shapes.append(RoundedBox(c, (24 * sc, 17 * sc, h / 2), 4.0, [(0, T.CORTEX), (1.6, T.MARROW)], axes=axes))
        else:
            shapes.append(RoundedBox(c, (22 * sc, 17 * sc, h / 2), 3.0, [(0, T.DISC_ANNULUS)], axes=axes))
            shapes.append(Ellipsoid(c, (13 * sc, 9 * sc, h / 2 - 2.0), [(0, T.DISC_NUCLEUS)], axes=axes))
        centres.append(c - axes[:, 1] * 28 * sc)
        tilts.append(a)
        top = c + d * h / 2
    canal = np.array(centres[::-1] + [s.sacrum_points[0] - np.array([0, 9 * sc, 0]), s.sacrum_points[1] - np.array([0, 8 * sc, 0])])
    radii = np.tile(np.array([[7.0, 9.0]]), (len(canal), 1)) * sc
    radii[-1] = (4.0, 7.0)
    shapes.append(Tube(canal, radii[None], [T.CSF]))
    back_limit = np.vstack([canal[:, 1:] - np.array([[9 * sc, 0]]),
                            np.column_stack([s.sacrum_points[2:, 1] - s.sacrum_radii[2:, 0], s.sacrum_points[2:, 2]])])
    return shapes, back_limit


def _layered(points, outer: np.ndarray, inset: float, outer_t: int, inner_t: int, **kw) -> Tube:
    outer = np.asarray(outer, float)
    return Tube(points, np.stack([outer, np.maximum(outer - inset, 0.5)]), [outer_t, inner_t], **kw)


def build_scene(s: Subject) -> tuple[list[Shape], list[Shape]]:
    """Coarse (image resolution) and fine (supersampled) shapes of subject ``s`` in paint order."""
    sc = s.pelvis_scale
    column, back_limit = _column(s)
    coarse: list[Shape] = [Body(s, back_limit), BowelRegion(s)]
    for side in (-1.0, 1.0):
        coarse.append(Tube([[side * 30, -88 * sc, 175], [side * 40, -80 * sc, 115], [side * 50, -56 * sc, 62],
                            [side * 58, -24 * sc, 18]], np.array([[[14, 14], [15, 15], [13, 13], [10, 10]]], float),
                           [T.MUSCLE]))
        for off, r in ((0.0, 4.0), (-9.0, 6.0)):
            pts = np.array([[side * 22, -86 * sc, 125], [side * 40, -58 * sc, 72], [side * 52, -22 * sc, 28],
                            [side * 56, 2, 6]]) + np.array([0, off, 0])
            coarse.append(Tube(pts, np.full((1, 4, 2), r), [T.VESSEL], only_on=(T.FAT, T.BOWEL_WALL, T.BOWEL_FLUID)))
    coarse += column
    coarse.append(_layered(s.sacrum_points, s.sacrum_radii, 2.0, T.CORTEX, T.MARROW))
    sac_canal = s.sacrum_points[:4] + np.array([0, -1, 0]) * s.sacrum_radii[:4, :1] * 0.45
    coarse.append(Tube(sac_canal, (s.sacrum_radii[:4] * np.array([0.28, 0.22]))[None], [T.CSF]))
    # Pubic symphysis, rami and the fibrocartilage disc.
    axes = rotation_x(28.0)
    coarse.append(Ellipsoid([0, 0, 0], (17 * sc, 7.5 * sc, 20 * sc), [(0, T.CORTEX), (1.8, T.MARROW)], axes=axes))
    for side in (-1.0, 1.0):
        for pts in (([side * 6, 0, 10], [side * 30, -12, 16], [side * 60, -32, 12]),
                    ([side * 6, -1, -12], [side * 26, -14, -32], [side * 46, -28, -46])):
            coarse.append(_layered(np.array(pts) * sc, np.full((3, 2), 8.0 * sc), 1.8, T.CORTEX, T.MARROW))
    coarse.append(Ellipsoid([0, 0, 0], (2.0, 5.5 * sc, 17 * sc), [(0, T.CARTILAGE)], axes=axes))
    # Pelvic floor: levator plate, puborectalis sling, perineal body, anal sphincter.
    fat_only = (T.FAT,)
    coarse.append(Tube(np.array([[0, -74, -37], [0, -92, -41], [0, -104, -40]]) * sc,
                       np.array([[[4, 30], [4, 30], [4, 20]]], float), [T.MUSCLE], only_on=fat_only))
    for side in (-1.0, 1.0):
        pts = np.array([[side * 14, -12, -20], [side * 22, -44, -36], [side * 12, -72, -42], [0, -80, -42]]) * sc
        coarse.append(Tube(pts, np.full((1, 4, 2), 5.5), [T.MUSCLE], only_on=fat_only))
    coarse.append(Ellipsoid(np.array([0, -44, -46]) * sc, (8, 8, 7), [(0, T.MUSCLE)]))
    coarse.append(Ellipsoid(np.array([0, -66, -43]) * sc, (14, 13, 14), [(0, T.MUSCLE)], axes=rotation_x(-30)))

    fine: list[Shape] = []
    for c, radii, ax, foll in s.ovaries:
        fine.append(Ellipsoid(c, radii, [(0, T.OVARY)], axes=ax, only_on=(T.FAT, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)))
        for fc, fr in foll:
            fine.append(Ellipsoid(fc, (fr, fr, fr), [(0, T.FOLLICLE)], only_on=(T.OVARY,)))
    b_axes = rotation_x(s.bladder_tilt)
    fine.append(Ellipsoid(s.bladder_center, s.bladder_radii, [(0, T.BLADDER_WALL), (s.bladder_wall, T.URINE)], axes=b_axes))
    neck = s.bladder_center - b_axes[:, 2] * (s.bladder_radii[2] - s.bladder_wall) + np.array([0, 4, 0])
    meatus = np.array([0, -14 * sc, -47 * sc])
    fine.append(_layered(np.array([neck, 0.5 * (neck + meatus) + np.array([0, 3, 0]), meatus]),
                         np.full((3, 2), 6.0), 3.5, T.URETHRA, T.URETHRA_LUMEN))
    fine.append(Tube(s.rectum_points, s.rectum_radii, [T.RECTAL_WALL, T.RECTAL_CONTENT]))
    if s.rectal_gas is not None:
        c, r, level = s.rectal_gas
        fine.append(Ellipsoid(c, (r, r, r), [(0, T.GAS)], only_on=(T.RECTAL_CONTENT,),
                              clip=(np.array([0.0, 1.0, 0.0]), level)))
    fine.append(Tube(s.vagina_points, s.vagina_radii, [T.VAGINAL_WALL, T.VAGINAL_LUMEN]))
    ut = s.uterus
    fine.append(Tube(ut.points, ut.radii, [T.CERVIX_OUTER, T.CERVIX_INNER, T.CERVICAL_CANAL], split=ut.cervix_length,
                     tissues_after=[T.MYOMETRIUM, T.JUNCTIONAL_ZONE, T.ENDOMETRIUM]))
    for m in s.myomas:
        layers = [(0.0, T.MYOMA)] + ([(float(m.radii.min() * 0.45), T.MYOMA_CORE)] if m.degenerated else [])
        fine.append(Ellipsoid(m.center, m.radii, layers, axes=m.axes))
    for c, r in s.cysts:
        fine.append(Ellipsoid(c, (r, r, r), [(0, T.NABOTHIAN_CYST)]))
    return coarse, fine
