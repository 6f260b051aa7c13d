"""A pipeline's ``report.html``: the answer first, then one section per stage.

The answer, when the chain has the stages for it: a sample grid (one row per requested class:
synthetic samples of the class beside real training items of the same class), the judge's
accuracy on each class with its Wilson 95 % interval, the key metric (KID) of the synthetic set
against the real-vs-real floor and the baselines, and what the release made of it. Then every
stage: its command, links to its files and its pictures (linked, not embedded). Pictures of the
answer are small thumbnails embedded once each (:class:`~uterosynth.core.html_images.EmbeddedImages`),
so the page stays far below ``MAX_REPORT_BYTES`` and opens without its folder.

A notice (the quick demo's "smoke run") opens the page; stages that failed are named at the top
with their error.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import DataError
from .core.html_images import EmbeddedImages, thumbnail_png
from .core.imageio import preview_plane
from .data.evaluation_results import FLOOR_SET, METRICS_FILE, Evaluation, read_evaluation

if TYPE_CHECKING:
    from .pipeline import Stage

__all__ = ["MAX_REPORT_BYTES", "PER_CLASS", "THUMBNAIL", "write_report"]

PER_CLASS = 4
"""Synthetic samples, and real items, shown per class in the sample grid."""
THUMBNAIL = 96
"""Largest side (pixels) of a sample-grid thumbnail."""
MAX_REPORT_BYTES = 10 * 2**20
"""The page must stay below this size (the tests check it)."""

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{height:128px;margin:2px}
.notice{border:2px solid #b36b00;background:#fff6e5;padding:.6em 1em;margin:1em 0}
.failed{border:2px solid #b00020;background:#fdecee;padding:.6em 1em;margin:1em 0}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}.ci{color:#666}
svg.embedded{margin:1px;vertical-align:middle}.gap{width:14px;display:inline-block}"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _find(stages: Sequence[Stage], command: str) -> Stage | None:
    return next((s for s in stages if s.command == command), None)


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}"


def _thumbs(arrays: list[Any], images: EmbeddedImages, label: str) -> str:
    return "".join(images.show(thumbnail_png(preview_plane(a), max_side=THUMBNAIL), alt=label, pixelated=True,
                               height=THUMBNAIL) for a in arrays)


def _sample_grid(out: Path, stages: Sequence[Stage], task: str | None, images: EmbeddedImages) -> str:
    """One row per requested class: synthetic samples of it, then real training items of it."""
    from .data.manifest import PreparedDataset
    from .data.synthetic import SyntheticSet

    samples, prepared = _find(stages, "sample"), _find(stages, "prepare")
    if samples is None or not (out / samples.name / "metadata.jsonl").is_file():
        return ""
    syn = SyntheticSet.load(out / samples.name)
    attrs = list(dict.fromkeys(k for r in syn.records for k in (r.get("condition") or {})))
    task = task if task in attrs else (attrs[0] if attrs else None)
    real = None
    if prepared is not None and (out / prepared.name / "manifest.csv").is_file():
        try:
            real = PreparedDataset.load(out / prepared.name, "train")
        except DataError:
            real = None
    classes = sorted({str((r.get("condition") or {}).get(task)) for r in syn.records}) if task else [None]
    rows = [f"<tr><th>{_esc(task or 'samples')}</th><th>synthetic</th><th>real (training items)</th></tr>"]
    for cls in classes:
        picked = [r for r in syn.records if task is None or str((r.get("condition") or {}).get(task)) == cls]
        synthetic = _thumbs([syn.load_array(r) for r in picked[:PER_CLASS]], images, f"synthetic {cls}")
        reals = "–"
        if real is not None and task is not None and task in real.attributes:
            chosen = [r for r in real.rows if r.get(task) == cls][:PER_CLASS]
            reals = _thumbs([real.load_array(r) for r in chosen], images, f"real {cls}") or "none of this class"
        rows.append(f"<tr><td>{_esc(cls if cls is not None else 'all')}</td><td>{synthetic}</td><td>{reals}</td></tr>")
    rel = _esc((out / samples.name).relative_to(out))
    return (f"<h3>Samples per class</h3><p>Synthetic samples (<a href='{rel}'>{rel}</a>, {len(syn)} items) asked "
            f"for each class, beside real training items of the same class.</p><table>{''.join(rows)}</table>")


def _judge_table(ev: Evaluation) -> str:
    classes = ev.judge_accuracy()
    judge = ev.judge or {}
    if classes is None:
        return "<p>Judge accuracy: not measured (the evaluation had no judge).</p>"
    floor = {c.cls: c for c in ev.judge_accuracy(FLOOR_SET) or []}
    head = ("<tr><th>class</th><th>judge accuracy on synthetic samples</th><th>Wilson 95 % interval</th>"
            "<th>correct / samples</th>" + ("<th>on real held-out items</th>" if floor else "") + "</tr>")
    rows = []
    for c in classes:
        lo, hi = c.interval
        f = floor.get(c.cls)
        real = (f"<td class='num'>{_fmt(f.accuracy, 2)} ({f.correct} / {f.n})</td>" if f else "<td>–</td>") \
            if floor else ""
        rows.append(f"<tr><td>{_esc(c.cls)}</td><td class='num'>{_fmt(c.accuracy, 2)}</td>"
                    f"<td class='num'>[{_fmt(lo, 2)}, {_fmt(hi, 2)}]</td><td class='num'>{c.correct} / {c.n}</td>"
                    f"{real}</tr>")
    return (f"<h3>Does the judge see the requested class?</h3><p>The judge (<code>{_esc(judge.get('name', '?'))}"
            f"</code>, an independent classifier of <code>{_esc(judge.get('task', '?'))}</code>) on the samples "
            f"asked for each class; on real held-out items for comparison.</p><table>{head}{''.join(rows)}</table>")


def _kid_table(ev: Evaluation) -> str:
    rows = ev.metric_rows("kid")
    if not rows:
        return "<p>KID: not in the evaluation.</p>"
    labels = {"synthetic": "synthetic (the model)", FLOOR_SET: "real vs real (noise floor)"}
    body = "".join(
        f"<tr><td>{_esc(labels.get(r.set, f'baseline: {r.set}' if r.kind == 'baseline' else r.set))}</td>"
        f"<td class='num'>{_fmt(r.value, 4)}</td><td class='num ci'>[{_fmt(r.ci_low, 4)}, {_fmt(r.ci_high, 4)}]</td>"
        f"<td class='num'>{r.n if r.n is not None else '–'}</td></tr>" for r in rows)
    return ("<h3>KID against the floor and the baselines</h3><p>Kernel inception distance to the real training "
            "items (lower is better), every set at one N; the synthetic set should sit near the real-vs-real "
            "floor and below the autoencoder baselines.</p><table><tr><th>set</th><th>KID</th>"
            f"<th>95 % interval</th><th>N</th></tr>{body}</table>")


def _release_line(out: Path, stages: Sequence[Stage], failures: Mapping[str, str]) -> str:
    release = _find(stages, "release")
    if release is None:
        return ""
    sheet = out / release.name / "DATASHEET.md"
    if release.name in failures:
        return f"<p><b>Release: refused.</b> {_esc(failures[release.name])}</p>"
    if not sheet.is_file():
        return "<p>Release: not made.</p>"
    link = f"<a href='{_esc(sheet.relative_to(out))}'>{_esc(sheet.relative_to(out))}</a>"
    if not release.options.get("evaluation"):
        return f"<p>Release: {link} (quality not evaluated).</p>"
    if release.options.get("force"):
        return (f"<p><b>Release: made with <code>--force</code></b> ({link}); its datasheet states at the top "
                "whether the samples failed the fidelity bar.</p>")
    return f"<p>Release: {link}; the samples passed the fidelity bar.</p>"


def _answer(out: Path, stages: Sequence[Stage], failures: Mapping[str, str], images: EmbeddedImages) -> str:
    evaluate = _find(stages, "evaluate")
    ev = None
    if evaluate is not None and (out / evaluate.name / METRICS_FILE).is_file():
        ev = read_evaluation(out / evaluate.name)
    task = (ev.judge or {}).get("task") if ev is not None else None
    parts = [_sample_grid(out, stages, task, images)]
    if ev is not None:
        rel = _esc((out / evaluate.name / METRICS_FILE).relative_to(out))
        parts += [_judge_table(ev), _kid_table(ev), f"<p class='ci'>From <a href='{rel}'>{rel}</a>.</p>"]
    parts.append(_release_line(out, stages, failures))
    body = "".join(p for p in parts if p)
    return f"<h2>The answer</h2>{body}" if body else ""


def _pictures(folder: Path) -> list[Path]:
    pictures = sorted(folder.glob("images/*.png"))[-1:] + sorted(folder.glob("previews/*.png"))[:8]
    return pictures + sorted(folder.glob("*.png"))


def write_report(out: Path, stages: Sequence[Stage], *, title: str, notice: str | None = None,
                 failures: Mapping[str, str] | None = None) -> Path:
    """``report.html``: the notice and failures, the answer, then one section per stage."""
    failures = failures or {}
    images = EmbeddedImages()
    parts = [f"<!doctype html><meta charset='utf-8'><title>{_esc(title)}</title><style>{STYLE}</style>",
             f"<h1>{_esc(title)}</h1>"]
    if notice:
        parts.append(f"<div class='notice'><b>{_esc(notice)}</b></div>")
    for name, message in failures.items():
        parts.append(f"<div class='failed'><b>Stage {_esc(name)} failed:</b> {_esc(message)}</div>")
    parts.append(_answer(out, stages, failures, images))
    parts.append("<hr>")
    if (out / "phantom_preview.png").is_file():
        parts.append("<img src='phantom_preview.png' style='height:360px'>")
    for stage in stages:
        folder = out / stage.name
        parts.append(f"<h2>{_esc(stage.title)}</h2><p><code>uterosynth {_esc(' '.join(stage.args))}</code></p>")
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        links = " · ".join(f"<a href='{_esc(p.relative_to(out))}'>{_esc(p.name)}</a>" for p in files)
        state = f"failed: {_esc(failures[stage.name])}" if stage.name in failures else "not run"
        parts.append(f"<p>{links or state}</p>")
        parts += [f"<img src='{_esc(p.relative_to(out))}'>" for p in _pictures(folder)] if folder.is_dir() else []
    parts.insert(1, images.defs())
    path = out / "report.html"
    path.write_text("\n".join(p for p in parts if p) + "\n")
    return path
