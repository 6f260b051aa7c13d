"""The evaluation artifact on disk: ``metrics.json`` (+ ``report.html``), its file names and its reader.

``uterosynth evaluate`` writes it (importing the file names from here); ``uterosynth release``
reads it to state the released samples' quality in the datasheet and to hold them to a fidelity
bar, and the pipeline report leads with it. Only numbers are read: the judge's per-class
accuracy on the synthetic set (conditioning fidelity) with a Wilson 95 % interval from its counts,
and KID of the synthetic set beside the real-vs-real floor and the baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifacts import read_json, sha256_file
from ..core.errors import DataError
from ..core.stats import wilson_ci, wilson_interval
from .image_set import SLICE_MARK

__all__ = ["FLOOR_SET", "JUDGE_CEILING", "METRICS_FILE", "REPORT_FILE", "SYNTHETIC_SET", "ClassAccuracy", "Evaluation", "MetricRow",
           "read_evaluation"]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SYNTHETIC_SET = "synthetic"
"""The name of the model's synthetic set in ``metrics.json`` ``sets``."""
FLOOR_SET = "real_vs_real"
"""The name of the real-vs-real noise floor in ``metrics.json`` ``sets``."""
REQUIRED_KEYS = ("sets", "reference", "provenance")
JUDGE_CEILING = ("a class whose real items read below the bar cannot be expected to read above it in faithful "
                 "samples")
"""Why the judge's reading of real training items is shown beside the samples (reports, datasheet)."""


