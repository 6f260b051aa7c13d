"""Noise schedules agree with MONAI and diffusers; conversions, targets and weights are exact."""

from __future__ import annotations

import json

import pytest
import torch

from uterosynth.core.config import validate_config
from uterosynth.core.errors import ConfigError, UserError
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig, make_timesteps

DIFFUSERS_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
MONAI_NAMES = {"linear": "linear_beta", "scaled_linear": "scaled_linear_beta", "cosine": "cosine"}


def _schedule(**kw) -> NoiseSchedule:
    return NoiseSchedule(NoiseScheduleConfig(**kw))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine"])
def test_alpha_bar_equals_monai_and_diffusers(schedule):
    from diffusers import DDPMScheduler as DiffusersDDPM
    from monai.networks.schedulers import DDPMScheduler as MonaiDDPM

    ours = _schedule(schedule=schedule, beta_start=0.0015, beta_end=0.0195)
    args = {} if schedule == "cosine" else {"beta_start": 0.0015, "beta_end": 0.0195}
    monai = MonaiDDPM(num_train_timesteps=1000, schedule=MONAI_NAMES[schedule], **args)
    diffusers = DiffusersDDPM(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[schedule], **args)
    torch.testing.assert_close(ours.alphas_cumprod, monai.alphas_cumprod, rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.alphas_cumprod, diffusers.alphas_cumprod, rtol=0, atol=2e-5)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine"])
def test_zero_terminal_snr_equals_diffusers_and_reaches_zero(schedule):
    from diffusers import DDPMScheduler as DiffusersDDPM

    ours = _schedule(schedule=schedule, prediction_type="v_prediction", rescale_zero_terminal_snr=True)
    args = {} if schedule == "cosine" else {"beta_start": 1e-4, "beta_end": 2e-2}
    ref = DiffusersDDPM(beta_schedule=DIFFUSERS_NAMES[schedule], rescale_betas_zero_snr=True, **args)
    assert ours.alphas_cumprod[-1] == 0.0
    assert ours.snr(torch.tensor([999]))[0] == 0.0
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=2e-5)
    plain = _schedule(schedule=schedule)
    assert abs(float(ours.alphas_cumprod[0] - plain.alphas_cumprod[0])) < 1e-6  # Alg. 1 keeps the first step


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_add_noise_and_targets_equal_monai(spatial_dims):
    from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

    g = torch.Generator().manual_seed(0)
    shape = (3, 2) + (6,) * spatial_dims
    x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.tensor([0, 500, 999])
    ours = _schedule(prediction_type="v_prediction")
    monai = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    torch.testing.assert_close(ours.add_noise(x0, eps, t), monai.add_noise(x0, eps, t))
    torch.testing.assert_close(ours.training_target(x0, eps, t), monai.get_velocity(x0, eps, t))

    flow = _schedule(objective="rflow", prediction_type="v_prediction")
    rflow = RFlowScheduler(num_train_timesteps=1000)
    torch.testing.assert_close(flow.add_noise(x0, eps, t), rflow.add_noise(x0, eps, t))
    torch.testing.assert_close(flow.training_target(x0, eps, t), x0 - eps)  # MONAI's RFlow training target


