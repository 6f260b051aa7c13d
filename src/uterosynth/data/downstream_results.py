"""The downstream experiment's artifact: its file names and the reader other stages use.

``uterosynth downstream`` writes ``results.json`` (the grid and its summary), a plot and an HTML
section; the evaluation report embeds the section and summarises the gains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import DataError

__all__ = ["PLOT_FILE", "REPORT_FILE", "RESULTS_FILE", "DownstreamResults", "read_downstream"]

RESULTS_FILE = "results.json"
PLOT_FILE = "balanced_accuracy_vs_budget.png"
REPORT_FILE = "report_section.html"


@dataclass(frozen=True)
class DownstreamResults:
    """A finished downstream experiment folder."""

    folder: Path
    results: dict[str, Any]
    section_html: str


def read_downstream(folder: str | Path) -> DownstreamResults:
    """Read a finished ``uterosynth downstream`` output folder.

    Raises:
        DataError: its results file or report section is missing.
    """
    folder = Path(folder)
    section, results = folder / REPORT_FILE, folder / RESULTS_FILE
    for path in (section, results):
        if not path.is_file():
            raise DataError(f"{path}: not found (expected a 'uterosynth downstream' output folder)")
    return DownstreamResults(folder, json.loads(results.read_text()), section.read_text())
