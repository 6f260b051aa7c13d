"""Calibrated memorisation audit: nearest training items of every synthetic sample, and flags.

For each synthetic sample and each measure (NCC over shifts and mirror images, SSIM, cosine
similarity of encoder embeddings; see :mod:`uterosynth.privacy.similarity`) the audit finds
the most similar training item. A similarity alone says little: how similar is "too similar"
depends on the anatomy, the resolution and the measure. The audit therefore **calibrates**
each threshold on items that are by definition not copies, each matched against the training
items of *other* subjects exactly as a sample is:

- held-out real items (subjects the model never saw);
- the training items (up to ``calibration_train_items`` of whole subjects) against the other
  training subjects (leave one subject out), so a research-size cohort calibrates on hundreds
  of items, not on its small test split;
- optionally, smoothness-matched controls: all of these blurred (``calibration_blur``, off by
  default), because model outputs can be smoother than real images and smooth images look alike;
- optionally, model-made controls (:mod:`uterosynth.privacy.controls`): samples of a model of
  other subjects, or reconstructions of other subjects, matched against every training item. By
  default (``control_calibration: only``) they alone set the thresholds.

The threshold is a **conformal** quantile: the ``⌈(n + 1) q⌉``-th smallest of the ``n``
calibration similarities. For a new item exchangeable with them, the chance to exceed it is at
most ``1 − ⌈(n + 1) q⌉ / (n + 1) ≤ 1 − q`` whatever ``n`` (the bound is reported). When ``n`` is
too small for any such rank (``n < q / (1 − q)``, 99 items for 0.99; more under ``control:
any``, see :func:`items_needed`) the audit refuses, naming how many are needed. With
``control: any`` one conformal rule sets every threshold so that the *decision* holds the rate
(:func:`calibrated_thresholds`); ``control: auto``, the default, takes it wherever the calibration
has the items it needs, and each measure's own rate otherwise. A synthetic sample is flagged when it is closer to the training set than
the threshold under any measure. The audit also measures the false-flag rate directly with
leave-one-subject-out over the calibration subjects, per source of calibration items.

For volumes the audit runs twice: on whole volumes, and per slice (every informative slice of
a sample against every training slice; a volume's score is its most similar slice, and the
threshold is calibrated on the same per-volume maximum of calibration volumes, so "any slice"
does not inflate the false-flag rate).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError, DataError
from ..core.imageio import blur_in_plane
from ..data.image_set import ImageSet
from ..data.subjects import hash_subject
from .config import AuditConfig
from .controls import CONTROL_SOURCE
from .embedding_search import embedding_search
from .similarity import (
    Neighbours,
    alignments,
    default_flip_axes,
    dense_zoom_scales,
    embed,
    ncc_search,
    ssim_search,
    to_working_grid,
    zoom_refine,
    zoom_search,
)

__all__ = ["AuditResult", "CalibrationSet", "MEASURES", "conformal_threshold", "run_audit"]

log = logging.getLogger(__name__)

MEASURES = ("ncc", "ssim", "embedding", "zoom")


@dataclass
class MeasureResult:
    """Nearest training item of every query under one measure (per item of the query set).

    ``ref_index`` indexes the training items; ``query_slice`` / ``ref_slice`` are the slices
    that matched in the per-slice mode (``-1`` otherwise); ``transform`` the alignment.
    """

    similarity: np.ndarray
    ref_index: np.ndarray
    transform: np.ndarray
    query_slice: np.ndarray
    ref_slice: np.ndarray


@dataclass
class ModeResult:
    """One audit mode (``image`` for 2D items, ``volume`` and ``slice`` for volumes)."""

    mode: str
    synthetic: dict[str, MeasureResult]
    calibration: dict[str, MeasureResult]
    thresholds: dict[str, float]
    conformal: dict[str, dict[str, float]]
    alignments: list[dict]
    notes: dict[str, str] = field(default_factory=dict)
    zoom: dict[str, Any] | None = None
    """The zoom search's grid, scales and mirror axes (decodes its transforms), when it ran."""


@dataclass
class CalibrationSet:
    """The items that set the thresholds, none of them a copy: ``images`` with each one's subject and source."""

    images: torch.Tensor
    groups: torch.Tensor
    subjects: list[str]
    sources: list[str]

    def counts(self) -> dict[str, int]:
        return {src: self.sources.count(src) for src in dict.fromkeys(self.sources)}


