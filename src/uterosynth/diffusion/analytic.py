"""An exact denoiser for Gaussian-mixture data: a "perfectly trained" model for tests and benchmarks.

For ``x0 ~ sum_k pi_k N(mu_k, diag(s_k**2))`` and ``x_t = alpha x0 + sigma eps`` the posterior
mean is known in closed form (e.g. Karras et al. 2022, app. B.3 for the single Gaussian):

    p(k | x_t)   ∝ pi_k prod_j N(x_t[j]; alpha mu_k[j], alpha**2 s_k[j]**2 + sigma**2)
    E[x0 | x_t, k] = mu_k + alpha s_k**2 / (alpha**2 s_k**2 + sigma**2) * (x_t - alpha mu_k)
    E[x0 | x_t]    = sum_k p(k | x_t) E[x0 | x_t, k]

The minimiser of every diffusion loss is a function of ``E[x0 | x_t]`` (eps, v or x0 follow from
it at fixed ``x_t``), so :class:`GaussianMixtureDenoiser` is what a network with infinite
capacity and data would learn — the ideal model to check samplers against without training.

Components can carry attribute labels (e.g. ``{"orientation": [0, 1]}``); a condition then
restricts the mixture to the matching components (its null token marginalises), which makes the
model an exact class-conditional denoiser for classifier-free-guidance tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .conditions import Condition, ConditionVocabulary
from .schedule import NoiseSchedule

__all__ = ["GaussianMixtureDenoiser"]


class GaussianMixtureDenoiser:
    """Exact model output for diagonal Gaussian-mixture data under a :class:`NoiseSchedule`.

    Args:
        schedule: the noise schedule (sets the prediction type of the output).
        means: ``(K, C, *spatial)`` component means.
        stds: ``(K, C, *spatial)`` component standard deviations (> 0).
        weights: ``(K,)`` mixture weights (normalised here); default uniform.
        labels: ``{attribute: [value index of component k for k in range(K)]}``.
        vocab: vocabulary the labels index into (null index = ``len(values)``).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        means: torch.Tensor,
        stds: torch.Tensor,
        weights: Sequence[float] | torch.Tensor | None = None,
        *,
        labels: Mapping[str, Sequence[int]] | None = None,
        vocab: ConditionVocabulary | None = None,
    ) -> None:
        if means.shape != stds.shape:
            raise ValueError(f"means {tuple(means.shape)} and stds {tuple(stds.shape)} differ in shape")
        self.schedule = schedule
        self.means = means.to(torch.float64)
        self.stds = stds.to(torch.float64)
        k = means.shape[0]
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.log_weights = (w / w.sum()).log()
        self.labels = {name: torch.as_tensor(v, dtype=torch.long) for name, v in (labels or {}).items()}
        self.vocab = vocab or ConditionVocabulary()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    def data_mean(self) -> torch.Tensor:
        """Element-wise mean of the data distribution ``(C, *spatial)``."""
        w = self.log_weights.exp().reshape(-1, *([1] * (self.means.ndim - 1)))
        return (w * self.means).sum(0)

    def data_std(self) -> torch.Tensor:
        """Element-wise standard deviation of the data distribution ``(C, *spatial)``."""
        w = self.log_weights.exp().reshape(-1, *([1] * (self.means.ndim - 1)))
        second = (w * (self.stds**2 + self.means**2)).sum(0)
        return (second - self.data_mean() ** 2).clamp(min=0).sqrt()

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, C, *spatial)`` from the data distribution."""
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn((n, *self.sample_shape), generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.stds[comp] * eps).to(torch.float32)

    def _component_mask(self, condition: Condition | None, n: int) -> torch.Tensor:
        """``(N, K)`` bool: components compatible with each item's condition."""
        k = self.means.shape[0]
        mask = torch.ones((n, k), dtype=torch.bool)
        if condition is None:
            return mask
        for name, idx in condition.attributes.items():
            if name not in self.labels:
                continue
            idx = idx.cpu()
            null = idx == self.vocab.null_index(name)
            match = self.labels[name][None, :] == idx[:, None]
            mask &= match | null[:, None]
        return mask

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        """``E[x0 | x_t, condition]`` with ``x_t`` (N, C, *spatial) and ``t`` (N,) or a number."""
        alpha, sigma = self.schedule.alpha_sigma(t, x_t.to(torch.float64))
        x = x_t.to(torch.float64)[:, None]  # (N, 1, C, *spatial)
        alpha, sigma = alpha[:, None], sigma[:, None]
        mu, s2 = self.means[None].to(x.device), self.stds[None].to(x.device) ** 2  # (1, K, ...)
        var = alpha**2 * s2 + sigma**2
        reduce = tuple(range(2, x.ndim))
        loglik = -0.5 * (((x - alpha * mu) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(reduce)
        mask = self._component_mask(condition, x_t.shape[0]).to(x.device)
        logits = torch.where(mask, loglik + self.log_weights.to(x.device), torch.tensor(-math.inf, dtype=x.dtype))
        resp = torch.softmax(logits, dim=1).reshape(*logits.shape, *([1] * (x.ndim - 2)))
        x0_k = mu + alpha * s2 / var * (x - alpha * mu)
        return (resp * x0_k).sum(1).to(x_t.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        """The model output (eps, v or x0 per the schedule) of a perfectly trained network."""
        x0 = self.x0(x_t, t, condition)
        alpha, sigma = self.schedule.alpha_sigma(t, x_t.to(torch.float64))
        x64 = x_t.to(torch.float64)
        eps = (x64 - alpha * x0.to(torch.float64)) / sigma.clamp(min=1e-12)
        return self.schedule.model_output_from(x0.to(torch.float64), eps, t).to(x_t.dtype)
