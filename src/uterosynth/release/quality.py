"""The quality a release states: its evaluation held to the fidelity bar, and the datasheet's section.

``uterosynth release --evaluation DIR`` reads ``metrics.json`` (through
:mod:`uterosynth.data.evaluation_results`), checks that it evaluated the synthetic set being
released, and holds the judge's per-class accuracy to the bar of :class:`~.config.QualityBar`, and
likewise each judge of another conditioned attribute (the evaluation's ``classifier.others``). A set
that fails is refused unless ``force``; then the datasheet says so at its top.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..data.evaluation_results import (
    FLOOR_SET,
    JUDGE_CEILING,
    METRICS_FILE,
    SYNTHETIC_SET,
    ClassAccuracy,
    Evaluation,
    MetricRow,
    read_evaluation,
)
from ..data.manifest import label_value
from .config import QualityBar

__all__ = ["Quality", "assess_quality", "failed_bar_warning", "quality_md"]

SET_LABELS = {SYNTHETIC_SET: "synthetic (this release)", FLOOR_SET: "real vs real (noise floor)"}


@dataclass(frozen=True)
class Quality:
    """What a release states about its quality.

    Attributes:
        evaluation: the evaluation read (``None``: quality was not evaluated).
        bar: the fidelity bar.
        classes: the judge's accuracy per requested class (``None``: the evaluation has no judge).
        failures: one phrase per class below the bar (or why the bar cannot be checked).
        forced: the release went ahead although the bar failed.
        others: the judges of other conditioned attributes: attribute -> accuracy per requested class.
        released: the number of draws the accuracies were read on when the release keeps only some of
            the evaluated draws (``None``: every draw, the whole set is released).
    """

    evaluation: Evaluation | None
    bar: QualityBar
    classes: list[ClassAccuracy] | None = None
    failures: tuple[str, ...] = ()
    forced: bool = False
    others: dict[str, list[ClassAccuracy]] = field(default_factory=dict)
    released: int | None = None

    @property
    def status(self) -> str:
        """``not evaluated``, ``passed`` or ``failed (forced)``."""
        if self.evaluation is None:
            return "not evaluated"
        return "failed (forced)" if self.failures else "passed"


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _class_text(c: ClassAccuracy) -> str:
    lo, hi = c.interval
    return f"{c.cls} {_pct(c.accuracy)} [{_pct(lo)}, {_pct(hi)}] ({c.correct}/{c.n})"


def _passes(c: ClassAccuracy, bar: QualityBar) -> bool:
    return c.n > 0 and c.accuracy >= bar.min_accuracy and c.interval[0] >= bar.min_wilson_low


def _class_row(c: ClassAccuracy, bar: QualityBar) -> str:
    """A datasheet table row of one class: accuracy, Wilson interval, counts and the bar's verdict."""
    lo, hi = c.interval
    return (f"| {c.cls} | {_pct(c.accuracy)} | [{_pct(lo)}, {_pct(hi)}] | {c.correct} / {c.n} | "
            f"{'pass' if _passes(c, bar) else '**fail**'} |")


def _failures(classes: list[ClassAccuracy] | None, bar: QualityBar) -> tuple[str, ...]:
    if classes is None:
        return ("the evaluation has no judge accuracy (evaluate a conditional synthetic set with a classifier as judge)",)
    if not classes:
        return ("the evaluation scored no requested class",)
    return tuple(_class_text(c) for c in classes if not _passes(c, bar))


def assess_quality(evaluation_dir: str | Path | None, synthetic_dir: str | Path, bar: QualityBar, *,
                   force: bool = False, released: Mapping[str, Mapping[str, Any]] | None = None) -> Quality:
    """Read the evaluation of ``synthetic_dir`` and hold it to ``bar``.

    ``released``: the condition of each draw the release keeps, by the draw's index (the others the
    audit flagged): the bar then reads the judges' answers on those draws only, since a set can pass
    as a whole while the part left after dropping its near-copies does not.

    Raises:
        DataError: the evaluation is missing, evaluates another synthetic set, keeps no answer per
            draw where draws are dropped, or the samples fail the bar and ``force`` is not given
            (one line naming the failing classes).
    """
    if evaluation_dir is None:
        return Quality(None, bar)
    evaluation = read_evaluation(evaluation_dir)
    evaluation.check_synthetic_set(synthetic_dir)

    def read(task: str | None) -> list[ClassAccuracy] | None:
        if released is None:
            return evaluation.judge_accuracy(task=task)
        attribute = task or (evaluation.judge or {}).get("task", "")
        requested = {index: label_value(c.get(attribute)) for index, c in released.items()}
        return evaluation.judge_accuracy(task=task, requested=requested)

    classes = read(None)
    others = {j["task"]: scored for j in evaluation.other_judges if (scored := read(j["task"])) is not None}
    failures = _failures(classes, bar) + tuple(f"{task} {text}" for task, scored in others.items()
                                               for text in _failures(scored, bar))
    if failures and not force:
        raise DataError(f"release: the samples fail the fidelity bar ({bar.describe()}): {'; '.join(failures)} "
                        f"(from {Path(evaluation_dir) / METRICS_FILE}); improve the model, or set force to release "
                        "anyway with a datasheet that says so", keys=("force",))
    return Quality(evaluation, bar, classes, failures, forced=bool(failures), others=others,
                   released=None if released is None else len(released))


