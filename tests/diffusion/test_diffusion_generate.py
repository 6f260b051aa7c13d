"""sample_batch: the one sampling path of the preview and ``sample``, equal to the sampler loop it wraps."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.seeding import index_generator
from uterosynth.diffusion.conditions import ConditionVocabulary
from uterosynth.diffusion.generate import sample_batch
from uterosynth.diffusion.guidance import guided_denoiser
from uterosynth.diffusion.samplers import build_sampler, initial_noise
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig


def _model(x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
    return 0.3 * x + 0.001 * t.float().reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("name", ["ddpm", "dpmpp"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sample_batch_equals_the_sampler_loop(name, spatial_dims):
    schedule = NoiseSchedule(NoiseScheduleConfig(num_train_timesteps=50))
    sampler = build_sampler(name, schedule)
    shape = (1, 8, 8) if spatial_dims == 2 else (1, 8, 8, 4)
    gens = [index_generator(3, i) for i in range(2)]
    steps_gens = [index_generator(3, i, salt="steps") for i in range(2)]
    ours = sample_batch(_model, sampler, shape, gens, steps=5, step_generators=steps_gens,
                        decode=lambda z: z * 0.5 + 0.5)
    x_T = initial_noise((2, *shape), [index_generator(3, i) for i in range(2)])
    denoise = guided_denoiser(_model, None, ConditionVocabulary(), None)
    z = sampler.sample(denoise, x_T, steps=5, generators=[index_generator(3, i, salt="steps") for i in range(2)])
    assert torch.equal(ours, (z * 0.5 + 0.5).float().clamp(0, 1).cpu())
    assert ours.shape == (2, *shape) and ours.min() >= 0 and ours.max() <= 1
    alone = sample_batch(_model, sampler, shape, [index_generator(3, 1)], steps=5,
                         step_generators=[index_generator(3, 1, salt="steps")], decode=lambda z: z * 0.5 + 0.5)
    torch.testing.assert_close(alone[0], ours[1])
