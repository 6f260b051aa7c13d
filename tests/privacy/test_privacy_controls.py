"""Model-made calibration controls: provenance checks, the thresholds they set, and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_synthetic_set, make_two_cohorts
from uterosynth.cli import main
from uterosynth.core.errors import DataError
from uterosynth.data.image_set import ImageSet, load_prepared
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import training_subjects
from uterosynth.privacy.audit import run_audit
from uterosynth.privacy.config import AuditConfig
from uterosynth.privacy.controls import CONTROL_SOURCE, control_kind, load_controls

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from results_audit import make_experiment  # noqa: E402


def _with_info(folder: Path, **info) -> Path:
    path = folder / "synthetic.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **info}))
    return folder


@pytest.fixture()
def cohort(tmp_path):
    """A prepared dataset and a second one of other subjects (another seed and id prefix)."""
    return make_two_cohorts(tmp_path)


def _set(tmp_path: Path, name: str, n: int = 4) -> Path:
    return make_synthetic_set(tmp_path / name, np.random.default_rng(0).random((n, 16, 16)))


def test_controls_must_prove_they_are_not_copies_of_the_audited_subjects(cohort, tmp_path):
    prep, other = cohort
    train = load_prepared(prep, "train", clip=False)
    own, foreign = PreparedDataset.load(prep), PreparedDataset.load(other)

    with pytest.raises(DataError, match="records neither"):
        load_controls(_set(tmp_path, "bare"), train)
    overlapping = _with_info(_set(tmp_path, "own_model"), model={"training_subjects": training_subjects(own)})
    with pytest.raises(DataError, match=r"generator trained on 6 of the 6 audited training subjects"):
        load_controls(overlapping, train)
    recon_own = _with_info(_set(tmp_path, "recon_own"), training_subjects=training_subjects(own),
                           source_subjects=training_subjects(own, ("train",)))
    with pytest.raises(DataError, match="reconstructs 6 of the 6"):
        load_controls(recon_own, train)

    generator = _with_info(_set(tmp_path, "other_model"), model={"training_subjects": training_subjects(foreign)})
    loaded = load_controls(generator, train)
    assert len(loaded) == 4 and control_kind(loaded.info) == "generator"
    # reconstructions of held-out subjects by an autoencoder trained on the audited ones are allowed
    recon_test = _with_info(_set(tmp_path, "recon_test"), training_subjects=training_subjects(own),
                            source_subjects=training_subjects(own, ("test",)))
    assert control_kind(load_controls(recon_test, train).info) == "reconstructions"


def test_model_made_controls_stop_flagging_typical_samples_and_keep_copies():
    """Items pulled halfway to the cohort's mean image, as a model's typical output is, resemble every training
    item: calibrated on real items the audit flags many; calibrated on such items of other subjects it flags
    about its bound, and noised copies of training items are still all flagged."""
    train, hold, _, _, _ = make_experiment(train_subjects=30, holdout_subjects=30, new_subjects=1, copies_per_kind=1,
                                           slices=3, shape=(32, 32), seed=4)
    _, _, new, _, _ = make_experiment(train_subjects=1, holdout_subjects=1, new_subjects=80, copies_per_kind=1,
                                      slices=3, shape=(32, 32), seed=5)
    typical = 0.5 * new.images[:80] + 0.5 * train.images.mean(0, keepdim=True)
    controls = ImageSet(typical[:40], [str(i) for i in range(40)], [""] * 40)
    copies = train.images[:20] + 0.02 * torch.randn(20, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    probes = ImageSet(torch.cat([typical[40:], copies]), [str(i) for i in range(60)], [""] * 60)
    flagged, sources = {}, {}
    for how in ("real", "only", "pooled"):
        cfg = AuditConfig(measures=["ncc", "ssim"], quantile=0.9, background=0, control="each",
                          control_calibration="only" if how == "real" else how)
        result = run_audit(train, probes, hold, config=cfg, controls=None if how == "real" else controls)
        flagged[how], sources[how] = result.flagged, result.calibration["sources"]
        assert result.flagged[40:].all(), how  # every noised copy
    assert sources["only"] == {CONTROL_SOURCE: 40}
    assert sources["pooled"][CONTROL_SOURCE] == 40 and sources["pooled"]["held-out"] == 90
    assert flagged["real"][:40].mean() >= 0.35
    assert flagged["only"][:40].mean() <= 0.2 < flagged["real"][:40].mean()  # two measures at 0.9: at most about 0.2
    assert flagged["only"][:40].mean() <= flagged["pooled"][:40].mean() <= flagged["real"][:40].mean()


def test_too_few_controls_are_refused_with_how_many_are_needed():
    train, hold, _, _, _ = make_experiment(train_subjects=6, holdout_subjects=6, new_subjects=1, copies_per_kind=1,
                                           slices=2, shape=(16, 16), seed=1)
    controls = ImageSet(hold.images[:5], [str(i) for i in range(5)], [""] * 5)
    with pytest.raises(DataError, match=r"5 calibration items \(5 control items\).*at least 99 items; draw more controls"):
        run_audit(train, hold, hold, config=AuditConfig(measures=["ncc", "ssim"]), controls=controls)


@pytest.mark.slow
def test_audit_cli_calibrates_on_controls_and_refuses_copies_as_controls(cohort, tmp_path, capsys):
    prep, other = cohort
    foreign = PreparedDataset.load(other)
    rng = np.random.default_rng(1)
    controls = _with_info(make_synthetic_set(tmp_path / "controls", rng.random((20, 16, 16))),
                          model={"training_subjects": training_subjects(foreign)})
    syn = make_synthetic_set(tmp_path / "syn", rng.random((3, 16, 16)))
    out = tmp_path / "audit"
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", str(prep), "--synthetic", str(syn), "--controls", str(controls), "--out", str(out),
              "--quantile", "0.9"])
    assert info.value.code in (0, None)
    doc = json.loads((out / "audit.json").read_text())
    assert doc["calibration"]["sources"] == {CONTROL_SOURCE: 20}
    assert doc["inputs"]["controls"]["kind"] == "generator" and doc["inputs"]["controls"]["items"] == 20
    assert doc["provenance"]["config"]["control_calibration"] == "only"
    assert CONTROL_SOURCE in (out / "audit.html").read_text()

    own = _with_info(make_synthetic_set(tmp_path / "own", rng.random((20, 16, 16))),
                     model={"training_subjects": training_subjects(PreparedDataset.load(prep))})
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", str(prep), "--synthetic", str(syn), "--controls", str(own), "--out",
              str(tmp_path / "refused")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(own) in err[0] and "cannot calibrate" in err[0]
    assert not (tmp_path / "refused").exists()
