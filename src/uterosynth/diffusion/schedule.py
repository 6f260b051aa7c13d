"""Noise schedules and the diffusion maths, in one vocabulary for training and sampling.

Every forward process here is a Gaussian path ``x_t = alpha * x0 + sigma * eps`` with
``eps ~ N(0, I)``:

* objective ``ddpm`` (variance preserving, Ho et al. 2020): ``alpha = sqrt(alpha_bar[t])``,
  ``sigma = sqrt(1 - alpha_bar[t])`` for integer ``t`` in ``[0, T)``, ``alpha_bar`` the
  cumulative product of ``1 - beta``. The velocity is ``v = alpha * eps - sigma * x0``
  (Salimans & Ho 2022, "Progressive Distillation", eq. 9).
* objective ``rflow`` (rectified flow, Liu et al. 2023; MONAI ``RFlowScheduler``):
  ``sigma = t / T``, ``alpha = 1 - sigma`` for ``t`` in ``(0, T]`` (``t = T`` is pure noise),
  and the model predicts the velocity ``v = x0 - eps`` (MONAI's sign convention), or ``x0``
  (``prediction_type: sample``), from which the sampler derives the velocity.

The betas come from MONAI's ``NoiseSchedules`` (``linear_beta``, ``scaled_linear_beta``,
``cosine``); zero-terminal-SNR rescaling is diffusers' ``rescale_zero_terminal_snr`` (Lin et al.
2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1). Tests check that
``alpha_bar`` equals MONAI's and diffusers' for every schedule, and that :meth:`NoiseSchedule.add_noise`
equals MONAI's ``add_noise``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ..core.config import StrictModel
from ..core.errors import ConfigError

__all__ = [
    "NoiseScheduleConfig",
    "NoiseSchedule",
    "Spacing",
    "make_timesteps",
    "predict_x0_from_eps",
    "predict_eps_from_x0",
    "predict_x0_from_v",
    "predict_eps_from_v",
    "predict_v",
    "predict_x0_from_flow",
    "predict_eps_from_flow",
    "flow_velocity",
]

Spacing = Literal["trailing", "leading", "linspace"]

_MONAI_SCHEDULES = {"linear": "linear_beta", "scaled_linear": "scaled_linear_beta", "cosine": "cosine"}


class NoiseScheduleConfig(StrictModel):
    """How noise is added in training and removed in sampling (saved in ``model.json``).

    Attributes:
        objective: ``ddpm`` (discrete variance-preserving diffusion) or ``rflow`` (rectified flow).
        num_train_timesteps: ``T``, the number of training timesteps.
        schedule: beta schedule of the ``ddpm`` objective (MONAI ``NoiseSchedules``).
        beta_start, beta_end: range of the linear / scaled-linear schedules (unused by cosine).
        prediction_type: what the network outputs: ``epsilon``, ``v_prediction`` or ``sample``
            (``x0``). ``rflow`` predicts its velocity ``x0 - eps`` (``v_prediction``) or ``x0``
            (``sample``: a few-step student of a pixel-space teacher, whose velocity the sampler
            derives as ``(x0 - x_t) / sigma``).
        rescale_zero_terminal_snr: rescale betas so that ``alpha_bar[T-1] = 0`` (Lin et al. 2024);
            needs ``v_prediction`` or ``sample``.
    """

    objective: Literal["ddpm", "rflow"] = "ddpm"
    num_train_timesteps: int = Field(1000, ge=2, le=100_000)
    schedule: Literal["linear", "scaled_linear", "cosine"] = "linear"
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(2e-2, gt=0.0, lt=1.0)
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    rescale_zero_terminal_snr: bool = False

    @model_validator(mode="after")
    def _check(self) -> NoiseScheduleConfig:
        if self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be smaller than beta_end ({self.beta_end})")
        if self.objective == "rflow" and self.prediction_type == "epsilon":
            raise ValueError("objective 'rflow' predicts the flow velocity or the clean sample: set prediction_type: "
                             "v_prediction or sample")
        if self.objective == "rflow" and self.rescale_zero_terminal_snr:
            raise ValueError("objective 'rflow' already ends at pure noise: set rescale_zero_terminal_snr: false")
        if self.rescale_zero_terminal_snr and self.prediction_type == "epsilon":
            raise ValueError(
                "rescale_zero_terminal_snr makes x0 unrecoverable from epsilon at the last step "
                "(Lin et al. 2024, sec. 3.2): set prediction_type: v_prediction"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Conversions, in pairs. ``alpha`` and ``sigma`` broadcast against ``x_t`` (e.g. (N, 1, 1, 1)).
# ---------------------------------------------------------------------------------------------


def predict_x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - sigma * eps) / alpha`` (Ho et al. 2020, eq. 15)."""
    return (x_t - sigma * eps) / alpha


