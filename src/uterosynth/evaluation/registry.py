"""The evaluation's metrics in one ordered registry: name, what each one needs, how it is computed.

:func:`~uterosynth.evaluation.runner.run_evaluation` prepares the inputs once (features,
radiomics features, image-pair values, the classifier) and then loops over :data:`METRICS` in
registration order, which is the order of the metrics in ``metrics.json``. The distributional
metrics (KID, FID, PRDC, FRD) compare every set with the reference at one common N with
intervals over subjects (:mod:`.equal_n`). A metric runs for a
set when every input it needs is available (FRD needs the radiomics extras, LPIPS its local
weights, conditioning fidelity a classifier).

===========================  ==========================  ==============================
metric                       needs                       results
===========================  ==========================  ==============================
``kid``                      features                    ``kid`` (unbiased: read it first)
``fid``                      features                    ``fid``, ``fid_inf`` (``fid_2.5d``, ``fid_2.5d_inf`` for volumes)
``prdc``                     features                    ``precision, recall, density, coverage``
``frd``                      radiomics                   ``frd``
``msssim_diversity``         images                      ``msssim_diversity``
``lpips_diversity``          images, lpips               ``lpips_diversity``
``slice_consistency_ssim``   images                      ``slice_consistency_ssim`` (volumes)
``slice_consistency_corr``   images                      ``slice_consistency_corr`` (volumes)
``conditioning_fidelity``    images, classifier          ``conditioning_fidelity``
===========================  ==========================  ==============================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..data.image_set import ImageSet
from .bootstrap import MetricResult
from .classifier import ConditionClassifier, fidelity_result, predict_labels
from .config import EvaluationConfig
from .equal_n import fid_at_n, frd_at_n, kid_at_n, prdc_at_n
from .image_metrics import ItemValues, similarity_result

__all__ = ["METRICS", "Metric", "MetricInputs", "Need", "register_metric"]

Need = Literal["features", "images", "radiomics", "lpips", "classifier"]


@dataclass(frozen=True)
class MetricInputs:
    """What a metric may read: one evaluated set against the reference.

    Attributes:
        cfg: evaluation settings (bootstrap, KID, PRDC, FRD ...).
        reference: the real reference set.
        candidate: the evaluated set.
        seed: bootstrap seed of this set.
        features: ``(reference, candidate)`` extractor features ``(N, F)``.
        radiomics: ``(reference, candidate)`` radiomics features, ``None`` without FRD.
        pairs: ``{key: ItemValues}`` image-pair (or per-volume) values of the candidate, with the
            items and subjects they come from (``msssim``, ``lpips``, ``slice_ssim``, ``slice_corr``;
            keys missing when not computable).
        reference_pairs: the same for the reference.
        classifier: the conditioning classifier, ``None`` without one.
        n: the common N of the distributional metrics (``None``: whole sets, ``allow_unequal_n``).
        groups: ``(reference, candidate)`` subject id per item (``None``: items independent).
        radiomics_n, radiomics_groups: the same for the radiomics subsample.
    """

    cfg: EvaluationConfig
    reference: ImageSet
    candidate: ImageSet
    seed: int
    features: tuple[torch.Tensor, torch.Tensor]
    radiomics: tuple[np.ndarray, np.ndarray] | None
    pairs: dict[str, ItemValues]
    reference_pairs: dict[str, ItemValues]
    classifier: ConditionClassifier | None
    n: int | None = None
    groups: tuple[list[str] | None, list[str] | None] = (None, None)
    radiomics_n: int | None = None
    radiomics_groups: tuple[list[str] | None, list[str] | None] = (None, None)


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: registry key.
        needs: inputs that must be available for the metric to run.
        compute: ``MetricInputs -> [MetricResult, ...]`` (empty when the set cannot be scored).
        measured_with: the need whose identity (extractor, radiomics versions, LPIPS weights,
            classifier) goes under ``measured_with`` in ``metrics.json``; ``None``: none.
        timed: its time is reported as ``timings_s["metrics.<name>"]``.
    """

    name: str
    needs: frozenset[Need]
    compute: Callable[[MetricInputs], list[MetricResult]]
    measured_with: Need | None = None
    timed: bool = False


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, needs: tuple[Need, ...], measured_with: Need | None = None,
                    timed: bool = False) -> Callable[[Callable[[MetricInputs], list[MetricResult]]], Metric]:
    """Decorator registering ``compute`` as metric ``name`` (after those already registered)."""

    def deco(compute: Callable[[MetricInputs], list[MetricResult]]) -> Metric:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        METRICS[name] = Metric(name, frozenset(needs), compute, measured_with, timed)
        return METRICS[name]

    return deco


