"""The downstream-utility experiment: protocols × label budgets × seeds, tested on real data.

``run_downstream`` loads the real prepared dataset and the synthetic sets, checks everything
up front (task, labels, budgets, and that no synthetic set's generator was trained on, or
reconstructs, a subject of the real test split: the gain would be inflated), trains one classifier per (protocol, budget, seed), tests
each on the real test split, and writes ``results.json``, the balanced-accuracy plot and the
HTML fragment for the evaluation report into an atomically created output folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..core.artifacts import atomic_output_dir, check_output_free, provenance, write_json
from ..core.config import split_assignment
from ..core.errors import ConfigError
from ..data.downstream_results import PLOT_FILE, REPORT_FILE, RESULTS_FILE
from ..data.image_set import ImageSet
from ..data.subjects import OverlapChecks
from ..data.synthetic import generator_subjects, source_subjects
from .budgets import budget_subjects, check_classes_present, subject_labels, subject_order
from .classifier import predict_logits, train_classifier
from .config import DownstreamConfig
from .data import load_external_test, load_synthetic, load_task_data
from .metrics import METRICS, classification_metrics, mean_std, paired_difference
from .protocols import Protocol, build_protocols, choose_diffusion_set, class_counts, training_set
from .report import write_plot, write_report_section
from .stats import Correction, adjust_pvalues, hierarchical_bootstrap_diff

__all__ = ["check_test_overlap", "parse_synthetic_specs", "run_downstream", "summarise", "RESULTS_FILE", "PLOT_FILE", "REPORT_FILE"]

log = logging.getLogger(__name__)


ProgressFn = Callable[[str, int, int], None]
_SYNTHETIC = ("synthetic",)  # the parameter (and config key) the synthetic set specs come in


def parse_synthetic_specs(specs: Sequence[str] | None) -> dict[str, Path]:
    """``["diffusion=DIR", "DIR2,DIR3"]`` → ``{"diffusion": DIR, "DIR2-name": DIR2, ...}``.

    Each value may hold several comma-separated entries; an entry is ``NAME=DIR`` or ``DIR``
    (then named after the folder).

    Raises:
        ConfigError: an entry is empty or two sets get the same name.
    """
    out: dict[str, Path] = {}
    for spec in specs or []:
        for entry in str(spec).split(","):
            entry = entry.strip()
            if not entry:
                raise ConfigError(f"synthetic '{spec}': empty entry; give NAME=DIR or DIR", keys=_SYNTHETIC)
            if "=" in entry:
                name, path = split_assignment(entry, what="synthetic", expected="NAME=DIR, e.g. diffusion=runs/samples",
                                              keys=_SYNTHETIC)
            else:
                name, path = Path(entry).name.strip(), entry
            if not name:
                raise ConfigError(f"synthetic '{entry}': expected NAME=DIR, e.g. diffusion=runs/samples", keys=_SYNTHETIC)
            if not all(ch.isalnum() or ch in "_-." for ch in name):
                raise ConfigError(f"synthetic '{entry}': name '{name}' may hold letters, digits, '_', '-', '.' only",
                                  keys=_SYNTHETIC)
            if name == "real":
                raise ConfigError(f"synthetic '{entry}': the name 'real' is reserved for the real data; choose another",
                                  keys=_SYNTHETIC)
            if name in out:
                raise ConfigError(f"synthetic: two sets are named '{name}'; name them NAME=DIR", keys=_SYNTHETIC)
            out[name] = Path(path)
    return out


BOOTSTRAPPED: tuple[str, ...] = ("accuracy", "balanced_accuracy")
"""Metrics whose gain gets the hierarchical bootstrap (macro-F1 keeps the paired t over seeds)."""


def summarise(
    runs: Sequence[Mapping], protocols: Sequence[Protocol], budgets: Sequence[float], classes: Sequence[str],
    *, level: float = 0.95, test: Mapping | None = None, correction: Correction = "holm", n_boot: int = 2000,
    seed: int = 0,
) -> list[dict]:
    """One row per (protocol, budget): mean ± std over seeds and the paired gain over real only.

    With ``test`` (``{"labels": [...], "subjects": [...]}`` of the test split) and per-run
    ``predictions``, the gains in accuracy and balanced accuracy get a hierarchical bootstrap
    over seeds and test subjects (:func:`~uterosynth.downstream.stats.hierarchical_bootstrap_diff`);
    otherwise, and for macro-F1, the paired t over seeds. Then every metric's p-values are
    adjusted across all protocol × budget cells (``correction``: Holm or Benjamini–Hochberg):
    each gain gets ``p_adjusted``, ``significant`` (``p_adjusted < 1 - level``), ``correction``
    and ``n_comparisons``.
    """
    by_key: dict[tuple[str, float | None], dict[int, Mapping]] = {}
    for r in runs:
        by_key.setdefault((r["protocol"], r["budget"]), {})[r["seed"]] = r
    rows = []
    for p in protocols:
        for b in budgets:
            mine = by_key.get((p.id, None if p.budget_independent else b), {})
            ref = by_key.get(("real", b), {})
            seeds = sorted(mine)
            row = {"protocol": p.id, "kind": p.kind, "budget": b, "budget_independent": p.budget_independent,
                   "n_seeds": len(seeds),
                   "n_train_items": mean_std([mine[s]["n_train_items"] for s in seeds])["mean"],
                   "n_synthetic_items": mean_std([mine[s]["n_synthetic_items"] for s in seeds])["mean"]}
            for m in METRICS:
                row[m] = mean_std([mine[s]["metrics"][m] for s in seeds])
            row["per_class_recall"] = {
                c: mean_std([mine[s]["metrics"]["per_class_recall"][c] for s in seeds]) for c in classes
            }
            paired = [s for s in seeds if s in ref]
            if p.id == "real":
                row["diff_vs_real"] = None
            else:
                diff = {}
                for m in METRICS:
                    with_preds = test is not None and paired and all(
                        "predictions" in mine[s] and "predictions" in ref[s] for s in paired)
                    if m in BOOTSTRAPPED and with_preds:
                        diff[m] = hierarchical_bootstrap_diff(
                            {s: mine[s]["predictions"] for s in paired}, {s: ref[s]["predictions"] for s in paired},
                            test["labels"], test["subjects"], len(classes), metric=m, n_boot=n_boot,
                            confidence=level, seed=seed)
                    else:
                        diff[m] = paired_difference([mine[s]["metrics"][m] for s in paired],
                                                    [ref[s]["metrics"][m] for s in paired], level=level)
                row["diff_vs_real"] = diff
            rows.append(row)
    compared = [r for r in rows if r["diff_vs_real"] is not None]
    for m in METRICS:
        adjusted = adjust_pvalues([r["diff_vs_real"][m]["p_value"] for r in compared], correction)
        n_comp = sum(a is not None for a in adjusted)
        for r, a in zip(compared, adjusted, strict=True):
            r["diff_vs_real"][m].update({"p_adjusted": a, "significant": None if a is None else a < 1 - level,
                                         "correction": correction, "n_comparisons": n_comp})
    return rows


def _evaluate(model, test: ImageSet, classes: Sequence[str], batch_size: int, device: str) -> dict:

    pred = predict_logits(model, test.images, batch_size=batch_size, device=device).argmax(1)
    m = classification_metrics(test.labels.numpy(), pred.numpy(), len(classes))
    m["per_class_recall"] = dict(zip(classes, m["per_class_recall"], strict=True))
    return m, [int(k) for k in pred.tolist()]


def check_test_overlap(pools: Mapping[str, ImageSet], test: ImageSet, *, allow_overlap: bool) -> OverlapChecks:
    """Check that no synthetic set's generator saw, and no set reproduces, a subject of the real test split.

    Raises:
        DataError: an overlap, unless ``allow_overlap``.
    """
    checks = OverlapChecks(allow_overlap=allow_overlap)
    against = f"the real test set {test.source}"
    for name, pool in pools.items():
        checks.subjects(f"the generator of synthetic set '{name}' ({pool.source})", generator_subjects(pool.info),
                        test.subjects, against=against)
        if source_subjects(pool.info):
            checks.subjects(f"synthetic set '{name}' ({pool.source}), reconstructions of real subjects,",
                            source_subjects(pool.info), test.subjects, against=against)
    return checks


def run_downstream(
    real: str | Path,
    synthetic: Mapping[str, str | Path],
    cfg: DownstreamConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    test: str | Path | None = None,
) -> dict:
    """Run the whole grid and write the output folder.

    Args:
        real: prepared dataset folder (train/val/test split by subject).
        synthetic: ``{name: folder}`` of synthetic sets; labels come from ``condition[task]``.
        cfg: the experiment configuration.
        out: output folder (``results.json``, ``balanced_accuracy_vs_budget.png``,
            ``report_section.html``).
        progress: called as ``progress(description, done, total)`` after each run.
        test: another prepared dataset (``DIR`` or ``DIR:split``: a fresh cohort) to test on instead
            of ``real``'s test split, for narrower intervals; same geometry and classes, none of
            its subjects in ``real``'s training or validation split.

    Returns:
        The ``results.json`` content.

    Raises:
        ConfigError: unknown task, a budget too small for one subject per class.
        DataError: unusable synthetic set, an existing output folder without ``overwrite``.
        DataError: a synthetic set's generator was trained on (or the set reconstructs)
            subjects of the test split, unless ``cfg.allow_overlap``.
    """

    t0 = time.perf_counter()
    out = Path(out)
    check_output_free(out, overwrite=overwrite)
    task_data = load_task_data(real, cfg.task, cfg.classifier.image_size)
    data, classes, shape, size, splits = task_data
    if test is not None:
        splits["test"] = load_external_test(test, task_data, cfg.task)
    names = list(synthetic)
    choose_diffusion_set(names, cfg.diffusion_set)
    pools = {n: load_synthetic(p, n, cfg.task, classes, size, spatial_dims=data.dims) for n, p in synthetic.items()}
    overlap = check_test_overlap(pools, splits["test"], allow_overlap=cfg.allow_overlap)

    train = splits["train"]
    subj_class = subject_labels(train.subjects, train.labels.tolist())
    check_classes_present(subj_class, classes, str(data.root))
    where = f"training split of {data.root}"
    orders = {s: subject_order(subj_class, s) for s in cfg.seeds}
    for b in cfg.budgets:  # budget sizes do not depend on the seed: check them all up front
        budget_subjects(orders[cfg.seeds[0]], b, len(classes), where=where)
    protocols = build_protocols(cfg, names)

    jobs: list[tuple[Protocol, float | None, int]] = []
    for seed in cfg.seeds:
        for p in protocols:
            if p.budget_independent:
                jobs.append((p, None, seed))
            else:
                jobs += [(p, b, seed) for b in cfg.budgets]
    runs = []
    for i, (p, b, seed) in enumerate(jobs):
        if b is None:
            real_part = train.subset([])
            chosen: list[str] = []
        else:
            chosen = budget_subjects(orders[seed], b, len(classes), where=where)
            keep = set(chosen)
            real_part = train.subset([k for k, s in enumerate(train.subjects) if s in keep])
        train_set = training_set(p, real_part, pools, num_classes=len(classes), seed=seed,
                                 synthetic_only_max_items=cfg.protocols.synthetic_only_max_items)
        result = train_classifier(
            train_set, splits["val"], num_classes=len(classes), spatial_dims=data.dims, size=size,
            model_cfg=cfg.classifier, train_cfg=cfg.train, seed=seed,
            augment=cfg.augment if p.augment else None,
        )
        metrics, predictions = _evaluate(result.model, splits["test"], classes, cfg.train.eval_batch_size,
                                         cfg.train.device)
        n_syn = sum(1 for s in train_set.origins if s != "real")
        runs.append({
            "protocol": p.id, "budget": b, "seed": seed,
            "train_subjects": sorted(chosen),
            "n_train_subjects": len(chosen), "n_train_items": len(train_set),
            "n_real_items": len(train_set) - n_syn, "n_synthetic_items": n_syn,
            "train_class_counts": class_counts(train_set, classes),
            "best_epoch": result.best_epoch, "epochs": result.epochs,
            "val_balanced_accuracy": result.val_balanced_accuracy,
            "seconds": round(result.seconds, 3), "metrics": metrics, "predictions": predictions,
        })
        if progress is not None:
            budget = "all" if b is None else f"{b:.0%}"
            progress(f"{p.id} · budget {budget} · seed {seed}", i + 1, len(jobs))

    test_items = {"labels": [int(k) for k in splits["test"].labels.tolist()], "subjects": list(splits["test"].subjects)}
    summary = summarise(runs, protocols, cfg.budgets, classes, level=cfg.confidence, test=test_items,
                        correction=cfg.correction, n_boot=cfg.bootstrap, seed=cfg.seed)
    results = {
        "provenance": provenance(cfg, cfg.seed, real=str(data.root), test=None if test is None else str(test),
                                 synthetic={n: str(p) for n, p in synthetic.items()}),
        "task": cfg.task,
        "classes": classes,
        "spatial_dims": data.dims,
        "input_shape": list(shape),
        "model_input_shape": list(size),
        "budgets": cfg.budgets,
        "seeds": cfg.seeds,
        "evaluated_on": "real test split" if test is None else f"real test set {test}",
        "confidence_interval": {
            "level": cfg.confidence,
            "method": f"accuracy, balanced accuracy: hierarchical bootstrap ({cfg.bootstrap} replicates) over "
                      "training seeds and test subjects; macro-F1: paired t over seeds; pairs = same seed and budget "
                      "as real only",
            "correction": {"method": cfg.correction, "family": "all protocol x budget comparisons with real only, "
                                                               "per metric"},
        },
        "model_selection": (
            f"fixed {cfg.train.max_epochs} epochs, last weights (no validation labels used)"
            if cfg.train.selection == "fixed_epochs" else
            "early stopping on the full validation split (uses labels outside the budget)"),
        "test_items": test_items,
        "real": {
            "path": str(data.root),
            "n_items": {k: len(v) for k, v in splits.items()},
            "n_subjects": {k: len(set(v.subjects)) for k, v in splits.items()},
            "class_counts": {k: class_counts(v, classes) for k, v in splits.items()},
        },
        "synthetic": {
            n: {"path": str(synthetic[n]), "role": "diffusion" if n == choose_diffusion_set(names, cfg.diffusion_set)
                else "baseline", "n_items": len(pool), "class_counts": class_counts(pool, classes)}
            for n, pool in pools.items()
        },
        "protocols": [p.as_dict() for p in protocols],
        "subject_overlap": overlap.to_json(),
        "warnings": overlap.warnings(),
        "summary": summary,
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_plot(results, tmp / PLOT_FILE)
        write_report_section(results, tmp / REPORT_FILE, plot=tmp / PLOT_FILE)
        results["files"] = {"plot": PLOT_FILE, "report_section": REPORT_FILE}
        write_json(tmp / RESULTS_FILE, results)
    return results
