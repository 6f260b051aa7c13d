"""Latents of a trained autoencoder: cached μ/σ per item, the scale factor, and tiled decoding.

Latent cache contract (read by the latent diffusion stage)::

    latents/
      items/<item_id>.safetensors   tensors ``mean`` and ``std``, each (latent_channels, *latent_spatial)
      latents.csv                   item_id, path, subject, split, then the dataset's attribute columns
      latents.json                  provenance + ``scale_factor``, ``autoencoder`` {path, sha256},
                                    ``latent_shape``, ``latent_channels``, ``dims``, ``dataset``

The scale factor (Rombach et al. 2022 §4.3, "rescale the latent space to unit variance") is
``1 / std(z)`` over the training split, where ``z = μ + σ ε`` is the sampled latent. From the
cached moments it is exact: ``Var(z) = E[μ²] + E[σ²] − E[μ]²`` over all latent elements. It is
stored with the autoencoder as ``latent_scale.json`` beside ``model.json`` the first time a
dataset is encoded; later encodings reuse it, so every stage uses one value. A consumer must
check that ``latents.json["autoencoder"]["sha256"]`` equals the ``sha256`` in the model.json of
the autoencoder it decodes with.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..core.artifacts import atomic_output_dir, provenance, read_json, write_json
from ..core.checkpoint import load_model_json, load_weights
from ..core.errors import ConfigError, DataError
from ..data.dataset import make_loader
from ..data.manifest import PreparedDataset
from .autoencoder import AutoencoderConfig, build_autoencoder

__all__ = [
    "LatentCache",
    "load_autoencoder",
    "encode_dataset",
    "latent_std",
    "estimate_decode_bytes",
    "pick_tile",
    "decode_tiled",
    "LATENT_SCALE_FILE",
]

LATENT_SCALE_FILE = "latent_scale.json"


@dataclass
class LatentCache:
    """A latent cache folder: its rows (one per item) and ``latents.json``."""

    root: Path
    rows: list[dict[str, str]]
    info: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> LatentCache:
        root = Path(root)
        info_path, table = root / "latents.json", root / "latents.csv"
        for path in (info_path, table):
            if not path.is_file():
                raise DataError(f"{path}: not found (is this a latent cache? run 'uterosynth encode')")
        info = json.loads(info_path.read_text())
        with open(table, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return cls(root, rows, info)

    @property
    def scale_factor(self) -> float:
        return float(self.info["scale_factor"])

    @property
    def autoencoder_sha256(self) -> str:
        return str(self.info["autoencoder"]["sha256"])

    @property
    def dims(self) -> int:
        return int(self.info["dims"])

    def split(self, name: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["split"] == name]

    def load_item(self, row: dict[str, str]) -> dict[str, torch.Tensor]:
        """The cached moments ``{"mean", "std"}`` of one row.

        Raises:
            DataError: the item's file cannot be read.
        """
        path = self.root / row["path"]
        try:
            return load_file(str(path))
        except Exception as err:
            raise DataError(f"{path}: cannot read cached latent ({err})") from err


def load_autoencoder(path: str | Path, *, device: str | torch.device = "cpu"):
    """``(autoencoder in eval mode, model.json, checkpoint_dir)`` from a checkpoint or run folder.

    Raises:
        DataError: no checkpoint, not an autoencoder, or weights that do not match model.json.
    """

    ckpt, meta = load_model_json(path)
    if meta.get("kind") != "autoencoder":
        raise DataError(f"{ckpt / 'model.json'}: kind is {meta.get('kind')!r}, expected 'autoencoder'")
    model = build_autoencoder(AutoencoderConfig.model_validate(meta["network"]))
    model.load_state_dict(load_weights(ckpt))
    return model.to(device).eval(), meta, ckpt


def latent_std(sum_mu: float, sum_mu2: float, sum_sigma2: float, count: int) -> float:
    """Standard deviation of sampled latents from summed moments of μ and σ² over ``count`` elements."""
    mean = sum_mu / count
    var = sum_mu2 / count + sum_sigma2 / count - mean**2
    return math.sqrt(max(var, 1e-12))


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def encode_dataset(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    batch_size: int = 8,
    device: str = "auto",
    overwrite: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Encode every item of a prepared dataset; write the latent cache described in the module doc.

    Raises:
        DataError: the dataset is missing, or has no training items while no scale factor exists.
        ConfigError: the dataset's dimensionality or shape does not fit the autoencoder.
    """

    dev = _resolve_device(device)
    dataset = PreparedDataset.load(data)
    ae, meta, ckpt = load_autoencoder(model, device=dev)
    if dataset.dims != meta["spatial_dims"]:
        raise ConfigError(
            f"autoencoder {ckpt} is {meta['spatial_dims']}D but dataset {dataset.root} holds {dataset.dims}D items"
        )
    factor = int(meta["downsample_factor"])
    shape = [int(s) for s in dataset.info.get("shape", [])]
    if any(s % factor for s in shape):
        raise ConfigError(f"dataset {dataset.root}: shape {shape} is not divisible by the downsampling factor {factor}")
    scale_path = ckpt / LATENT_SCALE_FILE
    stored = read_json(scale_path) if scale_path.is_file() else None
    if stored is None and not any(r["split"] == "train" for r in dataset.rows):
        raise DataError(
            f"dataset {dataset.root}: no 'train' items to compute the latent scale factor from, and "
            f"{scale_path} does not exist yet; encode the training dataset first"
        )
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False)
    sums = [0.0, 0.0, 0.0]
    count = 0
    done = 0
    latent_shape: list[int] = []
    rows_by_id = {r["item_id"]: r for r in dataset.rows}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "items").mkdir()
        for batch in loader:
            x = batch["image"].to(dev)
            mu, sigma = ae.encode(x)
            mu, sigma = mu.float().cpu(), sigma.float().cpu()
            latent_shape = list(mu.shape[1:])
            for i, item_id in enumerate(batch["item_id"]):
                save_file({"mean": mu[i].contiguous(), "std": sigma[i].contiguous()}, str(tmp / "items" / f"{item_id}.safetensors"))
                if rows_by_id[item_id]["split"] == "train":
                    sums[0] += float(mu[i].double().sum())
                    sums[1] += float(mu[i].double().pow(2).sum())
                    sums[2] += float(sigma[i].double().pow(2).sum())
                    count += mu[i].numel()
            done += x.shape[0]
            if on_batch is not None:
                on_batch(done, len(dataset))
        computed = 1.0 / latent_std(*sums, count) if count else None
        if stored is not None:
            scale, source = float(stored["scale_factor"]), str(scale_path)
            if computed is not None and abs(computed - scale) > 0.01 * abs(scale):
                warnings.warn(
                    f"{scale_path}: stored scale factor {scale:.5g} kept (this dataset's training latents give "
                    f"{computed:.5g}); delete the file to recompute", stacklevel=2,
                )
        else:
            scale, source = float(computed), "computed"  # type: ignore[arg-type]
            write_json(scale_path, {
                **provenance(None, None), "scale_factor": scale, "latent_std": 1.0 / scale,
                "autoencoder_sha256": meta["sha256"], "dataset": str(dataset.root),
                "train_latent_elements": count,
            })
        attrs = dataset.attributes
        with open(tmp / "latents.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["item_id", "path", "subject", "split", *attrs])
            writer.writeheader()
            for r in dataset.rows:
                writer.writerow({"item_id": r["item_id"], "path": f"items/{r['item_id']}.safetensors",
                                 "subject": r["subject"], "split": r["split"], **{a: r.get(a, "") for a in attrs}})
        info = {
            **provenance({"model": str(model), "data": str(data), "batch_size": batch_size}, None),
            "scale_factor": scale,
            "scale_source": source,
            "scale_computed_here": computed,
            "autoencoder": {"path": str(ckpt), "sha256": meta["sha256"], "network": meta["network"]},
            "dims": dataset.dims,
            "latent_channels": latent_shape[0] if latent_shape else None,
            "latent_shape": latent_shape,
            "image_shape": shape,
            "dataset": str(dataset.root),
            "attributes": attrs,
            "items": len(dataset),
        }
        write_json(tmp / "latents.json", info)
    return {"out": str(out), "items": len(dataset), "scale_factor": scale, "scale_source": source,
            "latent_shape": latent_shape, "autoencoder_sha256": meta["sha256"]}


def estimate_decode_bytes(cfg: AutoencoderConfig, latent_tile: Sequence[int], *, bytes_per_value: int = 4,
                          live_tensors: int = 8) -> int:
    """Rough peak activation memory of decoding one latent tile ``(*latent_spatial)``.

    Sums ``channels × voxels`` over the decoder's resolution levels and multiplies by the
    number of tensors a residual block keeps alive (``live_tensors``); a deliberate
    over-estimate, since no library predicts it.
    """
    voxels = math.prod(int(s) for s in latent_tile)
    d = len(latent_tile)
    total = 0
    for level, ch in enumerate(reversed(cfg.channels)):
        total += ch * voxels * (2 ** (level * d))
    return total * bytes_per_value * live_tensors


def pick_tile(
    cfg: AutoencoderConfig, latent_shape: Sequence[int], memory_budget_mb: float, *, halo: int = 0, min_side: int = 4
) -> tuple[int, ...]:
    """Largest latent tile (halving the longest side) whose decode, halo included, fits ``memory_budget_mb``.

    Raises:
        ConfigError: even the smallest tile exceeds the budget.
    """
    budget = memory_budget_mb * 2**20
    tile = [int(s) for s in latent_shape]
    while estimate_decode_bytes(cfg, [min(t + 2 * halo, n) for t, n in zip(tile, latent_shape, strict=True)]) > budget:
        axis = max(range(len(tile)), key=lambda i: tile[i])
        if tile[axis] <= min_side:
            raise ConfigError(
                f"decode_memory_mb: a budget of {memory_budget_mb} MB is too small to decode even a {tile} latent "
                "tile; raise it", keys=("decode_memory_mb",)
            )
        tile[axis] = max(min_side, tile[axis] // 2)
    return tuple(tile)


class _SharedGroupNorm:
    """Context giving every tile the same GroupNorm statistics (per image, per group).

    GroupNorm normalises with statistics over the whole spatial extent, so decoding tiles
    independently shifts each tile's intensities and leaves seams. In ``record`` mode each
    GroupNorm of the decoder stores the mean/variance it sees (from a whole decode, possibly on
    another device); in ``apply`` mode tiles are normalised with those stored values. The idea
    is that of the "Tiled VAE" of multidiffusion-upscaler; no maintained library exposes it for
    MONAI networks, hence written here.
    """

    def __init__(self, module: torch.nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = "record"

    def _forward(self, norm: torch.nn.GroupNorm):
        def forward(x: torch.Tensor) -> torch.Tensor:
            n, c = x.shape[:2]
            grouped = x.float().reshape(n, norm.num_groups, -1)
            if self.mode == "record":
                var, mean = torch.var_mean(grouped, dim=2, unbiased=False, keepdim=True)
                self.stats[id(norm)] = (mean, var)
            else:
                mean, var = self.stats[id(norm)]
            y = ((grouped - mean) * torch.rsqrt(var + norm.eps)).reshape(x.shape).to(x.dtype)
            if norm.affine:
                shape = (1, c) + (1,) * (x.ndim - 2)
                y = y * norm.weight.reshape(shape) + norm.bias.reshape(shape)
            return y

        return forward

    def __enter__(self) -> _SharedGroupNorm:
        for norm in self.norms:
            norm.forward = self._forward(norm)
        return self

    def __exit__(self, *exc: object) -> None:
        for norm in self.norms:
            del norm.forward


def _halo_decoder(autoencoder, z: torch.Tensor, halo: int, factor: int) -> Callable:
    """A ``sliding_window_inference`` predictor that decodes each window with ``halo`` latent
    voxels of context on every side (taken from ``z``) and crops back to the window, so tile
    borders see real neighbours instead of zero padding."""
    spatial = z.shape[2:]

    def predict(windows: torch.Tensor, locations: Sequence[Sequence[slice]]) -> torch.Tensor:
        out = []
        for loc in locations:
            b = loc[0].start
            core = loc[2:]
            lo = [max(0, sl.start - halo) for sl in core]
            hi = [min(n, sl.stop + halo) for sl, n in zip(core, spatial, strict=True)]
            ctx = z[(slice(b, b + 1), slice(None), *[slice(a, e) for a, e in zip(lo, hi, strict=True)])]
            img = autoencoder.decode(ctx)
            crop = [slice((sl.start - a) * factor, (sl.stop - a) * factor) for sl, a in zip(core, lo, strict=True)]
            out.append(img[(slice(None), slice(None), *crop)])
        return torch.cat(out)

    return predict


@torch.no_grad()
def decode_tiled(
    autoencoder,
    z: torch.Tensor,
    *,
    tile: Sequence[int] | None = None,
    memory_budget_mb: float | None = None,
    overlap: float = 0.25,
    halo: int = 8,
    mode: str = "gaussian",
    norm_stats: str = "whole",
    stats_device: str | torch.device | None = None,
    config: AutoencoderConfig | None = None,
) -> torch.Tensor:
    """Decode latents ``(N, C_lat, *latent_spatial)`` to images in overlapping, blended tiles.

    Tiles go through MONAI ``sliding_window_inference`` (its output may be larger than its
    input: the decoder's upsampling is read as a zoom) with Gaussian blending over
    ``overlap``. Each tile is decoded with ``halo`` latent voxels of real context around it
    and cropped back, and GroupNorm statistics are shared by every tile of an image
    (:class:`_SharedGroupNorm`), so tiles agree at their borders. With neither ``tile`` nor
    ``memory_budget_mb`` the latent is decoded at once.

    Args:
        autoencoder: MONAI ``AutoencoderKL`` (``decoder`` and ``decode`` are used).
        z: latents (already divided by the scale factor).
        tile: latent tile size; or ``memory_budget_mb`` to let :func:`pick_tile` choose it
            (then ``config`` is needed; the halo is counted in).
        halo: latent voxels of context decoded around each tile and cropped away; 8 covers
            the receptive field of the default decoders (tiled = whole to float precision).
        norm_stats: where GroupNorm statistics come from: ``whole`` (exact: one decode of the
            whole latent used only for statistics; put it on ``stats_device="cpu"`` when GPU
            memory is the limit) or ``tile`` (each tile its own: visible seams; comparison only).

    Returns:
        Images ``(N, C, *latent_spatial * downsample_factor)``.
    """
    from monai.inferers import sliding_window_inference

    spatial = [int(s) for s in z.shape[2:]]
    if tile is None and memory_budget_mb is not None:
        if config is None:
            raise ValueError("decode_tiled: memory_budget_mb needs the autoencoder's config")
        tile = pick_tile(config, spatial, memory_budget_mb, halo=halo)
    if tile is None or all(t >= s for t, s in zip(tile, spatial, strict=True)):
        return autoencoder.decode(z)
    if norm_stats not in ("whole", "tile"):
        raise ValueError(f"norm_stats must be 'whole' or 'tile', got {norm_stats!r}")
    tile = [min(int(t), s) for t, s in zip(tile, spatial, strict=True)]
    probe = autoencoder.decode(z[(slice(0, 1), slice(None), *[slice(0, 1)] * len(spatial))])
    factor = probe.shape[2]
    outputs = []
    with _SharedGroupNorm(autoencoder.decoder) as shared:
        for i in range(z.shape[0]):
            zi = z[i : i + 1]
            shared.mode = "record"  # in record mode every call normalises with its own statistics
            if norm_stats != "tile":
                ref = zi
                if stats_device is not None:
                    try:
                        autoencoder.to(stats_device)
                        autoencoder.decode(ref.to(stats_device))
                    finally:  # never leave the shared autoencoder on the statistics device
                        autoencoder.to(z.device)
                    shared.stats = {k: (m.to(z.device), v.to(z.device)) for k, (m, v) in shared.stats.items()}
                else:
                    autoencoder.decode(ref)
                shared.mode = "apply"
            outputs.append(sliding_window_inference(
                zi, roi_size=tile, sw_batch_size=1, predictor=_halo_decoder(autoencoder, zi, halo, factor),
                overlap=overlap, mode=mode, progress=False, with_coord=True,
            ))
    return torch.cat(outputs)
