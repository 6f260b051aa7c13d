"""Sampling one subject's anatomy, pose and acquisition from a NumPy generator.

Patient coordinates are millimetres with the origin at the centre of the pubic symphysis,
x towards the patient's right, y anterior and z superior. Angles in the mid-sagittal plane
are measured from the superior direction towards the anterior direction (``tilt``), so a
tilt of +90° points anteriorly.

Uterine orientation follows the clinical definitions: **version** is the angle between the
cervical axis and the vaginal axis (anteverted when the cervix is tilted forward relative to
the vagina), **flexion** the angle between the corpus axis and the cervical axis (anteflexed
when the corpus is bent forward). Both angles are signed (positive = anterior) and their signs
give the four classes AVAF, AVRF, RVAF, RVRF: version angle > 0 ⇔ anteverted, flexion angle
> 0 ⇔ anteflexed.

Version 1 keeps a gap around each class boundary (anteverted cervices point anteriorly of the
superior direction, |flexion| ≥ 20°). Version 2 (``anatomy.difficulty``) moves the
near-boundary limits of the class-conditional ranges towards ``anatomy.boundary_margin_deg``,
so the pooled angle distributions are continuous across the boundary and near-neutral uteri
occur; it also draws the menstrual-cycle phase and the imaging draws (:mod:`.artifacts`)
after everything version 1 draws, so version 1 cohorts are reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .artifacts import Imaging, sample_imaging
from .config import (
    FIELD_STRENGTHS,
    ORIENTATIONS,
    AnatomyConfig,
    MyomaPriors,
    OvaryPriors,
    PhantomConfig,
    PriorsConfig,
    RectumPriors,
    Uniform,
    UterusPriors,
)
from .shapes import rotation_x, rotation_xyz
from .tissues import N_TISSUES

__all__ = ["Myoma", "Subject", "Uterus", "sample_subject", "tilt", "direction", "subject_row"]

# Points on the posterior surface of the pubic symphysis that the bladder must not cover.
SYMPHYSIS_BACK = np.array([[0, -14, -14], [0, -10, -4], [0, -6, 8], [0, -1, 17]], float)


def direction(tilt_deg: float) -> np.ndarray:
    """Unit vector in the mid-sagittal plane tilted ``tilt_deg`` from superior towards anterior."""
    a = np.deg2rad(tilt_deg)
    return np.array([0.0, np.sin(a), np.cos(a)])


def tilt(vec: np.ndarray) -> float:
    """Tilt (degrees, superior → anterior positive) of a vector's mid-sagittal projection."""
    return float(np.rad2deg(np.arctan2(vec[1], vec[2])))


@dataclass(frozen=True)
class Myoma:
    center: np.ndarray
    radii: np.ndarray
    axes: np.ndarray
    kind: str
    degenerated: bool


@dataclass(frozen=True)
class Uterus:
    """Centre line from the external os to the fundus with per-layer radii (outer, JZ, cavity)."""

    points: np.ndarray  # (K, 3)
    radii: np.ndarray  # (3, K, 2)
    cervix_length: float
    corpus_length: float
    external_os: np.ndarray
    internal_os: np.ndarray
    fundus: np.ndarray
    cervix_tilt: float
    corpus_tilt: float
    endometrium_mm: float
    jz_mm: float


@dataclass
class Subject:
    """All sampled ground truth of one phantom subject (patient coordinates, mm / degrees)."""

    index: int
    orientation: str
    field_strength: str
    version_angle: float
    flexion_angle: float
    vagina_tilt: float
    pelvis_scale: float
    fat_ant: float
    fat_post: float
    rectus: float
    belly: float
    bladder_filling: float
    bladder_center: np.ndarray
    bladder_radii: np.ndarray
    bladder_tilt: float
    bladder_wall: float
    vagina_points: np.ndarray
    vagina_radii: np.ndarray
    uterus: Uterus
    rectum_points: np.ndarray
    rectum_radii: np.ndarray
    rectal_gas: tuple[np.ndarray, float, float] | None
    sacrum_points: np.ndarray
    sacrum_radii: np.ndarray
    myomas: list[Myoma]
    cysts: list[tuple[np.ndarray, float]]
    ovaries: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, float]]]]
    shift: np.ndarray
    rotation_deg: np.ndarray
    snr: float
    bias_strength: float
    bias_coeffs: np.ndarray
    gain: float
    tissue_jitter: np.ndarray
    bowel_seed: int
    sampling_retries: int = 0
    cycle_phase: str = ""  # version 2
    imaging: Imaging | None = None  # version 2
    extras: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return "anteverted" if self.orientation.startswith("AV") else "retroverted"

    @property
    def flexion(self) -> str:
        return "anteflexed" if self.orientation.endswith("AF") else "retroflexed"

    @property
    def rotation(self) -> np.ndarray:
        return rotation_xyz(*self.rotation_deg)


