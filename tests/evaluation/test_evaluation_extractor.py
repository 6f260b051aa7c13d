import pytest
import torch
from safetensors.torch import save_file

from uterosynth.core.artifacts import sha256_file
from uterosynth.core.errors import UserError
from uterosynth.evaluation.config import ExtractorConfig
from uterosynth.evaluation.features import build_extractor, extractor_identity
from uterosynth.models.extractor import TorchScriptExtractor, TorchvisionExtractor


def _squeezenet_weights(path, seed=0):
    import torchvision.models as tvm

    torch.manual_seed(seed)
    net = tvm.squeezenet1_1(weights=None)
    save_file({f"features.{k}": v.contiguous() for k, v in net.features.state_dict().items()}, str(path))
    return net


def test_torchvision_extractor_loads_local_trunk_weights(tmp_path):
    path = tmp_path / "squeeze.safetensors"
    net = _squeezenet_weights(path)
    ext = TorchvisionExtractor("squeezenet1_1", path, size=64)
    images = torch.rand(3, 1, 40, 40)
    feats = ext(images)
    assert feats.shape == (3, 512)
    x = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net.features.eval()(x).mean(dim=(2, 3))
    assert torch.allclose(feats, expected, atol=1e-5)
    assert ext.sha256 == sha256_file(path) and ext.name == "torchvision-squeezenet1_1"


def test_torchvision_identity_records_arch_and_weights_hash(tmp_path):
    path = tmp_path / "squeeze.safetensors"
    _squeezenet_weights(path)
    cfg = ExtractorConfig(kind="torchvision", arch="squeezenet1_1", path=path, input_size=32)
    ext = build_extractor(cfg)
    ident = extractor_identity(ext, cfg, 2)
    assert ident["sha256"] == sha256_file(path) and ident["arch"] == "squeezenet1_1"
    assert ident["sha256_of"] == "weights file"


def test_torchvision_extractor_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        TorchvisionExtractor("alexnet", tmp_path / "missing.safetensors")
    path = tmp_path / "squeeze.safetensors"
    _squeezenet_weights(path)
    with pytest.raises(UserError, match="not a torchvision classification model"):
        TorchvisionExtractor("not_a_net", path)
    with pytest.raises(UserError, match="does not fit torchvision 'alexnet'"):
        TorchvisionExtractor("alexnet", path)
    with pytest.raises(ValueError, match="needs extractor.arch"):
        ExtractorConfig(kind="torchvision", path=path)
    with pytest.raises(ValueError, match="only used with kind torchvision"):
        ExtractorConfig(kind="encoder", arch="alexnet")


def test_torchscript_extractor_identity_is_the_file_hash(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    cfg = ExtractorConfig(kind="torchscript", path=path)
    ext = build_extractor(cfg)
    assert ext(torch.rand(2, 1, 16, 16)).shape == (2, 4)
    assert extractor_identity(ext, cfg, 2)["sha256"] == sha256_file(path)
    assert isinstance(ext.inner, TorchScriptExtractor)
