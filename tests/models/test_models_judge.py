import json

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.evaluation.classifier import load_classifier
from uterosynth.models.judge import read_classifier, save_torchscript, write_classifier_meta


def _write(folder):
    folder.mkdir()
    digest = save_torchscript(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)), folder / "classifier.pt")
    write_classifier_meta(folder, {"task": "orientation", "classes": ["AV", "RV"], "spatial_dims": 2,
                                   "file": "classifier.pt", "sha256": digest})
    return folder


def test_written_classifier_reads_back(tmp_path):
    loaded = read_classifier(_write(tmp_path / "c"), required=("spatial_dims", "sha256"))
    assert loaded.meta["classes"] == ["AV", "RV"] and loaded.sha256 == loaded.meta["sha256"]
    assert loaded.module(torch.rand(3, 1, 4, 4)).shape == (3, 2)
    assert read_classifier(tmp_path / "c" / "classifier.pt").sha256 == loaded.sha256


def test_evaluation_loader_checks_the_hash(tmp_path):
    folder = _write(tmp_path / "c")
    meta = json.loads((folder / "classifier.json").read_text())
    (folder / "classifier.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(UserError, match="does not match classifier.json"):
        load_classifier(folder)


def test_required_key_missing(tmp_path):
    folder = _write(tmp_path / "c")
    meta = json.loads((folder / "classifier.json").read_text())
    del meta["spatial_dims"]
    (folder / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="spatial_dims"):
        read_classifier(folder, required=("spatial_dims",))
