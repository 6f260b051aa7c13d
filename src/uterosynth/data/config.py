"""Configuration of ``uterosynth prepare``: one pydantic model per preprocessing concern.

Presets: ``configs/prepare2d.yaml`` (uterus ROI, 2D slices) and ``configs/prepare3d.yaml``.
Every field is recorded in ``dataset.json`` so a prepared dataset says how it was made.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..core.config import StrictModel

__all__ = [
    "LabelsConfig",
    "N4Config",
    "NormalizeConfig",
    "OutputConfig",
    "PrepareConfig",
    "PreprocessConfig",
    "ResampleConfig",
    "RoiConfig",
    "SplitConfig",
]

class ResampleConfig(StrictModel):
    """Resampling of the reoriented (IPR) volume: linear for images, nearest for labels.

    Attributes:
        enabled: resample at all (off keeps the native grid).
        spacing: target in-plane spacing in mm along (rows S→I, columns A→P).
        slice_thickness: target spacing along the sagittal slice axis; ``None`` keeps it.
    """

    enabled: bool = True
    spacing: tuple[float, float] = (0.8, 0.8)
    slice_thickness: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _positive(self) -> ResampleConfig:
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {list(self.spacing)}")
        return self


class N4Config(StrictModel):
    """N4 bias-field correction (Tustison et al. 2010, SimpleITK).

    The field is fitted on a copy shrunk by ``shrink`` along the finest axes (proportionally
    less along thicker slices) inside an Otsu mask and applied at full resolution.
    """

    enabled: bool = False
    shrink: int = Field(default=8, ge=1, le=16)
    iterations: tuple[int, ...] = (25, 25, 25)
    fitting_levels: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _levels(self) -> N4Config:
        if not self.iterations or min(self.iterations) < 1:
            raise ValueError("iterations must be a non-empty list of positive integers")
        return self


class NormalizeConfig(StrictModel):
    """Percentile clipping then linear mapping to ``range`` (computed inside the ROI)."""

    enabled: bool = True
    percentiles: tuple[float, float] = (0.5, 99.5)
    range: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _order(self) -> NormalizeConfig:
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {list(self.percentiles)}")
        if self.range[0] >= self.range[1]:
            raise ValueError(f"range must be increasing, got {list(self.range)}")
        return self


class RoiConfig(StrictModel):
    """Region of interest.

    Attributes:
        mode: ``window`` (a fixed ``window_mm`` window around ``centre``, sampled at the one
            spacing ``window_mm / output.shape``: every item has the same spacing and shape,
            and only the part outside the field of view is padded, recorded in a pad mask),
            ``uterus`` (bounding box of ``labels`` plus ``margin_mm``; needs a label map),
            ``box`` (a ``box_mm`` box centred on the field of view, shifted by
            ``box_offset_mm``) or ``full`` (the whole field of view).
        labels: label values that make up the uterus (1 wall, 2 cavity, 3 myoma).
        margin_mm: margin around the uterus box along (rows, columns, slices).
        box_mm: size of the fixed box along (rows, columns[, slices]); slices default to all.
        window_mm: ``window`` size along (rows, columns) for 2D items, (rows, columns, slices)
            for 3D items.
        centre: where the window is centred: ``uterus_centroid`` (mean position of the
            uterus voxels), ``uterus_box_centre`` (centre of their bounding box) or
            ``image_centre``; the first two need a label map.
        centre_offset_mm: shift of the window centre along (rows, columns, slices).
    """

    mode: Literal["window", "uterus", "box", "full"] = "full"
    labels: tuple[int, ...] = (1, 2, 3)
    margin_mm: tuple[float, float, float] = (10.0, 10.0, 0.0)
    box_mm: tuple[float, ...] | None = None
    box_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    window_mm: tuple[float, ...] | None = None
    centre: Literal["uterus_centroid", "uterus_box_centre", "image_centre"] = "uterus_centroid"
    centre_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @model_validator(mode="after")
    def _box(self) -> RoiConfig:
        if self.mode == "box" and self.box_mm is None:
            raise ValueError("roi mode 'box' needs box_mm (size in mm along rows, columns[, slices])")
        if self.box_mm is not None and (len(self.box_mm) not in (2, 3) or min(self.box_mm) <= 0):
            raise ValueError(f"box_mm must hold 2 or 3 positive sizes, got {list(self.box_mm)}")
        if self.mode == "window" and self.window_mm is None:
            raise ValueError("roi mode 'window' needs window_mm (size in mm along rows, columns[, slices])")
        if self.window_mm is not None and (len(self.window_mm) not in (2, 3) or min(self.window_mm) <= 0):
            raise ValueError(f"window_mm must hold 2 or 3 positive sizes, got {list(self.window_mm)}")
        if min(self.margin_mm) < 0:
            raise ValueError("margin_mm must be >= 0")
        return self


class OutputConfig(StrictModel):
    """Shape of the items.

    Attributes:
        dims: 2 (one item per sagittal slice) or 3 (one volume per subject).
        shape: fixed in-plane ``(H, W)`` for 2D, ``(H, W, D)`` for 3D.
        fit: how a ``uterus``/``box``/``full`` ROI reaches the in-plane shape: ``crop_pad``
            centre-crops/pads at the resampled spacing; ``pad_resize`` pads the ROI to the
            target aspect ratio, then resizes it — a shortcut: the pad bands and the spacing
            then follow the ROI's aspect ratio, which gives the class away (warned at use).
            The slice axis of 3D items is always centre-cropped/padded to ``D``. Ignored by
            ``roi.mode: window``, which fixes spacing and shape itself.
        slices: 2D only — ``uterus`` (every slice holding at least ``min_uterus_voxels``
            uterus voxels; needs a label map) or ``central`` (the ``k`` slices around the ROI
            centre).
    """

    dims: Literal[2, 3] = 2
    shape: tuple[int, ...] = (128, 128)
    fit: Literal["pad_resize", "crop_pad"] = "crop_pad"
    slices: Literal["uterus", "central"] = "central"
    k: int = Field(default=5, ge=1)
    min_uterus_voxels: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> OutputConfig:
        if len(self.shape) != self.dims:
            raise ValueError(f"shape must have {self.dims} entries for dims={self.dims}, got {list(self.shape)}")
        if min(self.shape) < 1:
            raise ValueError(f"shape entries must be positive, got {list(self.shape)}")
        return self


class PreprocessConfig(StrictModel):
    """Everything that changes the pixels; its hash (with the preprocessing revision) is part of each item's ``prep_hash``."""

    reorient: bool = True
    resample: ResampleConfig = ResampleConfig()
    n4: N4Config = N4Config()
    normalize: NormalizeConfig = NormalizeConfig()
    roi: RoiConfig = RoiConfig()
    output: OutputConfig = OutputConfig()
    geometry_tolerance_mm: float = Field(default=0.01, gt=0)

    @model_validator(mode="after")
    def _window(self) -> PreprocessConfig:
        if self.roi.mode != "window":
            return self
        need = self.output.dims
        if self.roi.window_mm is not None and len(self.roi.window_mm) != need:
            raise ValueError(
                f"roi.window_mm must have {need} entries for output.dims={need} "
                f"(rows, columns{', slices' if need == 3 else ''}), got {list(self.roi.window_mm)}"
            )
        return self

    def window_spacing(self) -> tuple[float, ...]:
        """The one item spacing (mm) of ``roi.mode: window``: ``window_mm / output.shape`` per axis."""
        window = self.roi.window_mm or ()
        return tuple(float(w) / int(n) for w, n in zip(window, self.output.shape, strict=True))