def failed_bar_warning(quality: Quality) -> str:
    """The datasheet's opening warning of a forced release (empty when the bar passed)."""
    if not quality.failures:
        return ""
    return ("> **WARNING: THIS RELEASE FAILED ITS FIDELITY BAR** and was made with `--force`. Bar: "
            f"{quality.bar.describe()}.\n> Failing: {'; '.join(quality.failures)}.\n"
            "> Do NOT use these images as examples of the classes they were asked for; see \"Quality\" below.")


def _reference_cell(v: dict | None) -> str:
    if not v:
        return " – |"
    return (f" {_pct(v['value'])} [{_pct(v['ci_low'])}, {_pct(v['ci_high'])}] "
            f"({v['correct']} / {v['n']}, {v.get('units', v['n'])} subjects) |")


def _judge_table(quality: Quality) -> list[str]:
    ev = quality.evaluation
    judge = (ev.judge if ev is not None else None) or {}
    if quality.classes is None:
        return ["- Judge accuracy: not measured (the evaluation had no judge / conditioning classifier)."]
    floor = {c.cls: c for c in (ev.judge_accuracy(FLOOR_SET) if ev is not None else None) or []}
    reference = ev.judge_on_reference() if ev is not None else {}
    lines = [f"- Judge: `{judge.get('name', '?')}` (sha256 `{judge.get('sha256', '?')}`), an independent classifier "
             f"of `{judge.get('task', '?')}`: the share of each class's synthetic samples it assigns to the class "
             "they were asked for."
             + (" Beside it, the judge on the real training items (subjects it never saw; interval over subjects): "
                f"{JUDGE_CEILING}." if reference else ""), "",
             "| class | judge accuracy | Wilson 95 % interval | correct / samples | bar |"
             + (" judge on real training items |" if reference else "")
             + (" judge on real held-out items |" if floor else ""),
             "| --- | --- | --- | --- | --- |" + (" --- |" if reference else "") + (" --- |" if floor else "")]
    for c in quality.classes:
        row = _class_row(c, quality.bar)
        if reference:
            row += _reference_cell(reference.get(c.cls))
        if floor:
            f = floor.get(c.cls)
            row += f" {_pct(f.accuracy)} ({f.correct} / {f.n}) |" if f else " – |"
        lines.append(row)
    return lines


def _other_judges_table(quality: Quality) -> list[str]:
    """Each judge of another conditioned attribute, held to the same bar, class by class."""
    if not quality.others:
        return []
    lines = ["", "- Judges of other conditioned attributes, held to the same bar:", "",
             "| attribute | class | judge accuracy | Wilson 95 % interval | correct / samples | bar |",
             "| --- | --- | --- | --- | --- | --- |"]
    for task, scored in quality.others.items():
        for c in scored:
            lines.append(f"| {task} " + _class_row(c, quality.bar))
    return lines


def _metric_table(rows: list[MetricRow], extractor: dict, whole_set: bool) -> list[str]:
    if not rows:
        return ["- KID: not in the evaluation."]
    n = next((r.n for r in rows if r.n is not None), None)
    lines = [f"- KID (lower is better; every set against the real training items at N = {n if n else '?'}, "
             f"features of `{extractor.get('name', '?')}`): read the synthetic value against the real-vs-real "
             "floor (real items of other subjects) and the autoencoder baselines.", "",
             "| set | KID | 95 % interval |", "| --- | --- | --- |"]
    for r in rows:
        label = SET_LABELS.get(r.set, f"baseline: {r.set}" if r.kind == "baseline" else r.set)
        if r.set == SYNTHETIC_SET and whole_set:
            label = "synthetic (every draw evaluated, near-copies included)"
        value = "–" if r.value is None else f"{r.value:.4g}"
        ci = "–" if r.ci_low is None or r.ci_high is None else f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
        lines.append(f"| {label} | {value} | {ci} |")
    return lines


def quality_md(quality: Quality, audit_line: str) -> str:
    """The datasheet's "Quality" section; ``audit_line`` summarises the memorisation audit."""
    ev = quality.evaluation
    if ev is None:
        return ("**Quality was not evaluated.** This release was made without `--evaluation`: nothing here says "
                "how realistic the images are or whether they show the classes they were asked for. Run "
                "`uterosynth evaluate` and release again with `--evaluation DIR`.\n\n" + audit_line)
    verdict = ("**passed**" if not quality.failures else "**FAILED** (released anyway with `--force`)")
    lines = [f"- Evaluation: `{ev.folder / METRICS_FILE}` (sha256 `{ev.sha256}`), made with uterosynth "
             f"{ev.version} on {ev.created}.",
             f"- Fidelity bar: {quality.bar.describe()}: {verdict}.",
             *([f"- The judges are read on the {quality.released} draws released (the audit's near-copies left "
                "out); KID below is of every draw evaluated."] if quality.released is not None else []),
             *_judge_table(quality), *_other_judges_table(quality), "",
             *_metric_table(ev.metric_rows("kid"), ev.metrics.get("extractor") or {}, quality.released is not None),
             "",
             audit_line]
    return "\n".join(lines)
