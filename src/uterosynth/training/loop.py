"""One training loop for every model: AdamW, AMP, accumulation, EMA, DDP, checkpoints, resume.

The trainer receives its parts (networks, optimisers, a step function, the training set and
a validation callback); it builds none of them, so the autoencoder and diffusion trainers, and
tests with tiny networks, all use the same loop. A training step runs the phases the step
function asks for (e.g. ``generator`` then ``discriminator``); each phase owns one optimiser
and the networks it updates, accumulates gradients over ``grad_accum`` micro-batches and
steps its optimiser once.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

import torch
from torch import nn

from ..core import checkpoint as ckpt
from ..core.artifacts import atomic_write_text, provenance
from ..core.distributed import DistInfo, all_true, barrier, gather_objects
from ..core.errors import ConfigError, DataError, first_line
from ..core.precision import cpu_flags, network_dims, resolve_precision
from ..core.seeding import seed_everything
from .config import LoopConfig, OptimizerConfig
from .data import ResumableBatches, resumable_loader

__all__ = [
    "Parts",
    "OptimGroup",
    "StepFunction",
    "Run",
    "RunOptions",
    "Trainer",
    "TrainResult",
    "NonFiniteLossError",
    "apply_schedule",
    "load_optimizer_state",
    "scheduled_lr",
    "make_adamw",
    "autocast_context",
]


class NonFiniteLossError(ConfigError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept.

    A config error: the fix is a lower learning rate or another precision.
    """


class Parts:
    """Named networks as the step function sees them.

    ``parts["name"]`` is the network to train with (DDP-wrapped and/or compiled);
    ``parts.raw["name"]`` the plain module (for forward passes whose gradients are not synced,
    validation, saving).
    """

    def __init__(self, modules: Mapping[str, nn.Module]):
        self.raw: dict[str, nn.Module] = dict(modules)
        self.run: dict[str, nn.Module] = dict(modules)

    def __getitem__(self, name: str) -> nn.Module:
        return self.run[name]

    def __contains__(self, name: str) -> bool:
        return name in self.raw


@dataclass
class OptimGroup:
    """One optimiser and the named parts it updates."""

    name: str
    optimizer: torch.optim.Optimizer
    modules: tuple[str, ...]
    grad_clip: float | None = None