def _uniform(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))[None, :]


def _sacrum(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sacro-coccygeal centre line (S1 → coccyx tip) and (AP, LR) radii."""
    yz = np.array([[-104, 80], [-120, 54], [-132, 27], [-136, 3], [-131, -16], [-120, -30], [-106, -39]], float)
    pts = np.column_stack([np.zeros(len(yz)), yz * scale])
    radii = np.array([[17, 52], [14, 44], [11, 32], [8, 22], [6, 12], [5, 8], [4, 6]], float) * scale
    return pts, radii


def _sacral_front(sacrum_pts: np.ndarray, sacrum_r: np.ndarray, z: float) -> float:
    """y of the sacrum's anterior surface at height z (patient mm)."""
    zs, ys, rs = sacrum_pts[::-1, 2], sacrum_pts[::-1, 1], sacrum_r[::-1, 0]
    return float(np.interp(z, zs, ys) + np.interp(z, zs, rs))


def anterior_wall(subject_fat: float, rectus: float, belly: float, z: np.ndarray | float):
    """y of the anterior skin and of the inner surface of the abdominal wall at height z."""
    z = np.asarray(z, dtype=np.float32)
    skin = 12.0 + subject_fat + belly * (1 - np.exp(-np.maximum(z, 0) / 70.0)) - 0.012 * np.minimum(z + 20, 0) ** 2
    return skin, skin - subject_fat - rectus


def _uterus(rng, pr: UterusPriors, scale, external_os, vag_tilt, version, flexion, lateral_dev, x0,
            cycle: tuple[Uniform, float] | None = None) -> Uterus:
    l_cx = pr.cervix_length.draw(rng) * scale
    l_co = pr.corpus_length.draw(rng) * scale
    r_cx = np.array([pr.cervix_radii[0].draw(rng), pr.cervix_radii[1].draw(rng)]) * scale
    r_co = np.array([pr.corpus_radii[0].draw(rng), pr.corpus_radii[1].draw(rng)]) * scale
    endo = (cycle[0] if cycle else pr.endometrium_mm).draw(rng)
    endo_w = pr.endometrium_width.draw(rng) * scale
    jz = pr.junctional_zone_mm.draw(rng) * (cycle[1] if cycle else 1.0)
    canal = np.array([1.6, 2.6])
    inner = canal + pr.cervical_stroma_mm.draw(rng)
    cervix_tilt = vag_tilt + version
    corpus_tilt = cervix_tilt + flexion
    bend = 14.0 * scale
    # Centre line: cervix (straight), bend (direction turns), corpus (straight).
    d_cx = direction(cervix_tilt)
    pts, arcs = [external_os.copy()], [0.0]
    for f in (0.5, 1.0):
        pts.append(external_os + f * l_cx * d_cx)
        arcs.append(f * l_cx)
    internal_os = pts[-1].copy()
    n_bend = 3
    p = internal_os.copy()
    for i in range(1, n_bend + 1):
        a = cervix_tilt + flexion * (i - 0.5) / n_bend
        p = p + direction(a) * bend / n_bend
        pts.append(p.copy())
        arcs.append(arcs[-1] + bend / n_bend)
    end_cap = r_co[0] * 0.9
    straight = max(l_co - bend - end_cap, 8.0)
    d_co = direction(corpus_tilt)
    bend_end = arcs[-1]
    for f in (0.35, 0.7, 1.0):
        pts.append(p + f * straight * d_co)
        arcs.append(bend_end + f * straight)
    pts = np.array(pts)
    arcs = np.array(arcs)
    # Lateral deviation of the corpus (dextro- / levo-position).
    pts[:, 0] = x0 + np.tan(np.deg2rad(lateral_dev)) * np.maximum(arcs - l_cx, 0)
    total = arcs[-1]
    u = np.clip((arcs - l_cx) / max(total - l_cx, 1e-6), 0, 1)  # 0 at internal os, 1 at fundus point
    is_cx = arcs <= l_cx + 1e-6
    shape_co = np.sin(np.clip(u * 2.2 + 0.3, 0, np.pi / 2))  # rises then plateaus (pear shape)
    outer = np.where(is_cx[:, None], r_cx[None, :], r_cx[None, :] + (r_co - r_cx)[None, :] * shape_co[:, None])
    outer[0] *= 0.9
    cavity_w = 2.6 + (endo_w - 2.6) * np.clip(u / 0.8, 0, 1)
    cavity = np.where(is_cx[:, None], canal[None, :], np.column_stack([np.full_like(u, endo), cavity_w]))
    cavity[~is_cx, 0] = 1.6 + (endo - 1.6) * np.clip(u[~is_cx] / 0.3, 0, 1)
    jzr = np.where(is_cx[:, None], inner[None, :], cavity + jz)
    jzr = np.minimum(jzr, outer * 0.85)
    cavity = np.minimum(cavity, jzr * 0.8)
    radii = np.stack([outer, jzr, cavity])
    fundus = pts[-1] + direction(corpus_tilt) * outer[-1, 0]
    return Uterus(
        points=pts, radii=radii, cervix_length=float(l_cx), corpus_length=float(total - l_cx + outer[-1, 0]),
        external_os=pts[0], internal_os=internal_os, fundus=fundus, cervix_tilt=float(cervix_tilt),
        corpus_tilt=float(corpus_tilt), endometrium_mm=2 * endo, jz_mm=jz,
    )


def _clearance_ok(ut: Uterus, sacrum_pts, sacrum_r, fat, rectus, belly) -> bool:
    """The uterus stays in front of the sacrum, behind the abdominal wall and above the pelvic floor."""
    for p, r in zip(ut.points, ut.radii[0], strict=True):
        ra = r[0]
        y, z = p[1], p[2]
        if y - ra < _sacral_front(sacrum_pts, sacrum_r, z) + 2:
            return False
        if y + ra > float(anterior_wall(fat, rectus, belly, z)[1]) - 2:
            return False
        if z - ra < -24 or z + ra > 160:
            return False
        if y + ra > -6 and z - ra < 20:  # behind the symphysis
            return False
    return True


def _bladder(fill: float, size: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Bladder semi-axes (LR, AP, SI) and centre for a filling in [0, 1]; the base stays behind the symphysis."""
    radii = np.array([38 + 18 * fill, 20 + 22 * fill, 13 + 26 * fill]) * size * scale
    return radii, np.array([0.0, -13 - 0.62 * radii[1], 3 + 0.8 * radii[2]])


def _inside(points: np.ndarray, center: np.ndarray, radii: np.ndarray, axes: np.ndarray, pad: float = 0.0) -> bool:
    u = (points - center) @ axes
    return bool(np.any(((u / (radii + pad)) ** 2).sum(1) < 1.0))


def _densify(points: np.ndarray, step: float = 3.0) -> np.ndarray:
    out = [points[0]]
    for a, b in zip(points[:-1], points[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out += [a + (b - a) * (i / n) for i in range(1, n + 1)]
    return np.array(out)


@dataclass(frozen=True)
class _Body:
    """Pelvic size, body wall and sacrum of one subject."""

    scale: float
    fat_ant: float
    fat_post: float
    rectus: float
    belly: float
    sacrum_pts: np.ndarray
    sacrum_r: np.ndarray


def sample_subject(
    rng: np.random.Generator,
    cfg: PhantomConfig,
    index: int = 0,
    *,
    orientation: str | None = None,
    field_strength: str | None = None,
) -> Subject:
    """Draw one subject. ``orientation`` / ``field_strength`` force a class (used by previews).

    The organs are drawn in a fixed order (class, body, bladder, vagina, uterus, rectum,
    myomas, cysts, ovaries, acquisition): that order is what makes a seed reproduce a cohort.
    """
    an, acq, pr = cfg.anatomy, cfg.acquisition, cfg.priors
    weights = np.array([an.class_weights.get(c, 0.0) for c in ORIENTATIONS], float)
    cls = ORIENTATIONS[int(rng.choice(4, p=weights / weights.sum()))]
    fs = FIELD_STRENGTHS[int(rng.random() < acq.p_3t)]
    cls = orientation or cls
    fs = field_strength or fs
    body = _sample_body(rng, an, pr)

    # Bladder: radii grow with filling; base behind the symphysis.
    fill = _uniform(rng, an.bladder_filling)
    b_size = pr.bladder.size.draw(rng)
    b_x = pr.bladder.x_mm.draw(rng)
    b_tilt = pr.bladder.tilt_deg.draw(rng)

    # Vagina from the introitus up and back; the cervix sits in its vault.
    vag_tilt = pr.vagina.tilt_deg.draw(rng)
    introitus = np.array([pr.vagina.introitus_x_mm.draw(rng),
                          -22 * body.scale + pr.vagina.introitus_y_mm.draw(rng), -44 * body.scale])
    vag_len = pr.vagina.length_mm.draw(rng)
    phase = pr.cycle.phase.draw(rng) if cfg.version == 2 else ""
    ut, vag_tilt, vag_len, retries = _sample_uterus(rng, cfg, cls, body, introitus, vag_tilt, vag_len, phase)

    vag_pts = np.array([introitus + f * vag_len * direction(vag_tilt) for f in (0.0, 0.35, 0.7, 1.0)])
    vag_outer = np.array([[5, 10], [7, 15], [8, 17], [11, 20]], float)
    vag_lumen = np.array([[1.2, 6], [1.4, 10], [1.8, 12], [6, 15]], float)
    vag_radii = np.stack([vag_outer, vag_lumen])
    b_r, b_center = _fit_bladder(fill, b_size, b_x, b_tilt, ut, vag_pts, body.scale)
    rect_pts, rect_radii, gas = _sample_rectum(rng, an, pr.rectum, body, ut)
    myomas = _sample_myomas(rng, an, pr.myoma, ut)
    cysts = _sample_cysts(rng, an, pr, ut)
    ovaries = _sample_ovaries(rng, an, pr.ovary, ut)

    shift = rng.uniform(-1, 1, size=3) * np.array(an.shift_mm)
    rot = rng.uniform(-1, 1, size=3) * np.array(an.rotation_deg)
    snr = _uniform(rng, acq.snr_3t if fs == "3T" else acq.snr_15t)
    bias = (acq.bias_3t if fs == "3T" else acq.bias_15t) * pr.bias_jitter.draw(rng)
    bias_coeffs = rng.standard_normal(8)
    gain = _uniform(rng, acq.gain)
    jitter = np.clip(1 + acq.tissue_jitter * rng.standard_normal(N_TISSUES), 0.6, 1.4).astype(np.float32)
    imaging = sample_imaging(rng, pr.appearance) if cfg.version == 2 else None
    if imaging is not None:
        snr *= imaging.snr_factor
    return Subject(
        index=index, orientation=cls, field_strength=fs, version_angle=float(ut.cervix_tilt - vag_tilt),
        flexion_angle=float(ut.corpus_tilt - ut.cervix_tilt), vagina_tilt=vag_tilt, pelvis_scale=body.scale,
        fat_ant=body.fat_ant, fat_post=body.fat_post, rectus=body.rectus, belly=body.belly, bladder_filling=fill,
        bladder_center=b_center, bladder_radii=b_r, bladder_tilt=b_tilt, bladder_wall=float(5.5 - 2.5 * fill),
        vagina_points=vag_pts, vagina_radii=vag_radii, uterus=ut, rectum_points=rect_pts,
        rectum_radii=rect_radii, rectal_gas=gas, sacrum_points=body.sacrum_pts, sacrum_radii=body.sacrum_r,
        myomas=myomas, cysts=cysts, ovaries=ovaries, shift=shift, rotation_deg=rot, snr=snr,
        bias_strength=bias, bias_coeffs=bias_coeffs, gain=gain, tissue_jitter=jitter,
        bowel_seed=int(rng.integers(2**31)), sampling_retries=retries, cycle_phase=phase,
        imaging=imaging,
    )


def _sample_body(rng: np.random.Generator, an: AnatomyConfig, pr: PriorsConfig) -> _Body:
    scale = pr.pelvis.scale.draw(rng)
    fat_ant = _uniform(rng, an.fat_thickness_mm)
    fat_post = fat_ant * pr.pelvis.fat_post_ratio.draw(rng) + pr.pelvis.fat_post_extra_mm.draw(rng)
    rectus = pr.pelvis.rectus_mm.draw(rng)
    belly = pr.pelvis.belly_mm.draw(rng) + 0.35 * fat_ant
    return _Body(scale, fat_ant, fat_post, rectus, belly, *_sacrum(scale))


def _sample_uterus(rng: np.random.Generator, cfg: PhantomConfig, cls: str, body: _Body, introitus: np.ndarray,
                   vag_tilt: float, vag_len: float, phase: str = "") -> tuple[Uterus, float, float, int]:
    """The uterus of class ``cls``, redrawn (with a new vaginal tilt) until it fits the pelvis.

    Returns ``(uterus, vagina_tilt, vagina_length, retries)``.
    """
    pr = cfg.priors.uterus
    # Version 1 keeps its separated ranges (difficulty 0), whatever anatomy.difficulty says.
    near = _NearBoundary(cfg.anatomy.difficulty if cfg.version == 2 else 0.0, cfg.anatomy.boundary_margin_deg)
    cycle = (cfg.priors.cycle.endometrium(phase), 0.6 if phase == "postmenopausal" else 1.0) if phase else None
    uterus_scale = _uniform(rng, cfg.anatomy.uterus_scale)
    retries = 0
    while True:
        version = _version(rng, pr, cls, vag_tilt, near)
        flexion = _flexion(rng, pr, cls, vag_tilt + version, near)
        lateral_dev = pr.lateral_deviation_deg.draw(rng)
        vag_top = introitus + vag_len * direction(vag_tilt)
        ext_os = vag_top - 8 * direction(vag_tilt)
        ut = _uterus(rng, pr, uterus_scale, ext_os, vag_tilt, version, flexion, lateral_dev, introitus[0], cycle)
        if _clearance_ok(ut, body.sacrum_pts, body.sacrum_r, body.fat_ant, body.rectus, body.belly) or retries >= 40:
            return ut, vag_tilt, vag_len, retries
        retries += 1
        vag_tilt = cfg.priors.vagina.tilt_deg.draw(rng)
        if retries % 4 == 0:
            uterus_scale = max(0.8, uterus_scale * 0.97)
            vag_len = max(55.0, vag_len * 0.98)


@dataclass(frozen=True)
class _NearBoundary:
    """Moves a class's near-boundary angle limit ``v1`` towards ``±margin`` by ``difficulty`` (0: unchanged)."""

    difficulty: float
    margin: float

    def __call__(self, v1: float) -> float:
        target = self.margin if v1 > 0 else -self.margin
        return v1 if self.difficulty == 0 else (1 - self.difficulty) * v1 + self.difficulty * target


def _version(rng: np.random.Generator, pr: UterusPriors, cls: str, vag_tilt: float, near: _NearBoundary) -> float:
    """Version angle of class ``cls``; at difficulty 0 the cervix also clears a fixed tilt (version 1)."""
    if cls.startswith("AV"):
        lo = near(pr.version_av.lo)
        return max(float(rng.uniform(lo, pr.version_av.hi)), near(max(pr.min_cervix_tilt_av - vag_tilt, lo)))
    hi = near(pr.version_rv.hi)
    return min(float(rng.uniform(pr.version_rv.lo, hi)), near(min(pr.max_cervix_tilt_rv - vag_tilt, hi)))


def _flexion(rng: np.random.Generator, pr: UterusPriors, cls: str, cervix_tilt: float, near: _NearBoundary) -> float:
    """Flexion keeping the corpus between "forward over the bladder" and "down to the sacrum"."""
    if cls.endswith("AF"):
        lo = near(pr.flexion_af.lo)
        return max(min(float(rng.uniform(lo, pr.flexion_af.hi)), 120.0 - cervix_tilt), lo)
    hi = near(pr.flexion_rf.hi)
    return min(max(float(rng.uniform(pr.flexion_rf.lo, hi)), -150.0 - cervix_tilt), hi)


def _fit_bladder(fill: float, size: float, x: float, tilt_deg: float, ut: Uterus, vag_pts: np.ndarray,
                 scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The bladder yields to the uterus (which then indents its dome) and to the vagina."""
    b_axes = rotation_x(tilt_deg)
    ut_line = _densify(ut.points)
    shrink = 1.0
    while True:
        b_r, b_center = _bladder(fill, size, shrink)
        b_center[0] = x
        clash = (_inside(ut_line, b_center, b_r, b_axes) or _inside(_densify(vag_pts), b_center, b_r, b_axes, 2.0)
                 or _inside(SYMPHYSIS_BACK * scale, b_center, b_r, b_axes, 1.0))
        if shrink <= 0.45 or not clash:
            return b_r, b_center
        shrink *= 0.95


def _sample_rectum(rng: np.random.Generator, an: AnatomyConfig, pr: RectumPriors, body: _Body, ut: Uterus):
    """Rectum along the sacral curve, sigmoid looping to the left and up; optional gas.

    Returns ``(points, radii (2, K, 2), gas or None)``.
    """
    scale, sacrum_pts, sacrum_r = body.scale, body.sacrum_pts, body.sacrum_r
    r_amp = pr.radius_mm.draw(rng)
    rect = [np.array([0, -64 * scale, -50 * scale]), np.array([0, -70 * scale, -33 * scale])]
    rad = [(8.0, 8.0), (10.0, 10.0)]
    for z, r in ((-14 * scale, 0.8 * r_amp), (10 * scale, r_amp), (34 * scale, 0.9 * r_amp), (56 * scale, 13.0)):
        y = _sacral_front(sacrum_pts, sacrum_r, z) + 4 + r
        rect.append(np.array([0.0, y, z]))
        rad.append((r, r * 1.1))
    top = rect[-1]
    loop = pr.sigmoid_loop.draw(rng, 2)
    for dx, dy, dz in ((-10, 18, 16), (-24, 34 + 8 * loop[0], 24), (-36, 44 + 10 * loop[1], 10)):
        rect.append(top + np.array([dx, dy, dz]))
        rad.append((12.0, 12.0))
    rect_pts = np.array(rect, float)
    rect_outer = np.array(rad, float)
    # The rectum and sigmoid yield to the uterus (compressible bowel).
    ut_line = _densify(ut.points)
    ut_r_line = np.interp(np.linspace(0, 1, len(ut_line)), np.linspace(0, 1, len(ut.points)), ut.radii[0, :, 0])
    for i, p in enumerate(rect_pts[2:], start=2):
        gap = np.linalg.norm(ut_line - p, axis=1) - 0.6 * ut_r_line
        rect_outer[i] = np.minimum(rect_outer[i], max(float(gap.min()), 7.0))
    rect_lumen = np.maximum(rect_outer - 3.0, 1.5)
    rect_lumen[0] = (1.5, 1.5)
    gas = None
    if rng.random() < an.p_gas:
        k = pr.gas_segment.draw(rng)
        g = pr.gas_level.draw(rng)
        r_l = rect_lumen[k, 0]
        gas = (rect_pts[k], float(r_l * 1.6), float(rect_pts[k][1] + r_l * (1 - 2 * g)))
    return rect_pts, np.stack([rect_outer, rect_lumen]), gas


def _arc(ut: Uterus) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ut.points, axis=0), axis=1))])


def _sample_myomas(rng: np.random.Generator, an: AnatomyConfig, pr: MyomaPriors, ut: Uterus) -> list[Myoma]:
    """Leiomyomas around the corpus."""
    ut_pts, ut_r, arc = ut.points, ut.radii, _arc(ut)
    myomas: list[Myoma] = []
    n_my = 0 if rng.random() >= an.p_myoma or an.max_myomas == 0 else min(an.max_myomas, int(rng.geometric(pr.count_p)))
    for _ in range(n_my):
        kind = pr.kind.draw(rng)
        lo, hi = an.myoma_diameter_mm
        diam = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if kind == "submucosal":
            diam = min(diam, pr.submucosal_max_mm)
        r = diam / 2
        a = float(rng.uniform(ut.cervix_length + 0.25 * (arc[-1] - ut.cervix_length), arc[-1]))
        (cdir, ro, ri), base = _point_in_wall(ut_pts, ut_r, arc, a, float(rng.uniform(0, 2 * np.pi)))
        if kind == "intramural":  # in the wall; a large one bulges the contour rather than filling the cavity
            rad_pos = max(0.5 * (ri + ro), ri + 0.8 * r)
        elif kind == "submucosal":  # protrudes into the cavity
            rad_pos = ri + 0.35 * r
        else:
            rad_pos = ro + 0.2 * r
        c = base + cdir * rad_pos
        radii = np.array([r, r * pr.aspect.draw(rng), r * pr.aspect.draw(rng)])
        axes = _random_axes(rng)  # drawn before the degeneration
        degenerated = bool(diam > pr.degenerated_min_mm and rng.random() < pr.p_degenerated)
        myomas.append(Myoma(c, radii, axes, kind, degenerated))
    return myomas


def _sample_cysts(rng: np.random.Generator, an: AnatomyConfig, pr: PriorsConfig,
                  ut: Uterus) -> list[tuple[np.ndarray, float]]:
    """Nabothian cysts in the cervical stroma: ``[(centre, radius), ...]``."""
    arc = _arc(ut)
    cysts: list[tuple[np.ndarray, float]] = []
    n_cy = 0 if rng.random() >= an.p_cyst or an.max_cysts == 0 else int(rng.integers(1, an.max_cysts + 1))
    for _ in range(n_cy):
        a = float(rng.uniform(3, ut.cervix_length - 2))
        (cdir, ro, ri), base = _point_in_wall(ut.points, ut.radii, arc, a, float(rng.uniform(0, 2 * np.pi)))
        canal = 2.5
        r = pr.cyst.radius_mm.draw(rng)
        r = min(r, max((ro - canal) / 2 - 1.0, 1.2))
        pos = float(rng.uniform(canal + r + 0.8, max(ro - r - 0.8, canal + r + 0.9)))
        cysts.append((base + cdir * pos, r))
    return cysts


def _sample_ovaries(rng: np.random.Generator, an: AnatomyConfig, pr: OvaryPriors, ut: Uterus):
    """Ovaries lateral to the corpus, with follicles: ``[(centre, radii, axes, follicles), ...]``."""
    arc = _arc(ut)
    ovaries = []
    for side in (-1, 1):
        if rng.random() >= an.p_ovary:
            continue
        a = ut.cervix_length + 0.55 * (arc[-1] - ut.cervix_length)
        base = _interp_points(ut.points, arc, a)
        lat_r = float(np.interp(a, arc, ut.radii[0, :, 1]))
        c = base + np.array([side * (lat_r + pr.gap_mm.draw(rng)), pr.offset_mm.draw(rng), pr.offset_mm.draw(rng)])
        radii = np.array([u.draw(rng) for u in pr.radii_mm])
        axes = _random_axes(rng)
        foll = []
        for _ in range(pr.follicles.draw(rng)):
            off = pr.follicle_offset.draw(rng, 3) * radii
            foll.append((c + axes @ off, pr.follicle_radius_mm.draw(rng)))
        ovaries.append((c, radii, axes, foll))
    return ovaries


def _interp_points(pts: np.ndarray, arc: np.ndarray, a: float) -> np.ndarray:
    return np.array([np.interp(a, arc, pts[:, k]) for k in range(3)])


def _point_in_wall(pts, radii, arc, a, theta):
    """Direction and radii of the uterine wall at arc length ``a`` and angle ``theta`` around the axis.

    Returns ``((unit_dir, outer_radius, inner_radius), centre_line_point)`` where the radii are
    those of the elliptical cross-sections (outer surface, junctional zone) along ``unit_dir``.
    """
    j = int(np.clip(np.searchsorted(arc, a) - 1, 0, len(pts) - 2))
    t = pts[j + 1] - pts[j]
    t /= np.linalg.norm(t)
    lat = np.array([1.0, 0.0, 0.0]) - t[0] * t
    lat /= np.linalg.norm(lat)
    nrm = np.cross(t, lat)
    c, s = np.cos(theta), np.sin(theta)
    d = c * nrm + s * lat
    ro_a, ro_l = (np.interp(a, arc, radii[0, :, k]) for k in range(2))
    ri_a, ri_l = (np.interp(a, arc, radii[1, :, k]) for k in range(2))
    ro = 1 / np.sqrt((c / ro_a) ** 2 + (s / ro_l) ** 2)
    ri = 1 / np.sqrt((c / ri_a) ** 2 + (s / ri_l) ** 2)
    return (d, float(ro), float(ri)), _interp_points(pts, arc, a)


def largest_myoma(myomas: Sequence[Myoma]) -> str:
    """The largest myoma for a structured prompt: its kind and diameter to 5 mm, ``"intramural 25
    mm"``; ``"none"`` without one. Binned so that a prompt attribute has few values."""
    if not myomas:
        return "none"
    big = max(myomas, key=lambda m: float(m.radii.max()))
    return f"{big.kind} {max(5, 5 * round(2 * float(big.radii.max()) / 5))} mm"


def subject_row(subject: Subject) -> dict:
    """The ``labels.csv`` ground truth of a subject (world landmarks are added by the renderer)."""
    ut = subject.uterus
    kinds = sorted(m.kind for m in subject.myomas)
    return {
        "orientation": subject.orientation,
        "version": subject.version,
        "flexion": subject.flexion,
        "version_angle": round(subject.version_angle, 2),
        "flexion_angle": round(subject.flexion_angle, 2),
        "field_strength": subject.field_strength,
        "myoma_count": len(subject.myomas),
        "cyst_count": len(subject.cysts),
        "myoma_types": ";".join(kinds),
        "myoma_max_diameter_mm": round(max((2 * m.radii.max() for m in subject.myomas), default=0.0), 1),
        "largest_myoma": largest_myoma(subject.myomas),
        "cervix_tilt": round(ut.cervix_tilt, 2),
        "corpus_tilt": round(ut.corpus_tilt, 2),
        "vagina_tilt": round(subject.vagina_tilt, 2),
        "uterus_length_mm": round(ut.cervix_length + ut.corpus_length, 1),
        "cervix_length_mm": round(ut.cervix_length, 1),
        "corpus_length_mm": round(ut.corpus_length, 1),
        "endometrium_mm": round(ut.endometrium_mm, 1),
        "junctional_zone_mm": round(ut.jz_mm, 1),
        "bladder_filling": round(subject.bladder_filling, 3),
        "bladder_volume_ml": round(4 / 3 * np.pi * float(np.prod(subject.bladder_radii)) / 1000, 1),
        "fat_thickness_mm": round(subject.fat_ant, 1),
        "pelvis_scale": round(subject.pelvis_scale, 3),
        "ovaries": len(subject.ovaries),
        "rectal_gas": int(subject.rectal_gas is not None),
        "shift_x_mm": round(float(subject.shift[0]), 2),
        "shift_y_mm": round(float(subject.shift[1]), 2),
        "shift_z_mm": round(float(subject.shift[2]), 2),
        "rotation_x_deg": round(float(subject.rotation_deg[0]), 2),
        "rotation_y_deg": round(float(subject.rotation_deg[1]), 2),
        "rotation_z_deg": round(float(subject.rotation_deg[2]), 2),
        "snr": round(subject.snr, 2),
        "bias_strength": round(subject.bias_strength, 3),
        **({"cycle_phase": subject.cycle_phase} if subject.cycle_phase else {}),
        **(subject.imaging.row() if subject.imaging is not None else {}),
    }
