"""Which subjects a model saw: hashed subject ids in model artifacts, and the overlap check.

Every model artifact (autoencoder and diffusion ``model.json``, the judge's ``classifier.json``,
the in-domain encoder's ``encoder.json``) records ``training_subjects``::

    {"hash": "sha256", "salt": "...", "ids": [sha256(salt + ":" + subject), ...],
     "dataset": "<prepared dataset folder>", "preprocess_hash": "...", "splits": ["train"]}

so raw subject ids never leave the prepared dataset, yet a command that evaluates real
subjects with a model can refuse those the model was trained on (:func:`check_disjoint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.errors import DataError

__all__ = ["SALT", "check_disjoint", "hash_subject", "training_subjects"]

SALT = "uterosynth-subject-v1"


def hash_subject(subject: str, salt: str = SALT) -> str:
    """SHA-256 of ``"<salt>:<subject>"`` (hex).

    >>> hash_subject("UMD_221129_012")[:12]
    'ff6c55dfc305'
    """
    return hashlib.sha256(f"{salt}:{subject}".encode()).hexdigest()


def training_subjects(data: Any, splits: Iterable[str] = ("train",)) -> dict[str, Any]:
    """The ``training_subjects`` record of a model fitted on ``splits`` of prepared dataset ``data``."""
    names = sorted(set(splits))
    subjects = sorted({r["subject"] for r in data.rows if r.get("split") in names})
    return {
        "hash": "sha256",
        "salt": SALT,
        "ids": sorted(hash_subject(s) for s in subjects),
        "dataset": str(data.root),
        "preprocess_hash": data.info.get("preprocess_hash"),
        "splits": names,
    }


def check_disjoint(
    model_subjects: Mapping[str, Any] | None,
    evaluated_subjects: Iterable[str],
    *,
    what: str,
    allow_overlap: bool = False,
) -> int:
    """Refuse to evaluate subjects a model was trained on.

    Args:
        model_subjects: the artifact's ``training_subjects`` record (``None``: an artifact made
            before subjects were recorded; nothing can be checked, 0 is returned).
        evaluated_subjects: raw subject ids of the evaluated split.
        what: the artifact and the split, for the message (``"judge runs/judge vs data:train"``).
        allow_overlap: return the overlap instead of raising.

    Returns:
        The number of evaluated subjects the model was trained on.

    Raises:
        DataError: some evaluated subjects were training subjects of the model.
    """
    if not model_subjects:
        return 0
    salt = str(model_subjects.get("salt", SALT))
    seen = set(model_subjects.get("ids", []))
    evaluated = set(evaluated_subjects)
    overlap = sum(hash_subject(s, salt) in seen for s in evaluated)
    if overlap and not allow_overlap:
        raise DataError(
            f"{what}: {overlap} of {len(evaluated)} evaluated subjects were used to train this model; evaluate "
            "subjects it never saw (another split or cohort), or allow the overlap explicitly (allow_overlap)",
            keys=("allow_overlap",),
        )
    return overlap
