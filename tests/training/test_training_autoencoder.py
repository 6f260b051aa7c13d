"""Autoencoder training: runs in 2D/3D, resumes exactly, checkpoints atomically, fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_prepared_dataset
from uterosynth.core.checkpoint import find_checkpoint, load_train_state, load_weights
from uterosynth.core.config import load_config
from uterosynth.core.errors import ConfigError, DataError, UserError
from uterosynth.training.autoencoder import AutoencoderTrainConfig, kl_divergence, train_autoencoder

CONFIGS = {2: "configs/ae2d_cpu.yaml", 3: "configs/ae3d_cpu.yaml"}


def _data(tmp_path: Path, dims: int) -> Path:
    if dims == 2:
        return make_prepared_dataset(tmp_path / "p2", dims=2, shape=(32, 32))
    return make_prepared_dataset(tmp_path / "p3", dims=3, shape=(16, 16, 8), items_per_subject=1)


def _cfg(dims: int, **over) -> AutoencoderTrainConfig:
    return load_config(AutoencoderTrainConfig, CONFIGS[dims], overrides=over)


def _losses(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "generator/total" in r]


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_train_writes_checkpoint_metrics_grid(tmp_path, spatial_dims):
    data = _data(tmp_path, spatial_dims)
    summary = train_autoencoder(_cfg(spatial_dims), data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    ckpt = run / "checkpoint"
    meta = json.loads((ckpt / "model.json").read_text())
    assert meta["kind"] == "autoencoder" and meta["spatial_dims"] == spatial_dims
    assert meta["step"] == summary["steps"] == _cfg(spatial_dims).train.steps
    assert set(load_weights(ckpt)) == set(load_train_state(ckpt)["modules"]["autoencoder"])
    losses = _losses(run)
    assert len(losses) == summary["steps"]
    assert any("generator/adv" in r for r in losses) and any("discriminator/loss" in r for r in losses)
    assert not any("generator/adv" in r for r in losses[:2])  # warm-up of 2 steps
    # the compute is counted on a step with the discriminator on: above the warm-up's own cost
    assert summary["train_flops"] == summary["steps"] * summary["flops_per_step"] > 0
    vals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/psnr" in r]
    assert vals and all(0 < r["val/psnr"] < 100 and -1 <= r["val/ssim"] <= 1 for r in vals)
    assert "val/ms_ssim" in vals[-1]
    assert sorted(p.name for p in (run / "images").glob("*.png"))
    assert any((run / "tensorboard").iterdir())


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    data = _data(tmp_path, 2)
    cfg = _cfg(2, **{"train.steps": 5, "train.checkpoint_every": 2, "train.grad_accum": 2, "train.val_every": 100})
    train_autoencoder(cfg, data, tmp_path / "full", progress=False)

    def kill(trainer, step: int) -> None:
        if step == 3:  # after the step-2 checkpoint, mid-epoch, discriminator on
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(cfg, data, tmp_path / "cut", progress=False, on_step_end=kill)
    assert load_train_state(tmp_path / "cut" / "checkpoint")["step"] == 2
    summary = train_autoencoder(cfg, data, tmp_path / "cut", resume=True, progress=False)
    assert summary["resumed_from"] == 2
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert [r["step"] for r in cut] == list(range(1, 6))
    for a, b in zip(full, cut, strict=True):
        a.pop("items_per_s"), b.pop("items_per_s")
        assert a == b
    wa, wb = load_weights(tmp_path / "full" / "checkpoint"), load_weights(tmp_path / "cut" / "checkpoint")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_between_checkpoint_renames_is_recovered(tmp_path):
    from uterosynth.core.checkpoint import write_checkpoint

    run = tmp_path / "run"
    write_checkpoint(run, weights={"w": torch.ones(2)}, model_json={"step": 1}, train_state={"step": 1})
    (run / "checkpoint").rename(run / ".checkpoint.old-123")  # the moment between the renames
    found = find_checkpoint(run)
    assert found == run / "checkpoint"
    assert torch.equal(load_weights(found)["w"], torch.ones(2))


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    from uterosynth.training import autoencoder as ae_mod

    data = _data(tmp_path, 2)
    cfg = _cfg(2, **{"train.steps": 4, "train.checkpoint_every": 2, "loss.adv_weight": 0,
                     "perceptual.network": "none", "train.val_every": 100})
    original = ae_mod.kl_divergence
    calls = {"n": 0}

    def poisoned(mu, sigma):
        calls["n"] += 1
        # call 1 is the pass that counts the training compute; calls 2, 3, 4 are steps 1, 2, 3
        return original(mu, sigma) * (float("nan") if calls["n"] == 4 else 1.0)

    monkeypatch.setattr(ae_mod, "kl_divergence", poisoned)
    with pytest.raises(UserError, match="step 3.*not finite|step 3.*nan") as err:
        train_autoencoder(cfg, data, tmp_path / "run", progress=False)
    assert "checkpoint" in str(err.value)
    assert load_train_state(tmp_path / "run" / "checkpoint")["step"] == 2


def test_dimensionality_mismatch_is_config_error(tmp_path):
    data = _data(tmp_path, 3)
    with pytest.raises(ConfigError, match="spatial_dims=2.*3D"):
        train_autoencoder(_cfg(2), data, tmp_path / "run", progress=False)


def test_missing_dataset_is_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        train_autoencoder(_cfg(2), tmp_path / "nope", tmp_path / "run", progress=False)


def test_existing_output_without_resume_is_refused(tmp_path):
    data = _data(tmp_path, 2)
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="set resume"):
        train_autoencoder(_cfg(2), data, tmp_path / "run", progress=False)


def test_too_few_items_for_batch_is_data_error(tmp_path):
    data = _data(tmp_path, 2)
    with pytest.raises(DataError, match="batch_size"):
        train_autoencoder(_cfg(2, **{"train.batch_size": 64}), data, tmp_path / "run", progress=False)


def test_kl_divergence_matches_closed_form():
    mu = torch.tensor([[[0.5, -1.0]]])
    sigma = torch.tensor([[[1.0, 2.0]]])
    expected = 0.5 * ((0.25 + 1 - 0 - 1) + (1 + 4 - torch.log(torch.tensor(4.0)) - 1))
    assert torch.allclose(kl_divergence(mu, sigma), expected)