class SplitConfig(StrictModel):
    """Subject-level split fractions (they must sum to 1), stratified by the class attribute.

    Attributes:
        stratify: an attribute column (e.g. ``orientation``) whose values are spread over the
            splits in proportion to the fractions, every split holding every value when the
            counts allow; ``auto`` (default): ``orientation`` when the labels table has it,
            else the first attribute declared in ``labels.attributes`` that it has, else none;
            ``null``: not stratified.
    """

    train: float = Field(default=0.8, ge=0, le=1)
    val: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    stratify: str | None = "auto"

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class LabelsConfig(StrictModel):
    """The subject → attribute table (``labels.csv``).

    Attributes:
        subject_column: the column holding subject ids (the UMD case folder name).
        attributes: allowed values per attribute, e.g. ``{orientation: [AVAF, AVRF, RVAF, RVRF]}``;
            a value outside the list is an error. Attributes not listed are accepted as is.
        require: every subject must have a row in the table.
        from_segmentation: attributes of each item read from its label map (default ``myoma``:
            label 3 in the item, so a slice without the myoma is ``absent`` even when the
            subject has one); subjects without a label map get an empty value.
        segmentation_min_voxels: the voxels that make an item's attribute ``present``.
        segmentation_few_voxels: an item with fewer (but some) voxels is ``absent``, or, with
            ``empty``, gets no value: a structure too small to see at the item's resolution is then
            neither a positive nor a negative example.
    """

    subject_column: str = "subject"
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    require: bool = False
    from_segmentation: dict[str, list[int]] = Field(
        default_factory=lambda: {"myoma": [3]},
        description="per-item attributes read from the label map: NAME: label values; the item's NAME is "
                    "'present' when at least segmentation_min_voxels of its voxels carry one of them, else 'absent'")
    segmentation_min_voxels: int = Field(8, ge=1, description="voxels of an item that make a from_segmentation "
                                                               "attribute 'present'")
    segmentation_few_voxels: Literal["absent", "empty"] = Field(
        "absent", description="the value of an item with some, but fewer than segmentation_min_voxels, voxels: "
                              "'absent', or 'empty' to leave such too-small-to-see items out of judges and prompts")


class PrepareConfig(StrictModel):
    """``uterosynth prepare``: preprocessing, splits, attribute table, seed and workers."""

    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    labels: LabelsConfig = LabelsConfig()
    seed: int = 0
    workers: int = Field(default=1, ge=1, le=64)
    compress: bool = True
