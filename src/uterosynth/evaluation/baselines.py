"""Baseline synthetic sets from an autoencoder: reconstructions and decoded prior samples.

Two conventional references every generative model should beat (or approach):

* **reconstruction** — the real test split encoded and decoded (``decode(mu)``): the ceiling
  set by the autoencoder of a latent diffusion model;
* **prior** — ``z ~ N(0, I)`` in the latent space decoded: what the autoencoder alone generates
  (a VAE-style generative baseline the diffusion model must clearly improve on).

Both are written as ordinary synthetic sets, so ``uterosynth evaluate --baseline NAME=DIR``
evaluates them exactly like the model's samples. Any object with ``encode`` / ``decode`` and a
``latent_shape`` fits (:class:`Autoencoder`); images go in and come out in ``[0, 1]`` — an adapter
maps other intensity conventions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..artifacts import atomic_output_dir, provenance, write_json
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.synthetic import write_metadata
from ..errors import DataError
from ..seeding import index_generator

__all__ = ["Autoencoder", "AutoencoderAdapter", "make_baselines", "make_prior_baseline",
           "make_reconstruction_baseline", "write_synthetic_set"]


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
    """

    def __init__(self, module: torch.nn.Module, *, latent_shape: Sequence[int] | None = None,
                 image_shape: Sequence[int] | None = None, name: str = "autoencoder", sha256: str | None = None) -> None:
        self.module = module.eval()
        self.name, self.sha256 = name, sha256
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


def _preview(array: np.ndarray) -> np.ndarray:
    plane = array if array.ndim == 2 else array[:, :, array.shape[2] // 2]
    return (np.clip(plane, 0, 1) * 255).round().astype(np.uint8)


def write_synthetic_set(
    out: str | Path, arrays: np.ndarray, conditions: Sequence[Mapping[str, Any]], *, affine: np.ndarray | None = None,
    info: Mapping[str, Any] | None = None, overwrite: bool = False,
) -> Path:
    """Write arrays ``(N, H, W[, D])`` as a synthetic set (items, previews, ``metadata.jsonl``, ``synthetic.json``)."""
    import nibabel as nib
    from PIL import Image

    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    dims = arrays.ndim - 1
    info = dict(info or {})
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "items").mkdir()
        (tmp / "previews").mkdir()
        records = []
        for i, (array, cond) in enumerate(zip(arrays, conditions, strict=True)):
            stored = array[..., None] if dims == 2 else array
            nib.save(nib.Nifti1Image(stored.astype(np.float32), affine), str(tmp / "items" / f"{i:06d}.nii.gz"))
            Image.fromarray(_preview(array)).save(tmp / "previews" / f"{i:06d}.png")
            records.append({"index": i, "path": f"items/{i:06d}.nii.gz", "preview": f"previews/{i:06d}.png",
                            "condition": dict(cond), "seed": info.get("seed"), "sampler": info.get("kind"),
                            "model_hash": info.get("model_hash")})
        write_metadata(tmp / "metadata.jsonl", records)
        write_json(tmp / "synthetic.json", {**info, "dims": dims, "count": len(records)})
    return Path(out)


def _model_info(autoencoder: Autoencoder) -> dict[str, Any]:
    return {"model": getattr(autoencoder, "name", type(autoencoder).__name__),
            "model_hash": getattr(autoencoder, "sha256", None), "latent_shape": list(autoencoder.latent_shape)}


def make_reconstruction_baseline(
    autoencoder: Autoencoder, real: str | Path, out: str | Path, *, batch_size: int = 16, device: str = "cpu",
    overwrite: bool = False, seed: int = 0,
) -> Path:
    """Reconstructions ``decode(mu)`` of a prepared split (``DIR:split``, default ``test``) as a synthetic set.

    Each item keeps the real item's attributes as its ``condition``.

    Raises:
        DataError: the split is empty.
    """
    root, split = parse_dataset_ref(real)
    dataset = PreparedDataset.load(root, split or "test")
    if not len(dataset):
        raise DataError(f"{real}: no items to reconstruct")
    arrays = []
    for s in range(0, len(dataset), batch_size):
        rows = dataset.rows[s : s + batch_size]
        x = torch.from_numpy(np.stack([dataset.load_array(r) for r in rows]))[:, None].float().to(device)
        mu, _ = autoencoder.encode(x)
        arrays.append(autoencoder.decode(mu).clamp(0, 1)[:, 0].float().cpu().numpy())
    conditions = [{a: r.get(a, "") for a in dataset.attributes} for r in dataset.rows]
    info = {"kind": "reconstruction", "source": f"{root}:{split or 'test'}", "seed": seed, **_model_info(autoencoder),
            "provenance": provenance({"kind": "reconstruction", "source": str(real)}, seed)}
    return write_synthetic_set(out, np.concatenate(arrays), conditions, affine=dataset.info.get("affine"), info=info,
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
    arrays = []
    for s in range(0, n, batch_size):
        z = torch.stack([torch.randn(autoencoder.latent_shape, generator=index_generator(seed, i, salt="prior"))
                         for i in range(s, min(n, s + batch_size))]).to(device)
        arrays.append(autoencoder.decode(z).clamp(0, 1)[:, 0].float().cpu().numpy())
    info = {"kind": "prior", "seed": seed, **_model_info(autoencoder),
            "provenance": provenance({"kind": "prior", "n": n}, seed)}
    return write_synthetic_set(out, np.concatenate(arrays), [{}] * n, affine=affine, info=info, overwrite=overwrite)


def make_baselines(
    autoencoder_path: str | Path, real: str | Path, out: str | Path, *, n_prior: int | None = None, seed: int = 0,
    device: str = "cpu", overwrite: bool = False,
) -> dict[str, Path]:
    """Both baselines of a trained autoencoder checkpoint: ``out/reconstruction`` and ``out/prior``.

    ``real`` is ``DIR[:split]`` (default ``test``); ``n_prior`` defaults to the size of that
    split, so both baselines have as many items as the real set they stand beside.

    Raises:
        UserError: the checkpoint is not an autoencoder; ``out`` exists without ``overwrite``.
        DataError: the split is empty.
    """
    from ..models.latent import load_autoencoder

    out = Path(out)
    module, meta, _ = load_autoencoder(autoencoder_path, device=device)
    root, split = parse_dataset_ref(real)
    dataset = PreparedDataset.load(root, split or "test")
    adapter = AutoencoderAdapter(module, image_shape=[int(s) for s in dataset.info["shape"]],
                                 name=f"autoencoder:{Path(autoencoder_path).name}", sha256=meta.get("sha256"))
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        made = {
            "reconstruction": make_reconstruction_baseline(adapter, f"{root}:{split or 'test'}", tmp / "reconstruction",
                                                           device=device, seed=seed),
            "prior": make_prior_baseline(adapter, n_prior or len(dataset), tmp / "prior", seed=seed, device=device,
                                         affine=dataset.info.get("affine")),
        }
    return {name: out / path.name for name, path in made.items()}