@pytest.mark.parametrize(
    "kw",
    [
        {"prediction_type": "epsilon"},
        {"prediction_type": "v_prediction"},
        {"prediction_type": "sample"},
        {"prediction_type": "v_prediction", "rescale_zero_terminal_snr": True},
        {"objective": "rflow", "prediction_type": "v_prediction"},
    ],
)
def test_conversions_invert_each_other(kw):
    sched = _schedule(**kw)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
    t = torch.tensor([1, 10, 500, 998])
    x_t = sched.add_noise(x0, eps, t)
    out = sched.training_target(x0, eps, t)
    torch.testing.assert_close(sched.predict_x0(out, x_t, t), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(sched.predict_eps(out, x_t, t), eps, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(sched.model_output_from_x0(x0, x_t, t), out, atol=2e-3, rtol=1e-3)


def test_min_snr_weights_follow_hang_et_al():
    t = torch.tensor([0, 100, 500, 999])
    eps = _schedule(prediction_type="epsilon")
    snr = eps.snr(t)
    torch.testing.assert_close(eps.min_snr_weight(t, 5.0), torch.clamp(snr, max=5.0) / snr)
    v = _schedule(prediction_type="v_prediction")
    torch.testing.assert_close(v.min_snr_weight(t, 5.0), torch.clamp(snr, max=5.0) / (snr + 1))
    x0 = _schedule(prediction_type="sample")
    torch.testing.assert_close(x0.min_snr_weight(t, 5.0), torch.clamp(snr, max=5.0))
    zt = _schedule(prediction_type="v_prediction", rescale_zero_terminal_snr=True)
    w = zt.min_snr_weight(t, 5.0)
    assert torch.isfinite(w).all() and w[-1] == 0.0


def test_min_snr_rejects_non_positive_gamma():
    with pytest.raises(UserError, match="min_snr_gamma"):
        _schedule().min_snr_weight(torch.tensor([1]), 0.0)


def test_posterior_step_equals_monai_ddpm_step():
    from monai.networks.schedulers import DDPMScheduler

    monai = DDPMScheduler(num_train_timesteps=50, clip_sample=False, prediction_type="epsilon")
    ours = _schedule(num_train_timesteps=50)
    g = torch.Generator().manual_seed(3)
    x, out = torch.randn(1, 1, 4, 4, generator=g), torch.randn(1, 1, 4, 4, generator=g)
    for t in (49, 20, 1):
        expected, _ = monai.step(out, t, x, generator=torch.Generator().manual_seed(7))
        x0 = ours.predict_x0(out, x, torch.tensor([t]))
        mean, std = ours.posterior_step(x0, x, ours.alphas_cumprod[t], ours.alphas_cumprod[t - 1])
        got = mean + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # float32 rounding near t=1


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 10, 50])
def test_timesteps_equal_diffusers_multistep(spacing, steps):
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    ours = make_timesteps(spacing, steps, 1000)
    for cls in (DPMSolverMultistepScheduler, UniPCMultistepScheduler):
        ref = cls(timestep_spacing=spacing)
        ref.set_timesteps(steps)
        assert torch.equal(ours, ref.timesteps)
    if spacing == "trailing":
        assert ours[0] == 999  # starts at the last, pure-noise step
    if spacing == "leading":
        assert ours[0] < 999


def test_timesteps_reject_steps_below_one():
    with pytest.raises(UserError, match="steps: expected 1 to 1000"):
        make_timesteps("trailing", 0, 1000)


def test_timesteps_reject_more_steps_than_training():
    with pytest.raises(UserError, match="steps: expected 1 to 1000"):
        make_timesteps("trailing", 1001, 1000)


def test_timesteps_reject_repeated_timesteps():
    with pytest.raises(UserError, match="repeat timesteps"):
        make_timesteps("leading", 1000, 1000)


def test_timesteps_reject_unknown_spacing():
    with pytest.raises(UserError, match="spacing"):
        make_timesteps("karras", 10, 1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"beta_start": 0.02, "beta_end": 0.01}, "beta_start"),
        ({"objective": "rflow", "prediction_type": "epsilon"}, "flow velocity"),
        ({"objective": "rflow", "prediction_type": "v_prediction", "rescale_zero_terminal_snr": True}, "already ends"),
        ({"rescale_zero_terminal_snr": True, "prediction_type": "epsilon"}, "unrecoverable"),
        ({"schedule": "sigmoid"}, "schedule"),
    ],
)
def test_config_errors_name_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(NoiseScheduleConfig, data, source="model.json")


def test_config_save_load_gives_same_schedule():
    cfg = NoiseScheduleConfig(schedule="cosine", prediction_type="v_prediction", rescale_zero_terminal_snr=True)
    loaded = NoiseSchedule.from_config(json.loads(cfg.model_dump_json()))
    assert loaded.config == cfg
    assert torch.equal(loaded.alphas_cumprod, NoiseSchedule(cfg).alphas_cumprod)


@pytest.mark.parametrize(("objective", "low", "high"), [("ddpm", 0, 999), ("rflow", 1, 1000)])
def test_sample_timesteps_range_and_determinism(objective, low, high):
    sched = _schedule(objective=objective, prediction_type="v_prediction")
    t = sched.sample_timesteps(4000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() == low and t.max() == high
    assert torch.equal(t, sched.sample_timesteps(4000, generator=torch.Generator().manual_seed(0)))
