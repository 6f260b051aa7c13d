"""The learned copy detector: its batches, its views, its artifact, and how the audit calibrates it."""

from __future__ import annotations

import json
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import make_anatomy_dataset, make_prepared_dataset, make_synthetic_set
from uterosynth.cli import main
from uterosynth.data.image_set import ImageSet, load_prepared
from uterosynth.data.subjects import hash_subject
from uterosynth.models.encoder_artifact import load_encoder
from uterosynth.privacy.audit import run_audit
from uterosynth.privacy.config import AuditConfig, CopyDetectorConfig
from uterosynth.privacy.copy_detector import PURPOSE, copy_view, subject_batches, train_copy_detector

TINY = {"image_size": 16, "channels": (4, 4, 8, 8), "projection_dim": 8, "epochs": 1, "batch_size": 4}


def test_subject_batches_visit_every_item_once_and_never_pair_two_subjects():
    subjects = [s for s in "abcdefg" for _ in range(3)] + ["h"]
    epoch = subject_batches(subjects, 4, other_slice=0.5, generator=torch.Generator().manual_seed(0))
    anchors, others = [], 0
    for a, b in epoch(0):
        assert 2 <= len(a) <= 4 and len({subjects[i] for i in a.tolist()}) == len(a)  # distinct subjects
        assert all(subjects[i] == subjects[j] for i, j in zip(a.tolist(), b.tolist(), strict=True))
        anchors += a.tolist()
        others += int((a != b).sum())
    assert Counter(anchors) == Counter(range(len(subjects)))  # rounds of 8, 7, 7 subjects: every item once
    assert 0 < others < len(anchors)  # some positives are another item of the subject, most are the item


def test_copy_view_follows_torch_seed_and_stays_in_range():
    x = torch.rand(6, 1, 16, 16)
    view = copy_view(CopyDetectorConfig(image_size=16))
    torch.manual_seed(3)
    a = view(x)
    torch.manual_seed(3)
    b = view(x)
    assert a.shape == (6, 1, 16, 16) and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not torch.equal(view(x), a)  # the next draw differs


def test_train_copy_detector_writes_an_encoder_the_audit_loads(tmp_path):
    prep = make_prepared_dataset(tmp_path / "prep", shape=(16, 16), subjects=6, items_per_subject=3)
    info = train_copy_detector(prep, tmp_path / "det", CopyDetectorConfig(**TINY))
    assert info["purpose"] == PURPOSE and info["data"]["subjects"] == 4 and info["data"]["images"] == 12
    assert np.isfinite(info["training"]["final_loss"])
    extractor = load_encoder(tmp_path / "det")
    assert extractor(torch.rand(3, 1, 24, 24)).shape == (3, TINY["projection_dim"])
    assert len(extractor.training_subjects["ids"]) == 4


def test_train_encoder_cli_refuses_a_single_subject_in_one_line(tmp_path, capsys):
    prep = make_prepared_dataset(tmp_path / "prep", shape=(16, 16), subjects=3, items_per_subject=2)
    with pytest.raises(SystemExit) as info:
        main(["audit", "train-encoder", "--data", f"{prep}:test", "--out", str(tmp_path / "det")])
    assert info.value.code == 2 and not (tmp_path / "det").exists()
    assert "needs at least 2" in capsys.readouterr().err


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def _seen_extractor(subjects: list[str]):
    """A fixed embedding that claims to have been trained on ``subjects``."""
    net = _Pool()
    net.training_subjects = {"salt": "uterosynth-subject-v1", "ids": [hash_subject(s) for s in subjects]}
    return net


def test_audit_calibrates_a_learned_measure_only_on_subjects_it_did_not_see(tmp_path):
    prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 24, "val": 2, "test": 10}, slices_per_subject=3,
                                shape=(32, 32))
    train, hold = load_prepared(prep, "train", clip=False), load_prepared(prep, "test", clip=False)
    syn = ImageSet(train.images[:4].clone(), [f"x{i}" for i in range(4)], [""] * 4)
    cfg = AuditConfig(quantile=0.95)
    plain = run_audit(train, syn, hold, config=cfg, extractor=_Pool())
    seen = run_audit(train, syn, hold, config=cfg, extractor=_seen_extractor(sorted(set(train.subjects))))
    assert plain.modes[0].conformal["embedding"]["n"] == len(train) + len(hold)
    assert seen.modes[0].conformal["embedding"]["n"] == len(hold)  # only the held-out items calibrate it
    assert seen.modes[0].conformal["ncc"]["n"] == len(train) + len(hold)  # the pixel measures keep every item
    assert "excluded" in seen.modes[0].notes["embedding"]
    assert seen.false_flag_rate["per_measure"]["image/embedding"] is not None
    assert json.dumps(seen.false_flag_rate)  # serialisable with the per-measure rates over the items counted