def predict_eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``eps = (x_t - alpha * x0) / sigma``."""
    return (x_t - alpha * x0) / sigma


def predict_v(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Variance-preserving velocity ``v = alpha * eps - sigma * x0`` (Salimans & Ho 2022)."""
    return alpha * eps - sigma * x0


def predict_x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x0 = alpha * x_t - sigma * v`` (needs ``alpha**2 + sigma**2 = 1``)."""
    return alpha * x_t - sigma * v


def predict_eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``eps = sigma * x_t + alpha * v`` (needs ``alpha**2 + sigma**2 = 1``)."""
    return sigma * x_t + alpha * v


def flow_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Rectified-flow velocity as MONAI's ``RFlowScheduler`` learns it: ``v = x0 - eps``."""
    return x0 - eps


def predict_x0_from_flow(x_t: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x0 = x_t + sigma * v`` for ``x_t = (1 - sigma) x0 + sigma eps`` and ``v = x0 - eps``."""
    return x_t + sigma * v


def predict_eps_from_flow(x_t: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``eps = x_t - (1 - sigma) * v``."""
    return x_t - (1.0 - sigma) * v


_Conversion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _as_is(x_t: torch.Tensor, output: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return output


_IMPLIED: dict[str, dict[str, _Conversion]] = {
    # what the network outputs -> x0 and eps from ``(x_t, output, alpha, sigma)``
    "sample": {"x0": _as_is, "eps": predict_eps_from_x0},
    "epsilon": {"x0": predict_x0_from_eps, "eps": _as_is},
    "v_prediction": {"x0": predict_x0_from_v, "eps": predict_eps_from_v},
    "flow": {"x0": lambda x_t, v, alpha, sigma: predict_x0_from_flow(x_t, v, sigma),
             "eps": lambda x_t, v, alpha, sigma: predict_eps_from_flow(x_t, v, sigma)},
}


# ---------------------------------------------------------------------------------------------


def make_timesteps(spacing: Spacing, steps: int, num_train_timesteps: int) -> torch.Tensor:
    """Descending integer timesteps for ``steps`` sampling steps (Lin et al. 2024, Table 2).

    The same formulas as diffusers' ``DPMSolverMultistepScheduler`` / ``UniPCMultistepScheduler``
    ``set_timesteps`` (a test checks it), so every sampler walks the same grid:

    * ``trailing``: ``round(arange(T, 0, -T/steps)) - 1`` — starts at ``T - 1``, the last
      (pure-noise under zero terminal SNR) step. The default.
    * ``leading``: ``arange(0, steps + 1) * (T // (steps + 1))``, reversed, last dropped — never
      reaches ``T - 1`` (Stable Diffusion's flaw).
    * ``linspace``: ``round(linspace(0, T - 1, steps + 1))``, reversed, last dropped.

    Raises:
        ConfigError: ``steps`` is smaller than 1 or larger than ``T``.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ConfigError(f"steps: expected 1 to {num_train_timesteps} (the training timesteps), got {steps}")
    T = num_train_timesteps
    if spacing == "trailing":
        ts = np.arange(T, 0, -T / steps).round().astype(np.int64) - 1
    elif spacing == "leading":
        ts = (np.arange(0, steps + 1) * (T // (steps + 1))).round()[::-1][:-1].astype(np.int64)
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    else:
        raise ConfigError(f"spacing: expected trailing, leading or linspace, got '{spacing}'")
    if len(np.unique(ts)) != steps:
        raise ConfigError(
            f"steps: {steps} steps repeat timesteps with '{spacing}' spacing over T={T}; "
            "use fewer steps or the trailing spacing"
        )
    return torch.from_numpy(ts.copy())


def _right_pad(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


class NoiseSchedule:
    """A noise schedule built from :class:`NoiseScheduleConfig`: forward process, targets, conversions.

    Timesteps ``t`` are ``(N,)`` tensors (or Python numbers, broadcast to the batch): integers
    in ``[0, T)`` for ``ddpm``; numbers in ``(0, T]`` for ``rflow``.

    Attributes:
        config: the configuration it was built from.
        betas, alphas_cumprod: ``(T,)`` float32 tensors (``ddpm``; for ``rflow`` the schedule is
            continuous and ``alphas_cumprod`` holds ``(1 - t/T)**2`` for reference only).
    """

    def __init__(self, config: NoiseScheduleConfig) -> None:
        from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr
        from monai.networks.schedulers import NoiseSchedules

        self.config = config
        T = config.num_train_timesteps
        if config.objective == "ddpm":
            name = _MONAI_SCHEDULES[config.schedule]
            args = {} if config.schedule == "cosine" else {"beta_start": config.beta_start, "beta_end": config.beta_end}
            out = NoiseSchedules[name](num_train_timesteps=T, **args)
            betas = out[0] if isinstance(out, tuple) else out
            if config.rescale_zero_terminal_snr:
                betas = rescale_zero_terminal_snr(betas)
            self.betas = betas.to(torch.float32)
            self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        else:
            self.betas = torch.zeros(T)
            self.alphas_cumprod = (1.0 - torch.arange(T, dtype=torch.float32) / T) ** 2

    @classmethod
    def from_config(cls, config: NoiseScheduleConfig | dict) -> NoiseSchedule:
        if not isinstance(config, NoiseScheduleConfig):
            config = NoiseScheduleConfig.model_validate(config)
        return cls(config)

    def __repr__(self) -> str:
        c = self.config
        return (f"NoiseSchedule(objective={c.objective}, schedule={c.schedule}, T={c.num_train_timesteps}, "
                f"prediction={c.prediction_type}, zero_terminal_snr={c.rescale_zero_terminal_snr})")

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    @property
    def prediction_type(self) -> str:
        return self.config.prediction_type

    @property
    def objective(self) -> str:
        return self.config.objective

    # -- coefficients --------------------------------------------------------------------------

    def _t(self, t: torch.Tensor | float | int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=like.device)
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        return t

    def alpha_sigma(self, t: torch.Tensor | float | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, sigma)`` at ``t``, shaped ``(N, 1, ..., 1)`` to broadcast against ``like`` (N, C, *spatial)."""
        t = self._t(t, like)
        if self.objective == "ddpm":
            ab = self.alphas_cumprod.to(like.device)[t.long()]
            alpha, sigma = ab.sqrt(), (1.0 - ab).sqrt()
        else:
            sigma = t.to(torch.float32) / self.num_train_timesteps
            alpha = 1.0 - sigma
        return _right_pad(alpha.to(like.dtype), like.ndim), _right_pad(sigma.to(like.dtype), like.ndim)

    def snr(self, t: torch.Tensor | float | int, like: torch.Tensor | None = None) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha**2 / sigma**2`` at ``t``, shape ``(N,)``."""
        like = like if like is not None else torch.zeros(torch.as_tensor(t).reshape(-1).shape[0])
        alpha, sigma = self.alpha_sigma(t, like.reshape(like.shape[0]))
        return alpha**2 / sigma**2

    # -- forward process and training ------------------------------------------------------------

    def sample_timesteps(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``n`` uniform training timesteps ``(N,)`` (long): ``[0, T)`` for ``ddpm``, ``[1, T]`` for ``rflow``.

        For ``rflow`` the range is shifted by one from MONAI's ``RFlowScheduler.sample_timesteps``
        so that ``t = T``, where sampling starts, is trained and ``t = 0`` (no noise) is not.
        """
        dev = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=dev)
        return (t + 1 if self.objective == "rflow" else t).to(device)


    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = alpha * x0 + sigma * eps``; ``x0``/``eps`` (N, C, *spatial), ``t`` (N,)."""
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps

    def training_target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network must output at ``x_t = add_noise(x0, eps, t)``: eps, v or x0."""
        return self.model_output_from(x0, eps, t)

    def min_snr_weight(self, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
        """Min-SNR-gamma loss weights ``(N,)`` for the configured prediction (Hang et al. 2023, eq. 9).

        The x0-space weight ``min(SNR, gamma)`` is divided by how much the target amplifies an
        x0 error at fixed ``x_t``: ``SNR`` for epsilon, ``1 / sigma**2`` for a velocity
        (``SNR + 1`` in the variance-preserving case), 1 for ``sample``. A zero SNR gives weight 0.
        """
        if gamma <= 0:
            raise ConfigError(f"min_snr_gamma: expected a positive number, got {gamma}")
        like = torch.zeros(torch.as_tensor(t).reshape(-1).shape[0])
        alpha, sigma = self.alpha_sigma(t, like)
        snr = alpha**2 / sigma**2
        clipped = torch.clamp(snr, max=gamma)
        if self.prediction_type == "epsilon":
            return torch.where(snr > 0, clipped / snr.clamp(min=1e-20), torch.zeros_like(snr))
        if self.prediction_type == "v_prediction":
            return clipped * sigma**2
        return clipped

    # -- conversions of model outputs --------------------------------------------------------------

    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean sample implied by a model output (any prediction type)."""
        return self._implied("x0", model_output, x_t, t)

    def predict_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise implied by a model output (any prediction type)."""
        return self._implied("eps", model_output, x_t, t)

    def _implied(self, what: Literal["x0", "eps"], model_output: torch.Tensor, x_t: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        """``x0`` or ``eps`` implied by a model output, through the conversion pair of what the network outputs."""
        alpha, sigma = self.alpha_sigma(t, x_t)
        output = self.network_output
        return _IMPLIED[output][what](x_t, model_output, alpha, sigma)

    @property
    def network_output(self) -> str:
        """What the network outputs: ``flow`` (an ``rflow`` velocity), or the prediction type."""
        return "flow" if self.objective == "rflow" and self.prediction_type == "v_prediction" else self.prediction_type

    def model_output_from(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The output a perfect network would give for this ``(x0, eps)`` pair (inverse of the above)."""
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return x0
        if self.objective == "rflow":
            return flow_velocity(x0, eps)
        alpha, sigma = self.alpha_sigma(t, x0)
        return predict_v(x0, eps, alpha, sigma)

    def model_output_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The output of a denoiser whose estimate of the clean sample is ``x0`` at ``(x_t, t)``.

        Uses ``eps = (x_t - alpha x0) / sigma``; at ``sigma = 0`` (never sampled) eps is 0.
        """
        alpha, sigma = self.alpha_sigma(t, x_t)
        eps = (x_t - alpha * x0) / sigma.clamp(min=1e-12)
        return self.model_output_from(x0, eps, t)

    def posterior_step(
        self, x0: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of ``q(x_prev | x_t, x0)`` between two ``ddpm`` timesteps.

        Ho et al. 2020, eqs. 6–7, with ``beta = 1 - alpha_bar_t / alpha_bar_prev`` so that it also
        holds between non-adjacent (respaced) timesteps (Nichol & Dhariwal 2021, sec. 4).
        Equal to DDIM with ``eta = 1`` (Song et al. 2021, eq. 16).
        """
        beta = 1.0 - alpha_bar_t / alpha_bar_prev
        mean = (alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar_t)) * x0 + (
            (1.0 - beta).sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
        ) * x_t
        var = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * beta
        return mean, var.clamp(min=1e-20).sqrt()
