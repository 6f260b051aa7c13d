"""Explicit randomness: global seeding for training, per-index generators for sampling."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "index_seed", "index_generator", "numpy_rng"]


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def index_seed(seed: int, index: int, *, salt: str = "") -> int:
    """A 63-bit seed for item ``index`` of a run seeded by ``seed``; independent of batching."""
    digest = hashlib.sha256(f"{seed}:{index}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def index_generator(seed: int, index: int, *, device: str | torch.device = "cpu", salt: str = "") -> torch.Generator:
    """A torch generator owned by item ``index``: the same numbers alone, in a batch or on any rank."""
    return torch.Generator(device=device).manual_seed(index_seed(seed, index, salt=salt))


def numpy_rng(seed: int, index: int = 0, *, salt: str = "") -> np.random.Generator:
    """A NumPy generator for item ``index`` (e.g. phantom subject k is the same whatever N is)."""
    return np.random.default_rng(index_seed(seed, index, salt=salt))
