"""``uterosynth evaluate``: every metric of every set against the real reference, then the report.

The reference is the real training split (``--real DIR`` or ``DIR:split``). Each evaluated set
is compared with it the same way: the model's synthetic set, any named baselines, and the
**real-vs-real noise floor** (another real split, ``test`` by default, treated as if it were
synthetic): a metric is only meaningful relative to that floor.

Nothing that measures was trained on what it measures: the judge and the extractors must not
have seen the subjects of an evaluated real set, nor those a synthetic set's generator was
trained on (:func:`_subject_overlap`; ``allow_overlap`` records instead of refusing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.artifacts import (
    atomic_output_dir,
    atomic_write_text,
    check_output_free,
    provenance,
    sha256_file,
    write_json,
)
from ..core.errors import ConfigError, DataError
from ..data.downstream_results import read_downstream
from ..data.evaluation_results import METRICS_FILE, REPORT_FILE
from ..data.image_set import ImageSet, load_prepared, load_synthetic
from ..data.manifest import parse_dataset_ref
from ..data.subjects import OverlapChecks
from ..data.synthetic import generator_subjects, source_subjects
from ..models.extractor import FeatureExtractor
from .classifier import ConditionClassifier, load_classifier
from .config import EvaluationConfig
from .equal_n import common_n, per_item_groups
from .features import PlanarExtractor, build_extractor, extract_features, extractor_identity
from .image_metrics import (
    ItemValues,
    load_lpips,
    lpips_pair_values,
    msssim_pair_values,
    random_pairs,
    slice_consistency,
)
from .radiomics import frd_available, radiomics_features
from .registry import METRICS, MetricInputs, set_fidelity

__all__ = ["evaluate", "run_evaluation"]

Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _candidates(real: str | Path, reference: ImageSet, synthetic: str | Path | None, baselines: Mapping[str, str | Path],
                cfg: EvaluationConfig, notes: list[str], floor: str | Path | None = None) -> list[ImageSet]:
    sets = []
    if synthetic is not None:
        sets.append(load_synthetic(synthetic, name="synthetic", dims=reference.spatial_dims))
    for name, path in baselines.items():
        if name in ("synthetic", "reference", "real_vs_real"):
            raise ConfigError(f"baselines: the name '{name}' is reserved (synthetic, reference, real_vs_real); "
                              "choose another", keys=("baselines",))
        sets.append(load_synthetic(path, name=name, kind="baseline", dims=reference.spatial_dims))
    floor_set = _floor(real, reference, cfg, notes, floor)
    if floor_set is not None:
        sets.append(floor_set)
    for s in sets:
        if s.spatial_dims != reference.spatial_dims:
            raise DataError(f"{s.source}: {s.spatial_dims}D items, but the real data {reference.source} is "
                            f"{reference.spatial_dims}D; evaluate sets of the same dimensionality")
    return sets


def _floor(real: str | Path, reference: ImageSet, cfg: EvaluationConfig, notes: list[str],
           floor: str | Path | None) -> ImageSet | None:
    """The real-vs-real noise floor: real items of subjects disjoint from the reference's.

    ``floor`` (``DIR[:split]``, e.g. a second cohort) or else the ``real_vs_real_split`` of the
    reference's dataset.

    Raises:
        DataError: the floor shares subjects with the reference (it would sit too low).
    """
    if floor is None:
        split = cfg.real_vs_real_split
        if split == reference.info["split"]:
            notes.append(f"real-vs-real noise floor skipped: the reference is already the '{split}' split "
                         "(set real_vs_real_split to another split, or give a floor DIR[:split])")
            return None
        if split is None:
            return None
        root, _ = parse_dataset_ref(real)
        try:
            found = load_prepared(f"{root}:{split}", name="real_vs_real")
        except DataError as err:
            notes.append(f"real-vs-real noise floor skipped: {err}")
            return None
    else:
        found = load_prepared(floor, cfg.real_vs_real_split or "test", name="real_vs_real")
    if len(found) < 2:
        notes.append(f"real-vs-real noise floor skipped: {found.source} has {len(found)} item(s); "
                     "the equal-N comparison needs at least 2")
        return None
    shared = sorted(set(found.subjects) & set(reference.subjects) - {""})
    if shared:
        raise DataError(f"{found.source}: the noise floor shares {len(shared)} subject(s) with the reference "
                        f"{reference.source} (e.g. {shared[0]}); give a floor of other subjects (another split or "
                        "cohort: floor DIR[:split])", keys=("floor",))
    return found


def _diversity(s: ImageSet, cfg: EvaluationConfig, seed: int,
               lpips_model: torch.nn.Module | None) -> dict[str, ItemValues]:
    out: dict[str, ItemValues] = {}
    if len(s) < 2:
        return out
    groups = _groups(s, cfg)
    if cfg.msssim.enabled:
        i, j = random_pairs(len(s), cfg.msssim.pairs, seed)
        out["msssim"] = ItemValues(msssim_pair_values(s.images[i], s.images[j], kernel_size=cfg.msssim.kernel_size),
                                   i, j, len(s), groups)
    if lpips_model is not None:
        i, j = random_pairs(len(s), cfg.lpips.pairs, seed + 1)
        out["lpips"] = ItemValues(lpips_pair_values(lpips_model, s.images[i], s.images[j], size=cfg.lpips.size),
                                  i, j, len(s), groups)
    if s.spatial_dims == 3 and s.images.shape[-1] > 1:
        every = np.arange(len(s))
        slice_ssim, slice_corr = slice_consistency(s.images)
        out["slice_ssim"] = ItemValues(slice_ssim, every, None, len(s), groups)
        out["slice_corr"] = ItemValues(slice_corr, every, None, len(s), groups)
    return out


def run_evaluation(
    real: str | Path, synthetic: str | Path | None, cfg: EvaluationConfig, *,
    baselines: Mapping[str, str | Path] | None = None, extractor: FeatureExtractor | None = None,
    classifier: ConditionClassifier | None = None, floor: str | Path | None = None, log: Log = _noop,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute all metrics; return ``(metrics_json, report_data)`` without writing anything.

    Args:
        real: prepared dataset ``DIR[:split]`` (reference; ``train`` when no split is given).
        synthetic: the synthetic set to evaluate (``None``: only baselines and the noise floor).
        cfg: evaluation settings.
        baselines: ``{name: synthetic-set folder}`` evaluated side by side.
        extractor: overrides ``cfg.extractor`` (tests, programmatic use).
        classifier: overrides ``cfg.classifier.path``.
        floor: ``DIR[:split]`` of real subjects disjoint from the reference for the noise floor
            (default: the reference dataset's ``real_vs_real_split``).
        log: receives one line per stage.

    Raises:
        DataError: the floor shares subjects with the reference; sets differ in dimensionality; the
            judge or an extractor was trained on evaluated subjects (unless ``cfg.allow_overlap``).
        ConfigError: ``equal_n.n`` exceeds a set without ``equal_n.allow_unequal_n``.
    """
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    # models first: a wrong path fails before any data is read
    extractor, classifier, lpips_model, use_frd = _load_models(cfg, extractor, classifier, notes)
    others = _other_judges(cfg, classifier)
    comparable = build_extractor(cfg.comparable_extractor, device=cfg.device) if cfg.comparable_extractor else None
    reference = load_prepared(real, "train").subsample(cfg.max_items, cfg.seed)
    sets = [s.subsample(cfg.max_items, cfg.seed + 1 + k)
            for k, s in enumerate(_candidates(real, reference, synthetic, baselines or {}, cfg, notes, floor))]
    if not sets:
        raise ConfigError("nothing to evaluate: give a synthetic set, a baseline, or a real split for the noise floor "
                          "(real_vs_real_split)", keys=("synthetic", "baselines"))
    if cfg.volume_slices is not None:
        reference, sets = _as_slices(reference, cfg.volume_slices), [_as_slices(s, cfg.volume_slices) for s in sets]
    overlap = _subject_overlap({"judge": classifier, "extractor": extractor, "comparable extractor": comparable,
                                **{f"judge of {c.task}": c for c in others}},
                               reference, sets, allow_overlap=cfg.allow_overlap)
    n = _common_n(reference, sets, cfg)
    timings["models_and_load"] = time.perf_counter() - t0
    log(f"loaded reference ({len(reference)} items) and {len(sets)} set(s); distributional metrics at N={n}")

    dims = reference.spatial_dims
    t = time.perf_counter()
    feats = _features(extractor, [reference, *sets])
    comparable_feats = _features(comparable, [reference, *sets]) if comparable is not None else None
    timings["features"] = time.perf_counter() - t
    log(f"features ({feats['reference'].shape[1]} dims) for {1 + len(sets)} set(s)")

    radiomics: dict[str, tuple[np.ndarray, list[str] | None]] = {}
    radiomics_n = None
    if use_frd:
        t = time.perf_counter()
        radiomics_n = min(n, cfg.frd.max_items) if n is not None else None
        radiomics = _radiomics([reference, *sets], cfg, reference.info.get("spacing") or (1.0, 1.0, 1.0),
                               radiomics_n or cfg.frd.max_items)
        timings["radiomics"] = time.perf_counter() - t
        log("radiomics features")

    identities = _identities(cfg, extractor, lpips_model, classifier, use_frd)
    if comparable is not None:
        identities["comparable"] = {"name": comparable.name, "sha256": comparable.sha256}
    t = time.perf_counter()
    stage: dict[str, float] = {}
    start = time.perf_counter()
    ref_pairs = _diversity(reference, cfg, cfg.bootstrap.seed, lpips_model)
    stage["diversity"] = time.perf_counter() - start
    results: dict[str, dict[str, Any]] = {}
    for k, s in enumerate(sets):
        seed = cfg.bootstrap.seed + 1000 * (k + 1)
        start = time.perf_counter()
        pairs = _diversity(s, cfg, seed, lpips_model)
        stage["diversity"] += time.perf_counter() - start
        inputs = MetricInputs(cfg=cfg, reference=reference, candidate=s, seed=seed,
                              features=(feats["reference"], feats[s.name]),
                              radiomics=(radiomics["reference"][0], radiomics[s.name][0]) if use_frd else None,
                              pairs=pairs, reference_pairs=ref_pairs, classifier=classifier, n=n,
                              groups=(_groups(reference, cfg), _groups(s, cfg)), radiomics_n=radiomics_n,
                              radiomics_groups=(radiomics["reference"][1], radiomics[s.name][1]) if use_frd
                              else (None, None))
        comparable_inputs = None if comparable_feats is None else \
            replace(inputs, features=(comparable_feats["reference"], comparable_feats[s.name]))
        results[s.name] = {"kind": s.kind, "source": s.source, "n": len(s), "shape": list(s.images.shape[2:]),
                           **_set_checksum(s), "metrics": {**_score(inputs, comparable_inputs, identities, stage),
                                                           **_other_fidelities(others, s, cfg, seed)}}
        log(f"metrics for {s.name}")
    timings["metrics"] = time.perf_counter() - t
    timings.update({f"metrics.{k}": v for k, v in stage.items()})
    timings["total"] = time.perf_counter() - t0

    ident = extractor_identity(extractor, cfg.extractor, dims)
    ident["feature_dim"] = int(feats["reference"].shape[1])
    warnings = overlap.warnings() + sorted(
        {f"{name}: {w}" for name, r in results.items() for m in r["metrics"].values() for w in m["warnings"]})
    metrics_json = {
        "provenance": provenance(cfg, cfg.seed),
        "reference": {"source": reference.source, "split": reference.info["split"], "n": len(reference),
                      "dims": dims, "shape": list(reference.images.shape[2:]),
                      "subjects": len(set(reference.subjects)),
                      "volume_slices": reference.info.get("volume_slices")},
        "equal_n": {"n": n, "draws": cfg.equal_n.draws, "allow_unequal_n": cfg.equal_n.allow_unequal_n,
                    "radiomics_n": radiomics_n, "unit": cfg.bootstrap.unit,
                    "set_sizes": {"reference": len(reference), **{s.name: len(s) for s in sets}}},
        "extractor": ident,
        "comparable_extractor": None if comparable is None else {
            **extractor_identity(comparable, cfg.comparable_extractor, dims),
            "feature_dim": int(comparable_feats["reference"].shape[1])},
        "classifier": None if classifier is None else _judge_record(classifier, reference, cfg),
        "judges": [_judge_record(c, reference, cfg) for c in others],
        "sets": results,
        "subject_overlap": overlap.to_json(),
        "notes": notes,
        "warnings": warnings,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    group_by = cfg.report.group_by or (classifier.task if classifier is not None else None)
    if group_by is None and reference.info.get("attributes"):
        group_by = reference.info["attributes"][0]
    report_data = {"reference": reference, "sets": sets, "features": feats, "group_by": group_by}
    return metrics_json, report_data


def _set_checksum(s: ImageSet) -> dict[str, str]:
    """``metadata_sha256`` of a synthetic or baseline set (a release checks it names the set it releases)."""
    meta = Path(s.source) / "metadata.jsonl"
    return {"metadata_sha256": sha256_file(meta)} if s.kind != "real" and meta.is_file() else {}


COMPARABLE_SUFFIX = "_comparable"
"""Key suffix of the feature metrics repeated with ``comparable_extractor`` (e.g. ``kid_comparable``)."""


def _score(inputs: MetricInputs, comparable: MetricInputs | None, identities: dict[str, Any],
           stage: dict[str, float]) -> dict[str, Any]:
    """Every registered metric whose needs are available, in registry order; feature metrics
    again on the comparable extractor's features when one is configured."""
    out: dict[str, Any] = {}
    for metric in METRICS.values():
        if not metric.needs <= identities.keys():
            continue
        start = time.perf_counter()
        for m in metric.compute(inputs):
            out[m.name] = {**m.to_json(), "measured_with": identities.get(metric.measured_with)}
        if comparable is not None and metric.measured_with == "features":
            for m in metric.compute(comparable):
                out[m.name + COMPARABLE_SUFFIX] = {**m.to_json(), "measured_with": identities["comparable"]}
        if metric.timed:
            stage[metric.name] = stage.get(metric.name, 0.0) + time.perf_counter() - start
    return out


def _subject_overlap(models: Mapping[str, Any], reference: ImageSet, sets: list[ImageSet], *,
                     allow_overlap: bool) -> OverlapChecks:
    """Check every model that measures against every evaluated set; the counts for ``metrics.json``.

    A model (judge, extractor) is checked when it records ``training_subjects``: against the
    subjects of each real set (reference, noise floor), the training subjects of each synthetic
    set's generator, and the real subjects a reconstruction baseline reproduces.

    Raises:
        DataError: an overlap, unless ``allow_overlap``.
    """
    checks = OverlapChecks(allow_overlap=allow_overlap)
    for role, model in models.items():
        if model is None:
            continue
        record = getattr(model, "training_subjects", None)
        label = f"{role} {getattr(model, 'path', None) or model.name}"
        for s in (reference, *sets):
            where = f"{s.kind} set '{s.name}' ({s.source})"
            if s.kind == "real":
                checks.subjects(label, record, s.subjects, against=f"the {where}")
                continue
            checks.models(label, record, generator_subjects(s.info), against=f"the generator of the {where}")
            if source_subjects(s.info):
                checks.models(label, record, source_subjects(s.info), against=f"the real subjects of the {where}")
    return checks


def _features(extractor: FeatureExtractor, sets: list[ImageSet]) -> dict[str, torch.Tensor]:
    return {s.name: extract_features(extractor, s.images) for s in sets}


def _as_slices(s: ImageSet, k: int) -> ImageSet:
    """``volume_slices``: the set's volumes as their ``k`` central sagittal slices.

    Raises:
        ConfigError: the set holds 2D items, or volumes of fewer than ``k`` slices.
    """
    if s.spatial_dims != 3:
        raise ConfigError(f"volume_slices: {s.source} holds 2D items; slice-by-slice evaluation is for volumes "
                          "(leave volume_slices null)", keys=("volume_slices",))
    try:
        return s.central_slices(k)
    except ValueError as err:
        raise ConfigError(f"volume_slices: {err}", keys=("volume_slices",)) from err


def _groups(s: ImageSet, cfg: EvaluationConfig) -> list[str] | None:
    """The unit of each item when intervals are taken over subjects: its subject, or the volume a
    slice came from (``None``: items independent)."""
    return per_item_groups(s.units()) if cfg.bootstrap.unit == "subject" else None


def _common_n(reference: ImageSet, sets: list[ImageSet], cfg: EvaluationConfig) -> int | None:
    """The one N of every distributional metric (``None``: whole sets, ``allow_unequal_n``).

    Raises:
        ConfigError: ``equal_n.n`` exceeds a set without ``equal_n.allow_unequal_n``.
    """
    sizes = {"reference": len(reference), **{s.name: len(s) for s in sets}}
    try:
        return common_n(sizes, n=cfg.equal_n.n, allow_unequal_n=cfg.equal_n.allow_unequal_n)
    except ValueError as err:
        raise ConfigError(f"equal_n.n: {err}") from err


def _other_judges(cfg: EvaluationConfig, judge: ConditionClassifier | None) -> list[ConditionClassifier]:
    """The classifiers of ``classifier.others``, one per attribute.

    Raises:
        ConfigError: two of them (or one and the judge) classify the same attribute.
    """
    others = [load_classifier(p, device=cfg.device, batch_size=cfg.classifier.batch_size) for p in cfg.classifier.others]
    tasks = [c.task for c in ([judge] if judge is not None else []) + others]
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"classifier.others: two classifiers judge the same attribute ({', '.join(tasks)}); give one "
                          "per attribute", keys=("classifier.others",))
    return others


