"""A pipeline's ``report.html``: the answer first, then one section per stage.

The answer, when the chain has the stages for it: a sample grid (one row per requested class:
synthetic samples of the class beside real items of the same class from the evaluation's
reference), the judge's accuracy on each class with its Wilson 95 % interval, the key metric
(KID) of the synthetic set against the real-vs-real floor and the baselines, and what the
release made of it. Then every stage: its command, links to its files and its pictures (linked,
not embedded). Pictures of the answer are small thumbnails embedded once each
(:class:`~uterosynth.core.html_images.EmbeddedImages`), so the page stays far below
:data:`MAX_REPORT_BYTES` and its answer shows without its folder.

A notice (the quick demo's "smoke run") opens the page; stages that failed are named at the top
with their error. The page is a Jinja2 template (``templates/pipeline_report.html.j2``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .core.errors import DataError
from .core.html_images import EmbeddedImages, thumbnail_png
from .core.imageio import preview_plane
from .data.evaluation_results import (
    FLOOR_SET,
    JUDGE_CEILING,
    METRICS_FILE,
    SYNTHETIC_SET,
    Evaluation,
    read_evaluation,
)
from .data.manifest import PreparedDataset, parse_dataset_ref
from .data.synthetic import SyntheticSet

if TYPE_CHECKING:
    from .pipeline import Stage

__all__ = ["DONE_EARLIER", "MAX_REPORT_BYTES", "PER_CLASS", "THUMBNAIL", "SampleGrid", "format_number", "sample_grid", "write_report"]

TEMPLATES = Path(__file__).parent / "templates"
PER_CLASS = 4
"""Synthetic samples, and real items, shown per class in the sample grid."""
THUMBNAIL = 96
"""Largest side (pixels) of a sample-grid thumbnail."""
MAX_REPORT_BYTES = 10 * 2**20
"""The page must stay below this size (the tests check it)."""
DONE_EARLIER = "done earlier"
"""A stage's timing when an earlier run had finished it."""


class GridRow(NamedTuple):
    """One requested class of the sample grid: thumbnail markup of synthetic and real items."""

    cls: str
    """The class label ("all" when the grid is not split by class)."""
    synthetic: str
    """``<img>`` tags of the synthetic thumbnails."""
    real: str
    """``<img>`` tags of the real thumbnails beside them ("" when there is no real source)."""


@dataclass(frozen=True)
class SampleGrid:
    task: str | None
    folder: str
    items: int
    real_source: str | None
    rows: list[GridRow]


@dataclass(frozen=True)
class JudgeRow:
    cls: str
    accuracy: str
    interval: str
    counts: str
    real: str | None
    training: str | None = None


@dataclass(frozen=True)
class KidRow:
    label: str
    value: str
    interval: str
    n: str


@dataclass(frozen=True)
class Release:
    """What the release stage made of the answer: ``state`` is one of ``refused``, ``missing``,
    ``unevaluated``, ``forced``, ``passed``."""

    state: str
    datasheet: str | None = None
    message: str | None = None


def _find(stages: Sequence[Stage], command: str) -> Stage | None:
    return next((s for s in stages if s.command == command), None)


def format_number(v: float | None, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits; "–" for a missing or non-finite value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}"


def _thumbs(arrays: Sequence[np.ndarray], images: EmbeddedImages, label: str) -> str:
    return "".join(images.show(thumbnail_png(preview_plane(a), max_side=THUMBNAIL), alt=label, pixelated=True,
                               height=THUMBNAIL) for a in arrays)


def _real_items(out: Path, stages: Sequence[Stage]) -> tuple[PreparedDataset | None, str | None]:
    """The evaluation's real reference (``real: DIR[:split]``), else the first prepared dataset's train split."""
    evaluate, prepare = _find(stages, "evaluate"), _find(stages, "prepare")
    ref = (evaluate.options.get("real") if evaluate is not None else None) or (
        f"{prepare.options.get('out') or out / prepare.name}:train" if prepare is not None else None)
    if not ref:
        return None, None
    root, split = parse_dataset_ref(ref)
    try:
        return PreparedDataset.load(root, split or "train"), f"{_rel(root, out)}:{split or 'train'}"
    except DataError:
        return None, None


