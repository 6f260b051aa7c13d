"""Sampler interface: registry, errors, timestep grids, per-index reproducibility, fixed values."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.core.seeding import index_generator
from uterosynth.diffusion.analytic import GaussianMixtureDenoiser
from uterosynth.diffusion.samplers import SAMPLERS, build_sampler, initial_noise
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig, make_timesteps

VP_SAMPLERS = ["ddpm", "ddim", "dpmpp", "unipc"]
ALL_SAMPLERS = [*VP_SAMPLERS, "rflow"]
STEPS = {"ddpm": 12, "ddim": 6, "dpmpp": 6, "unipc": 6, "rflow": 6}


pytestmark = pytest.mark.usefixtures("one_thread")


def _schedule(name: str) -> NoiseSchedule:
    if name == "rflow":
        return NoiseSchedule(NoiseScheduleConfig(objective="rflow", prediction_type="v_prediction"))
    return NoiseSchedule(NoiseScheduleConfig(prediction_type="v_prediction", rescale_zero_terminal_snr=True))


def _model(schedule: NoiseSchedule, shape: tuple[int, ...]) -> GaussianMixtureDenoiser:
    means = torch.stack([torch.full(shape, -1.0), torch.full(shape, 1.0)])
    return GaussianMixtureDenoiser(schedule, means, torch.full_like(means, 0.3), [0.3, 0.7])


def _run(name: str, indices: list[int], shape: tuple[int, ...], steps: int | None = None) -> torch.Tensor:
    schedule = _schedule(name)
    x_T = initial_noise((len(indices), *shape), [index_generator(11, i) for i in indices])
    step_gens = [index_generator(11, i, salt="steps") for i in indices]
    return build_sampler(name, schedule).sample(_model(schedule, shape), x_T, steps=steps or STEPS[name], generators=step_gens)


def test_registry_lists_every_sampler():
    assert SAMPLERS.names() == ["ddim", "ddpm", "dpmpp", "rflow", "unipc"]


@pytest.mark.parametrize("name", ALL_SAMPLERS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sample_i_is_identical_alone_and_in_batches(name, spatial_dims):
    shape = (1,) + (4,) * spatial_dims
    batch7 = _run(name, list(range(7)), shape)
    batch3 = _run(name, [0, 1, 2], shape)
    alone = _run(name, [2], shape)
    assert batch7.shape == (7, *shape)
    torch.testing.assert_close(batch3[2], batch7[2], atol=1e-6, rtol=0)
    torch.testing.assert_close(alone[0], batch7[2], atol=1e-6, rtol=0)
    assert not torch.allclose(batch7[0], batch7[1])  # different indices, different samples


# Recorded with torch 2.14 / MONAI 1.6.1 / diffusers 0.42.1 (CPU); the 4 values of item 0, shape (1, 2, 2).
EXPECTED = {
    "ddpm": [1.03109, 0.99853, 1.16409, 1.10184],
    "ddim": [1.06266, 1.14014, 0.97929, 1.07583],
    "dpmpp": [1.07914, 1.1582, 0.99407, 1.09258],
    "unipc": [1.08097, 1.16047, 0.99543, 1.09448],
    "rflow": [1.0991, 1.22675, 0.96175, 1.12079],
}


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_fixed_values_regression(name):
    out = _run(name, [0, 1], (1, 2, 2))
    torch.testing.assert_close(out[0].flatten(), torch.tensor(EXPECTED[name]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_model_sees_the_expected_timesteps_and_callback_runs(name):
    schedule = _schedule(name)
    seen, infos = [], []

    def denoise(x, t):
        seen.append(int(t[0]))
        assert t.shape == (x.shape[0],)
        return torch.zeros_like(x)

    build_sampler(name, schedule).sample(denoise, torch.randn(2, 1, 3, 3), steps=5, callback=infos.append)
    expected = [1000, 800, 600, 400, 200] if name == "rflow" else make_timesteps("trailing", 5, 1000).tolist()
    assert seen == expected
    assert seen[0] == (1000 if name == "rflow" else 999)  # first step at pure noise
    assert [i.index for i in infos] == list(range(5)) and infos[-1].x0.shape == (2, 1, 3, 3)


def test_unknown_sampler_is_a_user_error():
    with pytest.raises(UserError, match="sampler 'euler': unknown; choose one of ddim, ddpm, dpmpp, rflow, unipc"):
        build_sampler("euler", _schedule("ddim"))


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_steps_below_one_is_a_user_error(name):
    sampler = build_sampler(name, _schedule(name))
    with pytest.raises(UserError, match="steps: expected an integer >= 1, got 0"):
        sampler.sample(lambda x, t: x, torch.randn(1, 1, 2, 2), steps=0)


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_more_steps_than_training_is_a_user_error(name):
    sampler = build_sampler(name, _schedule(name))
    with pytest.raises(UserError, match="steps: expected 1 to 1000"):
        sampler.sample(lambda x, t: x, torch.randn(1, 1, 2, 2), steps=1001)


def test_sampler_for_the_wrong_objective_is_a_user_error():
    with pytest.raises(UserError, match="sampler 'ddim': the model was trained with objective 'rflow'; use one of: rflow"):
        build_sampler("ddim", _schedule("rflow"))
    with pytest.raises(UserError, match="objective 'ddpm'; use one of: ddim, ddpm, dpmpp, unipc"):
        build_sampler("rflow", _schedule("ddim"))


def test_rflow_rejects_other_spacings():
    with pytest.raises(UserError, match="spacing 'leading' is not supported"):
        build_sampler("rflow", _schedule("rflow"), spacing="leading")


def test_wrong_number_of_generators_is_a_user_error():
    sampler = build_sampler("ddpm", _schedule("ddpm"))
    with pytest.raises(UserError, match="generators: expected one per item \\(2\\), got 1"):
        sampler.sample(lambda x, t: x, torch.randn(2, 1, 2, 2), steps=2, generators=[torch.Generator()])
    with pytest.raises(UserError, match="generators: expected one per item"):
        initial_noise((3, 1, 2, 2), [torch.Generator()])


def test_unbatched_input_is_a_user_error():
    with pytest.raises(UserError, match="x_T: expected \\(N, C, \\*spatial\\)"):
        build_sampler("ddim", _schedule("ddim")).sample(lambda x, t: x, torch.randn(4, 4), steps=2)


def test_sampler_config_round_trips_and_rebuilds_the_same_sampler():
    from uterosynth.diffusion.samplers import SamplerConfig

    cfg = SamplerConfig(name="unipc", steps=4, spacing="linspace")
    loaded = SamplerConfig.model_validate_json(cfg.model_dump_json())
    assert loaded == cfg
    schedule = _schedule("unipc")
    model = _model(schedule, (1, 2, 2))
    x_T = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    a = build_sampler(cfg.name, schedule, spacing=cfg.spacing).sample(model, x_T, steps=cfg.steps)
    b = build_sampler(loaded.name, schedule, spacing=loaded.spacing).sample(model, x_T, steps=loaded.steps)
    assert torch.equal(a, b)


def test_numpy_integer_steps_are_accepted():
    import numpy as np

    schedule = _schedule("ddim")
    out = build_sampler("ddim", schedule).sample(_model(schedule, (1, 2, 2)), torch.zeros(1, 1, 2, 2), steps=np.int64(3))
    assert out.shape == (1, 1, 2, 2)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_is_the_respaced_posterior_with_per_item_noise(prediction_type):
    """diffusers' DDPM step on the respaced grid = Ho et al. eqs. 6-7 between the visited timesteps."""
    schedule = NoiseSchedule(NoiseScheduleConfig(prediction_type=prediction_type))
    ts = make_timesteps("trailing", 7, 1000)
    x_T = initial_noise((3, 1, 4, 4), [index_generator(5, i) for i in range(3)])

    def denoise(x, t):
        return 0.4 * x + 0.001 * t.float().reshape(-1, 1, 1, 1)

    out = build_sampler("ddpm", schedule).sample(denoise, x_T, steps=7,
                                                 generators=[index_generator(5, i, salt="s") for i in range(3)])
    gens = [index_generator(5, i, salt="s") for i in range(3)]
    ab = torch.cat([schedule.alphas_cumprod[ts], torch.ones(1)])
    x = x_T
    for k, t in enumerate(ts):
        tb = t.expand(3)
        mean, std = schedule.posterior_step(schedule.predict_x0(denoise(x, tb), x, tb), x, ab[k], ab[k + 1])
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens])
        x = mean if k == len(ts) - 1 else mean + std * noise
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)
