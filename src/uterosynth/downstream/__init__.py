"""Downstream utility: does synthetic data help a classifier of a real attribute?

``run_downstream`` runs protocols × label budgets × seeds and tests on real data only;
``train_judge`` freezes one classifier that other stages use as an independent judge
(``load_classifier`` / ``predict``). Heavy modules (torch, MONAI) load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_downstream", "train_judge", "load_classifier", "predict", "DownstreamConfig", "JudgeConfig"]

_EXPORTS = {
    ".experiment": ("run_downstream",),
    ".judge": ("train_judge", "load_classifier", "predict"),
    ".config": ("DownstreamConfig", "JudgeConfig"),
}
"""Each submodule and the names it exports, imported on first use."""
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        import importlib

        return getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    raise AttributeError(name)
