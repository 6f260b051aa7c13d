"""The generic loop with a toy model: accumulation, EMA, precision, resumable data order."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from uterosynth.core.checkpoint import load_model_json, load_train_state, load_weights
from uterosynth.core.errors import DataError
from uterosynth.training.config import LoopConfig, OptimizerConfig
from uterosynth.training.data import ResumableBatches
from uterosynth.training.loop import OptimGroup, Trainer, load_optimizer_state, make_adamw, scheduled_lr


class _Points(torch.utils.data.Dataset):
    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class _Regression:
    def phases(self, step: int):
        return ("main",)

    def loss(self, phase, batch, parts, *, step, cache):
        err = (parts["net"](batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        return err, {"main/mse": err.detach()}


def _train(tmp_path, name, optimizer: OptimizerConfig | None = None, total_steps: int | None = None,
           resume: bool = False, grad_clip: float | None = None, **loop):
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    cfg = LoopConfig(**{"steps": 4, "batch_size": 2, "device": "cpu", "log_every": 1, "val_every": 100,
                        "checkpoint_every": 2, **loop})
    group = OptimGroup("main", make_adamw(net.parameters(), optimizer or OptimizerConfig(lr=0.05), device=torch.device("cpu"),
                                           total_steps=total_steps),
                       ("net",), grad_clip)
    trainer = Trainer({"net": net}, [group], _Regression(), _Points(), cfg=cfg, out=tmp_path / name, seed=1,
                      export="net", model_meta={"kind": "toy"}, progress=False)
    return trainer, trainer.fit(resume=resume)


def test_gradient_accumulation_equals_larger_batch(tmp_path):
    a, _ = _train(tmp_path, "a", batch_size=4)
    b, _ = _train(tmp_path, "b", batch_size=2, grad_accum=2)
    for pa, pb in zip(a.parts.raw["net"].parameters(), b.parts.raw["net"].parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_ema_weights_are_exported(tmp_path):
    trainer, result = _train(tmp_path, "ema", ema_decay=0.5)
    ckpt, meta = load_model_json(result.checkpoint)
    assert meta["weights"] == "ema" and meta["kind"] == "toy" and meta["step"] == 4
    exported = load_weights(ckpt)
    raw = load_train_state(ckpt)["modules"]["net"]
    assert not torch.equal(exported["weight"], raw["weight"])
    assert torch.equal(exported["weight"], trainer.ema.module.weight.detach())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_decreases_and_is_logged(tmp_path, precision):
    _, result = _train(tmp_path, precision, precision=precision, steps=6)
    records = [json.loads(x) for x in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert records[-1]["main/mse"] < records[0]["main/mse"]


def test_clipping_logs_the_norm_before_it_and_a_loose_clip_changes_nothing(tmp_path):
    plain, _ = _train(tmp_path, "plain")
    loose, _ = _train(tmp_path, "loose", grad_clip=1e6)
    tight, _ = _train(tmp_path, "tight", grad_clip=1e-3)
    assert torch.equal(plain.parts.raw["net"].weight, loose.parts.raw["net"].weight)
    assert not torch.equal(plain.parts.raw["net"].weight, tight.parts.raw["net"].weight)
    norms = {name: [json.loads(x).get("main/grad_norm") for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
             for name in ("plain", "loose", "tight")}
    assert norms["plain"] == [None] * 4  # no clipping, no norm computed
    assert norms["loose"][0] == pytest.approx(norms["tight"][0]) and norms["tight"][0] > 1e-3  # same first step, before clipping


def test_the_logged_norm_is_that_of_the_whole_batch_under_accumulation(tmp_path):
    _train(tmp_path, "whole", grad_clip=1e6, batch_size=4)
    _train(tmp_path, "halves", grad_clip=1e6, batch_size=2, grad_accum=2)
    norms = [[json.loads(x)["main/grad_norm"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
             for name in ("whole", "halves")]
    assert norms[0] == pytest.approx(norms[1], rel=1e-5) and len(norms[0]) == 4


def test_warmup_ramps_the_learning_rate_linearly(tmp_path):
    plain, _ = _train(tmp_path, "plain")
    warm, _ = _train(tmp_path, "warm", optimizer=OptimizerConfig(lr=0.05, warmup_steps=8))
    assert warm.groups["main"].optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 4 / 8)  # rate of step 4 of 8
    assert plain.groups["main"].optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    moved = lambda t: sum((p - p0).abs().sum() for p, p0 in zip(t.parts.raw["net"].parameters(), start, strict=True))  # noqa: E731
    torch.manual_seed(0)
    start = list(nn.Linear(3, 1).parameters())
    assert moved(warm) < moved(plain)


def test_cosine_decay_falls_from_the_peak_to_the_floor_after_warm_up():
    rates = [scheduled_lr(1.0, s, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1) for s in range(130)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)  # the warm-up, unchanged
    assert rates[10] == pytest.approx(1.0) and rates[60] == pytest.approx(0.55)  # half-way down the cosine
    assert rates[110] == pytest.approx(0.1) and rates[129] == pytest.approx(0.1)  # the floor, then held
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert scheduled_lr(1.0, 50) == 1.0  # no schedule: the base rate


def test_the_optimiser_carries_the_cosine_schedule_of_the_run(tmp_path):
    trainer, _ = _train(tmp_path, "cos", optimizer=OptimizerConfig(lr=0.05, decay="cosine", min_lr_ratio=0.2),
                        total_steps=4)
    group = trainer.groups["main"].optimizer.param_groups[0]
    assert group["decay_steps"] == 4 and group["lr"] == pytest.approx(scheduled_lr(0.05, 3, decay_steps=4, min_lr_ratio=0.2))
    constant = make_adamw(nn.Linear(1, 1).parameters(), OptimizerConfig(lr=0.05), device=torch.device("cpu"),
                          total_steps=4)
    assert constant.param_groups[0]["decay_steps"] == 0


def test_a_cooldown_holds_the_rate_then_decays_over_the_last_steps():
    rates = [scheduled_lr(1.0, s, warmup_steps=10, decay_steps=110, decay_start=60, min_lr_ratio=0.1) for s in range(130)]
    assert rates[9] == pytest.approx(1.0) and rates[60] == pytest.approx(1.0)  # warm-up, then stable until the start
    assert rates[85] == pytest.approx(0.55) and rates[110] == pytest.approx(0.1)  # half-way down, then the floor
    group = make_adamw(nn.Linear(1, 1).parameters(), OptimizerConfig(lr=1.0, decay="cosine", cooldown_steps=30),
                       device=torch.device("cpu"), total_steps=100).param_groups[0]
    assert (group["decay_start"], group["decay_steps"]) == (70, 100)
    with pytest.raises(ValueError, match="cooldown_steps"):
        OptimizerConfig(cooldown_steps=30)  # a cool-down of a constant rate


def test_a_resumed_run_follows_the_schedule_it_is_resumed_with(tmp_path):
    constant, _ = _train(tmp_path, "branch", total_steps=4)
    moments = constant.groups["main"].optimizer.state_dict()["state"]
    cooled = OptimizerConfig(lr=0.05, decay="cosine", cooldown_steps=4, min_lr_ratio=0.2)
    trainer, result = _train(tmp_path, "branch", optimizer=cooled, total_steps=8, resume=True, steps=8)
    assert result.resumed_from == 4 and result.step == 8
    after = trainer.groups["main"].optimizer
    assert after.param_groups[0]["decay_steps"] == 8  # the configured cool-down, not the checkpoint's constant rate
    assert after.param_groups[0]["lr"] == pytest.approx(scheduled_lr(0.05, 7, decay_steps=8, decay_start=4, min_lr_ratio=0.2))
    assert int(after.state_dict()["state"][0]["step"]) == int(moments[0]["step"]) + 4  # the moments were resumed
    summary = result.summary(tmp_path / "branch", trainer.dist)
    assert summary["schedule_changed_on_resume"] == ["main group 0 decay: constant -> cosine",
                                                     "main group 0 cooldown_steps: None -> 4",
                                                     "main group 0 min_lr_ratio: 0.1 -> 0.2"]


def test_a_cosine_resumed_with_more_steps_keeps_its_decay_length(tmp_path):
    cosine = OptimizerConfig(lr=0.05, decay="cosine", min_lr_ratio=0.2)
    _train(tmp_path, "longer", optimizer=cosine, total_steps=4)
    trainer, result = _train(tmp_path, "longer", optimizer=cosine, total_steps=6, resume=True, steps=6)
    group = trainer.groups["main"].optimizer.param_groups[0]
    assert result.schedule_changes == () and group["decay_steps"] == 4
    assert group["lr"] == pytest.approx(0.05 * 0.2)  # held at the floor past the first end


def _adamw(cfg: OptimizerConfig, total_steps: int) -> torch.optim.AdamW:
    return make_adamw(nn.Linear(1, 1).parameters(), cfg, device=torch.device("cpu"), total_steps=total_steps)


def test_a_checkpoint_from_before_the_schedule_settings_resumes_unchanged():
    cosine = OptimizerConfig(lr=0.05, decay="cosine", min_lr_ratio=0.1)
    old = _adamw(cosine, 4).state_dict()
    for key in ("decay", "cooldown_steps", "decay_start"):  # the keys older checkpoints lack
        del old["param_groups"][0][key]
    resumed = _adamw(cosine, 6)
    assert load_optimizer_state(resumed, old, step=4) == []
    assert resumed.param_groups[0]["decay_steps"] == 4 and resumed.param_groups[0]["decay"] == "cosine"


def test_a_changed_schedule_says_so_and_what_it_keeps():
    before = _adamw(OptimizerConfig(lr=0.05, betas=(0.8, 0.9)), 10).state_dict()
    after = _adamw(OptimizerConfig(lr=0.05, decay="cosine", cooldown_steps=2), 10)
    lines = load_optimizer_state(after, before, step=9)
    assert lines[-1] == "group 0 resumed at step 9, past the decay's start 8"
    assert after.param_groups[0]["betas"] == (0.8, 0.9)  # AdamW's other settings stay the checkpoint's
    same = _adamw(OptimizerConfig(lr=0.05, min_lr_ratio=0.5), 10)  # a constant rate: min_lr_ratio does nothing
    assert load_optimizer_state(same, before) == []
    plain = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=0.3)  # not made by make_adamw: loaded as it is
    assert load_optimizer_state(plain, before) == [] and plain.param_groups[0]["lr"] == 0.05


def test_time_budget_stops_and_checkpoints_the_step_reached(tmp_path, monkeypatch):
    import uterosynth.training.loop as loop

    clock = iter(range(0, 10_000, 30))  # each reading of the clock is 30 s later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    _, result = _train(tmp_path, "budget", steps=100, max_minutes=2.0, checkpoint_every=50)
    assert 1 <= result.step < 100
    _, meta = load_model_json(result.checkpoint)
    assert meta["step"] == result.step


def test_fp16_on_cpu_is_rejected():
    from uterosynth.core.config import validate_config
    from uterosynth.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        validate_config(LoopConfig, {"precision": "fp16", "device": "cpu"})
    with pytest.raises(ConfigError, match="set ema_decay too"):  # a warm-up of no EMA would be silently nothing
        validate_config(LoopConfig, {"ema_warmup": True})


def test_data_order_resumes_mid_epoch_and_shards_disjointly():
    full = ResumableBatches(10, 2, seed=3)
    it = iter(full)
    seq = [next(it) for _ in range(12)]  # crosses two epoch boundaries (5 batches per epoch)
    resumed = iter(ResumableBatches(10, 2, seed=3, start=7))
    assert [next(resumed) for _ in range(5)] == seq[7:12]
    r0 = ResumableBatches(10, 2, seed=3, rank=0, world_size=2).epoch_batches(0)
    r1 = ResumableBatches(10, 2, seed=3, rank=1, world_size=2).epoch_batches(0)
    flat0, flat1 = sum(r0, []), sum(r1, [])
    assert not set(flat0) & set(flat1) and len(r0) == len(r1)


def test_weighted_order_balances_classes_and_resumes():
    weights = [1 / 3] * 3 + [1 / 9] * 9  # a 3-item class and a 9-item class
    sampler = ResumableBatches(12, 4, seed=5, weights=weights)
    drawn = sum((sampler.epoch_batches(e) for e in range(200)), [])
    share_small = sum(i < 3 for batch in drawn for i in batch) / sum(map(len, drawn))
    assert abs(share_small - 0.5) < 0.03  # 0.25 without weights
    it = iter(sampler)
    seq = [next(it) for _ in range(8)]
    assert [next(iter(ResumableBatches(12, 4, seed=5, weights=weights, start=s))) for s in range(8)] == seq


@pytest.mark.parametrize("weights", [[1.0] * 11, [1.0] * 11 + [0.0], [1.0] * 11 + [float("nan")]])
def test_bad_sample_weights_are_refused(weights):
    with pytest.raises(DataError, match="12 positive finite numbers"):
        ResumableBatches(12, 4, seed=0, weights=weights)


def test_ema_warms_up_so_a_short_run_forgets_its_start():
    """With train.ema_warmup the decay after n updates is min(decay, (1 + n) / (10 + n)): after 1000
    steps at 0.999 the initial weights keep well under 1 % (a fixed decay would keep 0.999 ** 1000 = 37 %)."""
    from torch.optim.swa_utils import AveragedModel

    from uterosynth.training.loop import ema_with_warmup

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = AveragedModel(net, multi_avg_fn=ema_with_warmup(0.999), use_buffers=True)
    ema.update_parameters(net)  # the first update copies the start
    with torch.no_grad():
        net.weight.fill_(1.0)  # the run moves away from its start and stays there
    expected = 0.0
    for n in range(1, 1001):
        ema.update_parameters(net)
        d = min(0.999, (1 + n) / (10 + n))
        expected = d * expected + (1 - d)
    assert ema.module.weight.item() == pytest.approx(expected, rel=1e-5)
    assert 1 - ema.module.weight.item() < 0.01


def test_the_first_step_counts_the_training_flops_without_changing_the_run(tmp_path, monkeypatch):
    trainer, result = _train(tmp_path, "counted", batch_size=2, grad_accum=2)
    # Linear(3, 1) on 2 items: forward 2 * 2 * 3 FLOPs, the weight's gradient as many; two micro-batches
    assert result.flops_per_step == 2 * (2 * 2 * 3 + 2 * 2 * 3)
    summary = result.summary(tmp_path / "counted", trainer.dist)
    assert summary["flops_per_step"] == 48 and summary["train_flops"] == 48 * 4
    monkeypatch.setattr(Trainer, "_count_flops", lambda self, micro: -1.0)  # counting leaves the run as it is
    plain, uncounted = _train(tmp_path, "plain", batch_size=2, grad_accum=2)
    assert uncounted.flops_per_step == -1.0
    for a, b in zip(trainer.parts.raw["net"].parameters(), plain.parts.raw["net"].parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_compute_budget_stops_at_the_last_step_within_it(tmp_path):
    from uterosynth.core.errors import ConfigError

    # 24 FLOP a step (Linear(3, 1) on 2 items): 100 FLOP buy 4 of the 10 steps, checkpointed there
    trainer, result = _train(tmp_path, "budget", steps=10, max_flops=100.0)
    assert result.step == 4 and load_train_state(result.checkpoint)["step"] == 4
    assert result.summary(tmp_path / "budget", trainer.dist)["train_flops"] == 96
    # resumed with a larger budget, it goes on to the new one
    _, more = _train(tmp_path, "budget", steps=10, max_flops=150.0, resume=True)
    assert (more.resumed_from, more.step) == (4, 6)
    with pytest.raises(ConfigError, match="train.max_flops: one training step costs 24 FLOP, more than the budget 10"):
        _train(tmp_path, "small", steps=10, max_flops=10.0)