@pytest.mark.slow
def test_copy_detector_cli_then_audit_uses_it(tmp_path):
    prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 24, "val": 2, "test": 10}, slices_per_subject=3,
                                shape=(32, 32))
    other = make_prepared_dataset(tmp_path / "other", shape=(32, 32), subjects=8, items_per_subject=2, subject_prefix="T")
    with pytest.raises(SystemExit) as info:
        main(["audit", "train-encoder", "--data", str(other), "--out", str(tmp_path / "det"), "--json",
              *[f"--set={k}={json.dumps(list(v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]])
    assert info.value.code in (0, None)
    syn = tmp_path / "syn"
    copy = np.asarray(nib.load(str(prep / "items" / "S0000_000.nii.gz")).dataobj, dtype=np.float32)[:, :, 0]
    make_synthetic_set(syn, copy[None], dims=2)
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", str(prep), "--synthetic", str(syn), "--out", str(tmp_path / "audit"),
              "--encoder", str(tmp_path / "det"), "--json"])
    assert info.value.code in (0, None)
    doc = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert "embedding" in doc["calibration"]["thresholds"]["image"]
    assert doc["samples"][0]["flagged"]


def test_copy_detector_on_volumes_learns_from_their_informative_slices(tmp_path):
    prep = make_prepared_dataset(tmp_path / "prep3d", dims=3, shape=(16, 16, 6), subjects=5, items_per_subject=1)
    info = train_copy_detector(prep, tmp_path / "det", CopyDetectorConfig(**TINY))
    assert info["data"]["dims"] == 3 and info["data"]["subjects"] == 3
    assert 3 <= info["data"]["images"] <= 3 * 6  # the sagittal slices of three training volumes


def test_mirror_symmetric_detector_gives_a_mirror_image_its_descriptor(tmp_path):
    prep = make_prepared_dataset(tmp_path / "prep", shape=(16, 16), subjects=6, items_per_subject=2)
    train_copy_detector(prep, tmp_path / "sym", CopyDetectorConfig(**TINY))
    train_copy_detector(prep, tmp_path / "plain", CopyDetectorConfig(**TINY, mirror_symmetric=False))
    x = torch.rand(4, 1, 16, 16)
    sym, plain = load_encoder(tmp_path / "sym"), load_encoder(tmp_path / "plain")
    assert torch.allclose(sym(x), sym(x.flip(-1)), atol=1e-5)
    assert not torch.allclose(plain(x), plain(x.flip(-1)), atol=1e-3)


def test_audit_refuses_an_encoder_that_leaves_too_few_calibration_items(tmp_path):
    from uterosynth.core.errors import DataError

    prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 24, "val": 2, "test": 10}, slices_per_subject=3,
                                shape=(32, 32))
    train, hold = load_prepared(prep, "train", clip=False), load_prepared(prep, "test", clip=False)
    syn = ImageSet(train.images[:2].clone(), ["x0", "x1"], [""] * 2)
    with pytest.raises(DataError, match=r"30 of the 102 calibration items .*image/embedding.*train it on a cohort of other"):
        run_audit(train, syn, hold, config=AuditConfig(), extractor=_seen_extractor(sorted(set(train.subjects))))


def test_copy_view_without_blur_noise_or_geometry_keeps_the_image():
    cfg = CopyDetectorConfig(image_size=16, min_crop=1.0, max_rotation_deg=0, max_shift=0, max_blur_sigma=0, noise_std=0,
                             elastic_px=0)
    x = torch.rand(8, 1, 16, 16)
    torch.manual_seed(0)
    y = copy_view(cfg)(x)
    # only the mirror image and intensity changes remain: the ordering of pixels along a column is kept
    same = [torch.equal(torch.argsort(y[i, 0, :, 0]), torch.argsort(x[i, 0, :, 0])) or
            torch.equal(torch.argsort(y[i, 0, :, 0]), torch.argsort(x[i, 0, :, -1])) for i in range(8)]
    assert sum(same) >= 6
