"""Conditioning fidelity: does an independent classifier see the class each sample was asked for?

The classifier contract (written by the downstream stage's ``train-classifier`` command, read
here through :mod:`uterosynth.models.judge`, which checks the recorded sha256):

* ``classifier.pt`` — TorchScript module, images ``(N, 1, *spatial)`` in ``[0, 1]`` → logits
  ``(N, C)`` (it resizes internally if it needs a fixed size); volumes shown to a 2D classifier
  are judged on their central sagittal slice (:func:`uterosynth.models.judge.judge_view`);
  a torch that cannot read it rebuilds the network from ``classifier.safetensors`` beside it;
* ``classifier.json`` beside it — ``{"task": "orientation", "classes": ["AVAF", ...]}``: ``task``
  is the condition attribute (the key in ``metadata.jsonl``'s ``condition`` and the manifest
  column), ``classes`` name the logits in order; ``sha256``, when present, must match
  ``classifier.pt``. Other keys (provenance, metrics) are kept but not needed.

Any Python callable with ``task``, ``classes``, ``name``, ``sha256`` works too (tests use one); an
optional ``training_subjects`` attribute (the hashed record of ``classifier.json``) lets the
evaluation refuse a judge trained on the subjects it judges.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..core.errors import DataError
from ..core.stats import percentile_interval
from ..models.judge import judge_view, read_classifier
from .bootstrap import MetricResult
from .resampling import cluster_bootstrap_replicates, group_codes

__all__ = ["ConditionClassifier", "TorchScriptClassifier", "fidelity_result", "load_classifier", "predict_labels"]


@runtime_checkable
class ConditionClassifier(Protocol):
    """Images ``(N, 1, *spatial)`` in ``[0, 1]`` → logits ``(N, len(classes))`` for attribute ``task``."""

    task: str
    classes: list[str]
    name: str
    sha256: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchScriptClassifier:
    """``classifier.pt`` + ``classifier.json`` loaded as a :class:`ConditionClassifier` (sha256 checked)."""

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 64) -> None:
        loaded = read_classifier(path, device=device)
        self.module = loaded.module
        self.task, self.classes = loaded.meta["task"], [str(c) for c in loaded.meta["classes"]]
        self.name = str(loaded.meta.get("name", loaded.file.parent.name or loaded.file.stem))
        self.sha256 = loaded.sha256
        self.path = loaded.file.parent
        self.training_subjects = loaded.meta.get("training_subjects")
        dims = loaded.meta.get("spatial_dims")
        self.spatial_dims = int(dims) if dims is not None else None  # unknown: images are passed as they are
        self.device, self.batch_size = device, batch_size

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims is not None:  # a 2D judge sees a volume's central slice
            images = judge_view(images, self.spatial_dims, channels=True)
        out = [self.module(images[s : s + self.batch_size].float().to(self.device)).float().cpu()
               for s in range(0, images.shape[0], self.batch_size)]
        return torch.cat(out)


def load_classifier(path: str | Path, *, device: str = "cpu", batch_size: int = 64) -> TorchScriptClassifier:
    """Load ``classifier.pt`` (or its folder) with the ``classifier.json`` beside it."""
    return TorchScriptClassifier(path, device=device, batch_size=batch_size)


def predict_labels(classifier: ConditionClassifier, images: torch.Tensor, *, batch_size: int = 256) -> list[str]:
    """The class name the classifier assigns to each image."""
    labels: list[str] = []
    for s in range(0, images.shape[0], batch_size):
        logits = classifier(images[s : s + batch_size])
        if logits.ndim != 2 or logits.shape[1] != len(classifier.classes):
            raise DataError(f"classifier {classifier.name}: returned logits of shape {tuple(logits.shape)}, "
                            f"expected (N, {len(classifier.classes)}) for classes {classifier.classes}")
        labels.extend(classifier.classes[i] for i in logits.argmax(1).tolist())
    return labels


def fidelity_result(
    requested: Sequence[str | None], predicted: Sequence[str], classes: Sequence[str], *, task: str,
    groups: Sequence[str] | None = None, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    min_per_class: int = 30, ids: Sequence[str] | None = None,
) -> MetricResult | None:
    """Fraction of items classified as the requested class, overall (macro mean) and per class.

    Items without a requested value (unconditional samples) are ignored; ``None`` when none has one.
    ``groups`` (one subject id per item) makes every interval resample subjects, not items: the
    slices of one real subject are one unit. Per class, ``n`` counts items and ``units`` groups.
    ``details["answers"]`` keeps the judge's answer for every item, and ``details["ids"]`` the items'
    ids when given (a synthetic draw's index; ``index#slice`` for a volume read slice by slice), so a
    part of the set (a release without the audit's flagged draws) can be read again.
    """
    keep = [k for k, r in enumerate(requested) if r is not None and r != ""]
    if not keep:
        return None
    hits = np.asarray([float(requested[k] == predicted[k]) for k in keep])
    req = np.asarray([requested[k] for k in keep])
    codes = group_codes(None if groups is None else [groups[k] for k in keep], len(keep))
    per_class: dict[str, dict[str, float | int]] = {}
    warnings = []
    unknown = sorted(set(req) - set(classes))
    if unknown:
        warnings.append(f"requested value(s) {unknown} are not classifier classes {list(classes)}: counted as misses")
    rng = np.random.default_rng(seed)
    replicates = []
    for c in sorted(set(req)):
        m = req == c
        reps = cluster_bootstrap_replicates(hits[m], codes[m], n_boot, rng)
        replicates.append(reps)
        v = float(hits[m].mean())
        lo, hi = percentile_interval(reps, confidence, estimate=v)
        units = int(np.unique(codes[m]).size)
        per_class[c] = {"value": v, "ci_low": lo, "ci_high": hi, "n": int(m.sum()), "units": units,
                        "correct": int(hits[m].sum())}
        if units < min_per_class:
            unit = "items" if groups is None else "subjects"
            warnings.append(f"fidelity[{c}]: only {units} {unit} (< {min_per_class}); the fraction is noisy")
    # macro mean: the classes' replicates, each resampling that class's units
    value = float(np.mean([v["value"] for v in per_class.values()]))
    lo, hi = percentile_interval(np.mean(replicates, axis=0), confidence, estimate=value)
    return MetricResult("conditioning_fidelity", value, float(lo), float(hi), {"items": int(hits.size)}, "higher",
                        confidence, tuple(warnings),
                        {"task": task, "per_class": per_class, "micro": float(hits.mean()), "classes": list(classes),
                         "answers": [str(p) for p in predicted], **({"ids": [str(i) for i in ids]} if ids else {})})
