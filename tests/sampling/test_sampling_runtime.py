"""Fast-path helpers: batch-size search, inference context, memory format, device choice."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.sampling.runtime import (
    RuntimeConfig,
    apply_threads,
    auto_batch_size,
    find_max_batch,
    inference_context,
    prepare_input,
    prepare_model,
    resolve_device,
    use_bf16,
)


def _oom_above(limit: int, tried: list[int]):
    def trial(batch: int) -> None:
        tried.append(batch)
        if batch > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    return trial


@pytest.mark.parametrize("fits", [1, 5, 37, 64, 200])
def test_find_max_batch_finds_the_largest_fitting_batch(fits):
    tried: list[int] = []
    assert find_max_batch(_oom_above(fits, tried), limit=128) == min(fits, 128)
    assert len(tried) <= 16  # doubling then bisection, not a linear scan


def test_find_max_batch_when_nothing_fits_is_a_user_error():
    with pytest.raises(UserError, match="even 1 item\\(s\\) do not fit"):
        find_max_batch(_oom_above(0, []), limit=8)


def test_auto_batch_size_on_cpu_uses_the_cap_without_probing():
    tried: list[int] = []
    cfg = RuntimeConfig(cpu_max_batch=6)
    assert auto_batch_size(_oom_above(100, tried), cfg, torch.device("cpu"), limit=50) == 6
    assert auto_batch_size(_oom_above(100, tried), cfg, torch.device("cpu"), limit=4) == 4
    assert tried == []
    assert auto_batch_size(_oom_above(100, tried), RuntimeConfig(batch_size=3), torch.device("cpu")) == 3


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_inference_context_and_memory_format(spatial_dims):
    from monai.networks.nets import DiffusionModelUNet

    net = DiffusionModelUNet(
        spatial_dims=spatial_dims, in_channels=1, out_channels=1, channels=(8, 8), attention_levels=(False, False),
        num_res_blocks=1, norm_num_groups=4,
    )
    cfg = RuntimeConfig(device="cpu", channels_last=True, precision="bf16")
    device = resolve_device(cfg)
    model = prepare_model(net, cfg, device, spatial_dims=spatial_dims)
    assert not model.training
    x = prepare_input(torch.randn((2, 1) + (8,) * spatial_dims), cfg, device)
    fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    assert x.is_contiguous(memory_format=fmt)
    with inference_context(cfg, device):
        out = model(x, torch.tensor([10, 20]))
        assert torch.is_inference_mode_enabled()
    assert out.dtype == torch.bfloat16 and out.shape == x.shape


def test_precision_auto_on_cpu_is_bf16_only_where_native():
    from uterosynth.core.precision import cpu_native_bf16

    assert use_bf16(RuntimeConfig(), torch.device("cpu")) is cpu_native_bf16()
    assert use_bf16(RuntimeConfig(precision="bf16"), torch.device("cpu"))
    assert not use_bf16(RuntimeConfig(precision="fp32"), torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_is_a_user_error():
    with pytest.raises(UserError, match="device: 'cuda' requested but no CUDA GPU is available"):
        resolve_device(RuntimeConfig(device="cuda"))


def test_apply_threads_sets_cpu_threads():
    before = torch.get_num_threads()
    try:
        apply_threads(RuntimeConfig(cpu_threads=1), torch.device("cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