def _other_fidelities(others: list[ConditionClassifier], s: ImageSet, cfg: EvaluationConfig,
                      seed: int) -> dict[str, Any]:
    """``conditioning_fidelity_<task>`` of set ``s`` for each other judge (sets without that attribute: none)."""
    out = {}
    for clf in others:
        result = set_fidelity(clf, s, groups=_groups(s, cfg), confidence=cfg.bootstrap.confidence, seed=seed)
        if result is not None:
            name = f"conditioning_fidelity_{clf.task}"
            out[name] = {**result.to_json(), "name": name, "measured_with": {"name": clf.name, "sha256": clf.sha256}}
    return out


def _judge_record(classifier: ConditionClassifier, reference: ImageSet, cfg: EvaluationConfig) -> dict[str, Any]:
    """A judge in ``metrics.json``: name, checksum, attribute, classes, what it saw, its accuracy on real items."""
    return {"name": classifier.name, "sha256": classifier.sha256, "task": classifier.task,
            "classes": list(classifier.classes), "view": _judge_view(classifier, reference, cfg),
            "on_reference": _judge_on_reference(classifier, reference, cfg)}


def _judge_on_reference(classifier: ConditionClassifier, reference: ImageSet,
                        cfg: EvaluationConfig) -> dict[str, Any] | None:
    """The judge's accuracy on the real reference items (subjects it never saw), intervals over subjects.

    A synthetic class cannot be expected to read better than the real items of that class do;
    ``None`` when the reference does not carry the judge's attribute.
    """
    result = set_fidelity(classifier, reference, groups=_groups(reference, cfg), confidence=cfg.bootstrap.confidence,
                          seed=cfg.bootstrap.seed)
    return None if result is None else result.to_json()


