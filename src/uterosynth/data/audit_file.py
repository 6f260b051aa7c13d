"""The audit artifact on disk: ``audit.json`` (+ ``audit.html``), its writer and its reader.

``uterosynth audit`` writes it; ``uterosynth release`` reads it to drop flagged samples and to
summarise the audit in the datasheet and the model card.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.artifacts import atomic_write_text, read_json, sha256_file, write_json
from ..core.errors import DataError

__all__ = ["AUDIT_FILE", "AUDIT_PAGE", "check_audit_of", "read_audit", "write_audit_files"]

AUDIT_FILE = "audit.json"
AUDIT_PAGE = "audit.html"
REQUIRED_KEYS = ("summary", "calibration", "samples", "inputs")


def write_audit_files(folder: str | Path, document: Mapping[str, Any], page: str) -> None:
    """Write the audit's JSON document and its HTML page into ``folder``."""
    folder = Path(folder)
    write_json(folder / AUDIT_FILE, document)
    atomic_write_text(folder / AUDIT_PAGE, page)


def read_audit(folder: str | Path) -> dict[str, Any]:
    """Read ``audit.json`` from ``folder``.

    Raises:
        DataError: the file is missing, not JSON, or lacks a block of an audit document.
    """
    path = Path(folder) / AUDIT_FILE
    audit = read_json(path)
    for key in REQUIRED_KEYS:
        if key not in audit:
            raise DataError(f"{path}: lacks '{key}' (is this an audit made by 'uterosynth audit'?)")
    return audit


def check_audit_of(audit: Mapping[str, Any], synthetic_root: str | Path, where: str | Path) -> None:
    """Refuse an audit (read from ``where``) made for another synthetic set than ``synthetic_root``,
    by the ``metadata.jsonl`` checksum it records.

    Raises:
        DataError: the checksums differ.
    """
    expected = audit["inputs"].get("synthetic", {}).get("metadata_sha256")
    if expected != sha256_file(Path(synthetic_root) / "metadata.jsonl"):
        raise DataError(f"{where}: this audit was made for another synthetic set (metadata.jsonl checksum "
                        f"differs from {synthetic_root}); audit this set first")
