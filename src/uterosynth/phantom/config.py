"""Configuration of the digital pelvis phantom (``configs/phantom.yaml``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..core.config import StrictModel

__all__ = [
    "ORIENTATIONS",
    "FIELD_STRENGTHS",
    "AppearancePriors",
    "CyclePriors",
    "GeometryConfig",
    "AcquisitionConfig",
    "AnatomyConfig",
    "Choice",
    "Integers",
    "PhantomConfig",
    "PriorsConfig",
    "Uniform",
]

ORIENTATIONS: tuple[str, ...] = ("AVAF", "AVRF", "RVAF", "RVRF")
FIELD_STRENGTHS: tuple[str, ...] = ("1.5T", "3T")

Range = tuple[float, float]


def _check_range(value: Range, name: str) -> Range:
    if value[0] > value[1]:
        raise ValueError(f"{name}: lower bound {value[0]} is above upper bound {value[1]}")
    return value


class Uniform(StrictModel):
    """Uniform distribution on ``[lo, hi)``; one ``rng.uniform`` call per draw."""

    lo: float
    hi: float

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        _check_range((self.lo, self.hi), "uniform")
        return self

    def draw(self, rng: np.random.Generator, size: int | None = None):
        """A float (``size=None``) or an array of ``size`` draws."""
        value = rng.uniform(self.lo, self.hi, size)
        return float(value) if size is None else value


class Integers(StrictModel):
    """Uniform integers in ``[lo, hi)`` (``rng.integers``)."""

    lo: int
    hi: int

    @model_validator(mode="after")
    def _order(self) -> Integers:
        if self.lo >= self.hi:
            raise ValueError(f"integers: lower bound {self.lo} must be below the (exclusive) upper bound {self.hi}")
        return self

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.lo, self.hi))


class Choice(StrictModel):
    """One of ``values`` with probabilities ``p``."""

    values: tuple[str, ...]
    p: tuple[float, ...]

    @model_validator(mode="after")
    def _match(self) -> Choice:
        if len(self.values) != len(self.p) or not self.values:
            raise ValueError(f"choice: {len(self.values)} values but {len(self.p)} probabilities; give one per value")
        if any(q < 0 for q in self.p) or abs(sum(self.p) - 1.0) > 1e-9:
            raise ValueError(f"choice: probabilities must be >= 0 and sum to 1, got {list(self.p)}")
        return self

    def draw(self, rng: np.random.Generator) -> str:
        return str(rng.choice(list(self.values), p=list(self.p)))


def _u(lo: float, hi: float) -> Uniform:
    return Uniform(lo=lo, hi=hi)


class PelvisPriors(StrictModel):
    """Pelvic size and the body wall (the anterior fat itself is ``anatomy.fat_thickness_mm``)."""

    scale: Uniform = _u(0.93, 1.07)
    fat_post_ratio: Uniform = Field(_u(0.7, 1.15), description="posterior / anterior fat")
    fat_post_extra_mm: Uniform = _u(0.0, 8.0)
    rectus_mm: Uniform = _u(7.0, 12.0)
    belly_mm: Uniform = Field(_u(0.0, 10.0), description="plus 0.35 x the anterior fat")


class BladderPriors(StrictModel):
    size: Uniform = _u(0.92, 1.08)
    x_mm: Uniform = _u(-4.0, 4.0)
    tilt_deg: Uniform = _u(-30.0, -12.0)


class VaginaPriors(StrictModel):
    """Anterior-surface tilt ranges (degrees) that keep the classes separable from the image alone."""

    tilt_deg: Uniform = _u(-40.0, -24.0)
    introitus_x_mm: Uniform = _u(-2.0, 2.0)
    introitus_y_mm: Uniform = _u(-3.0, 3.0)
    length_mm: Uniform = _u(62.0, 80.0)


class UterusPriors(StrictModel):
    """Angles (degrees) per class and the uterine dimensions (mm, before ``anatomy.uterus_scale``)."""

    version_av: Uniform = _u(40.0, 100.0)
    version_rv: Uniform = _u(-50.0, -12.0)
    min_cervix_tilt_av: float = 8.0
    max_cervix_tilt_rv: float = -38.0
    flexion_af: Uniform = _u(20.0, 85.0)
    flexion_rf: Uniform = _u(-85.0, -20.0)
    lateral_deviation_deg: Uniform = _u(-12.0, 12.0)
    cervix_length: Uniform = _u(25.0, 35.0)
    corpus_length: Uniform = _u(48.0, 70.0)
    cervix_radii: tuple[Uniform, Uniform] = Field((_u(12.0, 15.0), _u(13.0, 17.0)), description="AP, LR")
    corpus_radii: tuple[Uniform, Uniform] = Field((_u(20.0, 27.0), _u(25.0, 31.0)), description="AP, LR")
    endometrium_mm: Uniform = Field(_u(1.0, 6.5), description="half thickness (unscaled)")
    endometrium_width: Uniform = _u(10.0, 16.0)
    junctional_zone_mm: Uniform = _u(2.5, 6.0)
    cervical_stroma_mm: Uniform = Field(_u(4.0, 6.0), description="inner stroma beyond the canal")


class RectumPriors(StrictModel):
    radius_mm: Uniform = Field(_u(12.0, 21.0), description="rectal radius along the sacral curve")
    sigmoid_loop: Uniform = _u(-1.0, 1.0)
    gas_segment: Integers = Integers(lo=3, hi=5)
    gas_level: Uniform = Field(_u(0.25, 0.65), description="fraction of the lumen filled with gas")


class MyomaPriors(StrictModel):
    count_p: float = Field(0.5, gt=0, le=1, description="geometric distribution of the count")
    kind: Choice = Choice(values=("intramural", "subserosal", "submucosal"), p=(0.5, 0.3, 0.2))
    submucosal_max_mm: float = 24.0
    aspect: Uniform = Field(_u(0.82, 1.0), description="second and third radii / first")
    degenerated_min_mm: float = 25.0
    p_degenerated: float = Field(0.2, ge=0, le=1)


class CystPriors(StrictModel):
    radius_mm: Uniform = _u(1.5, 6.0)


class OvaryPriors(StrictModel):
    gap_mm: Uniform = Field(_u(14.0, 24.0), description="lateral distance from the corpus")
    offset_mm: Uniform = Field(_u(-12.0, 12.0), description="anterior and superior offsets")
    radii_mm: tuple[Uniform, Uniform, Uniform] = (_u(12.0, 17.0), _u(8.0, 12.0), _u(10.0, 14.0))
    follicles: Integers = Integers(lo=2, hi=8)
    follicle_offset: Uniform = Field(_u(-0.55, 0.55), description="follicle centre / ovary radii")
    follicle_radius_mm: Uniform = _u(1.5, 5.0)


class CyclePriors(StrictModel):
    """Version 2: menstrual-cycle phase and its endometrial half thickness (mm, unscaled).

    After Nalaboff et al., "Imaging the endometrium: disease and normal variants" (Radiographics
    2001): thin and bright-lined in the menstrual/early proliferative phase, thickest in the
    secretory phase, thin after the menopause (with a thinner junctional zone).
    """

    phase: Choice = Choice(values=("menstrual", "proliferative", "secretory", "postmenopausal"),
                           p=(0.15, 0.35, 0.35, 0.15))
    menstrual_mm: Uniform = _u(0.6, 2.0)
    proliferative_mm: Uniform = _u(2.0, 5.5)
    secretory_mm: Uniform = _u(3.5, 8.0)
    postmenopausal_mm: Uniform = _u(0.5, 2.0)

    def endometrium(self, phase: str) -> Uniform:
        return getattr(self, f"{phase}_mm")

    @model_validator(mode="after")
    def _phases(self) -> CyclePriors:
        unknown = set(self.phase.values) - {"menstrual", "proliferative", "secretory", "postmenopausal"}
        if unknown:
            raise ValueError(f"cycle.phase: unknown phases {sorted(unknown)}; use menstrual, proliferative, "
                             "secretory, postmenopausal")
        return self


class AppearancePriors(StrictModel):
    """Version 2: texture, acquisition and artefact draws (see ``phantom/texture.py``, ``phantom/artifacts.py``)."""

    texture_gain: Uniform = Field(_u(0.7, 1.6), description="factor on every tissue's texture amplitude")
    fat_septa: Uniform = Field(_u(0.0, 0.2), description="signal drop on fibrous septa in fat")
    snr_factor: Uniform = Field(_u(0.55, 1.25), description="factor on the field strength's SNR draw")
    resolution: Uniform = Field(_u(0.45, 1.0), description="acquired / reconstructed in-plane matrix (k-space)")
    slice_mix: Uniform = Field(_u(0.0, 0.3), description="weight of each neighbouring slice (slice profile)")
    phase_encode: Choice = Field(Choice(values=("AP", "SI"), p=(0.7, 0.3)), description="phase-encode axis")
    ghost_amplitude: Uniform = Field(_u(0.0, 2.5), description="peak breathing displacement (mm) of the anterior wall")
    ghost_period: Uniform = Field(_u(6.0, 24.0), description="phase-encode lines per breathing cycle")
    ghost_depth_mm: Uniform = Field(_u(40.0, 80.0), description="depth of the moving anterior abdominal wall")
    p_wrap: float = Field(0.3, ge=0, le=1, description="probability of wrap-around along the phase-encode axis")
    wrap_mm: Uniform = Field(_u(10.0, 35.0), description="width of the folded-in band")
    wrap_gain: Uniform = Field(_u(0.3, 0.8), description="coil sensitivity of the folded-in anatomy")
    coil_shading: Uniform = Field(_u(0.1, 0.6), description="surface-coil brightening at the anterior/posterior edges")
    coil_depth_mm: Uniform = Field(_u(30.0, 70.0), description="decay length of the surface-coil profile")


class PriorsConfig(StrictModel):
    """The distributions of the per-subject draws, organ by organ (their order of use is fixed)."""

    pelvis: PelvisPriors = PelvisPriors()
    bladder: BladderPriors = BladderPriors()
    vagina: VaginaPriors = VaginaPriors()
    uterus: UterusPriors = UterusPriors()
    rectum: RectumPriors = RectumPriors()
    myoma: MyomaPriors = MyomaPriors()
    cyst: CystPriors = CystPriors()
    ovary: OvaryPriors = OvaryPriors()
    bias_jitter: Uniform = Field(_u(0.7, 1.3), description="factor on the field strength's bias strength")
    cycle: CyclePriors = CyclePriors()
    appearance: AppearancePriors = AppearancePriors()


class GeometryConfig(StrictModel):
    """Image grid: sagittal slices, in-plane matrix and spacing (like a clinical pelvic T2)."""

    matrix: tuple[int, int] = Field((320, 320), description="in-plane size (superior-inferior, anterior-posterior)")
    slices: int = Field(28, ge=1, le=256, description="number of sagittal slices")
    spacing: tuple[float, float, float] = Field(
        (0.8, 0.8, 4.0), description="mm: superior-inferior, anterior-posterior, slice thickness"
    )
    supersample: int = Field(2, ge=1, le=4, description="in-plane supersampling factor for partial volume")
    fov_center: tuple[float, float] = Field(
        (-55.0, 40.0), description="patient (anterior, superior) mm from the pubic symphysis at the FOV centre"
    )

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16 or max(v) > 1024:
            raise ValueError(f"each in-plane size must be in [16, 1024], got {list(v)}")
        return v

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0 or max(v) > 20:
            raise ValueError(f"spacings must be in (0, 20] mm, got {list(v)}")
        return v


class AcquisitionConfig(StrictModel):
    """Field strength mix and its effects on SNR, contrast and bias field."""

    p_3t: float = Field(0.5, ge=0, le=1, description="probability that a subject is scanned at 3 T")
    snr_15t: Range = Field((16.0, 24.0), description="SNR range (myometrium / noise sigma) at 1.5 T")
    snr_3t: Range = Field((30.0, 44.0), description="SNR range at 3 T")
    bias_15t: float = Field(0.15, ge=0, le=1, description="bias-field strength at 1.5 T (log-amplitude)")
    bias_3t: float = Field(0.35, ge=0, le=1, description="bias-field strength at 3 T (log-amplitude)")
    contrast_3t: float = Field(1.15, ge=0.5, le=2, description="gamma applied to relative signal at 3 T")
    tissue_jitter: float = Field(0.06, ge=0, le=0.5, description="per-subject relative jitter of tissue signals")
    gain: Range = Field((900.0, 1600.0), description="scanner gain: stored value of urine before bias")

    @model_validator(mode="after")
    def _ranges(self) -> AcquisitionConfig:
        _check_range(self.snr_15t, "snr_15t")
        _check_range(self.snr_3t, "snr_3t")
        _check_range(self.gain, "gain")
        if min(self.snr_15t) <= 0:
            raise ValueError("snr_15t must be positive")
        return self


class AnatomyConfig(StrictModel):
    """Ranges of anatomical variation."""

    class_weights: dict[Literal["AVAF", "AVRF", "RVAF", "RVRF"], float] = Field(
        default_factory=lambda: {"AVAF": 1.0, "AVRF": 1.0, "RVAF": 1.0, "RVRF": 1.0},
        description="relative frequency of each orientation class (missing classes get 0)",
    )
    p_myoma: float = Field(0.6, ge=0, le=1, description="probability that a subject has leiomyomas")
    max_myomas: int = Field(4, ge=0, le=12)
    myoma_diameter_mm: Range = Field((8.0, 45.0))
    p_cyst: float = Field(0.5, ge=0, le=1, description="probability of Nabothian cysts")
    max_cysts: int = Field(4, ge=0, le=12)
    p_ovary: float = Field(0.8, ge=0, le=1, description="probability that each ovary is drawn")
    p_gas: float = Field(0.5, ge=0, le=1, description="probability of rectal gas")
    bladder_filling: Range = Field((0.0, 1.0), description="0 = nearly empty (~60 ml), 1 = full (~470 ml)")
    fat_thickness_mm: Range = Field((8.0, 40.0), description="anterior subcutaneous fat")
    uterus_scale: Range = Field((0.85, 1.15), description="overall uterine size factor")
    difficulty: float = Field(
        1.0, ge=0, le=1,
        description="version 2: 0 keeps the angle ranges of version 1 (a gap around each class boundary), 1 lets "
        "them reach the boundary (near-neutral uteri); in between interpolates the near-boundary limits",
    )
    boundary_margin_deg: float = Field(1.0, ge=0, le=20, description="version 2 at difficulty 1: closest angle to 0")
    shift_mm: tuple[float, float, float] = Field((6.0, 12.0, 12.0), description="max |shift| x, y, z (mm)")
    rotation_deg: tuple[float, float, float] = Field((4.0, 3.0, 3.0), description="max |rotation| about x, y, z")

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"class weights must be >= 0 with a positive sum, got {v}")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> AnatomyConfig:
        for name in ("myoma_diameter_mm", "bladder_filling", "fat_thickness_mm", "uterus_scale"):
            _check_range(getattr(self, name), name)
        if not 0 <= self.bladder_filling[0] <= self.bladder_filling[1] <= 1:
            raise ValueError("bladder_filling must lie in [0, 1]")
        return self


class PhantomConfig(StrictModel):
    """Everything that defines a phantom cohort (with the seed and subject count)."""

    version: Literal[1, 2] = Field(
        2, description="phantom model: 1 reproduces the first cohorts exactly; 2 adds continuous angles up to the "
        "class boundary, cycle-dependent endometrium, texture, acquisition variety and artefacts",
    )
    subjects: int = Field(8, ge=1, le=100000)
    seed: int = Field(0, ge=0)
    study_date: str = Field("240101", pattern=r"^\d{6}$", description="YYMMDD used in subject ids")
    workers: int = Field(1, ge=1, le=64, description="worker processes")
    geometry: GeometryConfig = GeometryConfig()
    acquisition: AcquisitionConfig = AcquisitionConfig()
    anatomy: AnatomyConfig = AnatomyConfig()
    priors: PriorsConfig = PriorsConfig()