def _judge_view(classifier: ConditionClassifier, reference: ImageSet, cfg: EvaluationConfig) -> str:
    """What the judge saw of each item: the item, a volume's central sagittal slice (a 2D judge on
    volumes), or each of a volume's central slices (``volume_slices``)."""
    if cfg.volume_slices is not None:
        return f"each of the {cfg.volume_slices} central sagittal slices of a volume"
    dims = getattr(classifier, "spatial_dims", None)
    return "central sagittal slice" if dims == 2 and reference.images.ndim == 5 else "whole item"


def _load_models(
    cfg: EvaluationConfig, extractor: FeatureExtractor | None, classifier: ConditionClassifier | None,
    notes: list[str],
) -> tuple[FeatureExtractor, ConditionClassifier | None, torch.nn.Module | None, bool]:
    """The extractor (2.5D-wrapped), classifier, LPIPS network and whether FRD runs; skips go to ``notes``."""
    if extractor is None:
        extractor = build_extractor(cfg.extractor, device=cfg.device)
    elif not isinstance(extractor, PlanarExtractor):
        extractor = PlanarExtractor(extractor, slices_per_plane=cfg.extractor.slices_per_plane,
                                    slice_spacing=cfg.extractor.slice_spacing)
    if classifier is None and cfg.classifier.path is not None:
        classifier = load_classifier(cfg.classifier.path, device=cfg.device, batch_size=cfg.classifier.batch_size)
    lpips_model = load_lpips(cfg.lpips.weights, device=cfg.device) if cfg.lpips.weights is not None else None
    if lpips_model is None:
        notes.append("LPIPS skipped: no lpips.weights given (a local AlexNet safetensors file)")
    use_frd = cfg.frd.enabled and frd_available()
    if cfg.frd.enabled and not use_frd:
        notes.append("FRD skipped: frd-score / pyradiomics-bhklab not installed (pip install frd-score pyradiomics-bhklab)")
    return extractor, classifier, lpips_model, use_frd


