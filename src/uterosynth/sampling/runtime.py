"""The fast path for sampling: inference mode, bf16 autocast, channels_last, compile, batch size.

Device, precision and compilation are settings (:class:`RuntimeConfig`), not code forks. The
``auto`` choices follow what measured faster (docs/BENCHMARKS.md, "Samplers"): bf16 autocast
and channels_last on CUDA GPUs that support bf16, plain fp32 and the default memory format on
CPU. ``torch.compile`` is opt-in (its compile time pays off only for long runs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from pydantic import Field

from ..core.config import StrictModel
from ..core.errors import ConfigError
from ..core.precision import resolve_precision

__all__ = [
    "RuntimeConfig",
    "resolve_device",
    "apply_threads",
    "use_bf16",
    "use_channels_last",
    "inference_context",
    "prepare_model",
    "prepare_input",
    "find_max_batch",
    "auto_batch_size",
]

log = logging.getLogger(__name__)


class RuntimeConfig(StrictModel):
    """How sampling runs.

    Attributes:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 autocast where the device runs bf16 natively: a CUDA GPU with
            bf16, a CPU with AVX-512 BF16 or AMX; else fp32), ``fp32``, ``bf16``.
        channels_last: ``auto`` (on CUDA), or force on/off.
        compile: wrap the network in ``torch.compile``.
        batch_size: a number, or ``auto`` (largest that fits; on CPU ``cpu_max_batch``).
        memory_budget_gb: GPU memory the sampler may use (``auto`` batch); default 90 % of free.
        cpu_max_batch: batch size cap on CPU for ``auto``.
        max_batch: upper limit of the ``auto`` search.
        cpu_threads: torch intra-op threads on CPU (``None``: torch's default). On a CPU shared
            with other jobs, 1 avoids OpenMP oversubscription (measured in docs/BENCHMARKS.md).
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    batch_size: int | Literal["auto"] = "auto"
    memory_budget_gb: float | None = Field(None, gt=0)
    cpu_max_batch: int = Field(8, ge=1)
    max_batch: int = Field(256, ge=1)
    cpu_threads: int | None = Field(None, ge=1)


def resolve_device(cfg: RuntimeConfig) -> torch.device:
    """The torch device for ``cfg.device``.

    Raises:
        ConfigError: ``cuda`` asked for but not available.
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA GPU is available; use device: cpu or auto")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def apply_threads(cfg: RuntimeConfig, device: torch.device) -> None:
    """Set torch's intra-op thread count for CPU sampling when ``cfg.cpu_threads`` is given."""
    if device.type == "cpu" and cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)


def use_bf16(cfg: RuntimeConfig, device: torch.device, spatial_dims: int | None = None) -> bool:
    """Whether the network (of ``spatial_dims``, when known) runs under bf16 autocast."""
    return resolve_precision(cfg.precision, device, spatial_dims=spatial_dims) == "bf16"


def use_channels_last(cfg: RuntimeConfig, device: torch.device) -> bool:
    if cfg.channels_last == "auto":
        return device.type == "cuda"
    return bool(cfg.channels_last)


def _memory_format(ndim: int) -> torch.memory_format:
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


@contextlib.contextmanager
def inference_context(cfg: RuntimeConfig, device: torch.device, spatial_dims: int | None = None) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast where :func:`use_bf16` says so."""
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=use_bf16(cfg, device, spatial_dims)):
        yield


def prepare_model(model: torch.nn.Module, cfg: RuntimeConfig, device: torch.device, *, spatial_dims: int) -> torch.nn.Module:
    """Evaluation mode on ``device``, channels_last if chosen, compiled if asked."""
    model = model.eval().to(device)
    if use_channels_last(cfg, device):
        model = model.to(memory_format=_memory_format(spatial_dims + 2))
    if cfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def prepare_input(x: torch.Tensor, cfg: RuntimeConfig, device: torch.device) -> torch.Tensor:
    """``x`` (N, C, *spatial) on ``device`` in the chosen memory format."""
    x = x.to(device)
    if use_channels_last(cfg, device) and x.ndim in (4, 5):
        x = x.contiguous(memory_format=_memory_format(x.ndim))
    return x


class _OverBudget(Exception):
    pass


def find_max_batch(trial: Callable[[int], None], *, limit: int, start: int = 1) -> int:
    """Largest batch size ``<= limit`` for which ``trial(batch)`` does not run out of memory.

    Doubles from ``start`` until a trial fails, then bisects between the last success and the
    first failure. A trial fails by raising ``torch.OutOfMemoryError`` (or exceeding a budget
    inside :func:`auto_batch_size`).

    Raises:
        ConfigError: even ``start`` items do not fit.
    """

    def fits(batch: int) -> bool:
        try:
            trial(batch)
            return True
        except (torch.OutOfMemoryError, _OverBudget):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return False

    if not fits(start):
        raise ConfigError(f"batch size: even {start} item(s) do not fit in memory; use a smaller model, image or budget")
    good, bad = start, None
    while bad is None and good < limit:
        candidate = min(good * 2, limit)
        if fits(candidate):
            good = candidate
        else:
            bad = candidate
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def auto_batch_size(trial: Callable[[int], None], cfg: RuntimeConfig, device: torch.device, *, limit: int | None = None) -> int:
    """The batch size to sample with.

    Args:
        trial: runs one model call at a given batch size (e.g. one guided denoising step).
        cfg: ``batch_size`` is returned as is unless ``auto``.
        device: on CPU ``auto`` gives ``min(cpu_max_batch, limit)`` — no probing, as CPU memory
            is shared and large; on CUDA the largest batch whose peak memory stays within the budget.
        limit: e.g. the number of images to generate.
    """
    limit = min(limit or cfg.max_batch, cfg.max_batch)
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    if device.type != "cuda":
        return max(1, min(cfg.cpu_max_batch, limit))
    if cfg.memory_budget_gb is not None:
        budget = int(cfg.memory_budget_gb * 2**30)
    else:
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(0.9 * free) + torch.cuda.memory_allocated(device)

    def budgeted(batch: int) -> None:
        torch.cuda.reset_peak_memory_stats(device)
        trial(batch)
        torch.cuda.synchronize(device)
        if torch.cuda.max_memory_allocated(device) > budget:
            raise _OverBudget

    batch = find_max_batch(budgeted, limit=limit)
    log.info("automatic batch size: %d (budget %.1f GiB)", batch, budget / 2**30)
    return batch