def _rel(path: Path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def sample_grid(out: Path, stages: Sequence[Stage], task: str | None, images: EmbeddedImages) -> SampleGrid | None:
    """One row per requested class: synthetic samples of it, then real items of it."""
    samples = _find(stages, "sample")
    if samples is None or not (out / samples.name / "metadata.jsonl").is_file():
        return None
    syn = SyntheticSet.load(out / samples.name)
    attrs = list(dict.fromkeys(k for r in syn.records for k in (r.get("condition") or {})))
    task = task if task in attrs else (attrs[0] if attrs else None)
    real, real_source = _real_items(out, stages)
    classes: list[str | None] = sorted({str((r.get("condition") or {}).get(task)) for r in syn.records}) \
        if task else [None]
    rows = []
    for cls in classes:
        picked = [r for r in syn.records if task is None or str((r.get("condition") or {}).get(task)) == cls]
        synthetic = _thumbs([syn.load_array(r) for r in picked[:PER_CLASS]], images, f"synthetic {cls}")
        reals = "–"
        if real is not None and task is not None and task in real.attributes:
            chosen = [r for r in real.rows if r.get(task) == cls][:PER_CLASS]
            reals = _thumbs([real.load_array(r) for r in chosen], images, f"real {cls}") or "none of this class"
        rows.append(GridRow(cls if cls is not None else "all", synthetic, reals))
    return SampleGrid(task, samples.name, len(syn), real_source, rows)


def _judge_rows(ev: Evaluation) -> list[JudgeRow] | None:
    classes = ev.judge_accuracy(SYNTHETIC_SET)
    if classes is None:
        return None
    floor = {c.cls: c for c in ev.judge_accuracy(FLOOR_SET) or []}
    reference = ev.judge_on_reference()
    rows = []
    for c in classes:
        lo, hi = c.interval
        f, r = floor.get(c.cls), reference.get(c.cls)
        real = (f"{format_number(f.accuracy, 2)} ({f.correct} / {f.n})" if f else "–") if floor else None
        training = (f"{format_number(r['value'], 2)} [{format_number(r['ci_low'], 2)}, {format_number(r['ci_high'], 2)}] "
                    f"({r.get('units', r['n'])} subjects)" if r else "–") if reference else None
        rows.append(JudgeRow(c.cls, format_number(c.accuracy, 2), f"[{format_number(lo, 2)}, {format_number(hi, 2)}]",
                             f"{c.correct} / {c.n}", real, training))
    return rows


def _kid_rows(ev: Evaluation) -> list[KidRow]:
    labels = {SYNTHETIC_SET: "synthetic (the model)", FLOOR_SET: "real vs real (noise floor)"}
    return [KidRow(labels.get(r.set, f"baseline: {r.set}" if r.kind == "baseline" else r.set), format_number(r.value, 4),
                   f"[{format_number(r.ci_low, 4)}, {format_number(r.ci_high, 4)}]", str(r.n) if r.n is not None else "–")
            for r in ev.metric_rows("kid")]


def _release(out: Path, stages: Sequence[Stage], failures: Mapping[str, str]) -> Release | None:
    release = _find(stages, "release")
    if release is None:
        return None
    if release.name in failures:
        return Release("refused", message=failures[release.name])
    sheet = out / release.name / "DATASHEET.md"
    if not sheet.is_file():
        return Release("missing")
    link = str(sheet.relative_to(out))
    if not release.options.get("evaluation"):
        return Release("unevaluated", link)
    return Release("forced" if release.options.get("force") else "passed", link)


def _answer(out: Path, stages: Sequence[Stage], failures: Mapping[str, str], images: EmbeddedImages) -> dict[str, Any]:
    """The answer's parts; an artifact that cannot be read is named in ``unreadable``, never fatal."""
    evaluate = _find(stages, "evaluate")
    ev, grid, unreadable = None, None, []
    if evaluate is not None and (out / evaluate.name / METRICS_FILE).is_file():
        try:
            ev = read_evaluation(out / evaluate.name)
        except DataError as err:
            unreadable.append(str(err))
    try:
        grid = sample_grid(out, stages, (ev.judge or {}).get("task") if ev is not None else None, images)
    except DataError as err:
        unreadable.append(str(err))
    return {
        "grid": grid,
        "unreadable": unreadable,
        "evaluation": str((out / evaluate.name / METRICS_FILE).relative_to(out)) if ev is not None else None,
        "judge": ev.judge if ev is not None else None,
        "judge_rows": _judge_rows(ev) if ev is not None else None,
        "kid_rows": _kid_rows(ev) if ev is not None else [],
        "release": _release(out, stages, failures),
    }


def _pictures(folder: Path) -> list[Path]:
    pictures = sorted(folder.glob("images/*.png"))[-1:] + sorted(folder.glob("previews/*.png"))[:8]
    return pictures + sorted(folder.glob("*.png"))


def _training_steps(folder: Path) -> int | None:
    """The steps a training stage ran (its ``summary.json``), else None."""
    try:
        steps = json.loads((folder / "summary.json").read_text()).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def _time(timing: float | str | None) -> str | None:
    """Seconds as "12.3 s"; :data:`DONE_EARLIER` as it is; nothing for a failed or unrun stage."""
    if isinstance(timing, float):
        return f"{timing:.1f} s"
    return timing if timing == DONE_EARLIER else None


def _phantom_preview(stages: Sequence[Stage], images: EmbeddedImages) -> str | None:
    """The phantom stage's preview PNG, embedded (it lies in the stage's folder, which a study may link)."""
    stage = _find(stages, "phantom")
    path = Path(stage.options["preview"]) if stage is not None and stage.options.get("preview") else None
    if path is None or not path.is_file():
        return None
    return images.show(path.read_bytes(), alt="phantom preview", height=360)


def _stage_sections(out: Path, stages: Sequence[Stage], failures: Mapping[str, str],
                    timings: Mapping[str, float | str]) -> list[dict[str, Any]]:
    sections = []
    for stage in stages:
        folder = out / stage.name
        present = folder.is_dir()
        sections.append({
            "title": stage.title,
            "time": _time(timings.get(stage.name)),
            "steps": _training_steps(folder) if present and stage.resumable else None,
            "command": " ".join(stage.args),
            "files": [(p.relative_to(out).as_posix(), p.name) for p in sorted(folder.glob("*")) if p.is_file()]
            if present else [],
            "pictures": [p.relative_to(out).as_posix() for p in _pictures(folder)] if present else [],
            "failed": failures.get(stage.name),
        })
    return sections


def write_report(out: Path, stages: Sequence[Stage], *, title: str, notice: str | None = None,
                 failures: Mapping[str, str] | None = None, timings: Mapping[str, float | str] | None = None) -> Path:
    """Write ``out/report.html``: the notice and failures, the answer, then one section per stage
    (with its time and, for a training stage, its steps).

    Args:
        out: the pipeline folder.
        stages: the pipeline's stages (their folders under ``out``).
        title: the page title.
        notice: a warning that opens the page (the quick demo's smoke-run notice).
        failures: stage folder name → error message of each stage that failed.
        timings: stage folder name → seconds it ran (or :data:`DONE_EARLIER`).

    Returns:
        The path of ``report.html``.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out = Path(out)
    failures = dict(failures or {})
    images = EmbeddedImages()
    answer = _answer(out, stages, failures, images)
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.globals["judge_ceiling"] = JUDGE_CEILING
    page = env.get_template("pipeline_report.html.j2").render(
        title=title, notice=notice, failures=failures, answer=answer, image_defs=images.defs(),
        preview=_phantom_preview(stages, images),
        sections=_stage_sections(out, stages, failures, timings or {}), thumbnail=THUMBNAIL)
    path = out / "report.html"
    path.write_text(page)
    return path