def _radiomics(sets: list[ImageSet], cfg: EvaluationConfig, spacing,
               n: int) -> dict[str, tuple[np.ndarray, list[str] | None]]:
    """Radiomics features of a random ``n`` items of each set (all when smaller) with their subject groups."""
    out: dict[str, tuple[np.ndarray, list[str] | None]] = {}
    for k, s in enumerate(sets):
        sub = s.subsample(n, cfg.seed + 100 + k)
        out[s.name] = (radiomics_features(sub.images[:, 0].numpy(), spacing=spacing, version=cfg.frd.version,
                                          num_workers=cfg.frd.num_workers), _groups(sub, cfg))
    return out


def _identities(cfg: EvaluationConfig, extractor: FeatureExtractor, lpips_model: torch.nn.Module | None,
                classifier: ConditionClassifier | None, use_frd: bool) -> dict[str, dict[str, Any] | None]:
    """What measures each available input (the keys are the available :data:`Need` s)."""
    identities: dict[str, dict[str, Any] | None] = {"features": {"name": extractor.name, "sha256": extractor.sha256},
                                                   "images": None}
    if use_frd:
        from importlib.metadata import version as _version

        identities["radiomics"] = {"name": f"frd-score {_version('frd-score')} ({cfg.frd.version}), "
                                           f"pyradiomics-bhklab {_version('pyradiomics-bhklab')}", "sha256": None}
    if lpips_model is not None:
        identities["lpips"] = {"name": "lpips-alex v0.1", "sha256": sha256_file(cfg.lpips.weights)}
    if classifier is not None:
        identities["classifier"] = {"name": classifier.name, "sha256": classifier.sha256}
    return identities


