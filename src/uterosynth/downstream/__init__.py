"""Downstream utility: does synthetic data help a classifier of a real attribute?

``run_downstream`` runs protocols × label budgets × seeds and tests on real data only;
``train_judge`` freezes one classifier that other stages use as an independent judge
(``load_classifier`` / ``predict``). Heavy modules (torch, MONAI) load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_downstream", "train_judge", "load_classifier", "predict", "DownstreamConfig", "JudgeConfig"]

_LAZY = {
    "run_downstream": ".experiment",
    "train_judge": ".judge",
    "load_classifier": ".judge",
    "predict": ".judge",
    "DownstreamConfig": ".config",
    "JudgeConfig": ".config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
