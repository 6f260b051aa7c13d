"""Samplers behind one interface, for tensors of any shape (2D and 3D), in a registry.

Every sampler is built from a :class:`~uterosynth.diffusion.schedule.NoiseSchedule` and offers::

    sampler.sample(denoise_fn, x_T, *, steps, generators=None, callback=None) -> Tensor

``denoise_fn(x_t, t) -> model output`` takes ``x_t`` (N, C, *spatial) and ``t`` (N,) model
timesteps and returns the network output in the schedule's prediction type (wrap a conditional
model with :func:`uterosynth.diffusion.guidance.guided_denoiser`). ``x_T`` is the initial noise,
drawn with :func:`initial_noise` from per-item generators; stochastic samplers keep drawing
their per-step noise item by item from the same generators, so sample *i* is the same alone or
in a batch of any size.

Registered samplers (``SAMPLERS.get(name)``):

==========  ==============================================================  ============
name        algorithm                                                       library
==========  ==============================================================  ============
``ddpm``    ancestral sampling, Ho et al. 2020 (respaced, Nichol &          diffusers
            Dhariwal 2021); stochastic
``ddim``    DDIM, eta = 0, Song et al. 2021 (respaced)                      diffusers
``dpmpp``   DPM-Solver++ (2M), Lu et al. 2022, Alg. 2                       diffusers
``unipc``   UniPC (B(h) = e^h - 1, order 2), Zhao et al. 2023               diffusers
``rflow``   Euler on the rectified flow, Liu et al. 2023                    MONAI
==========  ==============================================================  ============

Timesteps follow :func:`~uterosynth.diffusion.schedule.make_timesteps` (default ``trailing``,
which starts at the last, pure-noise step). diffusers' DDPM/DDIM schedulers assume evenly
spaced steps, so they are given the *respaced* schedule ``alpha_bar[t_k]`` over the chosen grid
(one scheduler step per sampling step) while the network sees the original ``t_k``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field

from ..core.config import StrictModel
from ..core.errors import ConfigError, DataError
from .registry import Registry
from .schedule import NoiseSchedule, Spacing, flow_velocity, make_timesteps

__all__ = [
    "SAMPLERS",
    "Sampler",
    "SamplerConfig",
    "StepInfo",
    "DenoiseFn",
    "build_sampler",
    "initial_noise",
]

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What a callback sees after each step: step ``index`` of ``steps``, model time ``t``,
    the new state ``x`` and the denoised estimate ``x0`` made at this step (both (N, C, *spatial))."""

    index: int
    steps: int
    t: torch.Tensor
    x: torch.Tensor
    x0: torch.Tensor


Callback = Callable[[StepInfo], None]


class SamplerConfig(StrictModel):
    """Sampler choice as stored in a synthetic set's ``synthetic.json``."""

    name: str = "dpmpp"
    steps: int = Field(20, ge=1)
    spacing: Spacing = "trailing"


