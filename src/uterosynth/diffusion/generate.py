"""Sample one batch: initial noise from per-item generators, guided sampling, decoding.

The one sampling path shared by the training preview and ``uterosynth sample``: item *i* of a
batch starts from noise drawn by ``noise_generators[i]`` (:func:`initial_noise`) and stochastic
samplers draw their per-step noise from ``step_generators[i]``, so an item is the same alone or
in a batch of any size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from .conditions import Condition, ConditionVocabulary
from .guidance import ConditionalModel, Guidance, guided_denoiser
from .samplers import Sampler, initial_noise

__all__ = ["sample_batch"]


@torch.no_grad()
def sample_batch(
    model: ConditionalModel,
    sampler: Sampler,
    sample_shape: Sequence[int],
    noise_generators: Sequence[torch.Generator],
    *,
    steps: int,
    condition: Condition | None = None,
    vocab: ConditionVocabulary | None = None,
    guidance: Guidance = None,
    step_generators: Sequence[torch.Generator] | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    context: Callable[[], contextlib.AbstractContextManager] | None = None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sample ``len(noise_generators)`` items and decode them to images in ``[0, 1]`` on the CPU.

    Args:
        model: ``model(x_t, t, condition) -> output`` (wrapped by :func:`guided_denoiser`).
        sampler: a built sampler (:func:`~uterosynth.diffusion.samplers.build_sampler`).
        sample_shape: ``(C, *spatial)`` of one item in the sampled space (latent or pixel).
        noise_generators: one generator per item for ``x_T``.
        steps: sampling steps.
        condition: the batch's condition, or ``None`` for an unconditional model.
        vocab: the model's condition vocabulary (empty when ``None``).
        guidance: ``None``, one scale or ``{name: scale}`` (see :mod:`.guidance`).
        step_generators: per-item generators for stochastic samplers' step noise (global RNG if None).
        prepare: moves ``x_T`` to the model's device/layout (default: unchanged).
        context: a fresh context manager around sampling and decoding (e.g. autocast).
        decode: sampled tensor ``(N, C, *spatial)`` -> images (latent diffusion), or ``None``.

    Returns:
        ``(N, 1, *image_spatial)`` float32 on the CPU, clamped to ``[0, 1]``.
    """
    x_T = initial_noise((len(noise_generators), *sample_shape), noise_generators)
    if prepare is not None:
        x_T = prepare(x_T)
    denoise = guided_denoiser(model, condition, vocab if vocab is not None else ConditionVocabulary(), guidance)
    with context() if context is not None else contextlib.nullcontext():
        z = sampler.sample(denoise, x_T, steps=steps, generators=step_generators)
        if decode is not None:
            z = decode(z)
        return z.float().clamp(0, 1).cpu()
