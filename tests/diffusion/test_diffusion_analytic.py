"""Samplers against an exact (analytic) denoiser: right distribution, few steps, black background."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.seeding import index_generator
from uterosynth.diffusion.analytic import GaussianMixtureDenoiser
from uterosynth.diffusion.samplers import build_sampler, initial_noise
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig

N = 256


pytestmark = pytest.mark.usefixtures("one_thread")


def _two_blobs(schedule: NoiseSchedule, shape: tuple[int, ...]) -> GaussianMixtureDenoiser:
    """x0 ~ 0.3 N(-0.8, 0.4²) + 0.7 N(0.8, 0.4²), the component shared by all elements of an item."""
    means = torch.stack([torch.full(shape, -0.8), torch.full(shape, 0.8)])
    return GaussianMixtureDenoiser(schedule, means, torch.full_like(means, 0.4), [0.3, 0.7])


def _sample(name, schedule, model, n, steps, spacing="trailing", seed=5):
    shape = model.sample_shape
    x_T = initial_noise((n, *shape), [index_generator(seed, i) for i in range(n)])
    gens = [index_generator(seed, i, salt="steps") for i in range(n)]
    return build_sampler(name, schedule, spacing=spacing).sample(model, x_T, steps=steps, generators=gens)


def _vp() -> NoiseSchedule:
    return NoiseSchedule(NoiseScheduleConfig(prediction_type="v_prediction", rescale_zero_terminal_snr=True))


@pytest.mark.parametrize(("name", "steps"), [("ddpm", 50), ("ddim", 50), ("dpmpp", 15), ("unipc", 15), ("rflow", 50)])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_samples_follow_the_data_distribution(name, steps, spatial_dims):
    schedule = (
        NoiseSchedule(NoiseScheduleConfig(objective="rflow", prediction_type="v_prediction")) if name == "rflow" else _vp()
    )
    model = _two_blobs(schedule, (1,) + (4,) * spatial_dims)
    x = _sample(name, schedule, model, N, steps)
    assert torch.isfinite(x).all()
    # the exact moments: mean 0.32, std sqrt(0.16 + 0.8² - 0.32²) = 0.835; 70 % of items in the + blob
    assert abs(x.mean().item() - model.data_mean().mean().item()) < 0.1
    assert abs(x.std(0).mean().item() - model.data_std().mean().item()) < 0.08
    assert abs((x.flatten(1).mean(1) > 0).float().mean().item() - 0.7) < 0.08
    within = x[x.flatten(1).mean(1) > 0].flatten(1).std(1).mean().item()  # spread inside the blob
    assert abs(within - 0.4) < 0.08


@pytest.mark.slow
def test_few_step_samplers_match_the_1000_step_ddpm_reference():
    schedule = _vp()
    model = _two_blobs(schedule, (1, 4, 4))
    n = 128
    ref = _sample("ddpm", schedule, model, n, 1000)
    ode = _sample("ddim", schedule, model, n, 1000)  # same x_T: the deterministic (probability-flow) path
    errors = {}
    for name, steps in [("ddim", 20), ("dpmpp", 10), ("unipc", 10), ("dpmpp", 20), ("unipc", 20)]:
        x = _sample(name, schedule, model, n, steps)
        assert abs(x.mean().item() - ref.mean().item()) < 0.1, name
        assert abs(x.std().item() - ref.std().item()) < 0.05, name
        errors[name, steps] = (x - ode).abs().mean().item()
    # measured: ddim 20 0.054, dpmpp/unipc 10 0.08, dpmpp/unipc 20 0.023 (mean |error| per element)
    assert errors["dpmpp", 10] < 0.12 and errors["unipc", 10] < 0.12
    assert errors["dpmpp", 20] < 0.04 and errors["unipc", 20] < 0.04
    assert errors["dpmpp", 20] < errors["ddim", 20] / 1.5  # second order beats first order at equal steps


def _black_background(shape: tuple[int, ...], schedule: NoiseSchedule) -> tuple[GaussianMixtureDenoiser, torch.Tensor]:
    """Background exactly -1 (black, std 1e-3); a centred foreground whose brightness is one of 5 levels in [0, 1]."""
    fg = torch.zeros(shape, dtype=torch.bool)
    fg[(slice(None), *(slice(s // 4, 3 * s // 4) for s in shape[1:]))] = True
    levels = torch.linspace(0.0, 1.0, 5)
    means = torch.stack([torch.where(fg, b, torch.tensor(-1.0)) for b in levels])
    stds = torch.where(fg, torch.tensor(0.05), torch.tensor(1e-3)).expand_as(means).clone()
    return GaussianMixtureDenoiser(schedule, means, stds), fg


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_background_stays_black_and_brightness_is_kept_with_trailing_zero_snr(spatial_dims):
    shape = (1, 16, 16) if spatial_dims == 2 else (1, 8, 8, 4)
    sd = {"schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}  # Stable Diffusion's schedule
    good = NoiseSchedule(NoiseScheduleConfig(**sd, prediction_type="v_prediction", rescale_zero_terminal_snr=True))
    flawed = NoiseSchedule(NoiseScheduleConfig(**sd, prediction_type="epsilon"))
    brightness = {}
    for name in ("ddim", "dpmpp", "unipc"):
        model, fg = _black_background(shape, good)
        x = _sample(name, good, model, 64, 10)
        assert (x[:, ~fg] + 1).abs().max() < 0.01, name  # background black
        brightness[name] = x[:, fg].mean().item()
        assert abs(brightness[name] - 0.5) < 0.06, name  # foreground brightness as in the data
    # Lin et al. 2024: leading spacing without zero terminal SNR starts from a step that still holds signal;
    # pure noise there lacks it, and the same noise gives darker ("greyer", towards the background) images.
    model, fg = _black_background(shape, flawed)
    x = _sample("dpmpp", flawed, model, 64, 10, spacing="leading")
    assert (x[:, ~fg] + 1).abs().max() < 0.01  # an exact model keeps the background in both cases
    assert x[:, fg].mean().item() < brightness["dpmpp"] - 0.05


@pytest.mark.parametrize("steps", [1, 4])
def test_an_rflow_network_that_outputs_x0_samples_as_one_that_outputs_the_velocity(steps):
    """A few-step student may predict the clean sample; the sampler derives the same velocity from it."""
    drawn = {}
    for prediction in ("v_prediction", "sample"):
        schedule = NoiseSchedule(NoiseScheduleConfig(objective="rflow", prediction_type=prediction))
        drawn[prediction] = _sample("rflow", schedule, _two_blobs(schedule, (1, 4, 4)), 16, steps)
    assert torch.allclose(drawn["sample"], drawn["v_prediction"], atol=1e-4)
    assert drawn["sample"].abs().max() < 3  # a sample, not noise amplified by a wrong conversion


def test_rflow_refuses_an_epsilon_network():
    with pytest.raises(ValueError, match="v_prediction or sample"):
        NoiseScheduleConfig(objective="rflow", prediction_type="epsilon")