def evaluate(
    real: str | Path, synthetic: str | Path | None, out: str | Path, cfg: EvaluationConfig, *,
    baselines: Mapping[str, str | Path] | None = None, extractor: FeatureExtractor | None = None,
    classifier: ConditionClassifier | None = None, downstream: str | Path | None = None, overwrite: bool = False,
    floor: str | Path | None = None, log: Log = _noop,
) -> dict[str, Any]:
    """Run :func:`run_evaluation` and write ``out/metrics.json`` and ``out/report.html``
    (:mod:`uterosynth.data.evaluation_results` names and reads them).

    ``downstream``: a ``uterosynth downstream`` output folder whose report section and gains
    go into the report and ``metrics.json``.
    """
    from .report import render_report

    out = Path(out)
    check_output_free(out, overwrite=overwrite)
    sections = []
    if downstream is not None:
        section, summary = _downstream_section(Path(downstream))
        sections.append(section)
    metrics, data = run_evaluation(real, synthetic, cfg, baselines=baselines, extractor=extractor,
                                   classifier=classifier, floor=floor, log=log)
    if downstream is not None:
        metrics["downstream"] = summary
    html = render_report(metrics, data, cfg.report, extra_sections=sections)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / METRICS_FILE, metrics)
        atomic_write_text(tmp / REPORT_FILE, html)
    return metrics


def _downstream_section(folder: Path) -> tuple[str, dict[str, Any]]:
    """The downstream experiment's HTML section and a summary of its gains over real only.

    Raises:
        DataError: ``folder`` is not a finished ``uterosynth downstream`` output.
    """
    downstream = read_downstream(folder)
    data = downstream.results
    gains = []
    for r in data["summary"]:
        if not r.get("diff_vs_real"):
            continue
        diff = r["diff_vs_real"].get("balanced_accuracy") or {}
        gain = {"protocol": r["protocol"], "budget": r["budget"], "balanced_accuracy": r["balanced_accuracy"]["mean"],
                "diff_vs_real": diff or None}
        # multiplicity-corrected p-values (results written before the correction existed lack them)
        gain.update({k: diff[k] for k in ("p_value", "p_adjusted", "significant", "correction") if k in diff})
        gains.append(gain)
    return downstream.section_html, {"path": str(folder), "task": data["task"], "gains": gains}