def initial_noise(
    shape: Sequence[int], generators: Sequence[torch.Generator], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``x_T`` of shape ``(N, C, *spatial)``: item *i* drawn from ``generators[i]`` on its device.

    Raises:
        DataError: the number of generators is not ``N``.
    """
    if len(generators) != shape[0]:
        raise DataError(f"generators: expected one per item ({shape[0]}), got {len(generators)}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generators])


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


class Sampler(ABC):
    """Base class: validation, the step loop and the callback are shared; subclasses step.

    Args:
        schedule: the noise schedule the model was trained with.
        spacing: timestep spacing (``trailing``, ``leading``, ``linspace``).

    Raises:
        ConfigError: the sampler does not fit the schedule's objective.
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    objectives: ClassVar[frozenset[str]] = frozenset({"ddpm"})

    def __init__(self, schedule: NoiseSchedule, *, spacing: Spacing = "trailing") -> None:
        if schedule.objective not in self.objectives:
            fits = ", ".join(n for n in SAMPLERS.names() if schedule.objective in SAMPLERS.get(n).objectives)
            raise ConfigError(
                f"sampler '{self.name}': the model was trained with objective '{schedule.objective}'; "
                f"use one of: {fits}"
            )
        self.schedule = schedule
        self.spacing = spacing

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name}, spacing={self.spacing}, schedule={self.schedule})"

    def timesteps(self, steps: int) -> torch.Tensor:
        """The descending model timesteps the sampler visits for ``steps`` steps."""
        return make_timesteps(self.spacing, steps, self.schedule.num_train_timesteps)

    def _check(self, x_T: torch.Tensor, steps: int, generators: Sequence[torch.Generator] | None) -> None:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ConfigError(f"steps: expected an integer >= 1, got {steps!r}")
        if x_T.ndim < 3:
            raise DataError(f"x_T: expected (N, C, *spatial), got shape {tuple(x_T.shape)}")
        if generators is not None and len(generators) != x_T.shape[0]:
            raise DataError(f"generators: expected one per item ({x_T.shape[0]}), got {len(generators)}")

    def sample(
        self,
        denoise_fn: DenoiseFn,
        x_T: torch.Tensor,
        *,
        steps: int,
        generators: Sequence[torch.Generator] | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Integrate from ``x_T`` (N, C, *spatial) to a sample of the same shape in ``steps`` model calls.

        Raises:
            ConfigError: ``steps`` < 1 or > T.
            DataError: ``x_T`` of a bad shape or a wrong number of generators.
        """
        self._check(x_T, steps, generators)
        steps = int(steps)
        n = x_T.shape[0]
        x = x_T
        stepper = self._stepper(steps, x_T)
        for index, t in enumerate(stepper.model_timesteps):
            t_batch = t.to(x.device).expand(n)
            out = denoise_fn(x, t_batch).to(x.dtype)
            x_new = stepper.step(index, out, x, generators)
            if callback is not None:
                x0 = self.schedule.predict_x0(out, x, t_batch)
                callback(StepInfo(index, len(stepper.model_timesteps), t, x_new, x0))
            x = x_new
        return x

    @abstractmethod
    def _stepper(self, steps: int, x_T: torch.Tensor) -> _Stepper:
        """A fresh per-run state: the model timesteps and a ``step(index, out, x, generators)``."""


@dataclass
class _Stepper:
    model_timesteps: torch.Tensor
    step: Callable[[int, torch.Tensor, torch.Tensor, Sequence[torch.Generator] | None], torch.Tensor]


def build_sampler(name: str, schedule: NoiseSchedule, *, spacing: Spacing = "trailing") -> Sampler:
    """The registered sampler ``name`` for ``schedule``.

    Raises:
        ConfigError: unknown name, or the sampler does not fit the schedule's objective.
    """
    return SAMPLERS.get(name)(schedule, spacing=spacing)


# --------------------------------------------------------------------------------------------
# diffusers DDPM / DDIM on the respaced schedule
# --------------------------------------------------------------------------------------------


class _RespacedSampler(Sampler):
    """A diffusers scheduler over the *respaced* schedule: one scheduler step per sampling step.

    diffusers' DDPM/DDIM step from ``t`` to ``t - T // steps``, which leaves the visited grid
    when ``steps`` does not divide ``T`` (``trailing`` 999, 832, … would step to 833) and ends at
    ``alpha_bar[0]`` instead of a clean sample. So each gets ``steps`` training timesteps whose
    betas give exactly ``alpha_bar[t_k]`` over the chosen grid (Nichol & Dhariwal 2021, sec. 4);
    the scheduler steps from index ``k`` to ``k - 1`` (and to ``alpha_bar = 1`` after the last)
    while the network sees the original ``t_k``.
    """

    scheduler_class: ClassVar[str] = ""
    options: ClassVar[dict] = {}

    def _stepper(self, steps: int, x_T: torch.Tensor) -> _Stepper:
        import diffusers

        ts = self.timesteps(steps)
        ab = self.schedule.alphas_cumprod[ts.flip(0)]  # ascending in the respaced index
        betas = 1.0 - ab.double() / torch.cat([ab.new_ones(1), ab[:-1]]).double()
        sched = getattr(diffusers, self.scheduler_class)(
            num_train_timesteps=steps,
            trained_betas=betas.float().numpy(),
            prediction_type=self.schedule.prediction_type,
            clip_sample=False,
            **self.options,
        )
        sched.alphas_cumprod = ab.clone()  # the exact alpha_bar[t_k]; the cumprod of the betas rounds
        sched.set_timesteps(steps, device=x_T.device)

        def step(index: int, out: torch.Tensor, x: torch.Tensor, generators) -> torch.Tensor:
            kwargs = {"generator": list(generators)} if (self.stochastic and generators is not None) else {}
            return sched.step(out, int(sched.timesteps[index]), x, return_dict=False, **kwargs)[0]

        return _Stepper(ts, step)


@SAMPLERS.register("ddim")
class DDIMSampler(_RespacedSampler):
    """Deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0) through diffusers' ``DDIMScheduler``."""

    name = "ddim"
    scheduler_class = "DDIMScheduler"
    options = {"set_alpha_to_one": True}


