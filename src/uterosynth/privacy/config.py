"""Configuration of the memorisation audit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..core.config import StrictModel
from ..models.contrastive import ContrastiveConfig

__all__ = ["AuditConfig", "CopyDetectorConfig"]


class AuditConfig(StrictModel):
    """Settings of ``uterosynth audit`` (see docs/guide/privacy.md).

    Attributes:
        holdout: the split of the prepared dataset whose real items calibrate the thresholds.
        allow_missing_subjects: audit a set whose generator was trained on subjects the training
            split lacks (a control generator's samples against other patients). Off, the audit
            refuses: it cannot find copies of patients it does not hold.
        quantile: the conformal quantile (rank ``⌈(n + 1) q⌉``) that sets the thresholds from the
            calibration items' nearest-training similarities.
        control: ``each`` — every measure's own threshold holds its own false-flag
            rate, so several measures together flag up to (number of measures) × (1 − quantile)
            of non-copies; ``any`` — one threshold rule for the decision: a non-copy is flagged
            under any measure at most ``1 − quantile`` of the time, calibrated on the items scored
            under every measure, of which it needs ``(K + q) / (1 − q)`` for K measures (399 for
            three at 0.99). ``any`` flags fewer new items and, with higher thresholds, may miss
            borderline copies. ``auto`` (default): ``any`` where the calibration has the items for
            it, else ``each`` (the audit's notes say which, and why).
        calibrate_on_train: also calibrate on every training item matched against the other
            training subjects (leave one subject out): hundreds of calibration items from a
            research-size cohort instead of its small test split.
        calibration_train_items: at most this many training items calibrate (whole subjects drawn
            at random with ``seed`` beyond it; at least one subject), so a 10 000-item training set
            is not searched twice.
        seed: the draw of those subjects.
        calibration_blur: also calibrate on the held-out (and, with ``calibrate_on_train``, the
            training) items blurred in-plane with each of these Gaussian sigmas (item pixels):
            smoothness-matched controls, so that a smooth new image is not taken for a copy.
        control_calibration: with model-made controls (``uterosynth audit --controls``;
            :mod:`uterosynth.privacy.controls`): ``only`` (default) — the thresholds come from the
            controls alone, which share the samples' smoothness, so a sample is flagged when it is
            closer to a training item than a model that never saw that patient makes them; ``pooled``
            — the controls join the real calibration items.
        ncc_size: NCC is computed on images area-averaged to at most this many voxels per axis.
        max_shift: largest shift searched by NCC, in voxels of the items, along every axis;
            converted to working-grid voxels (rounded up).
        flip: also search the mirror images (see ``similarity.default_flip_axes``).
        ssim_window: SSIM window side in voxels.
        ssim_blur: SSIM compares both images after an in-plane Gaussian blur of this sigma (item
            pixels; 0: none): at a common smoothness, a smoother (model-made) image does not
            look more like its neighbour than a sharp one would, while a copy stays a copy.
        background: the measures of ``background_measures`` are scored as their excess over the
            sample's ``background``-th most similar training item among other subjects than the
            nearest one's (score normalisation as in SSCD, Pizzi et al. 2022): a smooth image
            resembles every item a little, a copy resembles one. NCC keeps, and the unshifted NCC
            ranking shortlists for SSIM, ``shortlist + max(2 ×`` this, this ``+`` the most items of
            one training subject``)`` neighbours, so that the list reaches past the nearest item's
            subject. 0: none.
        background_measures: the measures scored against the background (of those in ``measures``;
            the others are ignored): SSIM by default. NCC
            scored so missed 30 % of 2–4 px shifted copies on the test suite's homogeneous
            images, whose shifted alignments make every pair alike (docs/RESULTS.md).
        shortlist: candidates per measure (NCC, embedding) whose SSIM is computed exactly.
        per_slice: for volumes, also audit every slice against every training slice.
        min_slice_std: slices whose intensity standard deviation is below this are background
            and skipped in the per-slice audit.
        report_pairs: closest pairs shown in ``audit.html``.
        block_elements: memory bound of one block of similarity scores (floats).
        measures: the measures computed (``embedding`` only with an encoder); SSIM is exact on
            the shortlist of the others, so it needs NCC, zoom NCC or the embedding. Leave out NCC and
            SSIM for an embedding-only audit of very large sets. ``zoom`` (NCC of the sample shrunk to
            each of ``zoom_scales`` against every window of a training item) finds a crop of a
            training image enlarged back to full size, which shifts alone do not; it costs about
            three times NCC.
        zoom_scales: the fractions of the side a copy may have been cropped to (``zoom``).
        zoom_size: the working grid (voxels per axis) of zoom NCC's search over all pairs, coarser
            than NCC's because it compares every window of every training item; its
            ``zoom_candidates`` best training items per sample are then scored on NCC's grid.
        zoom_candidates: training items per sample that the coarse zoom search passes on.
        zoom_refine: the window sizes those candidates are scored at on NCC's grid: ``dense``, every size
            from the smallest to the largest of ``zoom_scales`` (a crop between two listed scales scores as
            high as one at a listed scale); ``listed``, ``zoom_scales`` alone (the former search).
        embedding_index: nearest-embedding search (:mod:`uterosynth.privacy.embedding_search`):
            ``auto`` (FAISS flat, exact; IVF from ``ivf_from`` training items), ``flat``, ``ivf``
            or ``torch`` (exact, without FAISS).
        ivf_from: training items from which ``auto`` uses the IVF index.
        nprobe: IVF lists searched per query (recall against exact search is reported).
    """

    holdout: Literal["val", "test"] = "test"
    allow_missing_subjects: bool = False
    quantile: float = Field(0.99, gt=0.5, lt=1.0)
    control: Literal["auto", "each", "any"] = "auto"
    calibrate_on_train: bool = True
    calibration_train_items: int = Field(2000, ge=1)
    seed: int = 0
    calibration_blur: list[float] = Field(default_factory=list)
    control_calibration: Literal["only", "pooled"] = "only"
    ncc_size: int = Field(32, ge=8)
    max_shift: int = Field(4, ge=0, le=32)
    flip: bool = True
    ssim_window: int = Field(7, ge=3)
    ssim_blur: float = Field(0.0, ge=0.0)
    background: int = Field(10, ge=0)
    background_measures: list[Literal["ncc", "ssim"]] = Field(default_factory=lambda: ["ssim"])
    shortlist: int = Field(5, ge=1)
    per_slice: bool = True
    min_slice_std: float = Field(0.01, ge=0.0)
    report_pairs: int = Field(16, ge=0)
    block_elements: int = Field(1 << 25, ge=1 << 16)
    measures: list[Literal["ncc", "ssim", "embedding", "zoom"]] = Field(
        default_factory=lambda: ["ncc", "ssim", "embedding", "zoom"])
    zoom_scales: list[float] = Field(default_factory=lambda: [0.7, 0.8, 0.9], min_length=1)
    zoom_size: int = Field(16, ge=8)
    zoom_candidates: int = Field(5, ge=1)
    zoom_refine: Literal["dense", "listed"] = "dense"
    embedding_index: Literal["auto", "flat", "ivf", "torch"] = "auto"
    ivf_from: int = Field(100_000, ge=1)
    nprobe: int = Field(16, ge=1)

    @field_validator("measures")
    @classmethod
    def _measures(cls, measures: list[str]) -> list[str]:
        if not measures:
            raise ValueError("measures must name at least one of ncc, ssim, embedding, zoom")
        return list(dict.fromkeys(measures))

    @field_validator("zoom_scales")
    @classmethod
    def _fractions(cls, scales: list[float]) -> list[float]:
        if any(not 0 < c < 1 for c in scales):
            raise ValueError("zoom_scales must be fractions of the side between 0 and 1")
        return sorted(set(scales))

    @field_validator("calibration_blur")
    @classmethod
    def _positive(cls, sigmas: list[float]) -> list[float]:
        if any(s <= 0 for s in sigmas):
            raise ValueError("calibration_blur sigmas must be positive")
        return sigmas

    @model_validator(mode="after")
    def _coarse_search_is_coarser(self) -> AuditConfig:
        if "zoom" in self.measures and self.zoom_size > self.ncc_size:
            raise ValueError(f"zoom_size ({self.zoom_size}) must not exceed ncc_size ({self.ncc_size}): zoom NCC "
                             "shortlists on the zoom_size grid and scores on the ncc_size grid")
        return self



class CopyDetectorConfig(ContrastiveConfig):
    """Training of the learned copy detector (``uterosynth audit train-encoder``; see docs/guide/privacy.md).

    An SSCD-style embedding (Pizzi et al. 2022): contrastive instance discrimination where the
    two views of an image are what a copy of it could look like. ``max_*`` bound the random
    copy transforms; ``other_slice`` is the chance that the second view starts from another
    item (slice) of the same subject, so that a sample reproducing a training patient's
    neighbouring slice still lands next to that patient.
    """

    image_size: int = Field(64, ge=16, description="items are resized to this square")
    projection_dim: int = Field(128, ge=8, description="descriptor size: the projection head's output, which the loss sees")
    epochs: int = Field(40, ge=1, description="passes over every item")
    batch_size: int = Field(64, ge=2, description="subjects per step (one item each, so no subject is its own negative)")
    other_slice: float = Field(0.25, ge=0, le=1, description="chance the positive is another item of the same subject")
    min_crop: float = Field(0.7, gt=0.3, le=1, description="smallest crop side, as a fraction, resized back")
    max_rotation_deg: float = Field(10.0, ge=0, le=45)
    max_shift: float = Field(0.1, ge=0, le=0.3, description="largest translation, as a fraction of the side")
    max_blur_sigma: float = Field(2.0, ge=0, description="largest Gaussian blur, item pixels")
    noise_std: float = Field(0.03, ge=0)
    elastic_px: float = Field(2.0, ge=0, description="largest elastic displacement, item pixels")
    mirror_symmetric: bool = Field(True, description="descriptor = image's + mirror image's: mirror copies match exactly")
