import json

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.models.encoder_artifact import ENCODER_INFO, load_encoder, write_encoder


def _module():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return torch.jit.trace(net.eval(), torch.rand(1, 1, 16, 16))


def test_write_then_load_gives_same_features(tmp_path):
    module = _module()
    info = write_encoder(tmp_path, module, {"feature_dim": 4})
    assert info["name"] == f"uterosynth-encoder-{info['sha256'][:12]}" and info["feature_dim"] == 4
    assert json.loads((tmp_path / ENCODER_INFO).read_text()) == info
    loaded = load_encoder(tmp_path)
    x = torch.rand(3, 1, 16, 16)
    assert loaded.sha256 == info["sha256"] and loaded.name == info["name"]
    assert torch.allclose(loaded(x), module(x))


def test_load_refuses_modified_encoder(tmp_path):
    write_encoder(tmp_path, _module(), {})
    torch.jit.save(_module(), str(tmp_path / "encoder.pt"))
    with pytest.raises(UserError, match="modified"):
        load_encoder(tmp_path)


def test_plain_torchscript_accepted_only_without_required_info(tmp_path):
    torch.jit.save(_module(), str(tmp_path / "net.pt"))
    assert load_encoder(tmp_path / "net.pt", require_info=False).sha256
    with pytest.raises(UserError, match="not found"):
        load_encoder(tmp_path / "missing.pt", require_info=False)