@dataclass
class AuditResult:
    """Everything the audit found; :meth:`to_json` gives the ``audit.json`` body."""

    config: AuditConfig
    modes: list[ModeResult]
    flagged: np.ndarray
    false_flag_rate: dict[str, Any]
    extractor: dict[str, str] | None
    calibration: dict[str, Any]

    def copied_subjects(self, train_subjects: Sequence[str]) -> set[str]:
        """Training subjects that are a flagged sample's nearest neighbour under a measure that flags it."""
        out = set()
        for m in self.modes:
            for name, res in m.synthetic.items():
                hit = (res.similarity > m.thresholds[name]) & (res.ref_index >= 0)
                out.update(train_subjects[int(j)] for j in res.ref_index[hit])
        return out

    def flags_of(self, i: int) -> list[str]:
        """``mode/measure`` names under which synthetic sample ``i`` is flagged."""
        out = []
        for m in self.modes:
            for name, res in m.synthetic.items():
                if res.similarity[i] > m.thresholds[name]:
                    out.append(f"{m.mode}/{name}")
        return out


def _codes(subjects: Sequence[str]) -> torch.Tensor:
    lookup: dict[str, int] = {}
    return torch.tensor([lookup.setdefault(s, len(lookup)) for s in subjects], dtype=torch.long)


