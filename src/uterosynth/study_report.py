"""A study's ``study.html``: the claims' verdicts, the comparison table with intervals, a sample grid per cell;
and ``study.md``, the same claims and table as Markdown, for a paper's or a project's documents.

Thumbnails are embedded once each (:class:`~uterosynth.core.html_images.EmbeddedImages`), so the
page opens at once whatever the number of cells; each cell links to its own ``report.html``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.artifacts import atomic_write_text
from .core.errors import ConfigError, DataError
from .core.html_images import EmbeddedImages
from .pipeline import pipeline_stages
from .pipeline_report import TEMPLATES, THUMBNAIL, format_number, sample_grid

if TYPE_CHECKING:
    from .study import Cell

__all__ = ["write_study_markdown", "write_study_report"]


def _with_ci(m: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not m:
        return "–"
    return f"{format_number(m.get('value'), digits)} [{format_number(m.get('ci_low'), digits)}, {format_number(m.get('ci_high'), digits)}]"


def _flops(flops: float | None) -> str:
    """A training stage's counted compute, ``", 1.2e+15 FLOP"`` (empty when not counted)."""
    return "" if flops is None else f", {flops:.2g} FLOP"


def _seconds(cell: Mapping[str, Any]) -> str:
    """The cell's seconds over its attempts (a killed attempt counts until its log's last line)."""
    if not cell.get("seconds"):
        return "–"
    attempts = len(cell.get("attempts") or [])
    return f"{cell['seconds']:.1f}" + (f" ({attempts} attempts)" if attempts > 1 else "")


def _joined(results: Mapping[str, Any], labels: Mapping[str, str], digits: int, *, real: bool = False) -> str:
    """The samples' values of the metrics in ``labels`` that the cell measured, each after its label
    (and the real items' value: ``real``)."""
    parts = []
    for metric, label in labels.items():
        sets = results.get(metric) or {}
        if sets.get("synthetic"):
            floor = (sets.get("real_vs_real") or {}).get("value")
            parts.append(f"{label}{_with_ci(sets['synthetic'], digits)}"
                         + (f" (real {format_number(floor, digits)})" if real and floor is not None else ""))
    return "; ".join(parts) or "–"


def _status_text(cell: Mapping[str, Any]) -> str:
    """``ok``, ``not run``, or ``failed`` with the stages that failed (``failed at release``)."""
    error = cell.get("error") or ""
    match = re.match(r"stage\(s\) (.+?) failed", error)
    return cell["status"] + (f" at {match[1]}" if cell["status"] == "failed" and match else "")


def _real(judged: Mapping[str, Any]) -> str:
    """A judge's accuracy on the real reference items, over all and in its worst class."""
    real = judged.get("real")
    if not real:
        return "–"
    worst = real.get("worst")
    return _with_ci(real, 2) + (f"; worst {worst['class']} {_with_ci(worst, 2)}" if worst else "")


def _row(cell: Mapping[str, Any], axes: Sequence[str]) -> dict[str, Any]:
    r = cell.get("results", {})
    kid = r.get("kid") or {}
    worst = r.get("judge_worst")
    audit = r.get("audit") or {}
    baselines = {name: _with_ci(m, 2) for name, m in kid.items() if name not in ("synthetic", "real_vs_real")}
    gains = "; ".join(f"{g['protocol']} {_with_ci(g, 3)}" for g in r.get("downstream") or [])
    shared = r.get("shared") or []
    training = "; ".join(f"{name} {t.get('steps')} steps" + _flops(t.get("flops"))
                         + (" (made by another cell)" if name in shared else "")
                         for name, t in (r.get("training") or {}).items())
    on_slices = {"slices": " (central slices)", "slices missing": " (central slices: not measured)"}.get(
        r.get("judged_on") or "", "")  # volumes read as 2D samples
    return {
        "name": cell["name"], "values": [cell["values"][a] for a in axes], "seed": cell["seed"],
        "status": _status_text(cell),
        "judge_worst": f"{worst['class']} {_with_ci(worst, 2)}{on_slices}" if worst else ("–" + on_slices),
        "judge": ", ".join(f"{c} {format_number(v['accuracy'], 2)}" for c, v in (r.get("judge") or {}).items()) or "–",
        "judge_real": _real(r),
        "other_judges": "; ".join(
            f"{task}: " + (", ".join(f"{c} {format_number(v['accuracy'], 2)}" for c, v in j.get("judge", {}).items())
                           or "no class requested")
            + (f" (worst {_with_ci(j['judge_worst'], 2)})" if j.get("judge_worst") else "")
            + (f"; on real items {_real(j)}" if j.get("real") else "")
            for task, j in (r.get("judges") or {}).items()) or "–",
        "kid": _with_ci(kid.get("synthetic"), 2) + (on_slices if kid.get("synthetic") else ""),
        "n": (kid.get("synthetic") or {}).get("n") or "–",
        "floor": _with_ci(kid.get("real_vs_real"), 2),
        "fid": _joined(r, {"fid": "", "fid_2.5d": "2.5D "}, 3),
        "frd": _with_ci((r.get("frd") or {}).get("synthetic"), 3),
        "diversity": _joined(r, {"msssim_diversity": "MS-SSIM ", "lpips_diversity": "LPIPS "}, 3, real=True),
        "slices": _joined(r, {"slice_consistency_ssim": ""}, 3, real=True),
        "downstream": (f"budget {format_number(r['downstream'][0]['budget'], 2)}: {gains}" if gains else "–"),
        "baselines": "; ".join(f"{k} {v}" for k, v in baselines.items()) or "–",
        "audit": (f"{format_number(audit.get('flagged_fraction'), 2)} of samples; {audit.get('training_subjects_copied')} of "
                  f"{audit.get('training_subjects')} subjects") if audit else "–",
        "training": training or "–", "seconds": _seconds(cell), "unreadable": cell.get("unreadable"),
        "error": cell.get("error"),
        "shared": ", ".join(shared),
    }


