"""Which floating-point precision a run uses, chosen at run time from the device it lands on.

``auto`` means the fastest precision the hardware runs natively: bf16 autocast on a CUDA GPU
with bf16 support, bf16 on a CPU with native bf16 instructions (AVX-512 BF16 or AMX, as oneDNN
reports them), fp32 otherwise. On a CPU without them bf16 is emulated and several times slower
than fp32, which is why the choice is made per machine and recorded with every run.

One exception: a 3D network on a CPU with AMX runs in fp32. oneDNN's AMX path for 3D
training diverged to NaN within ten steps, and 3D sampling in bf16 now and then gave NaN items, on a 2-core Xeon (torch 2.14.1; MONAI's
``DiffusionModelUNet`` alone reproduces it, and the same loop with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``
or in fp32 trains normally), and at the quick 3D demo's size it was no faster than fp32 there (70
against 77 items/s).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["Precision", "cpu_flags", "cpu_native_bf16", "network_dims", "resolve_precision"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]

#: the CPU flags that decide the speed of a precision, recorded beside benchmark numbers
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The :data:`RELEVANT_FLAGS` this CPU has (from ``/proc/cpuinfo``; empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    present = set(line.split(":", 1)[-1].split())
    return tuple(f for f in RELEVANT_FLAGS if f in present)


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's own check, else the CPU flags)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and torch.backends.mkldnn.is_available():
        try:
            return bool(check()) and bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
        except RuntimeError:
            pass
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def network_dims(meta: Mapping[str, Any]) -> int | None:
    """Spatial dimensions of a model's convolutions from its metadata: ``network_dims`` (2 for a
    volume model that folds its slices into channels), else ``spatial_dims``; ``None`` if neither."""
    dims = meta.get("network_dims", meta.get("spatial_dims"))
    return None if dims is None else int(dims)


def resolve_precision(precision: Precision, device: torch.device | str, *,
                      spatial_dims: int | None = None) -> Literal["fp32", "bf16", "fp16"]:
    """The concrete precision for ``precision`` on ``device``; ``spatial_dims`` (2 or 3) of the network
    when known (a 3D network on an AMX CPU runs in fp32: module docstring).

    >>> resolve_precision("fp32", "cpu")
    'fp32'
    """
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if spatial_dims == 3 and "amx_bf16" in cpu_flags():
        return "fp32"
    return "bf16" if cpu_native_bf16() else "fp32"