def _nearest(
    query: torch.Tensor,
    train: torch.Tensor,
    *,
    cfg: AuditConfig,
    query_groups: torch.Tensor | None,
    train_groups: torch.Tensor | None,
    extractor: Callable | None,
    train_features: torch.Tensor | None,
    ssim_train: torch.Tensor,
    notes: dict[str, str],
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Nearest training item of every query under each measure: ``{measure: (value, index, transform)}``."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    shortlist = []
    shift, flips = _search_space(train, cfg)
    wide = _wide_shortlist(cfg, train_groups)
    if "zoom" in cfg.measures or "ncc" in cfg.measures:  # NCC's working grid, shared by zoom's refinement
        grid_q, grid_t = to_working_grid(query, cfg.ncc_size), to_working_grid(train, cfg.ncc_size)
    if "zoom" in cfg.measures:  # a coarse search over all pairs shortlists, the NCC grid scores
        coarse = zoom_search(to_working_grid(query, cfg.zoom_size), to_working_grid(train, cfg.zoom_size),
                             scales=cfg.zoom_scales, k=cfg.zoom_candidates, flip_axes=flips, query_groups=query_groups,
                             reference_groups=train_groups, block_elements=cfg.block_elements)
        zoom = zoom_refine(grid_q, grid_t, coarse.indices, scales=_refine_scales(cfg, grid_t.shape[1:]), flip_axes=flips,
                           block_elements=cfg.block_elements)
        out["zoom"] = (zoom.values[:, 0], zoom.indices[:, 0], zoom.transforms[:, 0])
        shortlist.append(coarse.indices[:, : cfg.shortlist])
    if "ncc" in cfg.measures:
        ncc = ncc_search(grid_q, grid_t, k=wide, max_shift=shift, flip_axes=flips,
                         query_groups=query_groups, reference_groups=train_groups, block_elements=cfg.block_elements)
        out["ncc"] = (_excess_over_background(ncc, train_groups, _background(cfg, "ncc")), ncc.indices[:, 0],
                      ncc.transforms[:, 0])
        shortlist.append(ncc.indices[:, : cfg.shortlist])
        if "ssim" in cfg.measures:
            # SSIM compares unshifted images, so the unshifted NCC ranking joins the shortlist (2 of the
            # alignments' matrix products, i.e. a small extra cost)
            shortlist.append(ncc_search(grid_q, grid_t, k=wide, max_shift=0, flip_axes=flips,
                                        query_groups=query_groups, reference_groups=train_groups,
                                        block_elements=cfg.block_elements).indices)
    if extractor is not None and train_features is not None and "embedding" in cfg.measures:
        emb, report = embedding_search(embed(extractor, query), train_features,
                                       k=cfg.shortlist if "ncc" in cfg.measures else wide,
                                       query_groups=query_groups, reference_groups=train_groups,
                                       index=cfg.embedding_index, ivf_from=cfg.ivf_from, nprobe=cfg.nprobe,
                                       block_elements=cfg.block_elements)
        out["embedding"] = (emb.values[:, 0], emb.indices[:, 0], emb.transforms[:, 0])
        shortlist.append(emb.indices)
        notes[f"embedding index, {'synthetic' if query_groups is None else 'calibration'} items"] = report.describe()
    if "ssim" in cfg.measures and shortlist:
        ssim = ssim_search(_smoothed(query, cfg.ssim_blur), ssim_train, torch.cat(shortlist, dim=1),
                           window=cfg.ssim_window, flip_axes=flips, k=wide)
        out["ssim"] = (_excess_over_background(ssim, train_groups, _background(cfg, "ssim")), ssim.indices[:, 0],
                       ssim.transforms[:, 0])
    return out


def _background(cfg: AuditConfig, measure: str) -> int:
    """The background rank of ``measure`` (0: scored raw)."""
    return cfg.background if measure in cfg.background_measures else 0


def _wide_shortlist(cfg: AuditConfig, train_groups: torch.Tensor | None) -> int:
    """Neighbours kept per ranking for the background: enough for rank ``background`` to lie beyond the
    nearest item's subject, however many items that subject holds (slices of one scan); none beyond the
    shortlist without a background."""
    if cfg.background == 0:
        return cfg.shortlist
    per_subject = int(torch.unique(train_groups, return_counts=True)[1].max()) if train_groups is not None else 1
    return cfg.shortlist + max(2 * cfg.background, cfg.background + per_subject)


def _excess_over_background(found: Neighbours, train_groups: torch.Tensor, rank: int) -> torch.Tensor:
    """The best similarity minus the ``rank``-th best among neighbours of other subjects than the best's (SSCD's
    score normalisation); the raw best for ``rank`` 0. With fewer such neighbours, the last of them is the
    background; with none, the last neighbour found (every item outside the list is less similar)."""
    best = found.values[:, 0]
    if rank == 0:
        return best
    valid = found.indices >= 0
    subject = torch.where(valid, train_groups[found.indices.clamp_min(0)], torch.full_like(found.indices, -1))
    other = valid & (subject != subject[:, :1]) & torch.isfinite(found.values)
    background = found.values.masked_fill(~other, -torch.inf).sort(dim=1, descending=True).values
    count = other.sum(dim=1)
    pick = (torch.minimum(count, torch.full_like(count, rank)) - 1).clamp_min(0)
    bg = background.gather(1, pick[:, None])[:, 0]
    found_values = found.values.masked_fill(~(valid & torch.isfinite(found.values)), torch.inf)
    bg = torch.where(count > 0, bg, found_values.min(dim=1).values)
    return (best - bg).masked_fill(torch.isinf(best), -torch.inf)


def _smoothed(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Items blurred in-plane with ``sigma`` px (SSIM's common smoothness), or as they are for 0."""
    return images if sigma <= 0 else torch.from_numpy(blur_in_plane(images.float().numpy(), sigma))


def _search_space(images: torch.Tensor, cfg: AuditConfig) -> tuple[int, tuple[int, ...]]:
    """Shift range (clamped to what the working grid allows) and mirror axes of the NCC search."""
    dims = images.dim() - 1
    grid = to_working_grid(images[:1], cfg.ncc_size).shape[1:]
    factor = min(s / g for s, g in zip(images.shape[1:3], grid[:2], strict=True))
    shift = max(0, min(math.ceil(cfg.max_shift / factor - 1e-9), (min(grid) - 3) // 2))
    return shift, (default_flip_axes(dims) if cfg.flip else ())


def _zoom_spec(images: torch.Tensor, cfg: AuditConfig) -> dict[str, Any] | None:
    """What decodes the zoom search's transforms for items like ``images`` (``None`` without zoom)."""
    if "zoom" not in cfg.measures:
        return None
    grid = to_working_grid(images[:1], cfg.ncc_size).shape[1:]
    return {"grid": [int(g) for g in grid], "scales": _refine_scales(cfg, grid),
            "flip_axes": list(_search_space(images, cfg)[1])}


def _refine_scales(cfg: AuditConfig, grid: Sequence[int]) -> list[float]:
    """The scales zoom NCC scores its shortlist at on NCC's grid: every window size in the range of
    ``zoom_scales`` (``zoom_refine: dense``), or those scales alone."""
    return dense_zoom_scales(cfg.zoom_scales, grid) if cfg.zoom_refine == "dense" else list(cfg.zoom_scales)


def _mode_alignments(images: torch.Tensor, cfg: AuditConfig) -> list[dict]:
    shift, flips = _search_space(images, cfg)
    return [a.as_dict() for a in alignments(images.dim() - 1, shift, flips)]


def _train_features(extractor: Callable | None, train: torch.Tensor, mode: str, notes: dict[str, str]) -> torch.Tensor | None:
    if extractor is None:
        return None
    try:
        return embed(extractor, train)
    except Exception as err:  # an encoder may accept only 2D or only 3D input
        notes["embedding"] = f"encoder could not embed {mode} inputs {tuple(train.shape[1:])}: {str(err).splitlines()[0]}"
        log.warning("embedding measure skipped for %s mode: %s", mode, notes["embedding"])
        return None


def _measure_results(
    found: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    n_items: int,
    owner: np.ndarray | None = None,
    slice_of: np.ndarray | None = None,
    train_owner: np.ndarray | None = None,
    train_slice: np.ndarray | None = None,
) -> dict[str, MeasureResult]:
    """Per item results; in slice mode reduce slices to their owner item by the maximum."""
    out = {}
    for name, (value, index, transform) in found.items():
        v, idx, tr = value.numpy().astype(np.float64), index.numpy(), transform.numpy()
        if owner is None:
            out[name] = MeasureResult(v, idx, tr, np.full(n_items, -1), np.full(n_items, -1))
            continue
        sim = np.full(n_items, -np.inf)
        best = np.full(n_items, -1)
        for j in np.argsort(v, kind="stable"):  # ascending: the last write per owner is its maximum
            sim[owner[j]] = v[j]
            best[owner[j]] = j
        has = best >= 0
        ref = np.full(n_items, -1)
        ref[has] = train_owner[idx[best[has]]]
        rs = np.full(n_items, -1)
        rs[has] = train_slice[idx[best[has]]]
        qs = np.full(n_items, -1)
        qs[has] = slice_of[best[has]]
        trf = np.zeros(n_items, dtype=np.int64)
        trf[has] = tr[best[has]]
        out[name] = MeasureResult(sim, ref, trf, qs, rs)
    return out


def _slices(images: torch.Tensor, min_std: float) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Informative sagittal slices ``(S, H, W)`` of volumes ``(N, H, W, D)`` with owner and slice index."""
    sl = images.permute(0, 3, 1, 2)  # (N, D, H, W)
    std = sl.flatten(2).std(dim=2)
    keep = (std > min_std).numpy()
    owner, idx = np.nonzero(keep)
    return sl[torch.from_numpy(owner), torch.from_numpy(idx)], owner, idx


def run_audit(
    train: ImageSet,
    synthetic: ImageSet,
    holdout: ImageSet,
    *,
    config: AuditConfig | None = None,
    extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
    controls: ImageSet | None = None,
) -> AuditResult:
    """Audit ``synthetic`` against ``train``, with thresholds calibrated on ``holdout`` (and, per ``config``,
    on the training items against the other training subjects and on blurred copies of both).

    Args:
        train: training items ``(N, 1, *spatial)`` with subjects (the audit works on
            :meth:`~uterosynth.data.image_set.ImageSet.planes`).
        synthetic: synthetic items of the same shape.
        holdout: held-out real items (other subjects) of the same shape.
        config: audit settings.
        extractor: a :class:`~uterosynth.models.extractor.FeatureExtractor`, or ``None``
            to skip the embedding measure.
        controls: model-made items that are not copies of ``train`` (checked by
            :func:`~uterosynth.privacy.controls.load_controls`), calibrating per ``control_calibration``.

    Raises:
        DataError: shapes differ, a set is empty, held-out subjects are all in training, or the
            calibration items are too few for the quantile's finite-sample guarantee.
    """
    cfg = config or AuditConfig()
    if "embedding" not in cfg.measures:
        extractor = None
    if "ncc" not in cfg.measures and "zoom" not in cfg.measures and extractor is None:
        raise ConfigError(f"audit: measures {cfg.measures} need NCC, zoom or an encoder (SSIM is computed on their "
                          "shortlist)", keys=("measures",))
    train_x, syn_x, hold_x, ctrl_x = _checked_planes(train, synthetic, holdout, controls)
    ctrl_subjects = [] if ctrl_x is None else [f"control:{i}" for i in range(len(ctrl_x))]
    codes = _codes(list(train.subjects) + list(holdout.subjects) + ctrl_subjects)
    train_groups, holdout_groups = codes[: len(train)], codes[len(train) : len(train) + len(holdout)]
    overlap = set(train.subjects) & set(holdout.subjects)
    if overlap:
        log.warning("%d held-out subject(s) also occur in training; their training items are excluded", len(overlap))
    if len(overlap) == len(set(holdout.subjects)):
        raise DataError("audit: every held-out subject also occurs in the training set; use a subject-level held-out "
                        "split", keys=("holdout",))
    controls_only = ctrl_x is not None and cfg.control_calibration == "only"
    calib = None if controls_only else calibration_set(train_x, train.subjects, train_groups, hold_x,
                                                       holdout.subjects, holdout_groups, cfg)
    if ctrl_x is not None:
        calib = with_controls(calib, ctrl_x, ctrl_subjects, codes[len(train) + len(holdout):])

    modes: list[ModeResult] = []
    dims = train_x.dim() - 1
    mode_name = "image" if dims == 2 else "volume"
    notes: dict[str, str] = {}
    feats = _train_features(extractor, train_x, mode_name, notes)
    kw = dict(cfg=cfg, train_groups=train_groups, extractor=extractor, train_features=feats,
              ssim_train=_smoothed(train_x, cfg.ssim_blur), notes=notes)
    syn = _nearest(syn_x, train_x, query_groups=None, **kw)
    cal = _nearest(calib.images, train_x, query_groups=calib.groups, **kw)
    seen = _seen_by_encoder(extractor, calib.subjects)
    if syn:  # an embedding-only audit of volumes with a 2D encoder has no volume-mode measure
        modes.append(_mode(mode_name, _measure_results(syn, len(synthetic)),
                           _unseen(_measure_results(cal, len(calib.sources)), seen, notes),
                           _mode_alignments(train_x, cfg), notes, _zoom_spec(train_x, cfg)))

    if dims == 3 and cfg.per_slice:
        t_sl, t_own, t_idx = _slices(train_x, cfg.min_slice_std)
        s_sl, s_own, s_idx = _slices(syn_x, cfg.min_slice_std)
        c_sl, c_own, c_idx = _slices(calib.images, cfg.min_slice_std)
        if len(t_sl) and len(s_sl) and len(c_sl):
            notes = {}
            feats = _train_features(extractor, t_sl, "slice", notes)
            kw = dict(cfg=cfg, train_groups=train_groups[torch.from_numpy(t_own)], extractor=extractor,
                      train_features=feats, ssim_train=_smoothed(t_sl, cfg.ssim_blur), notes=notes)
            syn = _nearest(s_sl, t_sl, query_groups=None, **kw)
            cal = _nearest(c_sl, t_sl, query_groups=calib.groups[torch.from_numpy(c_own)], **kw)
            if syn:
                modes.append(_mode("slice", _measure_results(syn, len(synthetic), s_own, s_idx, t_own, t_idx),
                                   _unseen(_measure_results(cal, len(calib.sources), c_own, c_idx, t_own, t_idx),
                                           seen, notes), _mode_alignments(t_sl, cfg), notes, _zoom_spec(t_sl, cfg)))

    if not modes:
        raise ConfigError(f"audit: no measure could be computed (measures {cfg.measures}; the encoder could not embed "
                          "these items)", keys=("measures",))

    cfg = _resolved_control(modes, cfg)
    _set_thresholds(modes, cfg)
    _refuse_unsupported(modes, len(calib.sources), len(set(calib.subjects)), cfg, encoder_excluded=bool(seen.any()),
                        controls_only=controls_only)
    flagged = np.zeros(len(synthetic), dtype=bool)
    for m in modes:
        for name, res in m.synthetic.items():
            flagged |= res.similarity > m.thresholds[name]
    return AuditResult(
        config=cfg,
        modes=modes,
        flagged=flagged,
        false_flag_rate=_loso_false_flag_rate(modes, calib, cfg.quantile, cfg.control),
        extractor=None if extractor is None else {"name": getattr(extractor, "name", type(extractor).__name__),
                                                  "sha256": getattr(extractor, "sha256", "")},
        calibration={"items": len(calib.sources), "subjects": len(set(calib.subjects)), "sources": calib.counts(),
                     "item_sources": calib.sources},
    )


def _checked_planes(train: ImageSet, synthetic: ImageSet, holdout: ImageSet, controls: ImageSet | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The sets' items as ``(N, *spatial)``, refused when a set is empty or the shapes differ."""
    sets = {"training": train, "synthetic": synthetic, "held-out": holdout, "controls": controls}
    planes = {}
    for name, s in sets.items():
        if s is not None and len(s) == 0:
            raise DataError(f"audit: the {name} set is empty")
        planes[name] = None if s is None else s.planes()
    shape = planes["training"].shape[1:]
    if any(x is not None and x.shape[1:] != shape for x in planes.values()):
        shapes = ", ".join(f"{k} {tuple(x.shape[1:])}" for k, x in planes.items() if x is not None)
        raise DataError(f"audit: item shapes differ ({shapes}); audit sets of one shape")
    return planes["training"], planes["synthetic"], planes["held-out"], planes["controls"]


def _seen_by_encoder(extractor: Callable | None, subjects: Sequence[str]) -> np.ndarray:
    """Which calibration items belong to subjects the (learned) encoder was trained on."""
    record = getattr(extractor, "training_subjects", None)
    if not record or record.get("salt") is None:
        return np.zeros(len(subjects), dtype=bool)
    ids = set(record.get("ids", ()))
    return np.array([hash_subject(s, record["salt"]) in ids for s in subjects], dtype=bool)


def _unseen(cal: dict[str, MeasureResult], seen: np.ndarray, notes: dict[str, str]) -> dict[str, MeasureResult]:
    """Drop (``-inf``) the embedding similarities of calibration items the encoder was trained on.

    An encoder has learned its training items: their similarities are not those of a new image,
    so they cannot calibrate its threshold (the pixel measures keep them).
    """
    if "embedding" in cal and seen.any():
        res = cal["embedding"]
        sim = np.where(seen, -np.inf, res.similarity)
        cal = {**cal, "embedding": MeasureResult(sim, res.ref_index, res.transform, res.query_slice, res.ref_slice)}
        notes["embedding"] = (f"calibrated on the {int((~seen).sum())} items of subjects the encoder was not trained on "
                              f"({int(seen.sum())} excluded)")
    return cal


def calibration_set(
    train_x: torch.Tensor, train_subjects: Sequence[str], train_groups: torch.Tensor,
    hold_x: torch.Tensor, hold_subjects: Sequence[str], hold_groups: torch.Tensor, cfg: AuditConfig,
) -> CalibrationSet:
    """Held-out items, (``calibrate_on_train``) the training items, then each blur of all of them.

    The training items are all of them up to ``calibration_train_items``; beyond that, the items
    of whole training subjects drawn at random (seeded) up to that many — a few thousand
    calibration items resolve a 0.99 quantile, and each costs a search like a sample's.

    Each is matched only against training items of other subjects (its group), so every one is
    a non-copy scored exactly as a synthetic sample is.
    """
    parts = [(hold_x, list(hold_subjects), hold_groups, "held-out")]
    if cfg.calibrate_on_train:
        keep = _subject_sample(train_subjects, cfg.calibration_train_items, cfg.seed)
        parts.append((train_x[keep], [train_subjects[i] for i in keep.tolist()], train_groups[keep],
                      "training, against the other subjects"))
    for sigma in cfg.calibration_blur:
        parts += [(torch.from_numpy(blur_in_plane(x.numpy(), sigma)), subjects, groups,
                   f"{source}, blurred sigma {sigma:g} px")
                  for x, subjects, groups, source in parts[: 2 if cfg.calibrate_on_train else 1]]
    return CalibrationSet(torch.cat([p[0] for p in parts]), torch.cat([p[2] for p in parts]),
                          [s for p in parts for s in p[1]], [p[3] for p in parts for _ in p[1]])


def with_controls(calib: CalibrationSet | None, images: torch.Tensor, subjects: list[str],
                  groups: torch.Tensor) -> CalibrationSet:
    """The model-made controls added to the real calibration items (``pooled``), or alone (``calib`` is
    ``None``: ``control_calibration: only``, where the real items are not even assembled).

    Each control item is its own unit (independent draws of a model, or reconstructions whose
    subjects the audit does not see), and is matched against every training item.
    """
    controls = CalibrationSet(images, groups, subjects, [CONTROL_SOURCE] * len(subjects))
    if calib is None:
        return controls
    return CalibrationSet(torch.cat([calib.images, images]), torch.cat([calib.groups, groups]),
                          [*calib.subjects, *subjects], [*calib.sources, *controls.sources])


def _subject_sample(subjects: Sequence[str], cap: int, seed: int) -> torch.Tensor:
    """Indices of all items, or of whole subjects drawn at random until ``cap`` items are reached."""
    if len(subjects) <= cap:
        return torch.arange(len(subjects))
    by_subject: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        by_subject.setdefault(s, []).append(i)
    order = np.random.default_rng(seed).permutation(len(by_subject))
    groups = list(by_subject.values())
    keep: list[int] = []
    for g in order:
        if len(keep) + len(groups[g]) > cap and keep:
            break
        keep += groups[g]
    return torch.tensor(sorted(keep))


def conformal_threshold(similarities: np.ndarray, quantile: float) -> tuple[float, int, float | None]:
    """``(threshold, rank, bound)``: the ``rank = ⌈(n + 1) q⌉``-th smallest finite similarity.

    A new item exchangeable with the ``n`` calibration items exceeds it with probability at most
    ``bound = 1 − rank / (n + 1)`` (≤ 1 − q). When ``rank > n`` no calibration item can serve:
    the threshold is ``inf`` and the bound ``None`` (unsupported).
    """
    finite = np.sort(similarities[np.isfinite(similarities)])
    n = finite.size
    rank = math.ceil((n + 1) * quantile - 1e-12)
    if rank > n:
        return float("inf"), rank, None
    return float(finite[rank - 1]), rank, 1.0 - rank / (n + 1)


def items_needed(quantile: float, measures: int | None = None) -> int:
    """The fewest calibration items that always give every threshold a rank: 99 at 0.99 per measure.

    Under ``control: any`` with ``measures`` (mode, measure) pairs, each measure's largest value
    gives its item the top rank score 1, so up to ``measures`` items score 1 and ``n`` must satisfy
    ``⌈(n + 1) q⌉ ≤ n − measures``: 399 at 0.99 with three measures, 199 with one.
    """
    if measures is None:
        return math.ceil(quantile / (1.0 - quantile) - 1e-9)
    return math.ceil((measures + quantile) / (1.0 - quantile) - 1e-9)


def _refuse_unsupported(modes: list[ModeResult], items: int, subjects: int, cfg: AuditConfig, *,
                        encoder_excluded: bool, controls_only: bool = False) -> None:
    bad = {f"{m.mode}/{k}": c["n"] for m in modes for k, c in m.conformal.items() if c["bound"] is None}
    if bad:
        quantile = cfg.quantile
        need = items_needed(quantile, sum(len(m.conformal) for m in modes) if cfg.control == "any" else None)
        per_subject = max(1.0, items / max(subjects, 1))
        fewest = min(bad.values())
        seen = (f"; the encoder was trained on the subjects of the other {items - fewest} items, which cannot "
                "calibrate it: train it on a cohort of other subjects" if fewest < items and encoder_excluded else "")
        counted = f"{items} calibration items" if fewest == items else f"{fewest} of the {items} calibration items"
        under = " under control any" if cfg.control == "any" else ""
        need_text = (f"{need} items{under}; draw more controls" if controls_only else
                     f"{need} items, about {math.ceil(need / per_subject)} subjects at {per_subject:.0f} items "
                     f"each{under}; add subjects")
        raise DataError(
            f"audit: {counted} ({subjects} {'control items' if controls_only else 'subjects'}) cannot give a threshold "
            f"at quantile {quantile} with a finite-sample guarantee ({', '.join(bad)}): that needs at least "
            f"{need_text} or lower the quantile{seen}",
            keys=("quantile",))


def _resolved_control(modes: list[ModeResult], cfg: AuditConfig) -> AuditConfig:
    """``control: auto`` made concrete: ``any`` where the calibration items scored under every measure are
    enough for it (:func:`items_needed`), else ``each``; the choice and its reason are noted on the first mode."""
    if cfg.control != "auto":
        return cfg
    scored = [r.similarity for m in modes for r in m.calibration.values()]
    complete = int(np.all(np.stack([np.isfinite(v) for v in scored]), axis=0).sum())
    need = items_needed(cfg.quantile, len(scored))
    control = "any" if complete >= need else "each"
    modes[0].notes["control"] = (f"auto: {control}, {complete} calibration items scored under all {len(scored)} measures "
                                 f"{'reach' if control == 'any' else 'fall short of'} the {need} that one rule for "
                                 f"the decision needs at quantile {cfg.quantile}")
    return cfg.model_copy(update={"control": control})


def _mode(name: str, syn: dict[str, MeasureResult], cal: dict[str, MeasureResult], aligns: list[dict],
          notes: dict[str, str], zoom: dict[str, Any] | None) -> ModeResult:
    """A mode's results; its thresholds are set for all modes together (:func:`_set_thresholds`)."""
    return ModeResult(name, syn, cal, {}, {}, aligns, dict(notes), zoom)


def calibrated_thresholds(calibration: dict[str, np.ndarray], quantile: float,
                          control: str = "each") -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Each measure's threshold from the calibration items' similarities ``{measure: (n,)}``, with its record.

    ``control="each"``: every measure's own conformal quantile (:func:`conformal_threshold`), so
    a non-copy is flagged by *some* measure up to (number of measures) × (1 − q) of the time.
    ``control="any"``: one conformal quantile ``τ`` of every item's largest rank score
    ``max_k F_k(s_k)`` (``F_k``: the fraction of measure ``k``'s calibration values below
    ``s_k``, counting a calibration item's own score as if the new item were below it too, which
    keeps the rule valid, if one rank conservative), so the decision — flagged under any measure —
    has the bound ``1 − rank / (n + 1)`` (≤ 1 − q); measure ``k``'s threshold is then its
    ``(⌊τ n_k⌋ + 1)``-th smallest value.
    Non-finite values (a measure not computed for an item) are left out of that measure; under
    ``any`` only the items scored under every measure calibrate (a maximum over fewer measures
    would be lower than a new item's, and the rate would not hold).
    """
    if control == "each":
        found = {k: conformal_threshold(v, quantile) for k, v in calibration.items()}
        return ({k: t for k, (t, _, _) in found.items()},
                {k: {"rank": r, "n": int(np.isfinite(calibration[k]).sum()), "bound": b} for k, (_, r, b) in found.items()})
    # only items scored under every measure are exchangeable with a new item, which is scored under all of them
    complete = np.all(np.stack([np.isfinite(v) for v in calibration.values()]), axis=0)
    finite = {k: np.sort(v[complete]) for k, v in calibration.items()}
    # rank score of a calibration item: the share of the measure's other values below it, plus one, as if the new
    # item were below it too, so the score of a new item (the share of all n values below it) is not favoured
    n = int(complete.sum())
    scores = np.max(np.stack([(np.searchsorted(finite[k], v[complete], "left") + 1) / max(n, 1)
                              for k, v in calibration.items()]), axis=0) if n else np.array([])
    tau, _, bound = conformal_threshold(scores, quantile)
    thresholds, records = {}, {}
    for k, f in finite.items():
        rank = math.floor(tau * f.size + 1e-9) + 1 if math.isfinite(tau) else f.size + 1
        thresholds[k] = float(f[rank - 1]) if rank <= f.size else float("inf")
        records[k] = {"rank": rank, "n": int(f.size), "bound": bound if rank <= f.size else None}
    return thresholds, records


def _set_thresholds(modes: list[ModeResult], cfg: AuditConfig) -> None:
    calibration = {f"{m.mode}/{k}": r.similarity for m in modes for k, r in m.calibration.items()}
    thresholds, records = calibrated_thresholds(calibration, cfg.quantile, cfg.control)
    for m in modes:
        m.thresholds = {k: thresholds[f"{m.mode}/{k}"] for k in m.calibration}
        m.conformal = {k: records[f"{m.mode}/{k}"] for k in m.calibration}


def _loso_false_flag_rate(modes: list[ModeResult], calib: CalibrationSet, quantile: float,
                          control: str) -> dict[str, Any]:
    """Leave-one-subject-out false-flag rate of the calibration items, per measure, for "any" and per source.

    For each calibration subject the thresholds are recomputed (:func:`calibrated_thresholds`)
    from the other subjects' items and the subject's own items are tested against them. Items of one subject
    (its slices, its blurred copies) are correlated, so whole subjects are left out.
    """
    subj = np.asarray(calib.subjects)
    unique = list(dict.fromkeys(calib.subjects))
    if len(unique) < 2:
        return {"method": "leave-one-subject-out", "available": False, "reason": "needs at least 2 calibration subjects"}
    keys = [(m, name) for m in modes for name in m.calibration]
    flags = {f"{m.mode}/{name}": np.zeros(len(subj), dtype=bool) for m, name in keys}
    for s in unique:
        inside = subj == s
        thresholds, _ = calibrated_thresholds({f"{m.mode}/{name}": m.calibration[name].similarity[~inside]
                                               for m, name in keys}, quantile, control)
        for m, name in keys:
            key = f"{m.mode}/{name}"
            flags[key][inside] = m.calibration[name].similarity[inside] > thresholds[key]
    counted = {f"{m.mode}/{name}": np.isfinite(m.calibration[name].similarity) for m, name in keys}
    any_flag = np.any(np.stack(list(flags.values())), axis=0)
    sources = np.asarray(calib.sources)
    return {
        "method": "leave-one-subject-out",
        "available": True,
        "control": control,
        "expected_per_measure": round(1 - quantile, 6),
        "per_measure": {k: float(v[counted[k]].mean()) if counted[k].any() else None for k, v in flags.items()},
        "any": float(any_flag.mean()),
        "per_source": {src: float(any_flag[sources == src].mean()) for src in calib.counts()},
        "items": int(len(subj)),
        "subjects": len(unique),
    }