class StepFunction(Protocol):
    """What a model-specific trainer supplies to the loop."""

    def phases(self, step: int) -> Sequence[str]:
        """Names of the optimiser groups to run at ``step``, in order."""

    def loss(
        self, phase: str, batch: dict[str, Any], parts: Parts, *, step: int, cache: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """Scalar loss to back-propagate for ``phase`` and named terms to log.

        ``cache`` is shared by the phases of one micro-batch (e.g. the generator's
        reconstruction reused, detached, by the discriminator phase).
        """


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    step: int
    checkpoint: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    items_per_s: float = 0.0
    resumed_from: int | None = None
    schedule_changes: tuple[str, ...] = ()
    flops_per_step: float | None = None

    def summary(self, out: str | Path, dist_info: DistInfo) -> dict[str, Any]:
        """The command's summary: where, how far, how fast, and the last validation values."""
        return {
            "out": str(out),
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "steps": self.step,
            "resumed_from": self.resumed_from,
            **({"schedule_changed_on_resume": list(self.schedule_changes)} if self.schedule_changes else {}),
            "items_per_s": round(self.items_per_s, 3),
            # training compute: the counted operations of one step (all ranks) and of every step to here
            "flops_per_step": self.flops_per_step,
            "train_flops": None if self.flops_per_step is None else self.flops_per_step * self.step,
            "world_size": dist_info.world_size,
            "device": str(dist_info.device),
            **{k: (round(v, 5) if isinstance(v, float) and math.isfinite(v) else v)
               for k, v in self.last_metrics.items() if k.startswith("val/")},
        }


def claim_run_folder(out: Path, *, resume: bool, overwrite: bool, dist_info: DistInfo) -> None:
    """Make ``out`` ready for a run: keep it to resume, clear it with ``overwrite``, else refuse.

    Raises:
        DataError: ``out`` exists and neither ``resume`` nor ``overwrite`` is set.
    """
    import shutil

    if out.exists() and not resume:
        if not overwrite:
            raise DataError(f"{out}: output folder already exists; set resume to continue it or overwrite to "
                            "replace it", keys=("resume", "overwrite"))
        if dist_info.is_main:
            shutil.rmtree(out)


class RunOptions(TypedDict, total=False):
    """The keyword options of every training entry point (``train_autoencoder``, ``train_diffusion``).

    ``resume``: continue the run in ``out``; ``overwrite``: replace ``out`` (else an existing ``out``
    is refused); ``progress``: show a progress bar (default on); ``on_step_end``: ``f(trainer, step)``
    after each step.
    """

    resume: bool
    overwrite: bool
    progress: bool
    on_step_end: Callable[[Trainer, int], None] | None


@dataclass(frozen=True)
class Run:
    """An entry point's run folder and :class:`RunOptions`, with their defaults."""

    out: Path
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    on_step_end: Callable[[Trainer, int], None] | None = None

    def start(self, cfg: LoopConfig, seed: int, dist_info: DistInfo) -> None:
        """Claim the run folder (:func:`claim_run_folder`) and seed everything.

        Every rank checks the folder before any rank writes into it (a barrier), so no rank finds
        the folder another one has just started.
        """
        claim_run_folder(self.out, resume=self.resume, overwrite=self.overwrite, dist_info=dist_info)
        barrier(dist_info)
        seed_everything(seed, deterministic=cfg.deterministic)

    def fit(self, trainer: Trainer) -> dict[str, Any]:
        """Train to the end (continuing the run with ``resume``); the summary for the CLI."""
        return trainer.fit(resume=self.resume).summary(self.out, trainer.dist)


def make_adamw(params, cfg: OptimizerConfig, *, device: torch.device, total_steps: int | None = None) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the device has one.

    The parameter group carries its schedule: the settings (:data:`SCHEDULE_SETTINGS`: ``base_lr``,
    ``warmup_steps``, ``decay``, ``cooldown_steps``, ``min_lr_ratio``) and, for a cosine ``decay``,
    its end ``decay_steps`` = ``total_steps`` and start ``decay_start``. They are saved with the
    optimiser's state; :func:`apply_schedule` sets the step's rate and :func:`load_optimizer_state`
    decides which schedule a resumed run follows.
    """
    decay_steps = total_steps if cfg.decay == "cosine" and total_steps else 0
    decay_start = cfg.warmup_steps
    if decay_steps and cfg.cooldown_steps is not None:
        decay_start = max(cfg.warmup_steps, decay_steps - cfg.cooldown_steps)
    group = {"params": [p for p in params if p.requires_grad], "base_lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
             "decay": cfg.decay, "cooldown_steps": cfg.cooldown_steps, "min_lr_ratio": cfg.min_lr_ratio,
             "decay_steps": decay_steps, "decay_start": decay_start}
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.AdamW([group], fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused unsupported for this device/dtype
        return torch.optim.AdamW([group], foreach=device.type == "cuda", **kwargs)


#: The optimiser settings of a parameter group's learning-rate schedule (set by :func:`make_adamw`).
SCHEDULE_SETTINGS = ("base_lr", "warmup_steps", "decay", "cooldown_steps", "min_lr_ratio")
#: What :func:`make_adamw` derives from them and ``train.steps``: the step's rate, the decay's end and start.
SCHEDULE_DERIVED = ("lr", "decay_steps", "decay_start")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any], *, step: int = 0) -> list[str]:
    """Load a checkpoint's optimiser ``state`` (moments, step counts, schedule) into ``optimizer``.

    With the same schedule settings (:data:`SCHEDULE_SETTINGS`) the run continues the checkpoint's
    schedule: resumed with a larger ``train.steps``, a cosine keeps the decay length it started
    with. With changed settings (a cosine cool-down branched off a constant-rate run, another
    ``lr``) the run follows the settings it is resumed with, counted to its ``train.steps``; the
    other AdamW settings (betas, weight decay) stay the checkpoint's. Returns one line per changed
    setting, and one more when the checkpoint's ``step`` is already past the new decay's start.
    """
    if not all("decay" in g for g in optimizer.param_groups):  # not made by make_adamw: no schedule to keep
        optimizer.load_state_dict(state)
        return []
    planned = [{k: g[k] for k in (*SCHEDULE_SETTINGS, *SCHEDULE_DERIVED)} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    changed = []
    for i, (group, plan) in enumerate(zip(optimizer.param_groups, planned, strict=True)):
        saved = {"base_lr": group["lr"], "warmup_steps": 0, "min_lr_ratio": 0.1, "cooldown_steps": None,
                 "decay": "cosine" if group.get("decay_steps") else "constant", **group}
        keys = [k for k in SCHEDULE_SETTINGS if saved[k] != plan[k]]
        if saved["decay"] == plan["decay"] == "constant":  # no decay: its settings do nothing
            keys = [k for k in keys if k not in ("min_lr_ratio", "cooldown_steps")]
        changed += [f"group {i} {k}: {saved[k]} -> {plan[k]}" for k in keys]
        group.update(plan if keys else {k: saved[k] for k in SCHEDULE_SETTINGS})
        if keys and plan["decay_steps"] and step > plan["decay_start"]:
            changed.append(f"group {i} resumed at step {step}, past the decay's start {plan['decay_start']}")
    return changed


def scheduled_lr(base_lr: float, step: int, *, warmup_steps: int = 0, decay_steps: int = 0,
                 min_lr_ratio: float = 0.1, decay_start: int | None = None) -> float:
    """The rate of optimiser step ``step`` (0-based): linear warm-up, then constant or cosine decay.

    Warm-up: ``base_lr * min(1, (step + 1) / warmup_steps)``. With ``decay_steps`` the rate then
    holds ``base_lr`` until ``decay_start`` (default: the end of the warm-up) and falls along a half
    cosine to ``min_lr_ratio * base_lr`` at ``decay_steps``, and stays there.
    """
    rate = base_lr * (min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)
    if decay_steps:
        start = warmup_steps if decay_start is None else decay_start
        t = min(1.0, max(0, step - start) / max(1, decay_steps - start))
        rate *= min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    return rate


def apply_schedule(optimizer: torch.optim.Optimizer, step: int) -> None:
    """Set each parameter group's rate for optimiser step ``step`` (:func:`scheduled_lr`; groups without a schedule keep theirs)."""
    for group in optimizer.param_groups:
        if group.get("warmup_steps") or group.get("decay_steps"):
            group["lr"] = scheduled_lr(group["base_lr"], step, warmup_steps=group.get("warmup_steps", 0),
                                       decay_steps=group.get("decay_steps", 0),
                                       min_lr_ratio=group.get("min_lr_ratio", 0.1),
                                       decay_start=group.get("decay_start"))


def autocast_context(precision: str, device: torch.device):
    """``torch.autocast`` for bf16/fp16, a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim in (4, 5):
                fmt = torch.channels_last if value.ndim == 4 else torch.channels_last_3d
                value = value.contiguous(memory_format=fmt)
        out[key] = value
    return out


class Trainer:
    """Train ``parts`` with ``step_fn`` on ``train_data``; log, validate and checkpoint on rank 0.

    Args:
        parts: named networks (already on the right device).
        groups: optimiser groups; ``step_fn.phases`` names them.
        step_fn: computes each phase's loss.
        train_data: map-style dataset of dicts with tensors (e.g. ``{"image": (C, *spatial)}``).
        cfg: the loop settings.
        out: run folder (``checkpoint/``, ``metrics.jsonl``, ``tensorboard/``).
        seed: run seed (data order, per-rank RNG).
        export: name of the part written to ``model.safetensors``.
        model_meta: stage-specific content of ``model.json`` (``kind``, ``network`` config, ...).
        config: the full stage config, stored in the provenance block.
        validate: ``validate(trainer, step) -> {name: value}``, called on rank 0.
        transform: optional augmentation re-seeded per (epoch, item).
        dist_info: process placement (defaults to a single CPU/GPU process).
        on_step_end: hook ``f(trainer, step)`` after each step (tests simulate kills with it).
        progress: show a rich progress bar on stderr.
        sample_weights: optional per-item draw weights of ``train_data`` (e.g. class balancing).
    """

    def __init__(
        self,
        parts: Mapping[str, nn.Module],
        groups: Sequence[OptimGroup],
        step_fn: StepFunction,
        train_data,
        *,
        cfg: LoopConfig,
        out: str | Path,
        seed: int,
        export: str,
        model_meta: Mapping[str, Any],
        config: Any = None,
        validate: Callable[[Trainer, int], Mapping[str, float]] | None = None,
        transform: Callable | None = None,
        dist_info: DistInfo | None = None,
        on_step_end: Callable[[Trainer, int], None] | None = None,
        progress: bool = True,
        sample_weights: Sequence[float] | None = None,
    ) -> None:
        self.cfg, self.out, self.seed, self.export = cfg, Path(out), seed, export
        self.sample_weights = sample_weights
        self.dist = dist_info or DistInfo()
        self.device = self.dist.device
        self.parts = Parts(parts)
        self.groups = {g.name: g for g in groups}
        self.step_fn, self.train_data, self.transform = step_fn, train_data, transform
        self.model_meta, self.config, self.validate_fn = dict(model_meta), config, validate
        self.on_step_end, self.progress = on_step_end, progress
        self.precision = resolve_precision(cfg.precision, self.device, spatial_dims=network_dims(self.model_meta))
        enabled = self.precision == "fp16"
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=enabled) for name in self.groups}
        self.ema: torch.optim.swa_utils.AveragedModel | None = None
        if cfg.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            update = ema_with_warmup(cfg.ema_decay) if cfg.ema_warmup else get_ema_multi_avg_fn(cfg.ema_decay)
            self.ema = AveragedModel(self.parts.raw[export], multi_avg_fn=update, use_buffers=True)
        self.step = 0
        self.micro = 0  # micro-batches consumed by this rank
        self.schedule_changes: tuple[str, ...] = ()  # schedule settings a resume changed (load_optimizer_state)
        self._owner = {m: g.name for g in groups for m in g.modules}
        self._writer = None
        self._last_ckpt: Path | None = None
        self.flops_per_step: float | None = None  # counted before this run's first step
        self._counted = False
        self._wrap()

    # ---------------------------------------------------------------- set-up
    def _wrap(self) -> None:
        fmt = None
        for name, module in self.parts.raw.items():
            module.to(self.device)
            if self.cfg.channels_last:
                nd = next((p.ndim for p in module.parameters() if p.ndim >= 4), 4)
                fmt = torch.channels_last if nd == 4 else torch.channels_last_3d
                module.to(memory_format=fmt)
            run: nn.Module = module
            if self.dist.distributed and name in self._owner:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                run = DDP(module, device_ids=ids)
            if self.cfg.compile:
                run = torch.compile(run)
            self.parts.run[name] = run

    # ---------------------------------------------------------------- state
    def export_weights(self) -> dict[str, torch.Tensor]:
        """Weights of the exported part (EMA-averaged when EMA is on)."""
        if self.ema is not None:
            return dict(self.ema.module.state_dict())
        return dict(self.parts.raw[self.export].state_dict())

    def state_dict(self, rng_all: list) -> dict[str, Any]:
        return {
            "step": self.step,
            "micro": self.micro,
            "world_size": self.dist.world_size,
            "seed": self.seed,
            "modules": {n: m.state_dict() for n, m in self.parts.raw.items()},
            "optimizers": {n: g.optimizer.state_dict() for n, g in self.groups.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_all,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, sd in state["modules"].items():
            self.parts.raw[name].load_state_dict(sd)
        for name, sd in state["optimizers"].items():
            self.schedule_changes += tuple(f"{name} {line}" for line in
                                           load_optimizer_state(self.groups[name].optimizer, sd,
                                                                step=int(state["step"])))
        for name, sd in state["scalers"].items():
            self.scalers[name].load_state_dict(sd)
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.micro = int(state["micro"])
        rngs = state["rng"]
        if int(state["world_size"]) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            warnings.warn(
                f"resuming with {self.dist.world_size} process(es) from a run with {state['world_size']}: "
                "random streams are re-seeded, so the run will not match an uninterrupted one",
                stacklevel=2,
            )
            torch.manual_seed(self.seed + 1000 * self.step + self.dist.rank)
            self.micro = self.micro * int(state["world_size"]) // self.dist.world_size

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint/`` (rank 0 writes; every rank takes part in gathering RNG states)."""
        rng_all = gather_objects(ckpt.rng_state(), self.dist)
        path = None
        if self.dist.is_main:
            meta = {
                **provenance(self.config, self.seed),
                **self.model_meta,
                "step": self.step,
                "weights": "ema" if self.ema is not None else "raw",
                "precision": self.precision,
                "cpu_flags": list(cpu_flags()) if self.device.type == "cpu" else None,
            }
            path = ckpt.write_checkpoint(
                self.out, weights=self.export_weights(), model_json=meta, train_state=self.state_dict(rng_all)
            )
            self._last_ckpt = path
        barrier(self.dist)
        return path

    # ---------------------------------------------------------------- logging
    def log(self, values: Mapping[str, float], step: int) -> None:
        """Append ``values`` to metrics.jsonl and TensorBoard (rank 0 only)."""
        if not self.dist.is_main:
            return
        record = {"step": step, **{k: float(v) for k, v in values.items()}}
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by a kill
        atomic_write_text(path, "".join(x + "\n" for x in keep))

    # ---------------------------------------------------------------- training
    def _resume(self, resume: bool) -> int | None:
        found = None
        if resume:  # rank 0 first: it may have to recover a checkpoint swap cut by a kill
            if self.dist.is_main:
                found = ckpt.find_checkpoint(self.out)
            barrier(self.dist)
            if not self.dist.is_main:
                found = ckpt.find_checkpoint(self.out)
        if found is None:
            if self.dist.is_main and (self.out / "metrics.jsonl").exists():
                (self.out / "metrics.jsonl").unlink()
            return None
        self.load_state_dict(ckpt.load_train_state(found))
        self._last_ckpt = found
        if self.dist.is_main:
            self._truncate_metrics(self.step)
        return self.step

    def _set_trainable(self, group: OptimGroup) -> None:
        for name, module in self.parts.raw.items():
            if name in self._owner:
                module.requires_grad_(name in group.modules)

    def _sync_context(self, group: OptimGroup, last: bool):
        if last or not self.dist.distributed:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for name in group.modules:
            run = self.parts.run[name]
            inner = getattr(run, "_orig_mod", run)
            if hasattr(inner, "no_sync"):
                stack.enter_context(inner.no_sync())
        return stack

    def _nonfinite(self, phase: str, name: str, value: float) -> NonFiniteLossError:
        where = (
            f"the last good checkpoint {self._last_ckpt} was kept (resume from it, with resume set, "
            "after lowering the learning rate or using precision=fp32)"
            if self._last_ckpt is not None
            else "no checkpoint had been written yet"
        )
        return NonFiniteLossError(f"training stopped at step {self.step + 1}: {phase} loss '{name}' is {value}; {where}",
                                  keys=("resume",) if self._last_ckpt is not None else ())

    def train_step(self, micro_batches: Sequence[dict[str, Any]]) -> dict[str, float]:
        """One optimiser step per phase over ``micro_batches``; returns the logged terms."""
        accum = len(micro_batches)
        logs: dict[str, float] = {}
        caches: list[dict[str, Any]] = [{} for _ in micro_batches]
        for phase in self.step_fn.phases(self.step):
            group, scaler = self.groups[phase], self.scalers[phase]
            self._set_trainable(group)
            group.optimizer.zero_grad(set_to_none=True)
            apply_schedule(group.optimizer, self.step)
            for m, batch in enumerate(micro_batches):
                with self._sync_context(group, m == accum - 1):
                    with autocast_context(self.precision, self.device):
                        loss, terms = self.step_fn.loss(phase, batch, self.parts, step=self.step, cache=caches[m])
                    value = float(loss.detach())
                    if not all_true(math.isfinite(value), self.dist):
                        raise self._nonfinite(phase, f"{phase}/total", value)
                    scaler.scale(loss / accum).backward()
                logs[f"{phase}/total"] = logs.get(f"{phase}/total", 0.0) + value / accum
                for key, term in terms.items():
                    logs[key] = logs.get(key, 0.0) + float(term) / accum
            if group.grad_clip is not None:
                scaler.unscale_(group.optimizer)
                params = [p for n in group.modules for p in self.parts.raw[n].parameters()]
                norm = float(torch.nn.utils.clip_grad_norm_(params, group.grad_clip))
                if math.isfinite(norm):  # an fp16 overflow step (skipped by the scaler) logs none
                    logs[f"{phase}/grad_norm"] = norm  # before clipping: how often, and how far, it clips
            scaler.step(group.optimizer)
            scaler.update()
            if self.ema is not None and self.export in group.modules:
                self.ema.update_parameters(self.parts.raw[self.export])
        for module in self.parts.raw.values():
            module.requires_grad_(True)
        return logs

    def _out_of_time(self, t0: float) -> bool:
        """True once ``cfg.max_minutes`` of this run have passed (decided the same on every rank)."""
        if self.cfg.max_minutes is None:
            return False
        late = time.perf_counter() - t0 > 60.0 * self.cfg.max_minutes
        return not all_true(not late, self.dist)

    def _finish_early(self) -> dict[str, float]:
        """Validate and checkpoint the step a time or compute budget stopped at; the validation values."""
        metrics: dict[str, float] = {}
        if self.validate_fn is not None and self.step % self.cfg.val_every != 0:
            if self.dist.is_main:
                metrics = dict(self.validate_fn(self, self.step))
                self.log(metrics, self.step)
            barrier(self.dist)
        if self.step % self.cfg.checkpoint_every != 0:
            self.save_checkpoint()
        return metrics

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``cfg.steps``; resume from ``out/checkpoint`` when ``resume``."""
        cfg = self.cfg
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)
        resumed = self._resume(resume)
        if self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step or None)
        order = ResumableBatches(len(self.train_data), cfg.batch_size, seed=self.seed, rank=self.dist.rank,
                                 world_size=self.dist.world_size, start=self.micro, weights=self.sample_weights)
        loader = resumable_loader(self.train_data, order, num_workers=cfg.num_workers, transform=self.transform)
        batches = iter(loader)
        for module in self.parts.raw.values():
            module.train()
        last: dict[str, float] = {}
        items = 0
        t0 = time.perf_counter()
        bar = _Progress(self.progress and self.dist.is_main, cfg.steps, self.step)
        try:
            while self.step < cfg.steps and not self._out_of_time(t0):
                micro = [_to_device(next(batches), self.device, cfg.channels_last) for _ in range(cfg.grad_accum)]
                t0 += self._count_once(micro, resumed)  # its time is not the run's throughput
                if not self._fits_budget():
                    break  # the next step would exceed the compute budget
                logs = self.train_step(micro)
                self.micro += cfg.grad_accum
                self.step += 1
                items += sum(len(b[next(iter(b))]) for b in micro) * self.dist.world_size
                bar.advance(logs)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logs["items_per_s"] = items / max(time.perf_counter() - t0, 1e-9)
                    self.log(logs, self.step)
                    last = logs
                if self.validate_fn is not None and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                    if self.dist.is_main:
                        metrics = dict(self.validate_fn(self, self.step))
                        self.log(metrics, self.step)
                        last = {**last, **metrics}
                    barrier(self.dist)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
                if self.on_step_end is not None:
                    self.on_step_end(self, self.step)
            if self.step < cfg.steps and self.step > (resumed or 0):
                last = {**last, **self._finish_early()}
        except BaseException:
            bar.close(failed=True)  # the error is the last thing a log shows
            raise
        else:
            bar.close()
        finally:
            if self._writer is not None:
                self._writer.close()
        rate = items / max(time.perf_counter() - t0, 1e-9)
        return TrainResult(self.step, self._last_ckpt, last, rate, resumed, self.schedule_changes, self.flops_per_step)

    def _count_once(self, micro_batches: Sequence[dict[str, Any]], resumed: int | None) -> float:
        """Before the run's first step: count its compute and check ``max_flops`` against it; the
        seconds that took (0 after the first call)."""
        if self._counted:
            return 0.0
        start = time.perf_counter()
        self.flops_per_step, self._counted = self._count_flops(micro_batches), True
        self._check_compute_budget(resumed)
        return time.perf_counter() - start

    def _fits_budget(self) -> bool:
        """Whether the next step stays within ``max_flops`` (always, without a budget)."""
        budget = self.cfg.max_flops
        return budget is None or self.flops_per_step is None or (self.step + 1) * self.flops_per_step <= budget

    def _check_compute_budget(self, resumed: int | None) -> None:
        """Refuse a ``max_flops`` budget that cannot be kept: the compute was not counted, or a
        fresh run's first step already exceeds it."""
        budget = self.cfg.max_flops
        if budget is None:
            return
        if self.flops_per_step is None:
            raise ConfigError("train.max_flops: this run's training compute could not be counted (see the warning "
                              "above); give the budget as train.steps instead", keys=("train.max_flops",))
        if not resumed and self.flops_per_step > budget:
            raise ConfigError(f"train.max_flops: one training step costs {self.flops_per_step:.3g} FLOP, more than "
                              f"the budget {budget:.3g}; raise it", keys=("train.max_flops",))

    def _count_flops(self, micro_batches: Sequence[dict[str, Any]]) -> float | None:
        """The floating-point operations of one training step on ``micro_batches``, all ranks
        (``None``, with a warning, when they cannot be counted: the run goes on without).

        torch's ``FlopCounterMode`` counts matrix products, convolutions and attention, forward
        and backward, of every phase (discriminator and perceptual networks included; element-wise
        operations are not counted). The step counted is the run's last, after every warm-up, so
        steps that a warm-up makes cheaper (an autoencoder before its discriminator starts) count at
        the full cost. It runs on copies of the networks with the random state restored
        afterwards, so the run trains exactly as it would without it: under the counter the same
        step computes other rounding.
        """
        import copy

        from torch.utils.flop_counter import FlopCounterMode

        step = max(self.step, self.cfg.steps - 1)
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        try:
            copies = Parts({name: copy.deepcopy(module) for name, module in self.parts.raw.items()})
            with torch.random.fork_rng(devices=devices), FlopCounterMode(display=False) as counter:
                for batch in micro_batches:
                    cache: dict[str, Any] = {}
                    for phase in self.step_fn.phases(step):
                        for name, module in copies.raw.items():
                            if name in self._owner:
                                module.requires_grad_(name in self.groups[phase].modules)
                        with autocast_context(self.precision, self.device):
                            loss, _ = self.step_fn.loss(phase, batch, copies, step=step, cache=cache)
                        loss.backward()
        except Exception as err:  # noqa: BLE001 - a count is a record, never a reason to stop training
            warnings.warn(f"training compute not counted ({first_line(err)}); flops_per_step is null", stacklevel=2)
            return None
        return float(counter.get_total_flops() * self.dist.world_size)


def ema_with_warmup(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """The EMA update of ``AveragedModel`` with a warm-up (``train.ema_warmup``): after ``n`` updates
    the decay is ``min(decay, (1 + n) / (10 + n))`` (as diffusers' ``EMAModel``).

    A fixed decay keeps a share ``decay ** steps`` of the initial weights (37 % after 1000 steps at
    0.999), which a short run, or a student that starts from its teacher's weights, cannot afford.
    """

    @torch.no_grad()
    def update(ema_params: list, params: list, n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:  # integer buffers
            for p_ema, p in zip(ema_params, params, strict=True):
                p_ema.copy_(p_ema * d + p * (1 - d))

    return update


class _Progress:
    """A rich progress bar on stderr (plain lines in a log file), or nothing."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            from ..core.progress import LoggedProgress

            self.bar = LoggedProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def advance(self, logs: Mapping[str, float]) -> None:
        if self.bar is not None:
            info = " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in list(logs.items())[:3])
            self.bar.update(self.task, advance=1, info=info)

    def close(self, *, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.stop(failed=failed)
