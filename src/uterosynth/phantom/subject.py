"""One phantom subject: sampled and rendered from its own seed stream, and its mid-sagittal slice."""

from __future__ import annotations

import numpy as np

from ..core.seeding import numpy_rng
from .anatomy import Subject, sample_subject
from .config import PhantomConfig
from .render import Rendered, render_subject

__all__ = ["generate_subject", "mid_slice"]


def generate_subject(cfg: PhantomConfig, k: int, *, orientation: str | None = None,
                     field_strength: str | None = None, salt: str = "") -> tuple[Subject, Rendered]:
    """Sample and render subject ``k`` of the cohort seeded by ``cfg.seed``."""
    rng = numpy_rng(cfg.seed, k, salt=salt)
    subject = sample_subject(rng, cfg, k, orientation=orientation, field_strength=field_strength)
    return subject, render_subject(subject, cfg, rng)


def mid_slice(rendered: Rendered) -> int:
    """Index (last IPR axis) of the sagittal slice holding most of the uterus."""
    counts = np.count_nonzero((rendered.seg == 1) | (rendered.seg == 2), axis=(0, 1))
    return int(np.argmax(counts)) if counts.any() else rendered.seg.shape[2] // 2
