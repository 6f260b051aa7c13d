"""The audit's reference: it must hold every patient the generator saw, and may hold every slice of them."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import make_synthetic_set, make_two_cohorts
from uterosynth.cli import main
from uterosynth.data.manifest import PreparedDataset, write_manifest
from uterosynth.data.subjects import merge_subjects, missing_subjects, training_subjects


def _with_generator(folder, dataset, autoencoder_dataset=None):
    path = folder / "synthetic.json"
    info = json.loads(path.read_text())
    record = training_subjects(PreparedDataset.load(dataset))
    if autoencoder_dataset is not None:  # a latent model: its autoencoder's subjects join the record
        record = merge_subjects(model=record, autoencoder=training_subjects(PreparedDataset.load(autoencoder_dataset)))
    info["model"] = {"training_subjects": record}
    path.write_text(json.dumps(info))
    return folder


def _first_slices(all_slices, out, keep: int):
    """The same cohort with only the first ``keep`` slices of each subject: what a model was trained on."""
    shutil.copytree(all_slices, out)
    rows = [r for r in PreparedDataset.load(all_slices).rows if int(r["slice_index"]) < keep]
    write_manifest(out / "manifest.csv", rows, ["orientation"])
    return out


def _audit(capsys, *args):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["audit", *map(str, args)])
    return info.value.code or 0, capsys.readouterr().err.strip().splitlines()


@pytest.fixture()
def cohorts(tmp_path):
    every, other = make_two_cohorts(tmp_path, slices_per_subject=4)
    return every, _first_slices(every, tmp_path / "model_data", keep=2), other


def test_missing_subjects_counts_the_generators_patients_a_set_lacks(cohorts):
    every, _, other = cohorts
    record = training_subjects(PreparedDataset.load(every))
    train = [r["subject"] for r in PreparedDataset.load(every, "train").rows]
    assert missing_subjects(record, train) == 0
    assert missing_subjects(record, train[4:]) == 6 - len(set(train[4:]))
    assert missing_subjects(record, [r["subject"] for r in PreparedDataset.load(other).rows]) == 6
    assert missing_subjects(None, train) is None


def test_the_audit_refuses_a_reference_without_the_generators_patients(cohorts, tmp_path, capsys):
    every, _, other = cohorts
    syn = _with_generator(make_synthetic_set(tmp_path / "syn", np.random.default_rng(0).random((3, 16, 16))), every)
    out = tmp_path / "audit"
    code, err = _audit(capsys, "--train", other, "--synthetic", syn, "--out", out, "--quantile", "0.9")
    assert code == 2 and len(err) == 1
    assert str(other) in err[0] and "6 of its 6 subjects" in err[0] and "allow_missing_subjects" in err[0]
    assert not out.exists()

    code, _ = _audit(capsys, "--train", other, "--synthetic", syn, "--out", out, "--quantile", "0.9",
                     "--set", "allow_missing_subjects=true")
    assert code == 0
    doc = json.loads((out / "audit.json").read_text())
    assert doc["inputs"]["train"]["generator_subjects"] == {"recorded": 6, "held": 0}


def test_every_slice_of_the_training_patients_is_a_valid_reference(cohorts, tmp_path, capsys):
    every, model_data, _ = cohorts
    # a sample reproducing slice 3 of a training patient: a slice the model never saw
    rows = [r for r in PreparedDataset.load(every, "train").rows if int(r["slice_index"]) == 3]
    unseen = np.stack([np.asarray(nib.load(every / r["path"]).dataobj)[..., 0] for r in rows])
    syn = _with_generator(make_synthetic_set(tmp_path / "syn", unseen), model_data)

    code, _ = _audit(capsys, "--train", every, "--synthetic", syn, "--out", tmp_path / "a_every", "--quantile", "0.9")
    assert code == 0
    doc = json.loads((tmp_path / "a_every" / "audit.json").read_text())
    assert doc["inputs"]["train"]["generator_subjects"] == {"recorded": 6, "held": 6}
    assert doc["inputs"]["train"]["items"] == 24
    assert doc["summary"]["flagged"] == len(rows) == 6


def test_a_latent_models_autoencoder_subjects_must_be_in_the_reference_too(cohorts, tmp_path, capsys):
    every, _, other = cohorts
    syn = _with_generator(make_synthetic_set(tmp_path / "syn", np.random.default_rng(0).random((3, 16, 16))), every,
                          autoencoder_dataset=other)
    code, err = _audit(capsys, "--train", every, "--synthetic", syn, "--out", tmp_path / "a", "--quantile", "0.9")
    assert code == 2 and len(err) == 1
    assert "4 of its 10 subjects" in err[0] and f"autoencoder trained on {other}" in err[0]
