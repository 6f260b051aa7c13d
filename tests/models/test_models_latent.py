"""Latent cache (μ, σ, scale factor, autoencoder hash) and seam-free tiled decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_prepared_dataset
from uterosynth.core.checkpoint import write_checkpoint
from uterosynth.core.errors import ConfigError, UserError
from uterosynth.models.autoencoder import AutoencoderConfig, build_autoencoder
from uterosynth.models.latent import decode_tiled, encode_dataset, latent_std, pick_tile


def _tiny(spatial_dims: int) -> AutoencoderConfig:
    return AutoencoderConfig(spatial_dims=spatial_dims, channels=(8, 16), attention_levels=(False, False),
                             norm_num_groups=4, latent_channels=2, num_res_blocks=1)


def _checkpoint(tmp_path: Path, spatial_dims: int) -> Path:
    torch.manual_seed(0)
    cfg = _tiny(spatial_dims)
    model = build_autoencoder(cfg)
    meta = {"kind": "autoencoder", "network": cfg.model_dump(mode="json"), "spatial_dims": spatial_dims,
            "downsample_factor": 2}
    return write_checkpoint(tmp_path / "ae", weights=model.state_dict(), model_json=meta, train_state=None)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_encode_caches_mean_std_scale_and_hash(tmp_path, spatial_dims):
    shape = (32, 32) if spatial_dims == 2 else (16, 16, 8)
    data = make_prepared_dataset(tmp_path / "p", dims=spatial_dims, shape=shape, items_per_subject=1)
    ckpt = _checkpoint(tmp_path, spatial_dims)
    summary = encode_dataset(ckpt, data, tmp_path / "lat", batch_size=4, device="cpu")
    info = json.loads((tmp_path / "lat" / "latents.json").read_text())
    model_json = json.loads((ckpt / "model.json").read_text())
    assert info["autoencoder"]["sha256"] == model_json["sha256"]
    assert info["latent_shape"] == [2, *[s // 2 for s in shape]]
    rows = (tmp_path / "lat" / "latents.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    # the scale factor is 1/std of sampled training latents, from the cached moments
    train_ids = [r.split(",")[0] for r in rows[1:] if r.split(",")[3] == "train"]
    mus = torch.stack([load_file(str(tmp_path / "lat" / "items" / f"{i}.safetensors"))["mean"] for i in train_ids])
    sig = torch.stack([load_file(str(tmp_path / "lat" / "items" / f"{i}.safetensors"))["std"] for i in train_ids])
    assert (sig > 0).all()
    torch.manual_seed(1)
    sampled = mus + sig * torch.randn(2000, *mus.shape)
    assert info["scale_factor"] == pytest.approx(1 / float(sampled.std()), rel=0.02)
    stored = json.loads((ckpt / "latent_scale.json").read_text())
    assert stored["scale_factor"] == summary["scale_factor"] == info["scale_factor"]
    assert stored["autoencoder_sha256"] == model_json["sha256"]


def test_encode_reuses_stored_scale_factor(tmp_path):
    data = make_prepared_dataset(tmp_path / "p", dims=2, shape=(32, 32), items_per_subject=1)
    ckpt = _checkpoint(tmp_path, 2)
    encode_dataset(ckpt, data, tmp_path / "a", device="cpu")
    stored = json.loads((ckpt / "latent_scale.json").read_text())
    stored["scale_factor"] = 123.0  # as if fixed earlier on another (training) dataset
    (ckpt / "latent_scale.json").write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="stored scale factor"):
        second = encode_dataset(ckpt, data, tmp_path / "b", device="cpu")
    assert second["scale_factor"] == 123.0
    assert json.loads((tmp_path / "b" / "latents.json").read_text())["scale_factor"] == 123.0


def test_encode_dimensionality_mismatch_is_config_error(tmp_path):
    data = make_prepared_dataset(tmp_path / "p", dims=3, shape=(16, 16, 8), items_per_subject=1)
    with pytest.raises(ConfigError, match="2D.*3D"):
        encode_dataset(_checkpoint(tmp_path, 2), data, tmp_path / "lat", device="cpu")


def test_encode_missing_model_is_user_error(tmp_path):
    data = make_prepared_dataset(tmp_path / "p", dims=2, shape=(32, 32), items_per_subject=1)
    with pytest.raises(UserError, match="no model checkpoint"):
        encode_dataset(tmp_path / "nothing", data, tmp_path / "lat", device="cpu")


def test_latent_std_formula():
    mu = torch.tensor([1.0, -1.0, 3.0])
    sigma = torch.tensor([0.5, 0.5, 1.0])
    expected = (mu.var(unbiased=False) + sigma.pow(2).mean()).sqrt()
    got = latent_std(float(mu.sum()), float(mu.pow(2).sum()), float(sigma.pow(2).sum()), 3)
    assert got == pytest.approx(float(expected))


def _smooth_latent(ae, shape):
    grid = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    x = torch.exp(-sum(g**2 for g in grid) / 0.2)[None, None] + 0.3 * torch.sin(6 * grid[0])[None, None]
    return ae.encode(x)[0]


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tiled_decoding_matches_whole_without_seams(spatial_dims):
    torch.manual_seed(0)
    ae = build_autoencoder(_tiny(spatial_dims)).eval().requires_grad_(False)
    shape = (96, 96) if spatial_dims == 2 else (32, 32, 16)
    with torch.no_grad():
        z = _smooth_latent(ae, shape)
        whole = ae.decode(z)
    tile = [16, 16] if spatial_dims == 2 else [8, 8, 4]
    overlap = 0.25 if spatial_dims == 2 else 0.0
    exact = decode_tiled(ae, z, tile=tile, halo=8, overlap=overlap)
    assert exact.shape == whole.shape
    assert torch.allclose(exact, whole, atol=1e-4)
    # a short halo: close, and no seams (error on tile borders is bounded like elsewhere)
    short = decode_tiled(ae, z, tile=tile, halo=4, overlap=overlap)
    err = (short - whole).abs()
    mean_bound, max_bound = (0.01, 0.1) if spatial_dims == 2 else (0.03, 0.2)  # 3D: no blending here
    assert err.mean() < mean_bound * whole.abs().mean()
    assert err.max() < max_bound * whole.abs().max()
    # per-tile GroupNorm statistics (what naive tiling does) is far worse: the shared statistics matter
    naive = decode_tiled(ae, z, tile=tile, halo=0, overlap=overlap, norm_stats="tile")
    assert (naive - whole).abs().mean() > 10 * err.mean()


def test_memory_budget_picks_fitting_tile():
    cfg = _tiny(3)
    big = pick_tile(cfg, (64, 64, 32), 10_000)
    small = pick_tile(cfg, (64, 64, 32), 20, halo=2)
    assert big == (64, 64, 32)
    assert all(s <= b for s, b in zip(small, big, strict=True)) and small != big
    with pytest.raises(UserError, match="too small"):
        pick_tile(cfg, (64, 64, 32), 0.001)


def test_decode_with_memory_budget_matches_whole():
    torch.manual_seed(0)
    cfg = _tiny(2)
    ae = build_autoencoder(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        z = _smooth_latent(ae, (64, 64))
        whole = ae.decode(z)
    assert pick_tile(cfg, z.shape[2:], 1.0, halo=8) != tuple(z.shape[2:])
    tiled = decode_tiled(ae, z, memory_budget_mb=1.0, config=cfg)
    assert torch.allclose(tiled, whole, atol=1e-4)
    # the statistics pass on another device (the CPU, when GPU memory is the limit) gives the same
    elsewhere = decode_tiled(ae, z, memory_budget_mb=1.0, config=cfg, stats_device="cpu")
    assert torch.allclose(elsewhere, whole, atol=1e-4)
