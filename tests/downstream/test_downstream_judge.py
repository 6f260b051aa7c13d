import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from downstream_fixtures import make_bar_dataset

from uterosynth.core.errors import UserError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.downstream.classifier import build_classifier
from uterosynth.downstream.config import ClassifierConfig, JudgeConfig
from uterosynth.downstream.judge import (
    load_classifier,
    predict,
    predict_logits_judge,
    save_torchscript,
    train_judge,
)
from uterosynth.models.judge import judge_view


@pytest.mark.slow
def test_judge_learns_the_task_and_round_trips(tmp_path):
    real = make_bar_dataset(tmp_path / "real", shape=(32, 32), items_per_subject=2)
    cfg = JudgeConfig.model_validate({
        "classifier": {"image_size": 24, "widen_factor": 0.125},
        "train": {"max_epochs": 10, "min_epochs": 6, "patience": 2, "min_samples_per_epoch": 192},
        "augment_training": False,
    })
    meta = train_judge(real, cfg, tmp_path / "judge")
    on_disk = json.loads((tmp_path / "judge" / "classifier.json").read_text())
    assert on_disk["classes"] == ["AVAF", "AVRF", "RVAF", "RVRF"] and on_disk["task"] == "orientation"
    assert on_disk["spatial_dims"] == 2 and on_disk["input_shape"] == [32, 32] and on_disk["model_input_shape"] == [24, 24]
    assert meta["test_accuracy"] >= 0.9 and meta["val_balanced_accuracy"] >= 0.9  # a learnable task is learnt
    for key in ("sha256", "provenance", "model_input_shape", "test_per_class_recall", "format"):
        assert key in on_disk

    test = PreparedDataset.load(real, "test")
    arrays = test.stack()
    truth = [r["orientation"] for r in test.rows]
    loaded = load_classifier(tmp_path / "judge")
    names = predict(loaded, arrays)
    assert np.mean([a == b for a, b in zip(names, truth, strict=True)]) == pytest.approx(meta["test_accuracy"])
    assert predict(tmp_path / "judge", arrays[:, None]) == names  # (N, 1, H, W) and a folder work too
    # any spatial size is resized inside the module
    bigger = torch.nn.functional.interpolate(torch.from_numpy(arrays)[:, None], size=(48, 48), mode="bilinear")
    assert predict_logits_judge(loaded, bigger).shape == (len(arrays), 4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript_save_load_same_logits(tmp_path, spatial_dims):
    size = (16,) * spatial_dims
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(widen_factor=0.0625, image_size=16), spatial_dims, 3, size).eval()
    x = torch.rand(4, 1, *size)
    save_torchscript(model, tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is marked deprecated
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
    torch.testing.assert_close(loaded(x), model(x))


def _fake_judge(tmp_path):
    model = build_classifier(ClassifierConfig(widen_factor=0.0625, image_size=16), 2, 2, (16, 16)).eval()
    save_torchscript(model, tmp_path / "classifier.pt")
    from uterosynth.core.artifacts import sha256_file

    meta = {"task": "orientation", "classes": ["A", "B"], "spatial_dims": 2, "sha256": sha256_file(tmp_path / "classifier.pt")}
    (tmp_path / "classifier.json").write_text(json.dumps(meta))
    return tmp_path


def test_judge_checksum_mismatch(tmp_path):
    root = _fake_judge(tmp_path)
    with open(root / "classifier.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(UserError, match="does not match classifier.json"):
        load_classifier(root)


def test_judge_predict_wrong_shape(tmp_path):
    root = _fake_judge(tmp_path)
    assert predict(root, np.zeros((2, 16, 16), np.float32))[0] in ("A", "B")
    with pytest.raises(UserError, match="expected images"):
        predict(root, np.zeros((16, 16), np.float32))


def test_judge_folder_missing(tmp_path):
    with pytest.raises(UserError, match="classifier.json: file not found"):
        load_classifier(tmp_path)


def test_a_2d_judge_sees_a_volumes_central_sagittal_slice():
    volumes = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    assert np.array_equal(judge_view(volumes, 2), volumes[..., 3])
    assert judge_view(volumes, 3) is volumes
    images = volumes[..., 0]
    assert judge_view(images, 2) is images
    with_channel = torch.from_numpy(volumes)[:, None]
    assert torch.equal(judge_view(with_channel, 2, channels=True), with_channel[..., 3])
    assert judge_view(with_channel[..., 0], 2, channels=True).shape == (2, 1, 4, 5)


def _unreadable_torchscript(*args, **kwargs):
    raise RuntimeError("\nversion_ number 11 is not supported by this torch")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_torch_that_cannot_read_the_torchscript_rebuilds_the_judge(tmp_path, monkeypatch, spatial_dims):
    real = make_bar_dataset(tmp_path / "real", dims=spatial_dims, shape=(16,) * spatial_dims, items_per_subject=1)
    cfg = JudgeConfig.model_validate({
        "classifier": {"image_size": 16, "widen_factor": 0.0625},
        "train": {"max_epochs": 1, "min_epochs": 1, "patience": 1, "min_samples_per_epoch": 16},
        "augment_training": False,
    })
    train_judge(real, cfg, tmp_path / "judge")
    x = torch.rand(3, 1, *(16,) * spatial_dims)
    scripted = load_classifier(tmp_path / "judge")[0]
    monkeypatch.setattr(torch.jit, "load", _unreadable_torchscript)
    with pytest.warns(UserWarning, match="cannot read this TorchScript module .*rebuilt the network"):
        rebuilt, meta = load_classifier(tmp_path / "judge")
    assert not isinstance(rebuilt, torch.jit.ScriptModule) and not rebuilt.training
    torch.testing.assert_close(rebuilt(x), scripted(x))

    assert meta["network"]["spatial_dims"] == spatial_dims and meta["network"]["num_classes"] == 4

    info = tmp_path / "judge" / "classifier.json"
    good = info.read_text()
    info.write_text(json.dumps({**meta, "network": {**meta["network"], "num_classes": 3}}))
    with pytest.raises(UserError, match=r"classifier.safetensors: cannot rebuild the classifier .*; retrain it$"):
        load_classifier(tmp_path / "judge")
    network = dict(meta["network"])
    del network["widen_factor"]
    info.write_text(json.dumps({**meta, "network": network}))
    with pytest.raises(UserError, match=r"cannot rebuild the classifier .*\('widen_factor'\)"):
        load_classifier(tmp_path / "judge")
    info.write_text(good)

    weights = tmp_path / "judge" / meta["weights"]["file"]
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(UserError, match="classifier.safetensors: sha256 does not match"):
        load_classifier(tmp_path / "judge")


def test_the_judge_is_read_on_the_cpu_then_moved(tmp_path, monkeypatch):
    root = _fake_judge(tmp_path)
    seen = []
    real_load = torch.jit.load

    def load(path, map_location=None):
        seen.append(map_location)
        return real_load(path, map_location=map_location)

    monkeypatch.setattr(torch.jit, "load", load)
    module, _ = load_classifier(root)
    assert seen == ["cpu"] and not module.training


def test_an_unreadable_judge_without_portable_weights_is_refused(tmp_path, monkeypatch):
    root = _fake_judge(tmp_path)
    monkeypatch.setattr(torch.jit, "load", _unreadable_torchscript)
    with pytest.raises(UserError, match=r"cannot read this TorchScript module \(version_ number 11 .*retrain"):
        load_classifier(root)


def test_an_earlier_judge_gets_portable_weights_with_the_same_logits(tmp_path, monkeypatch):
    real = make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)
    cfg = JudgeConfig.model_validate({
        "classifier": {"image_size": 16, "widen_factor": 0.0625},
        "train": {"max_epochs": 1, "min_epochs": 1, "patience": 1, "min_samples_per_epoch": 16},
        "augment_training": False,
    })
    train_judge(real, cfg, tmp_path / "judge")
    info = tmp_path / "judge" / "classifier.json"
    meta = json.loads(info.read_text())
    info.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("weights", "network")}))
    (tmp_path / "judge" / "classifier.safetensors").unlink()  # as an earlier version wrote it

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "judge_weights.py"
    spec = importlib.util.spec_from_file_location("judge_weights", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["judge_weights.py", str(tmp_path / "judge"), str(tmp_path / "ported")])
    module.main()

    x = torch.rand(3, 1, 16, 16)
    scripted = load_classifier(tmp_path / "judge")[0]
    monkeypatch.setattr(torch.jit, "load", _unreadable_torchscript)
    with pytest.warns(UserWarning, match="rebuilt the network"):
        rebuilt, ported = load_classifier(tmp_path / "ported")
    torch.testing.assert_close(rebuilt(x), scripted(x))
    assert ported["network"] == meta["network"] and ported["sha256"] == meta["sha256"]