def _at_n(x: MetricInputs) -> dict:
    """The keywords every equal-N metric shares: common N, draws, subject groups, interval level, seed."""
    eq, boot = x.cfg.equal_n, x.cfg.bootstrap
    return dict(n=x.n, draws=eq.draws, groups_real=x.groups[0], groups_fake=x.groups[1],
                allow_unequal_n=eq.allow_unequal_n, confidence=boot.confidence, seed=x.seed)


@register_metric("kid", needs=("features",), measured_with="features", timed=True)
def _kid(x: MetricInputs) -> list[MetricResult]:
    return [kid_at_n(*x.features, **_at_n(x), n_blocks=x.cfg.bootstrap.jackknife_blocks)]


@register_metric("fid", needs=("features",), measured_with="features", timed=True)
def _fid(x: MetricInputs) -> list[MetricResult]:
    eq = x.cfg.equal_n
    return fid_at_n(*x.features, **_at_n(x), n_blocks=x.cfg.bootstrap.jackknife_blocks,
                    extrapolation_points=eq.extrapolation_points,
                    extrapolation_min_fraction=eq.extrapolation_min_fraction,
                    name="fid_2.5d" if x.reference.spatial_dims == 3 else "fid")


@register_metric("prdc", needs=("features",), measured_with="features", timed=True)
def _prdc(x: MetricInputs) -> list[MetricResult]:
    return prdc_at_n(*x.features, **_at_n(x), k=x.cfg.prdc.k)


@register_metric("frd", needs=("radiomics",), measured_with="radiomics", timed=True)
def _frd(x: MetricInputs) -> list[MetricResult]:
    if x.radiomics is None:
        return []
    kw = {**_at_n(x), "n": x.radiomics_n, "groups_real": x.radiomics_groups[0], "groups_fake": x.radiomics_groups[1]}
    return [frd_at_n(*x.radiomics, **kw, version=x.cfg.frd.version)]


def _pair_metric(name: str, key: str, needs: tuple[Need, ...], measured_with: Need | None = None) -> None:
    """Register a per-pair (per-volume) metric: the candidate's mean beside the reference's."""

    def compute(x: MetricInputs) -> list[MetricResult]:
        if key not in x.pairs:
            return []
        return [similarity_result(name, x.pairs[key], x.reference_pairs.get(key),
                                  n_items={"synthetic": len(x.candidate), "real": len(x.reference)},
                                  better="closer_to_real", n_boot=x.cfg.bootstrap.n,
                                  confidence=x.cfg.bootstrap.confidence, seed=x.seed)]

    register_metric(name, needs=needs, measured_with=measured_with)(compute)


_pair_metric("msssim_diversity", "msssim", ("images",))
_pair_metric("lpips_diversity", "lpips", ("images", "lpips"), measured_with="lpips")
_pair_metric("slice_consistency_ssim", "slice_ssim", ("images",))
_pair_metric("slice_consistency_corr", "slice_corr", ("images",))


def set_fidelity(classifier: ConditionClassifier, s: ImageSet, *, groups: list[str] | None, confidence: float,
                 seed: int) -> MetricResult | None:
    """How often ``classifier`` reads each item of ``s`` as its requested (or, for real items, labelled)
    class of the classifier's attribute; ``None`` when no item carries that attribute (nothing is predicted)."""
    requested = s.attribute(classifier.task)
    if all(r is None or r == "" for r in requested):
        return None
    return fidelity_result(requested, predict_labels(classifier, s.images), classifier.classes, task=classifier.task,
                           groups=groups, confidence=confidence, seed=seed, ids=s.ids or None)


@register_metric("conditioning_fidelity", needs=("images", "classifier"), measured_with="classifier")
def _fidelity(x: MetricInputs) -> list[MetricResult]:
    if x.classifier is None:
        return []
    result = set_fidelity(x.classifier, x.candidate, groups=x.groups[1], confidence=x.cfg.bootstrap.confidence,
                          seed=x.seed)
    return [] if result is None else [result]
