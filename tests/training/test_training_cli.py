"""CLI: ``uterosynth train autoencoder`` and ``uterosynth encode`` end to end, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import make_prepared_dataset

ENV_CMD = [sys.executable, "-m", "uterosynth"]


def _run(args, cwd):
    import os

    env = {**os.environ, "PYTHONPATH": str(cwd / "src")}
    return subprocess.run([*ENV_CMD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture
def repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_then_encode_via_cli(tmp_path, repo):
    data = make_prepared_dataset(tmp_path / "p", dims=2, shape=(32, 32))
    run = tmp_path / "run"
    res = _run(["train", "autoencoder", "--config", "configs/ae2d_cpu.yaml", "--data", str(data), "--out", str(run),
                "--set", "train.steps=2", "--set", "perceptual.network=none", "--seed", "3", "--json"], repo)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert json.loads((run / "checkpoint" / "model.json").read_text())["seed"] == 3
    res = _run(["encode", "--model", str(run), "--data", str(data), "--out", str(tmp_path / "lat"), "--json"], repo)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["items"] == 12 and summary["scale_factor"] > 0
    assert (run / "checkpoint" / "latent_scale.json").is_file()


@pytest.mark.slow
def test_cli_dimensionality_mismatch_exits_2(tmp_path, repo):
    data = make_prepared_dataset(tmp_path / "p", dims=3, shape=(16, 16, 8), items_per_subject=1)
    res = _run(["train", "autoencoder", "--config", "configs/ae2d_cpu.yaml", "--data", str(data),
                "--out", str(tmp_path / "run")], repo)
    assert res.returncode == 2
    assert "spatial_dims=2" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_cli_missing_perceptual_weights_exits_2(tmp_path, repo):
    data = make_prepared_dataset(tmp_path / "p", dims=2, shape=(32, 32))
    res = _run(["train", "autoencoder", "--config", "configs/ae2d_cpu.yaml", "--data", str(data),
                "--out", str(tmp_path / "run"), "--set", "perceptual.weights=/nowhere/alex.safetensors"], repo)
    assert res.returncode == 2
    assert "/nowhere/alex.safetensors" in res.stderr and "not found" in res.stderr


@pytest.mark.slow
def test_cli_missing_dataset_exits_2(tmp_path, repo):
    res = _run(["encode", "--model", str(tmp_path), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")], repo)
    assert res.returncode == 2 and "not found" in res.stderr
