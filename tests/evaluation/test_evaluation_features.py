import json

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.evaluation.config import ExtractorConfig
from uterosynth.evaluation.features import (
    InceptionExtractor,
    PlanarExtractor,
    build_extractor,
    extract_features,
    extractor_identity,
)
from uterosynth.models.encoder_artifact import load_encoder


class MeanStd:
    """A two-feature extractor: per-image mean and std."""

    name = "meanstd"
    sha256 = "0" * 64

    def __call__(self, images):
        flat = images.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1)], 1)


def _script(path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 16, 16)), str(path))
    return path


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_planar_extractor_shapes(spatial_dims):
    ex = PlanarExtractor(MeanStd(), slices_per_plane=3, slice_spacing=2)
    shape = (16, 16) if spatial_dims == 2 else (16, 12, 8)
    x = torch.rand(5, 1, *shape)
    feats = extract_features(ex, x, batch_size=2)
    assert feats.shape == (5, 2 if spatial_dims == 2 else 6)
    if spatial_dims == 3:
        planes = ex.planes(x)
        assert [p[0].shape[2:] for p in planes] == [(16, 12), (16, 8), (12, 8)]
        assert len(planes[0]) == 3


def test_build_torchscript_extractor_and_identity(tmp_path):
    cfg = ExtractorConfig(kind="torchscript", path=_script(tmp_path / "net.pt"))
    ex = build_extractor(cfg)
    assert ex(torch.rand(2, 1, 20, 20)).shape == (2, 4)
    ident = extractor_identity(ex, cfg, 3)
    assert len(ident["sha256"]) == 64 and ident["kind"] == "torchscript" and ident["2.5d"]["planes"] == 3


def test_build_extractor_needs_a_path():
    with pytest.raises(UserError, match="extractor.path"):
        build_extractor(ExtractorConfig(kind="encoder"))


def test_encoder_missing_names_file(tmp_path):
    with pytest.raises(UserError, match="encoder.pt"):
        load_encoder(tmp_path)


def test_encoder_hash_mismatch(tmp_path):
    _script(tmp_path / "encoder.pt")
    (tmp_path / "encoder.json").write_text(json.dumps({"sha256": "f" * 64, "name": "enc"}))
    with pytest.raises(UserError, match="differs"):
        load_encoder(tmp_path)


def test_inception_missing_weights_names_file(tmp_path):
    with pytest.raises(UserError, match="pt_inception-2015-12-05.pth"):
        InceptionExtractor(tmp_path / "pt_inception-2015-12-05.pth")


@pytest.mark.slow
def test_inception_rejects_a_wrong_state_dict(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "w.pth")
    with pytest.raises(UserError, match="not an FID Inception-v3 state dict"):
        InceptionExtractor(tmp_path / "w.pth")


@pytest.mark.slow
def test_inception_from_local_state_dict(tmp_path):
    from torchvision.models.inception import inception_v3

    from uterosynth.evaluation.features import _fid_inception

    # a random state dict in the pt_inception-2015-12-05 layout (same keys as torchvision's, 1008 classes)
    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "pt_inception.pth")
    assert isinstance(_fid_inception(tmp_path / "pt_inception.pth"), torch.nn.Module)
    ex = InceptionExtractor(tmp_path / "pt_inception.pth")
    feats = ex(torch.rand(2, 1, 40, 40))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and len(ex.sha256) == 64
