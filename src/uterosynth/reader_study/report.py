"""``reader-study analyze``: read the answers, compute the statistics, write the report.

Output folder: ``results.json`` (provenance, study id, every number of :func:`.analysis.analyze`)
and ``report.html`` (self-contained: tables and matplotlib plots embedded as PNG data URIs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import atomic_output_dir, atomic_write_text, provenance, write_json
from ..core.imageio import figure_data_uri
from . import models
from .analysis import Answer, analyze
from .db import init_db, make_engine, safe_url
from .settings import Settings
from .study import StudyFolder

__all__ = ["load_answers", "roc_points", "run_analysis", "AnalysisResult"]


@dataclass(frozen=True)
class AnalysisResult:
    out: Path
    results: dict[str, Any]


def load_answers(study_dir: str | Path, db_url: str | None = None) -> tuple[list[Answer], list[str], str]:
    """Answers with ground truth from the study's database: ``(answers, rater names, study id)``.

    Raises:
        DataError: the study folder is unusable or the database unreachable.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session


    study = StudyFolder.load(study_dir)
    engine = make_engine(Settings(study_dir=Path(study_dir), db_url=db_url).database_url)
    try:
        init_db(engine, study)
        with Session(engine) as session:
            rows = session.execute(
                select(models.Rating, models.Item, models.Rater)
                .join(models.Item, models.Rating.item_id == models.Item.id)
                .join(models.Rater, models.Rating.rater_id == models.Rater.id)
                .where(models.Rater.study_id == study.study_id)
                .order_by(models.Rater.id, models.Rating.id)
            ).all()
            answers = [Answer(rater.name, item.id, item.source, r.choice, r.confidence, r.realism, item.class_label,
                              r.display)
                       for r, item, rater in rows]
    finally:
        engine.dispose()
    return answers, [r.name for r in study.raters], study.study_id


def roc_points(answers: Sequence[Answer]) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC of the signed confidence (positive = synthetic): ``(fpr, tpr)`` from (0, 0)."""
    pos = np.array([a.signed_confidence for a in answers if a.truth == "synthetic"])
    neg = np.array([a.signed_confidence for a in answers if a.truth == "real"])
    if not len(pos) or not len(neg):
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = [0.0] + [float((pos >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((neg >= t).mean()) for t in thresholds]
    return np.array(fpr), np.array(tpr)


def _plots(answers: Sequence[Answer], results: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    raters = list(results["per_rater"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(raters) + 2), 3.2))
    acc = [results["per_rater"][r]["accuracy"] or 0.0 for r in raters] + [results["pooled"]["accuracy"] or 0.0]
    cis = [results["per_rater"][r]["accuracy_ci95"] or [a, a] for r, a in zip(raters, acc, strict=False)]
    cis.append(results["pooled"]["accuracy_ci95"] or [acc[-1], acc[-1]])
    err = np.array([[a - lo for a, (lo, _) in zip(acc, cis, strict=True)], [hi - a for a, (_, hi) in zip(acc, cis, strict=True)]])
    ax.bar(range(len(acc)), acc, yerr=err, capsize=4, color=["#4c78a8"] * len(raters) + ["#f58518"])
    ax.axhline(0.5, color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(acc)), raters + ["pooled"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95 % CI)")
    ax.legend(loc="lower right", frameon=False)
    plots["accuracy"] = figure_data_uri(fig, dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    for r in raters:
        fpr, tpr = roc_points([a for a in answers if a.rater == r])
        ax.plot(fpr, tpr, lw=1, alpha=0.7, label=r)
    fpr, tpr = roc_points(answers)
    ax.plot(fpr, tpr, lw=2.5, color="k", label="pooled")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlabel("1 − specificity (real called synthetic)")
    ax.set_ylabel("sensitivity (synthetic detected)")
    ax.legend(fontsize=7, frameon=False)
    plots["roc"] = figure_data_uri(fig, dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    real, syn = results["realism"]["pooled"]["histogram_real"], results["realism"]["pooled"]["histogram_synthetic"]
    x = np.arange(1, 6)
    ax.bar(x - 0.2, real, width=0.4, label="real", color="#4c78a8")
    ax.bar(x + 0.2, syn, width=0.4, label="synthetic", color="#e45756")
    ax.set_xlabel("realism score")
    ax.set_ylabel("answers")
    ax.set_xticks(x)
    ax.legend(frameon=False)
    plots["realism"] = figure_data_uri(fig, dpi=110, bbox_inches="tight")
    return plots


def _render_html(context: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
                      autoescape=select_autoescape(["html"]))

    def fmt(value: Any, digits: int = 3) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
        return str(value)

    env.filters["fmt"] = fmt
    return env.get_template("report.html").render(**context)


def run_analysis(study_dir: str | Path, out: str | Path, *, db_url: str | None = None,
                 overwrite: bool = False) -> AnalysisResult:
    """Analyse a study and write ``results.json`` and ``report.html`` into ``out`` (atomically).

    Raises:
        DataError: the study folder or its database is unusable.
    """

    answers, raters, study_id = load_answers(study_dir, db_url)
    results = analyze(answers, raters)
    source = {"study": str(study_dir),
              "database": safe_url(Settings(study_dir=Path(study_dir), db_url=db_url).database_url)}
    payload = {"provenance": provenance(source, None), "study_id": study_id, **results}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", payload)
        html = _render_html({"r": results, "study_id": study_id, "plots": _plots(answers, results),
                             "created": payload["provenance"]["created"],
                             "version": payload["provenance"]["uterosynth_version"]})
        atomic_write_text(tmp / "report.html", html)
    return AnalysisResult(Path(out), payload)
