"""Training protocols of the downstream experiment and the training set each one sees.

Every protocol is trained on a label budget of real training subjects (except synthetic only)
and tested on the real test split only:

========================  ===============================================================
``real``                  the budget's real images
``real+augment``          the same, with classical MONAI augmentation during training
``real+<set>@S:R``        the budget's real images plus synthetic images of ``<set>``,
                          ``S`` synthetic per ``R`` real by count (baseline sets use
                          ``protocols.baseline_ratio``; the diffusion set every value of
                          ``protocols.ratios``)
``<set>_only``            synthetic images only (all of the set); independent of the budget
========================  ===============================================================

Synthetic images are drawn class by class in turn (round-robin over the classes, each class
in a seeded random order), so larger mixing ratios hold the images of smaller ones and the
classes are as equal as the set allows. When a set holds fewer images than a ratio asks for,
all are used and the run records the count it actually got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..core.errors import ConfigError
from ..core.seeding import numpy_rng
from ..data.image_set import ImageSet
from .config import DownstreamConfig, parse_ratio

__all__ = [
    "Protocol",
    "build_protocols",
    "choose_diffusion_set",
    "class_counts",
    "select_synthetic",
    "synthetic_count",
    "training_set",
]


@dataclass(frozen=True)
class Protocol:
    """One way of building a training set."""

    id: str
    kind: str  # "real" | "augment" | "baseline" | "mix" | "synthetic_only"
    set: str | None = None
    ratio: str | None = None

    @property
    def budget_independent(self) -> bool:
        return self.kind == "synthetic_only"

    @property
    def augment(self) -> bool:
        return self.kind == "augment"

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "set": self.set, "ratio": self.ratio,
                "budget_independent": self.budget_independent}


def choose_diffusion_set(names: Sequence[str], configured: str | None) -> str | None:
    """The set used for mixing ratios: ``configured``, else one named ``diffusion``, else the first.

    Raises:
        ConfigError: ``configured`` names no given set.
    """
    if configured is not None:
        if configured not in names:
            raise ConfigError(
                f"diffusion_set '{configured}' is not among the synthetic sets given "
                f"({', '.join(names) or 'none'}); name a set NAME=DIR in synthetic", keys=("synthetic", "diffusion_set")
            )
        return configured
    if not names:
        return None
    return "diffusion" if "diffusion" in names else names[0]


def build_protocols(cfg: DownstreamConfig, set_names: Sequence[str]) -> list[Protocol]:
    """The protocols the config asks for, given the names of the synthetic sets."""
    p = cfg.protocols
    diffusion = choose_diffusion_set(set_names, cfg.diffusion_set)
    out = [Protocol("real", "real")]
    if p.augment:
        out.append(Protocol("real+augment", "augment"))
    if p.baselines:
        out += [Protocol(f"real+{n}@{p.baseline_ratio}", "baseline", n, p.baseline_ratio)
                for n in set_names if n != diffusion]
    if diffusion is not None:
        out += [Protocol(f"real+{diffusion}@{r}", "mix", diffusion, r) for r in p.ratios]
        if p.synthetic_only != "none":
            only = [diffusion] + ([n for n in set_names if n != diffusion] if p.synthetic_only == "all" else [])
            out += [Protocol(f"{n}_only", "synthetic_only", n) for n in only]
    return out


def synthetic_count(ratio: str, n_real: int) -> int:
    """Synthetic images asked for by ``ratio`` (synthetic:real) next to ``n_real`` real ones."""
    syn, real = parse_ratio(ratio)
    return int(round(n_real * syn / real))


def select_synthetic(pool: ImageSet, n: int, num_classes: int, seed: int) -> ImageSet:
    """``n`` images of ``pool`` drawn round-robin over classes (nested in ``n``; seeded)."""
    rng = numpy_rng(seed, 0, salt=f"downstream-synthetic-{pool.origins[0] if len(pool) else ''}")
    labels = pool.labels.numpy()
    queues = []
    for c in range(num_classes):
        idx = (labels == c).nonzero()[0]
        queues.append(list(idx[rng.permutation(len(idx))]))
    chosen: list[int] = []
    depth = max((len(q) for q in queues), default=0)
    for k in range(depth):
        for q in queues:
            if k < len(q):
                chosen.append(int(q[k]))
    return pool.subset(chosen[: max(0, n)])


def training_set(
    protocol: Protocol,
    real_budget: ImageSet,
    synthetic: Mapping[str, ImageSet],
    *,
    num_classes: int,
    seed: int,
    synthetic_only_max_items: int | None = None,
) -> ImageSet:
    """The images ``protocol`` trains on for one budget and seed."""
    if protocol.kind in ("real", "augment"):
        return real_budget
    pool = synthetic[protocol.set]
    if protocol.kind == "synthetic_only":
        n = len(pool) if synthetic_only_max_items is None else min(len(pool), synthetic_only_max_items)
        return select_synthetic(pool, n, num_classes, seed)
    n = synthetic_count(protocol.ratio, len(real_budget))
    return ImageSet.concat([real_budget, select_synthetic(pool, n, num_classes, seed)])


def class_counts(images: ImageSet, classes: Sequence[str]) -> dict[str, int]:
    counts = torch.bincount(images.labels, minlength=len(classes)).tolist() if len(images) else [0] * len(classes)
    return dict(zip(classes, (int(c) for c in counts), strict=True))

