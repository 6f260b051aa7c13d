"""Checkpoints: ``model.safetensors`` + ``model.json`` + ``train_state.pt``, replaced as one folder.

Contract (read by every later stage)::

    checkpoint/
      model.safetensors   weights of the exported network (EMA weights when EMA is on)
      model.json          provenance (version, config, seed) + ``kind`` + everything needed to
                          rebuild the network (``network`` config) + ``step``, ``weights``
                          ("ema"/"raw"), ``sha256`` of model.safetensors, stage extras
      train_state.pt      resume only: every module's raw weights, optimisers, grad scalers,
                          EMA, step, micro-batch counter, RNG states of every rank

The three files are written into a temporary sibling folder which then replaces
``checkpoint/`` by renames; a kill between the two renames leaves ``.checkpoint.old-*``,
which :func:`find_checkpoint` recovers. So a kill at any moment leaves one complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import atomic_output_dir, sha256_file, write_json
from .errors import DataError

__all__ = [
    "CHECKPOINT_DIR",
    "write_checkpoint",
    "find_checkpoint",
    "load_model_json",
    "load_weights",
    "load_train_state",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_DIR = "checkpoint"


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU and CUDA) of this process."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    run_dir: str | Path,
    *,
    weights: Mapping[str, torch.Tensor],
    model_json: Mapping[str, Any],
    train_state: Mapping[str, Any] | None,
) -> Path:
    """Write a checkpoint into ``run_dir/checkpoint`` atomically (as a folder); returns its path."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT_DIR
    with atomic_output_dir(final, overwrite=True) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        meta = dict(model_json)
        meta["sha256"] = sha256_file(tmp / "model.safetensors")
        write_json(tmp / "model.json", meta)
        if train_state is not None:
            with open(tmp / "train_state.pt", "wb") as fh:
                torch.save(dict(train_state), fh)
                fh.flush()
                os.fsync(fh.fileno())
    return final


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint folder for ``path`` (a checkpoint or a run folder), recovering a kill mid-swap."""
    path = Path(path)
    if (path / "model.json").is_file():
        return path
    ckpt = path / CHECKPOINT_DIR
    if (ckpt / "model.json").is_file():
        return ckpt
    olds = sorted(path.glob(f".{CHECKPOINT_DIR}.old-*"), key=lambda p: p.stat().st_mtime)
    for old in reversed(olds):
        if (old / "model.json").is_file():
            old.rename(ckpt)
            return ckpt
    return None


def load_model_json(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint_dir, model.json)`` for a checkpoint or run folder.

    Raises:
        DataError: no checkpoint there.
    """
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise DataError(f"{path}: no model checkpoint found (expected model.json + model.safetensors, or a run folder holding checkpoint/)")
    return ckpt, json.loads((ckpt / "model.json").read_text())


def load_weights(ckpt: str | Path, *, verify: bool = True) -> dict[str, torch.Tensor]:
    """The exported network's weights; checks the sha256 recorded in model.json when ``verify``."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    path = ckpt / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    if verify:
        meta = json.loads((ckpt / "model.json").read_text())
        if meta.get("sha256") and meta["sha256"] != sha256_file(path):
            raise DataError(f"{path}: sha256 differs from the one in model.json (file changed or corrupt)")
    return load_file(str(path))


def load_train_state(ckpt: str | Path) -> dict[str, Any]:
    """``train_state.pt`` of a checkpoint (loaded on CPU)."""
    path = Path(ckpt) / "train_state.pt"
    if not path.is_file():
        raise DataError(f"{path}: not found (this checkpoint cannot be resumed)")
    return torch.load(path, map_location="cpu", weights_only=False)