def write_study_report(root: Path, document: Mapping[str, Any], cells: Sequence[Cell]) -> Path:
    """Write ``root/study.html`` from the study document (:func:`uterosynth.study.summarize`)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    axes = list(document["config"]["axes"])
    images = EmbeddedImages()
    grids = []
    for cell, row in zip(cells, document["cells"], strict=True):
        folder = root / "cells" / cell.name
        grid = None
        if "results" in row:   # a measured cell (a failed one too, when it measured): its samples
            try:
                _, stages = pipeline_stages(folder / "cell.yaml", out=folder)
                grid = sample_grid(folder, stages, None, images)
            except (DataError, ConfigError):
                grid = None
        grids.append({"name": cell.name, "grid": grid, "report": f"cells/{cell.name}/report.html"})
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("study.html.j2").render(
        claims=[_claim_view(c) for c in document["claims"]], axes=axes, rows=[_row(c, axes) for c in document["cells"]], grids=grids,
        image_defs=images.defs(), thumbnail=THUMBNAIL, config=document["config"], version=document["uterosynth_version"])
    path = root / "study.html"
    atomic_write_text(path, page)
    return path


_MARKDOWN_TABLES = (
    ("Judges (samples read by the judges, Wilson intervals, over volumes for slices; the judges on real reference items, intervals "
     "over subjects)", {"status": "status", "judge_worst": "orientation: worst class", "judge": "per class",
                        "judge_real": "orientation judge on real items", "other_judges": "judges of other attributes"}),
    ("Distances and diversity (intervals over subjects)", {
        "kid": "KID", "n": "N", "floor": "KID real vs real", "baselines": "KID baselines", "fid": "FID",
        "frd": "FRD", "diversity": "diversity", "slices": "adjacent-slice SSIM"}),
    ("Downstream, audit and cost", {"downstream": "downstream gain over real alone", "audit": "audit: flagged",
                                    "training": "training", "seconds": "cell seconds"}),
)


def _cell_md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _claim_metric(claim: Mapping[str, Any]) -> str:
    """A claim's metric, its judge and, for a non-inferiority claim, its margin."""
    judge = f" ({claim['attribute']} judge)" if claim.get("attribute") else ""
    margin = f", at least as good within {claim['margin']:g}" if claim.get("margin") is not None else ""
    return f"{claim['metric']}{judge}{margin}"


def _claim_view(claim: Mapping[str, Any]) -> dict[str, Any]:
    """A claim for the page: its metric label and, for a non-inferiority claim, each pair's gain."""
    gains = [_with_ci(g, 3) for g in claim.get("gains") or [] if g] if claim.get("margin") is not None else []
    return {**claim, "metric_label": _claim_metric(claim), "gain_text": "; ".join(gains)}


def write_study_markdown(root: Path, document: Mapping[str, Any]) -> Path:
    """Write ``root/study.md``: the claims with each pair's measurements and verdict, then the
    comparison table in three parts (judges; distances; downstream, audit and cost)."""
    axes = list(document["config"]["axes"])
    lines = [f"# Study ({len(document['cells'])} cells, uterosynth {document['uterosynth_version']}, "
             f"{document['created']})", "", "## Claims", ""]
    if document["claims"]:
        lines += ["| claim | better vs worse | metric | measured (better; worse) | verdict |", "| --- | --- | --- | --- | --- |"]
        for c in document["claims"]:
            pairs = c.get("measured") or []
            gains = (c.get("gains") if c.get("margin") is not None else None) or [None] * len(pairs)
            measured = "<br>".join(f"{_with_ci(b, 3)}; {_with_ci(w, 3)}" + (f"; gain {_with_ci(g, 3)}" if g else "")
                                   for (b, w), g in zip(pairs, gains, strict=True)) or "–"
            metric = _claim_metric(c)
            lines.append(f"| {_cell_md(c['statement'])} | {c['axis']}: {c['better']} vs {c['worse']} | {metric} | "
                         f"{measured} | **{c['verdict']}** ({c['measured_pairs']} of {c['pairs']} pairs) |")
    else:
        lines.append("The study file states no claim.")
    rows = [_row(c, axes) for c in document["cells"]]
    for title, columns in _MARKDOWN_TABLES:
        lines += ["", f"## {title}", "", "| " + " | ".join([*axes, "seed", *columns.values()]) + " |",
                  "| " + " | ".join(["---"] * (len(axes) + 1 + len(columns))) + " |"]
        lines += ["| " + " | ".join(_cell_md(v) for v in [*r["values"], r["seed"], *(r[k] for k in columns)]) + " |"
                  for r in rows]
    path = root / "study.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
