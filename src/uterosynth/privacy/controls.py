"""Model-made calibration controls: items that look like a generator's output and cannot be copies.

A memorisation audit calibrated on real images asks "is this sample closer to a training image
than a real image of another patient would be?". Model outputs are smoother and more typical than
real images, so a generator that copies nothing can be flagged more often than the calibration
promises (17 % of a 3D control generator's volumes at quantile 0.95; docs/RESULTS.md,
"Generator controls"). The question that separates copying from looking like a
model output is: "is this sample closer to a training image than the output of a model that never
saw that patient?". Two kinds of synthetic set answer it, both written by uterosynth with their
provenance in ``synthetic.json``:

- **generator controls**: samples of the same recipe trained on a cohort of *other* subjects
  (``uterosynth sample`` of that model); its recorded ``training_subjects`` must be disjoint from
  the audited training subjects;
- **reconstruction controls**: autoencoder reconstructions of subjects outside the audited
  training split (``uterosynth evaluate baselines``); their ``source_subjects`` must be disjoint
  from it (the autoencoder itself may have been trained on it, as the audited model's was).

A set without either record cannot be checked and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..data.image_set import ImageSet, load_synthetic
from ..data.subjects import check_disjoint
from ..data.synthetic import generator_subjects, source_subjects

__all__ = ["CONTROL_SOURCE", "control_kind", "load_controls"]

CONTROL_SOURCE = "model-made controls"
"""The calibration source name of control items."""


def control_kind(info: dict[str, Any]) -> str:
    """``reconstructions`` (the set reproduces real subjects item by item) or ``generator`` (samples)."""
    return "reconstructions" if source_subjects(info) else "generator"


def load_controls(path: str | Path, train: ImageSet) -> ImageSet:
    """The control set at ``path``, checked to hold no item of the audited ``train`` subjects.

    Raises:
        DataError: the set records no provenance, reproduces training subjects (reconstructions),
            or its generator was trained on some of them.
    """
    controls = load_synthetic(path, name="controls", kind="controls", clip=False, needs="the audit")
    info = controls.info or {}
    if control_kind(info) == "reconstructions":
        record, role = source_subjects(info), "reconstructs"
    else:
        record, role = generator_subjects(info), "comes from a generator trained on"
        if not record:
            raise DataError(f"controls {path}: synthetic.json records neither the generator's training subjects nor "
                            "reconstructed subjects, so the audit cannot check that these items are not copies; use a "
                            "set written by 'uterosynth sample' or 'uterosynth evaluate baselines'", keys=("controls",))
    subjects = set(train.subjects)
    overlap = check_disjoint(record, subjects, what=f"controls {path}", allow_overlap=True)
    if overlap:
        raise DataError(f"controls {path}: the set {role} {overlap} of the {len(subjects)} audited training subjects, "
                        "so its items may be copies and cannot calibrate; use a model or reconstructions of other "
                        "subjects", keys=("controls",))
    return controls