@SAMPLERS.register("ddpm")
class DDPMSampler(_RespacedSampler):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2), fixed-small variance, via diffusers' ``DDPMScheduler``.

    The step noise comes item by item from the per-item generators (diffusers' ``randn_tensor``
    with a list of generators), so sample *i* does not depend on the batch; the last step adds
    no noise (diffusers adds none at its timestep 0).
    """

    name = "ddpm"
    stochastic = True
    scheduler_class = "DDPMScheduler"
    options = {"variance_type": "fixed_small"}


@SAMPLERS.register("rflow")
class RFlowSampler(Sampler):
    """Euler integration of the rectified flow through MONAI's ``RFlowScheduler``.

    MONAI's grid ``t_k = T (1 - k/steps)`` starts at pure noise (``t = T``), so only the
    ``trailing`` spacing is accepted.
    """

    name = "rflow"
    objectives = frozenset({"rflow"})

    def __init__(self, schedule: NoiseSchedule, *, spacing: Spacing = "trailing") -> None:
        super().__init__(schedule, spacing=spacing)
        if spacing != "trailing":
            raise ConfigError(f"sampler 'rflow': spacing '{spacing}' is not supported; its grid always starts at pure noise (trailing)")

    def _scheduler(self, steps: int):
        from monai.networks.schedulers import RFlowScheduler

        if steps > self.schedule.num_train_timesteps:
            raise ConfigError(f"steps: expected 1 to {self.schedule.num_train_timesteps} (the training timesteps), got {steps}")
        sched = RFlowScheduler(num_train_timesteps=self.schedule.num_train_timesteps, use_discrete_timesteps=True)
        sched.set_timesteps(steps)
        return sched

    def timesteps(self, steps: int) -> torch.Tensor:
        return self._scheduler(steps).timesteps

    def _stepper(self, steps: int, x_T: torch.Tensor) -> _Stepper:
        sched = self._scheduler(steps)
        ts = sched.timesteps
        following = torch.cat([ts[1:], ts.new_zeros(1)])

        def step(index: int, out: torch.Tensor, x: torch.Tensor, generators) -> torch.Tensor:
            if self.schedule.network_output != "flow":  # an x0 output: its velocity (x0 - x_t) / sigma
                t = ts[index].to(x.device).expand(x.shape[0])
                out = flow_velocity(self.schedule.predict_x0(out, x, t), self.schedule.predict_eps(out, x, t))
            return sched.step(out, int(ts[index]), x, int(following[index]))[0]

        return _Stepper(ts, step)


# --------------------------------------------------------------------------------------------
# diffusers multistep solvers
# --------------------------------------------------------------------------------------------


class _DiffusersSampler(Sampler):
    """A diffusers scheduler over the same betas (``trained_betas``) and spacing; one per run."""

    scheduler_class: ClassVar[str] = ""
    options: ClassVar[dict] = {}

    def _make(self, steps: int, device: torch.device):
        import diffusers

        cls = getattr(diffusers, self.scheduler_class)
        cfg = self.schedule.config
        sched = cls(
            num_train_timesteps=cfg.num_train_timesteps,
            trained_betas=self.schedule.betas.numpy(),
            prediction_type=cfg.prediction_type,
            rescale_betas_zero_snr=cfg.rescale_zero_terminal_snr,
            timestep_spacing=self.spacing,
            final_sigmas_type="zero",
            lower_order_final=True,
            solver_order=2,
            **self.options,
        )
        sched.set_timesteps(steps, device=device)
        return sched

    def timesteps(self, steps: int) -> torch.Tensor:
        make_timesteps(self.spacing, steps, self.schedule.num_train_timesteps)  # validates
        return self._make(steps, torch.device("cpu")).timesteps.cpu()

    def _stepper(self, steps: int, x_T: torch.Tensor) -> _Stepper:
        make_timesteps(self.spacing, steps, self.schedule.num_train_timesteps)
        sched = self._make(steps, x_T.device)

        def step(index: int, out: torch.Tensor, x: torch.Tensor, generators) -> torch.Tensor:
            return sched.step(out, sched.timesteps[index], x, return_dict=False)[0]

        return _Stepper(sched.timesteps, step)


@SAMPLERS.register("dpmpp")
class DPMSolverPlusPlusSampler(_DiffusersSampler):
    """DPM-Solver++ (2M), data prediction, multistep (Lu et al. 2022, Alg. 2) via diffusers."""

    name = "dpmpp"
    scheduler_class = "DPMSolverMultistepScheduler"
    options = {"algorithm_type": "dpmsolver++", "solver_type": "midpoint"}


@SAMPLERS.register("unipc")
class UniPCSampler(_DiffusersSampler):
    """UniPC with B(h) = e^h - 1 (bh2), order 2, data prediction (Zhao et al. 2023) via diffusers."""

    name = "unipc"
    scheduler_class = "UniPCMultistepScheduler"
    options = {"solver_type": "bh2", "predict_x0": True}
