"""Which subjects a model saw: hashed subject ids in model artifacts, and the overlap check.

Every model artifact (autoencoder and diffusion ``model.json``, the judge's ``classifier.json``,
the in-domain encoder's ``encoder.json``) records ``training_subjects``::

    {"hash": "sha256", "salt": "...", "ids": [sha256(salt + ":" + subject), ...],
     "dataset": "<prepared dataset folder>", "preprocess_hash": "...", "splits": ["train"]}

so raw subject ids never leave the prepared dataset, yet a command that evaluates real
subjects with a model can refuse those the model was trained on (:func:`check_disjoint`), and
two models can be compared hash against hash (:func:`check_models_disjoint`: a judge trained on
the subjects a generator was trained on would reward memorisation). A synthetic set carries its
generator's record in ``synthetic.json`` (:func:`uterosynth.data.synthetic.generator_subjects`).

Records hashed with different salts cannot be compared: nothing is checked (0, and
:class:`OverlapChecks` records ``null``). Records of one uterosynth version share :data:`SALT`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import DataError

__all__ = ["SALT", "OverlapChecks", "check_disjoint", "check_models_disjoint", "comparable", "hash_subject",
           "merge_subjects", "missing_subjects", "training_subjects"]

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


def missing_subjects(model_subjects: Mapping[str, Any] | None, subjects: Iterable[str]) -> int | None:
    """How many of a model's training subjects are not among ``subjects`` (raw ids); ``None`` when the model
    recorded none. The reverse of :func:`check_disjoint`: an audit must see every subject a generator saw."""
    if not model_subjects:
        return None
    salt = str(model_subjects.get("salt", SALT))
    present = {hash_subject(s, salt) for s in subjects}
    return len(set(model_subjects.get("ids", [])) - present)


def _salt(record: Mapping[str, Any]) -> str:
    return str(record.get("salt", SALT))


def comparable(a_subjects: Mapping[str, Any] | None, b_subjects: Mapping[str, Any] | None) -> bool:
    """Whether two ``training_subjects`` records can be compared: both present, hashed with one salt."""
    return bool(a_subjects) and bool(b_subjects) and _salt(a_subjects) == _salt(b_subjects)  # type: ignore[arg-type]


def check_models_disjoint(
    a_subjects: Mapping[str, Any] | None,
    b_subjects: Mapping[str, Any] | None,
    *,
    what: str,
    allow_overlap: bool = False,
) -> int:
    """Refuse two models trained on common subjects (hash against hash).

    Args:
        a_subjects: the ``training_subjects`` record of the model that judges or measures
            (``None``: not recorded).
        b_subjects: the record of the model whose output it judges (a synthetic set's generator).
        what: the two artifacts, for the message (``"judge J vs the generator of synthetic set S"``).
        allow_overlap: return the overlap instead of raising.

    Returns:
        The number of subjects both were trained on; 0 when a record is missing or the two
        were hashed with different salts (nothing can be checked: see :func:`comparable`).

    Raises:
        DataError: the two models share training subjects.
    """
    if not comparable(a_subjects, b_subjects):
        return 0
    theirs = set(b_subjects.get("ids", []))  # type: ignore[union-attr]
    overlap = len(set(a_subjects.get("ids", [])) & theirs)  # type: ignore[union-attr]
    if overlap and not allow_overlap:
        raise DataError(
            f"{what}: {overlap} of its {len(theirs)} subjects were used to train this model too (a model that saw "
            "them rewards memorisation); use models trained on disjoint subjects (another split or cohort), or "
            "allow the overlap explicitly (allow_overlap)",
            keys=("allow_overlap",),
        )
    return overlap


def merge_subjects(**records: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """One record for a model made of several trained parts (a latent diffusion model and its autoencoder).

    The ids are the union; ``parts`` keeps each part's ``dataset``, ``preprocess_hash`` and
    ``splits`` under its name (one recorded part: its record unchanged). ``None`` when no part recorded its subjects or the parts were
    hashed with different salts (the union would mean nothing).
    """
    present = {name: r for name, r in records.items() if r}
    if not present:
        return None
    if len(present) == 1:
        return dict(next(iter(present.values())))
    salts = {_salt(r) for r in present.values()}
    if len(salts) > 1:
        return None
    ids = sorted(set().union(*(r.get("ids", []) for r in present.values())))
    parts = [{"of": name, **{k: r.get(k) for k in ("dataset", "preprocess_hash", "splits")}}
             for name, r in present.items()]
    return {"hash": "sha256", "salt": salts.pop(), "ids": ids, "parts": parts}


@dataclass
class OverlapChecks:
    """Runs the overlap checks of one command and keeps every count for its output file.

    Each check is one entry ``{model, against, overlap, of}``: ``overlap`` is the number of
    shared subjects, or ``None`` when nothing could be checked (``reason`` says why); ``of`` the
    number of subjects on the other side. With ``allow_overlap`` nothing is refused and
    :meth:`warnings` lists every overlap found.
    """

    allow_overlap: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)

    def _unchecked(self, model: str, against: str, reason: str) -> None:
        self.checks.append({"model": model, "against": against, "overlap": None, "of": None, "reason": reason})

    def subjects(self, model: str, record: Mapping[str, Any] | None, subjects: Iterable[str], *,
                 against: str) -> None:
        """Check a model's record against raw subject ids (a real set); see :func:`check_disjoint`."""
        evaluated = set(subjects) - {""}
        if not record:
            self._unchecked(model, against, "no training_subjects recorded")
            return
        n = check_disjoint(record, evaluated, what=f"{model} vs {against}", allow_overlap=self.allow_overlap)
        self.checks.append({"model": model, "against": against, "overlap": n, "of": len(evaluated)})

    def models(self, model: str, record: Mapping[str, Any] | None, other: Mapping[str, Any] | None, *,
               against: str) -> None:
        """Check a model's record against another model's (hash against hash); see :func:`check_models_disjoint`."""
        if not comparable(record, other):
            reason = "no training_subjects recorded" if not (record and other) else "different salts"
            self._unchecked(model, against, reason)
            return
        n = check_models_disjoint(record, other, what=f"{model} vs {against}", allow_overlap=self.allow_overlap)
        self.checks.append({"model": model, "against": against, "overlap": n, "of": len(set(other.get("ids", [])))})  # type: ignore[union-attr]

    @property
    def total(self) -> int:
        """Shared subjects over all checks (counted once per check)."""
        return sum(c["overlap"] or 0 for c in self.checks)

    def warnings(self) -> list[str]:
        """One line per check that found an overlap (only possible with ``allow_overlap``)."""
        return [f"subject overlap allowed (allow_overlap): {c['model']} shares {c['overlap']} of {c['of']} "
                f"subjects with {c['against']}" for c in self.checks if c["overlap"]]

    def to_json(self) -> dict[str, Any]:
        return {"allow_overlap": self.allow_overlap, "total": self.total, "checks": list(self.checks)}
