"""Baseline synthetic sets from an autoencoder: reconstructions and decoded prior samples.

Two conventional references every generative model should beat (or approach):

* **reconstruction** — the real test split encoded and decoded (``decode(mu)``): the ceiling
  set by the autoencoder of a latent diffusion model;
* **prior** — ``z ~ N(0, I)`` in the latent space decoded: what the autoencoder alone generates
  (a VAE-style generative baseline the diffusion model must clearly improve on);
* **class prior** — the class-conditional version: per class (one or more attributes), a
  diagonal Gaussian fitted to the encoded *training* items of that class, sampled and decoded.
  Its items carry their class, so they can train a classifier (the downstream protocol
  "real + autoencoder-prior samples") and be scored for conditioning fidelity.

All three are written as ordinary synthetic sets (:func:`uterosynth.data.synthetic.write_synthetic_set`), so ``uterosynth evaluate --baseline NAME=DIR``
evaluates them exactly like the model's samples. Any object with ``encode`` / ``decode`` and a
``latent_shape`` fits (:class:`Autoencoder`); images go in and come out in ``[0, 1]`` — an adapter
maps other intensity conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..core.artifacts import atomic_output_dir, provenance
from ..core.errors import DataError
from ..core.seeding import index_generator
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.subjects import check_disjoint, merge_subjects, training_subjects
from ..data.synthetic import write_synthetic_set
from ..models.latent import load_autoencoder

__all__ = ["Autoencoder", "AutoencoderAdapter", "make_baselines", "make_class_prior_baseline", "make_prior_baseline",
           "make_reconstruction_baseline"]


@runtime_checkable
class Autoencoder(Protocol):
    """``encode(x) -> (mu, sigma)``, ``decode(z) -> x``; ``x`` ``(N, 1, *spatial)`` in ``[0, 1]``,
    ``z`` ``(N, *latent_shape)`` with ``latent_shape = (C, *latent_spatial)``."""

    latent_shape: tuple[int, ...]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


class AutoencoderAdapter:
    """Wrap a module with ``encode``/``decode`` (e.g. MONAI ``AutoencoderKL``) and give it a latent shape.

    Args:
        module: the network (put in eval mode).
        latent_shape: ``(C, *latent_spatial)``; inferred from ``image_shape`` when omitted.
        image_shape: ``(H, W[, D])`` used to infer the latent shape.
        name: recorded in ``synthetic.json``; ``sha256``: the checkpoint's hash if known.
        training_subjects: the checkpoint's hashed training subjects, recorded in ``synthetic.json``.
    """

    def __init__(self, module: torch.nn.Module, *, latent_shape: Sequence[int] | None = None,
                 image_shape: Sequence[int] | None = None, name: str = "autoencoder", sha256: str | None = None,
                 training_subjects: dict[str, Any] | None = None) -> None:
        self.module = module.eval()
        self.name, self.sha256 = name, sha256
        self.training_subjects = training_subjects
        if latent_shape is None:
            if image_shape is None:
                raise ValueError("give latent_shape or image_shape")
            with torch.no_grad():
                probe = torch.zeros(1, 1, *image_shape, device=next(module.parameters()).device)
                mu, _ = module.encode(probe)
            latent_shape = tuple(mu.shape[1:])
        self.latent_shape = tuple(int(s) for s in latent_shape)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module.encode(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.module.decode(z)


def _model_info(autoencoder: Autoencoder) -> dict[str, Any]:
    """What ``synthetic.json`` says of the generator, its hashed ``training_subjects`` included."""
    return {"model": getattr(autoencoder, "name", type(autoencoder).__name__),
            "model_hash": getattr(autoencoder, "sha256", None), "latent_shape": list(autoencoder.latent_shape),
            "training_subjects": getattr(autoencoder, "training_subjects", None)}


@torch.inference_mode()
def _encode_split(autoencoder: Autoencoder, dataset: PreparedDataset, batch_size: int, device: str) -> torch.Tensor:
    """Posterior means ``mu`` of every item of a prepared split, in row order."""
    means = []
    for s in range(0, len(dataset), batch_size):
        rows = dataset.rows[s : s + batch_size]
        x = torch.from_numpy(np.stack([dataset.load_array(r) for r in rows]))[:, None].float().to(device)
        means.append(autoencoder.encode(x)[0].float().cpu())
    return torch.cat(means)


@torch.inference_mode()
def _decode(autoencoder: Autoencoder, latents: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    """Decoded images ``(N, *spatial)`` in ``[0, 1]``."""
    return np.concatenate([autoencoder.decode(latents[s : s + batch_size].to(device)).clamp(0, 1)[:, 0].float().cpu().numpy()
                           for s in range(0, len(latents), batch_size)])


def _load_split(real: str | Path, default_split: str) -> tuple[Path, str, PreparedDataset]:
    root, split = parse_dataset_ref(real)
    split = split or default_split
    dataset = PreparedDataset.load(root, split)
    if not len(dataset):
        raise DataError(f"{root}: split '{split}' has no items")
    return Path(root), split, dataset


def make_reconstruction_baseline(
    autoencoder: Autoencoder, real: str | Path, out: str | Path, *, batch_size: int = 16, device: str = "cpu",
    overwrite: bool = False, seed: int = 0,
) -> Path:
    """Reconstructions ``decode(mu)`` of a prepared split (``DIR:split``, default ``test``) as a synthetic set.

    Each item keeps the real item's attributes as its ``condition``; ``synthetic.json`` records the
    reconstructed subjects, hashed, as ``source_subjects``.

    Raises:
        DataError: the split is empty.
    """
    root, split, dataset = _load_split(real, "test")
    arrays = _decode(autoencoder, _encode_split(autoencoder, dataset, batch_size, device), batch_size, device)
    conditions = [{a: r.get(a, "") for a in dataset.attributes} for r in dataset.rows]
    info = {"kind": "reconstruction", "source": f"{root}:{split}", "seed": seed, **_model_info(autoencoder),
            "source_subjects": training_subjects(dataset, (split,)),
            "provenance": provenance({"kind": "reconstruction", "source": str(real)}, seed)}
    return write_synthetic_set(out, arrays, conditions, affine=dataset.info.get("affine"), info=info,
                               overwrite=overwrite)


def make_prior_baseline(
    autoencoder: Autoencoder, n: int, out: str | Path, *, seed: int = 0, batch_size: int = 16, device: str = "cpu",
    affine: np.ndarray | None = None, overwrite: bool = False,
) -> Path:
    """``n`` decoded samples of the prior ``z ~ N(0, I)`` (item ``i`` seeded by ``(seed, i)``, batching-independent).

    Prior samples are unconditional: their ``condition`` is empty, so conditioning fidelity
    does not apply to them.
    """
    if n < 1:
        raise DataError(f"prior baseline: n must be >= 1, got {n}")
    z = torch.stack([torch.randn(autoencoder.latent_shape, generator=index_generator(seed, i, salt="prior"))
                     for i in range(n)])
    info = {"kind": "prior", "seed": seed, **_model_info(autoencoder),
            "provenance": provenance({"kind": "prior", "n": n}, seed)}
    return write_synthetic_set(out, _decode(autoencoder, z, batch_size, device), [{}] * n, affine=affine, info=info,
                               overwrite=overwrite)


def _check_attributes(dataset: PreparedDataset, by: Sequence[str]) -> None:
    missing = [a for a in by if a not in dataset.attributes]
    if not by or missing:
        raise DataError(f"{dataset.root / 'manifest.csv'}: class prior needs attributes of the manifest "
                        f"({', '.join(dataset.attributes)}); got {', '.join(missing) or 'none'}")


def make_class_prior_baseline(
    autoencoder: Autoencoder, fit: str | Path, by: Sequence[str], n: int | None, out: str | Path, *, seed: int = 0,
    batch_size: int = 16, device: str = "cpu", overwrite: bool = False,
) -> Path:
    """``n`` decoded samples of per-class diagonal Gaussians fitted to the encoded items of ``fit``.

    ``fit`` is ``DIR[:split]`` (default ``train``: never fit on the test split a classifier is
    scored on); ``n`` defaults to the size of that split. A class is one combination of the ``by``
    attributes' values found there (items lacking one are left out and counted in
    ``synthetic.json``). Item ``i`` belongs to class ``i mod K`` (classes sorted), so the set is
    balanced, and is ``mean_c + std_c * eps_i`` with ``eps_i`` seeded by ``(seed, i)``. Like the
    reconstruction baseline it uses the labels of every item of ``fit``. Its generator's
    ``training_subjects`` are the autoencoder's and those of ``fit``.

    Raises:
        DataError: ``n < 1``, no attribute given, an attribute the manifest lacks, no item
            carries every attribute, or a class has fewer than two items (no spread to fit).
    """
    root, split, dataset = _load_split(fit, "train")
    n = len(dataset) if n is None else n
    if n < 1:
        raise DataError(f"class prior baseline: n must be >= 1, got {n}")
    by = list(by)
    _check_attributes(dataset, by)
    keys = [tuple(str(r.get(a, "")) for a in by) for r in dataset.rows]
    classes = sorted({k for k in keys if all(k)})
    if not classes:
        raise DataError(f"{root / 'manifest.csv'}: no item of split '{split}' has a value for every one of {by}")
    counts = {c: sum(k == c for k in keys) for c in classes}
    small = {"/".join(c): m for c, m in counts.items() if m < 2}
    if small:
        raise DataError(f"{root / 'manifest.csv'}: split '{split}' has fewer than two items of class(es) {small}: "
                        "a class prior needs a spread to fit")
    mu = _encode_split(autoencoder, dataset, batch_size, device)
    stats = {}
    for c in classes:
        members = mu[torch.tensor([k == c for k in keys])]
        stats[c] = (members.mean(0), members.std(0))
    item_class = [classes[i % len(classes)] for i in range(n)]
    z = torch.stack([stats[c][0] + stats[c][1]
                     * torch.randn(autoencoder.latent_shape, generator=index_generator(seed, i, salt="class_prior"))
                     for i, c in enumerate(item_class)])
    conditions = [dict(zip(by, c, strict=True)) for c in item_class]
    info = {"kind": "class_prior", "fit": f"{root}:{split}", "by": by, "seed": seed, **_model_info(autoencoder),
            "training_subjects": merge_subjects(autoencoder=getattr(autoencoder, "training_subjects", None),
                                                class_prior=training_subjects(dataset, (split,))),
            "fit_items_per_class": {"/".join(c): counts[c] for c in classes},
            "fit_items_left_out": sum(not all(k) for k in keys),
            "provenance": provenance({"kind": "class_prior", "n": n, "by": by, "fit": str(fit)}, seed)}
    return write_synthetic_set(out, _decode(autoencoder, z, batch_size, device), conditions,
                               affine=dataset.info.get("affine"), info=info, overwrite=overwrite)


def make_baselines(
    autoencoder_path: str | Path, real: str | Path, out: str | Path, *, n_prior: int | None = None, seed: int = 0,
    device: str = "cpu", overwrite: bool = False, prior_by: Sequence[str] = (), allow_overlap: bool = False,
) -> dict[str, Path]:
    """The baselines of a trained autoencoder checkpoint: ``out/reconstruction``, ``out/prior``
    and, when ``prior_by`` names attributes, ``out/class_prior`` (fitted on the ``train`` split of
    the same dataset).

    ``real`` is ``DIR[:split]`` (default ``test``); ``n_prior`` defaults to the size of that
    split for the prior (as many items as the real set it stands beside) and to the size of the
    train split for the class prior (enough for the downstream ratios).

    Raises:
        DataError: the checkpoint is not an autoencoder; ``out`` exists without ``overwrite``.
        DataError: the split is empty; a ``prior_by`` attribute the manifest lacks; the
            autoencoder was trained on subjects of the split (unless ``allow_overlap``).
    """
    out = Path(out)
    module, meta, _ = load_autoencoder(autoencoder_path, device=device)
    root, split, dataset = _load_split(real, "test")
    check_disjoint(meta.get("training_subjects"), dataset.subjects(), allow_overlap=allow_overlap,
                   what=f"autoencoder {autoencoder_path} vs the reconstructed split {root}:{split}")
    adapter = AutoencoderAdapter(module, image_shape=[int(s) for s in dataset.info["shape"]],
                                 name=f"autoencoder:{Path(autoencoder_path).name}", sha256=meta.get("sha256"),
                                 training_subjects=meta.get("training_subjects"))
    n = n_prior or len(dataset)
    if prior_by:
        _check_attributes(dataset, prior_by)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        made = {
            "reconstruction": make_reconstruction_baseline(adapter, f"{root}:{split}", tmp / "reconstruction",
                                                           device=device, seed=seed),
            "prior": make_prior_baseline(adapter, n, tmp / "prior", seed=seed, device=device,
                                         affine=dataset.info.get("affine")),
        }
        if prior_by:
            made["class_prior"] = make_class_prior_baseline(adapter, f"{root}:train", prior_by, n_prior,
                                                            tmp / "class_prior", seed=seed, device=device)
    return {name: out / path.name for name, path in made.items()}
