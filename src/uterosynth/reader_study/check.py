"""Leak audit of a study: can a trivial rule tell the sources apart from what a rater receives?

A rater receives their list (positions), PNG files (byte sizes, pixels) and a slice count per
image. For each of these a one-feature threshold rule (:mod:`.threshold`) is fitted and its
accuracy measured by stratified cross-validation, with a Wilson 95 % interval. A rule whose
interval lies above 50 % leaks: fix the study (rendering, selection) before sending links.
The audit reads only the study folder; ``reader-study check`` writes ``check.json``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import provenance, write_json
from ..core.stats import wilson_ci
from .study import StudyFolder
from .threshold import cv_accuracy, fit_threshold

__all__ = ["CHECK_FILE", "RULES", "CheckResult", "RuleCheck", "check_study", "write_check"]

RULES = {
    "position": "position of the image in the rater's list (every rater, every position)",
    "png_bytes": "bytes of the image's PNG files",
    "black_share": "share of black (0) pixels",
    "mean_intensity": "mean grey level",
    "n_slices": "number of slices served",
}


@dataclass(frozen=True)
class RuleCheck:
    """One rule: cross-validated accuracy and the rule fitted on all data (for reading)."""

    rule: str
    description: str
    n: int
    correct: int
    accuracy: float | None
    ci95: tuple[float, float] | None
    fitted: str
    leaks: bool


@dataclass(frozen=True)
class CheckResult:
    """The audit of one study; ``leaks`` if any rule beats chance (95 % interval above 0.5)."""

    study_id: str
    n_items: int
    n_raters: int
    rules: tuple[RuleCheck, ...]

    @property
    def leaks(self) -> bool:
        return any(r.leaks for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        return {"study_id": self.study_id, "n_items": self.n_items, "n_raters": self.n_raters,
                "leaks": self.leaks, "rules": [asdict(r) for r in self.rules]}


def _image_features(study: StudyFolder, item_id: str) -> dict[str, float]:
    from PIL import Image

    files = sorted((study.root / "images" / item_id).glob("*.png"))
    arrays = [np.asarray(Image.open(io.BytesIO(f.read_bytes()))).ravel() for f in files]
    pixels = np.concatenate(arrays) if arrays else np.zeros(1)
    return {"png_bytes": float(sum(f.stat().st_size for f in files)), "black_share": float((pixels == 0).mean()),
            "mean_intensity": float(pixels.mean()), "n_slices": float(len(files))}


def _rule(name: str, x: np.ndarray, synthetic: np.ndarray) -> RuleCheck:
    correct, n = cv_accuracy(x, synthetic)
    ci = wilson_ci(correct, n) if n else None
    fit = fit_threshold(x, synthetic)
    fitted = f"synthetic if {name} {'>' if fit.above else '<='} {fit.threshold:.6g}"
    return RuleCheck(name, RULES[name], n, correct, correct / n if n else None, ci, fitted,
                     bool(ci is not None and ci[0] > 0.5))


CHECK_FILE = "check.json"


def check_study(study_dir: str | Path) -> CheckResult:
    """Audit ``study_dir`` (see the module docstring).

    Raises:
        DataError: the study folder is unusable.
    """
    study = StudyFolder.load(study_dir)
    # by content, not by the random item ids, so the rules' cross-validation folds are reproducible
    items = sorted(study.key, key=lambda i: (study.key[i].source, study.key[i].origin))
    is_syn = np.array([study.key[i].source == "synthetic" for i in items])
    feats = [_image_features(study, i) for i in items]
    positions = [(p, study.key[item].source == "synthetic") for spec in study.raters
                 for p, (_, item) in enumerate(spec.assignments)]
    rules = [_rule("position", np.array([p for p, _ in positions], dtype=float),
                   np.array([s for _, s in positions], dtype=bool))]
    rules += [_rule(name, np.array([f[name] for f in feats]), is_syn) for name in RULES if name != "position"]
    return CheckResult(study.study_id, len(items), len(study.raters), tuple(rules))


def write_check(result: CheckResult, path: str | Path, *, study_dir: str | Path) -> Path:
    """Write ``result`` as provenance-stamped JSON to ``path``."""
    write_json(path, {"provenance": provenance({"study": str(study_dir)}, None), **result.to_dict()})
    return Path(path)
