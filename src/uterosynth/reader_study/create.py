"""Build a balanced, blinded, randomised reader study from a prepared dataset and a synthetic set.

Selection: ``per_source`` real and ``per_source`` synthetic items; when the two sources share
condition attributes (``class_by``) every class gets the same number of items from each
source, spread as evenly over the classes as the data allow. The seed chooses *which* items
are drawn and nothing else.

Blinding: every order a rater could observe comes from the operating system's CSPRNG
(:func:`.security.secure_permutation`), not from the seed: the list of chosen items is shuffled
(so real and synthetic items are interleaved, also in ``key.json``), every rater gets their own
permutation, and items are rendered to disk in another one. The drawn orders are stored in
``study.json``, so a study is reproducible from its own files but not from its inputs: knowing
the code, the seed and the data predicts nothing about a position. Items are rendered by one
code path (:mod:`.render`) under random ids, so neither file names, ids, sizes, grey-level
windows, PNG chunks nor file times tell the sources apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import atomic_output_dir, provenance, write_json
from ..core.errors import ConfigError, DataError
from ..core.seeding import numpy_rng
from ..data.manifest import PreparedDataset
from ..data.synthetic import SyntheticSet
from .config import StudyConfig
from .render import display_shape, render_slices
from .security import hash_token, new_id, new_token, secure_permutation

__all__ = ["CreatedStudy", "create_study", "allocate", "rater_link"]


@dataclass(frozen=True)
class CreatedStudy:
    """What ``create_study`` made; the tokens exist only here (hashes are stored)."""

    root: Path
    links: dict[str, str]
    admin_token: str
    n_items: int
    classes: dict[str, int]


@dataclass(frozen=True)
class _Candidate:
    source: str
    class_label: str
    origin: str
    load: Callable[[], np.ndarray]


def rater_link(base_url: str, token: str) -> str:
    """The secret link of a rater; the token sits in the fragment, so it never reaches logs."""
    return f"{base_url.rstrip('/')}/rate#t={token}"


def allocate(capacity: Mapping[str, int], total: int, rng: np.random.Generator) -> dict[str, int]:
    """Spread ``total`` over classes as evenly as their ``capacity`` allows (round robin).

    Raises:
        DataError: the classes together hold fewer than ``total`` items.
    """
    if sum(capacity.values()) < total:
        detail = ", ".join(f"{c or 'all'}: {n}" for c, n in capacity.items())
        raise DataError(
            f"per_source {total} needs {total} items from each source, but only "
            f"{sum(capacity.values())} can be balanced ({detail}); lower per_source or set class_by to none",
            keys=("per_source", "class_by"),
        )
    order = list(capacity)
    rng.shuffle(order)
    quota = dict.fromkeys(order, 0)
    left = total
    while left:
        for c in order:
            if left and quota[c] < capacity[c]:
                quota[c] += 1
                left -= 1
    return {c: quota[c] for c in sorted(quota)}


def _class_keys(cfg: StudyConfig, real_attrs: Sequence[str], records: Sequence[Mapping[str, Any]]) -> list[str]:
    common = [a for a in real_attrs if all(a in (r.get("condition") or {}) for r in records)]
    if cfg.class_by is None:
        return common
    for key in cfg.class_by:
        if key not in common:
            raise ConfigError(
                f"class_by: '{key}' is not an attribute of both sources (shared: {', '.join(common) or 'none'})"
            )
    return list(cfg.class_by)


def _label(values: Mapping[str, Any], keys: Sequence[str]) -> str:
    return "|".join(f"{k}={values[k]}" for k in keys)


def _candidates(real_ref: str, synthetic_dir: str | Path, cfg: StudyConfig) -> tuple[list[_Candidate], int]:

    real = PreparedDataset.load(real_ref)
    syn = SyntheticSet.load(synthetic_dir)
    if len(syn) == 0:
        raise DataError(f"{synthetic_dir}: synthetic set has no items")
    syn_dims = syn.dims or syn.load_array(syn.records[0]).ndim
    if int(syn_dims) != real.dims:
        raise DataError(
            f"{synthetic_dir}: synthetic items are {syn_dims}D but {real.root} holds {real.dims}D items; "
            "compare sets of the same dimensionality"
        )
    keys = _class_keys(cfg, real.attributes, syn.records)
    out = [
        _Candidate("real", _label(row, keys), row["path"], lambda row=row: real.load_array(row))
        for row in real.rows
    ]
    out += [
        _Candidate("synthetic", _label(rec.get("condition") or {}, keys), str(rec["path"]),
                   lambda rec=rec: syn.load_array(rec))
        for rec in syn.records
    ]
    return out, real.dims


def _select(cands: list[_Candidate], cfg: StudyConfig, rng: np.random.Generator) -> list[_Candidate]:
    by: dict[tuple[str, str], list[_Candidate]] = {}
    for c in cands:
        by.setdefault((c.source, c.class_label), []).append(c)
    classes = sorted({lab for (src, lab) in by if src == "real"} & {lab for (src, lab) in by if src == "synthetic"})
    if not classes:
        raise DataError("no class is present in both the real and the synthetic set; set class_by to none",
                        keys=("class_by",))
    capacity = {c: min(len(by[("real", c)]), len(by[("synthetic", c)])) for c in classes}
    quota = allocate(capacity, cfg.per_source, rng)
    chosen: list[_Candidate] = []
    for source in ("real", "synthetic"):
        for c in classes:
            pool = by[(source, c)]
            picks = sorted(rng.choice(len(pool), size=quota[c], replace=False).tolist())
            chosen += [pool[i] for i in picks]
    return chosen


def create_study(
    real: str | Path,
    synthetic: str | Path,
    out: str | Path,
    cfg: StudyConfig,
    *,
    overwrite: bool = False,
    on_item: Callable[[int, int], None] | None = None,
) -> CreatedStudy:
    """Select, render and write a study folder (layout in :mod:`.study`).

    Args:
        real: prepared dataset, optionally ``DIR:split``.
        synthetic: synthetic set folder.
        out: study folder to write (atomically).
        cfg: selection, rendering and rater options.
        overwrite: replace ``out`` if it exists.
        on_item: progress callback ``(done, total)``.

    Returns:
        The rater links and admin token (shown once; only their hashes are stored).

    Raises:
        DataError: inputs unreadable, of different dimensionality, or too few items to balance.
        ConfigError: a ``class_by`` attribute is not shared by both sources.
    """
    cands, dims = _candidates(str(real), synthetic, cfg)
    selected = _select(cands, cfg, numpy_rng(cfg.seed, 0, salt="select"))  # which items: seeded
    chosen = [selected[i] for i in secure_permutation(len(selected))]  # their order: secret
    first_real = next(c for c in chosen if c.source == "real").load()
    shape = display_shape(first_real.shape, cfg.size)
    n_slices = 1 if dims == 2 else int(shape[2])

    # Render in a secret order under random ids: nothing on disk orders the sources.
    render_order = secure_permutation(len(chosen))
    item_ids = [new_id(16) for _ in chosen]
    raters, links = [], {}
    for name in cfg.raters:
        order = secure_permutation(len(chosen))
        token = new_token()
        links[name] = rater_link(cfg.base_url, token)
        raters.append({"name": name, "token_sha256": hash_token(token),
                       "assignments": [[new_id(12), item_ids[i]] for i in order]})
    admin_token = new_token()

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for done, i in enumerate(render_order, start=1):
            array = chosen[i].load()
            if array.ndim != dims:
                raise DataError(f"{chosen[i].origin}: expected a {dims}D item, found shape {array.shape}")
            folder = tmp / "images" / item_ids[i]
            folder.mkdir(parents=True)
            for k, png in enumerate(render_slices(array, shape, low_pct=cfg.low_pct, high_pct=cfg.high_pct)):
                (folder / f"{k:04d}.png").write_bytes(png)
            if on_item is not None:
                on_item(done, len(chosen))
        write_json(tmp / "key.json", {
            "items": {item_ids[i]: {"source": c.source, "class": c.class_label, "origin": c.origin}
                      for i, c in enumerate(chosen)},
        })
        write_json(tmp / "study.json", {
            "provenance": provenance(cfg, cfg.seed),
            "study_id": new_id(16),
            "title": cfg.title,
            "dims": dims,
            "display_shape": list(shape),
            "n_slices": n_slices,
            "inputs": {"real": str(real), "synthetic": str(synthetic)},
            "admin_token_sha256": hash_token(admin_token),
            "raters": raters,
        })
    classes: dict[str, int] = {}
    for c in chosen:
        if c.source == "real":
            classes[c.class_label] = classes.get(c.class_label, 0) + 1
    return CreatedStudy(Path(out), links, admin_token, len(chosen), classes)
