"""Precision chosen at run time: explicit values pass through, ``auto`` follows the hardware."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core import precision
from uterosynth.sampling.runtime import RuntimeConfig, use_bf16
from uterosynth.training.config import LoopConfig


@pytest.mark.parametrize("explicit", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_kept(explicit):
    assert precision.resolve_precision(explicit, "cpu") == explicit


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
    assert precision.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert use_bf16(RuntimeConfig(precision="auto"), torch.device("cpu")) is native
    assert use_bf16(RuntimeConfig(precision="fp32"), torch.device("cpu")) is False


@pytest.mark.parametrize(("flags", "dims", "expected"), [
    (("avx512_bf16", "amx_bf16"), 3, "fp32"),   # 3D on AMX gave NaN: fp32
    (("avx512_bf16", "amx_bf16"), 2, "bf16"),
    (("avx512_bf16", "amx_bf16"), None, "bf16"),  # dims unknown
    (("avx512_bf16",), 3, "bf16"),
])
def test_a_3d_network_on_an_amx_cpu_stays_fp32(monkeypatch, flags, dims, expected):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.resolve_precision("auto", "cpu", spatial_dims=dims) == expected
    assert precision.resolve_precision("bf16", "cpu", spatial_dims=dims) == "bf16"  # asked for explicitly


def test_native_bf16_needs_the_cpu_flags(monkeypatch):
    precision.cpu_native_bf16.cache_clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: ("avx2", "avx512f"))
    try:
        assert precision.cpu_native_bf16() is False
    finally:
        precision.cpu_native_bf16.cache_clear()


def test_cpu_flags_are_a_subset_of_the_relevant_ones():
    assert set(precision.cpu_flags()) <= set(precision.RELEVANT_FLAGS)


def test_training_accepts_auto():
    assert LoopConfig(precision="auto").precision == "auto"


def test_network_dims_prefers_the_recorded_network_over_the_items():
    assert precision.network_dims({"spatial_dims": 3, "network_dims": 2}) == 2  # slices folded into channels
    assert precision.network_dims({"spatial_dims": 3}) == 3
    assert precision.network_dims({}) is None
