"""The study folder written by ``reader-study create`` and read by ``serve`` and ``analyze``.

Layout::

    study.json     provenance, config, study id, title, dims, display shape, the raters (name,
                   SHA-256 of their token, their ordered assignments) and the admin token hash
    key.json       the answer key: per item id its source (real/synthetic), class and origin.
                   Server-side only; never served.
    images/<item id>/<slice>.png   rendered images (one slice for 2D items)

Item ids (32 hex) and assignment ids (24 hex) are random and say nothing about the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifacts import read_json
from ..core.errors import DataError

__all__ = ["StudyFolder", "RaterSpec", "KeyEntry", "ITEM_ID_PATTERN", "ASSIGNMENT_ID_PATTERN", "SOURCES"]

ITEM_ID_PATTERN = r"^[0-9a-f]{32}$"
ASSIGNMENT_ID_PATTERN = r"^[0-9a-f]{24}$"
SOURCES = ("real", "synthetic")


@dataclass(frozen=True)
class RaterSpec:
    """One rater: name, token hash and ``(assignment_id, item_id)`` in display order."""

    name: str
    token_hash: str
    assignments: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class KeyEntry:
    """Ground truth of one item."""

    source: str
    class_label: str
    origin: str


@dataclass(frozen=True)
class StudyFolder:
    """A study on disk (see the module docstring for the layout)."""

    root: Path
    study_id: str
    title: str
    dims: int
    n_slices: int
    admin_token_hash: str
    raters: tuple[RaterSpec, ...]
    key: dict[str, KeyEntry]
    info: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> StudyFolder:
        """Read and check ``study.json`` and ``key.json``.

        Raises:
            DataError: the folder, a file or a field is missing or inconsistent.
        """
        root = Path(root)
        if not (root / "study.json").is_file():
            raise DataError(f"{root}: not a reader study (no study.json; run 'uterosynth reader-study create')")
        info = read_json(root / "study.json")
        key_raw = read_json(root / "key.json")
        try:
            raters = tuple(
                RaterSpec(r["name"], r["token_sha256"], tuple((a, i) for a, i in r["assignments"]))
                for r in info["raters"]
            )
            key = {k: KeyEntry(v["source"], v["class"], v["origin"]) for k, v in key_raw["items"].items()}
            study = cls(
                root=root,
                study_id=str(info["study_id"]),
                title=str(info["title"]),
                dims=int(info["dims"]),
                n_slices=int(info["n_slices"]),
                admin_token_hash=str(info["admin_token_sha256"]),
                raters=raters,
                key=key,
                info=info,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{root}/study.json or key.json: missing or malformed field ({err})") from err
        study._check()
        return study

    def _check(self) -> None:
        for item_id, entry in self.key.items():
            if not re.fullmatch(ITEM_ID_PATTERN, item_id) or entry.source not in SOURCES:
                raise DataError(f"{self.root}/key.json: bad item {item_id!r} (source {entry.source!r})")
        for rater in self.raters:
            for assignment_id, item_id in rater.assignments:
                if not re.fullmatch(ASSIGNMENT_ID_PATTERN, assignment_id) or item_id not in self.key:
                    raise DataError(
                        f"{self.root}/study.json: rater {rater.name!r} has a bad assignment {assignment_id!r}"
                    )

    def image_path(self, item_id: str, slice_index: int) -> Path:
        """Path of slice ``slice_index`` of ``item_id``; both are validated, never user text."""
        if not re.fullmatch(ITEM_ID_PATTERN, item_id) or not 0 <= slice_index < self.n_slices:
            raise DataError(f"no image {item_id!r} slice {slice_index}")
        return self.root / "images" / item_id / f"{slice_index:04d}.png"
