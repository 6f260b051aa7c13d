"""DDP on CPU: two gloo processes train the autoencoder and end with identical weights."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import make_prepared_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str, dump: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from uterosynth.core.config import load_config
    from uterosynth.core.distributed import shutdown_distributed
    from uterosynth.training.autoencoder import AutoencoderTrainConfig, train_autoencoder

    cfg = load_config(AutoencoderTrainConfig, "configs/ae2d_cpu.yaml", overrides={
        "train.steps": 3, "train.batch_size": 2, "loss.adv_warmup_steps": 1, "perceptual.network": "none",
        "train.val_every": 100, "train.checkpoint_every": 100,
    })

    def grab(trainer, step: int) -> None:
        if step == cfg.train.steps:
            params = {f"{n}.{k}": v.detach().clone() for n, m in trainer.parts.raw.items()
                      for k, v in m.named_parameters()}
            torch.save(params, Path(dump) / f"rank{rank}.pt")

    try:
        train_autoencoder(cfg, data, out, progress=False, on_step_end=grab)
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    data = make_prepared_dataset(tmp_path / "p2", dims=2, shape=(32, 32))
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert set(w0) == set(w1) and any(k.startswith("discriminator.") for k in w0)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    # rank 0 alone logs and checkpoints: one record per step, one checkpoint
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "generator/total" in line]
    assert steps == [1, 2, 3]
    meta = json.loads((out / "checkpoint" / "model.json").read_text())
    assert meta["step"] == 3
    assert not list(out.glob(".checkpoint*"))