@dataclass(frozen=True)
class ClassAccuracy:
    """The judge's accuracy on the items of one requested class, with its Wilson 95 % interval."""

    cls: str
    correct: int
    n: int
    units: int | None = None
    """The independent units (subjects, volumes) the ``n`` items come from (``None``: not recorded)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_ci(self.correct, self.n) if self.n else (float("nan"), float("nan"))

    @property
    def unit_interval(self) -> tuple[float, float]:
        """Wilson over independent units: where several items share a unit (slices of one volume
        or subject), the accuracy with the number of units as its sample size, else
        :attr:`interval`. Correlated items carry at most one unit's information each, so this is
        conservative, and it is the same method as the interval of ungrouped samples."""
        if self.units is None or self.units >= self.n or not self.units:
            return self.interval
        return wilson_interval(self.accuracy, self.units)


@dataclass(frozen=True)
class MetricRow:
    """One set's value of one metric: ``set`` (its name in ``metrics.json``), ``kind``
    (``synthetic``, ``baseline`` or ``real``), value, interval and the N it was measured at."""

    set: str
    kind: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None


@dataclass(frozen=True)
class Evaluation:
    """A finished ``uterosynth evaluate`` folder: ``metrics`` is ``metrics.json`` as read."""

    folder: Path
    metrics: dict[str, Any]
    sha256: str

    @property
    def judge(self) -> dict[str, Any] | None:
        """The judge (conditioning classifier): ``name``, ``sha256``, ``task``, ``classes``; ``None``: none."""
        return self.metrics.get("classifier")

    @property
    def created(self) -> str:
        return str(self.metrics.get("provenance", {}).get("created", "?"))

    @property
    def version(self) -> str:
        return str(self.metrics.get("provenance", {}).get("uterosynth_version", "?"))

    def set_entry(self, name: str = SYNTHETIC_SET) -> dict[str, Any] | None:
        return self.metrics["sets"].get(name)

    @property
    def other_judges(self) -> list[dict[str, Any]]:
        """The judges of other attributes (``classifier.others``): each ``name``, ``task``, ``on_reference``."""
        return list(self.metrics.get("judges") or [])

    def judge_accuracy(self, name: str = SYNTHETIC_SET, task: str | None = None, *,
                       requested: Mapping[str, str | None] | None = None) -> list[ClassAccuracy] | None:
        """Per requested class of set ``name``: items the judge classified as requested, of how many;
        ``task``: the other judge of that attribute instead.

        ``requested``: the draws to read, by their index, each with the class it asked for (``None``:
        no class): the classes are counted again from the judge's answers on those draws only (a
        release without the audit's flagged draws). A volume read slice by slice counts its slices as
        items and itself as one unit; draws the evaluation did not read (``max_items``) are not counted.

        ``None`` when the set was not scored by a judge (no classifier, or unconditional items).

        Raises:
            DataError: ``requested`` is given but the evaluation kept no answer per draw (made by an
                older version).
        """
        entry = self.set_entry(name)
        key = "conditioning_fidelity" if task is None else f"conditioning_fidelity_{task}"
        fidelity = (entry or {}).get("metrics", {}).get(key)
        if not fidelity:
            return None
        if requested is not None:
            return self._recount(fidelity.get("details", {}), requested, key)
        out = []
        for cls, v in fidelity.get("details", {}).get("per_class", {}).items():
            n = int(v["n"])
            correct = int(v["correct"]) if "correct" in v else int(round(float(v["value"]) * n))
            out.append(ClassAccuracy(str(cls), correct, n, int(v["units"]) if "units" in v else None))
        return out

    def _recount(self, details: Mapping[str, Any], requested: Mapping[str, str | None], key: str) -> list[ClassAccuracy]:
        """Per requested class, the judge's answers that match it on the draws of ``requested``."""
        answers, ids = details.get("answers"), details.get("ids")
        if answers is None or ids is None:
            raise DataError(f"{self.folder / METRICS_FILE}: {key} keeps no answer per draw (an older evaluation); "
                            "evaluate the set again to read a part of it")
        hits: dict[str, list[bool]] = {}
        units: dict[str, set[str]] = {}
        for answer, item in zip(answers, ids, strict=True):
            draw = item.split(SLICE_MARK)[0]
            cls = requested.get(draw)
            if cls:
                hits.setdefault(cls, []).append(answer == cls)
                units.setdefault(cls, set()).add(draw)
        return [ClassAccuracy(cls, sum(hits[cls]), len(hits[cls]), len(units[cls])) for cls in sorted(hits)]

    def judge_on_reference(self) -> dict[str, dict[str, Any]]:
        """Per class, the judge on the real reference items: ``value``, ``ci_low``, ``ci_high`` (over
        subjects), ``correct``, ``n`` items and ``units`` subjects; empty when not recorded."""
        on_reference = (self.judge or {}).get("on_reference") or {}
        return dict((on_reference.get("details") or {}).get("per_class") or {})

    def metric_rows(self, metric: str = "kid") -> list[MetricRow]:
        """``metric`` for the synthetic set, the real-vs-real floor, then each baseline (those present)."""
        sets = self.metrics["sets"]
        order = [n for n in (SYNTHETIC_SET, FLOOR_SET) if n in sets]
        order += [n for n, e in sets.items() if e.get("kind") == "baseline" and n not in order]
        rows = []
        for name in order:
            m = sets[name].get("metrics", {}).get(metric)
            if not m:
                continue
            n = (m.get("details") or {}).get("n")
            rows.append(MetricRow(name, str(sets[name].get("kind", "")), m.get("value"), m.get("ci_low"),
                                  m.get("ci_high"), int(n) if isinstance(n, int) else None))
        return rows

    def check_synthetic_set(self, synthetic_dir: str | Path) -> None:
        """Refuse an evaluation made for another synthetic set than ``synthetic_dir``.

        The ``metadata.jsonl`` checksum recorded with the synthetic set is compared (evaluations
        made before it was recorded: the set's resolved folder).

        Raises:
            DataError: no synthetic set in the evaluation, or another one.
        """
        entry = self.set_entry()
        where = self.folder / METRICS_FILE
        if entry is None:
            raise DataError(f"{where}: evaluates no synthetic set (evaluate the synthetic set, giving it as synthetic)",
                            keys=("evaluation",))
        meta = Path(synthetic_dir) / "metadata.jsonl"
        recorded = entry.get("metadata_sha256")
        if recorded is not None:
            same = meta.is_file() and recorded == sha256_file(meta)
        else:
            same = Path(str(entry.get("source", ""))).resolve() == Path(synthetic_dir).resolve()
        if not same:
            raise DataError(f"{where}: this evaluation was made for another synthetic set ({entry.get('source')}), "
                            f"not {synthetic_dir}; evaluate this set first", keys=("evaluation",))


def read_evaluation(folder: str | Path) -> Evaluation:
    """Read ``metrics.json`` from an evaluation folder.

    Raises:
        DataError: the file is missing, not JSON, or lacks a block of an evaluation document.
    """
    folder = Path(folder)
    path = folder / METRICS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (expected a folder written by 'uterosynth evaluate')")
    metrics = read_json(path)
    for key in REQUIRED_KEYS:
        if key not in metrics:
            raise DataError(f"{path}: lacks '{key}' (is this a folder written by 'uterosynth evaluate'?)")
    return Evaluation(folder, metrics, sha256_file(path))
